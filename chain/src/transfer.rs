//! SPL token transfers from the treasury: the signed transaction that pays a provider.

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
