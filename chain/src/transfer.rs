//! SPL token transfers: the treasury's signed transfer that pays a provider, and the unsigned
//! transfer a renter's wallet signs to deposit.

use solana_hash::Hash;
use solana_keypair::Keypair;
use solana_message::Message;
use solana_pubkey::Pubkey;
use solana_signature::Signature;
use solana_signer::Signer;
use solana_transaction::Transaction;

use crate::ChainError;

/// An SPL token the platform pays in (USDC, or the network token).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenMint {
    pub address: Pubkey,
    pub decimals: u8,
}

/// A signed transaction ready to send, and its signature (the transaction's id on chain).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedTransfer {
    pub signature: Signature,
    /// The transaction in wire format, exactly as sent (and re-sent).
    pub wire: Vec<u8>,
}

/// The associated token account of `owner` for `mint` (SPL Token program).
pub fn associated_token_address(owner: &Pubkey, mint: &Pubkey) -> Pubkey {
    spl_associated_token_account_interface::address::get_associated_token_address(owner, mint)
}

/// `amount` base units of `mint` from the treasury's associated token account to
/// `recipient`'s, creating the recipient's account first when it is missing (the treasury
/// pays for it), signed by the treasury with `blockhash`.
pub fn payout_transfer(
    treasury: &Keypair,
    mint: &TokenMint,
    recipient: &Pubkey,
    amount: u64,
    blockhash: Hash,
) -> Result<SignedTransfer, ChainError> {
    let token_program = spl_token_interface::ID;
    let payer = treasury.pubkey();
    let create = spl_associated_token_account_interface::instruction::create_associated_token_account_idempotent(
        &payer,
        recipient,
        &mint.address,
        &token_program,
    );
    let transfer = spl_token_interface::instruction::transfer_checked(
        &token_program,
        &associated_token_address(&payer, &mint.address),
        &mint.address,
        &associated_token_address(recipient, &mint.address),
        &payer,
        &[],
        amount,
        mint.decimals,
    )
    .map_err(|e| ChainError::Build(e.to_string()))?;
    let message = Message::new(&[create, transfer], Some(&payer));
    let transaction = Transaction::new(&[treasury], message, blockhash);
    let wire = bincode::serialize(&transaction).map_err(|e| ChainError::Build(e.to_string()))?;
    Ok(SignedTransfer {
        signature: transaction.signatures[0],
        wire,
    })
}

/// A transaction for someone else to sign: the message bytes they sign, and the transaction in
/// wire format with an empty signature (what a wallet's `signTransaction` takes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsignedTransfer {
    pub message: Vec<u8>,
    pub wire: Vec<u8>,
}

/// `amount` base units of `mint` from `wallet`'s associated token account to the treasury's,
/// with `wallet` as the fee payer and only signer.
pub fn deposit_transfer(
    wallet: &Pubkey,
    treasury: &Pubkey,
    mint: &TokenMint,
    amount: u64,
    blockhash: Hash,
) -> Result<UnsignedTransfer, ChainError> {
    let transfer = spl_token_interface::instruction::transfer_checked(
        &spl_token_interface::ID,
        &associated_token_address(wallet, &mint.address),
        &mint.address,
        &associated_token_address(treasury, &mint.address),
        wallet,
        &[],
        amount,
        mint.decimals,
    )
    .map_err(|e| ChainError::Build(e.to_string()))?;
    let mut message = Message::new(&[transfer], Some(wallet));
    message.recent_blockhash = blockhash;
    let transaction = Transaction::new_unsigned(message);
    Ok(UnsignedTransfer {
        message: transaction.message_data(),
        wire: bincode::serialize(&transaction).map_err(|e| ChainError::Build(e.to_string()))?,
    })
}

/// Signs a transaction in wire format with `signer` as its only signer, as a wallet's
/// `signTransaction` does (for tests and local demos; browsers use the wallet).
pub fn wallet_sign(wire: &[u8], signer: &Keypair) -> Result<Vec<u8>, ChainError> {
    let mut transaction: Transaction =
        bincode::deserialize(wire).map_err(|e| ChainError::Build(e.to_string()))?;
    let signature = signer.sign_message(&transaction.message_data());
    let [slot] = &mut transaction.signatures[..] else {
        return Err(ChainError::Build("expected exactly one signer".into()));
    };
    *slot = signature;
    bincode::serialize(&transaction).map_err(|e| ChainError::Build(e.to_string()))
}

/// Checks that `signed` (wire format) is exactly the transaction of `message`, signed by
/// `signer`, and returns its signature.
pub fn check_signed(
    signed: &[u8],
    message: &[u8],
    signer: &Pubkey,
) -> Result<Signature, ChainError> {
    let refused = |why: &str| ChainError::Rejected(format!("the signed transaction {why}"));
    let transaction: Transaction =
        bincode::deserialize(signed).map_err(|_| refused("is not a Solana transaction"))?;
    if transaction.message_data() != message {
        return Err(refused("is not the one this deposit asked to sign"));
    }
    let [signature] = transaction.signatures[..] else {
        return Err(refused("has more than one signature"));
    };
    let key = ed25519_dalek::VerifyingKey::from_bytes(&signer.to_bytes())
        .map_err(|_| refused("names a signer that is not an ed25519 key"))?;
    key.verify_strict(
        message,
        &ed25519_dalek::Signature::from_bytes(signature.as_array()),
    )
    .map_err(|_| refused("is not signed by your wallet"))?;
    Ok(signature)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deposit_is_signed_by_the_wallet_alone_and_checked_byte_for_byte() {
        let (wallet, treasury) = (Keypair::new(), Pubkey::new_unique());
        let mint = TokenMint {
            address: Pubkey::new_unique(),
            decimals: 6,
        };
        let blockhash = Hash::new_from_array([3; 32]);
        let unsigned =
            deposit_transfer(&wallet.pubkey(), &treasury, &mint, 5_000_000, blockhash).unwrap();
        let signed = wallet_sign(&unsigned.wire, &wallet).unwrap();
        assert_eq!(
            check_signed(&signed, &unsigned.message, &wallet.pubkey()),
            Ok(wallet.sign_message(&unsigned.message))
        );
        let stranger = Keypair::new();
        assert!(check_signed(&signed, &unsigned.message, &stranger.pubkey())
            .unwrap_err()
            .to_string()
            .contains("not signed by your wallet"));
        let other =
            deposit_transfer(&wallet.pubkey(), &treasury, &mint, 9_000_000, blockhash).unwrap();
        assert!(check_signed(&signed, &other.message, &wallet.pubkey())
            .unwrap_err()
            .to_string()
            .contains("not the one this deposit asked to sign"));
        assert!(check_signed(b"junk", &unsigned.message, &wallet.pubkey()).is_err());
    }
}
