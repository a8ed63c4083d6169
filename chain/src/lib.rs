//! Solana access for GPU Commons (DESIGN.md §4): the few JSON-RPC calls the platform makes,
//! behind [`SolanaRpc`] so the payout worker runs the same against a cluster's RPC
//! ([`HttpRpc`]) and an in-process Solana runtime in tests (`litesvm` feature); SPL token
//! transfers signed by the platform treasury ([`payout_transfer`]); and treasury key files.
//! Built on the lean Solana component crates, not the whole SDK.

mod keyfile;
#[cfg(feature = "litesvm")]
pub mod litesvm;
mod rpc;
mod transfer;

pub use keyfile::read_treasury_key;
pub use rpc::{
    Blockhash, ChainFuture, Confirmation, HttpRpc, LandedTransaction, SignatureStatus, SolanaRpc,
    TokenBalanceChange,
};
pub use solana_hash::Hash;
pub use solana_keypair::Keypair;
pub use solana_pubkey::Pubkey;
pub use solana_signature::Signature;
pub use solana_signer::Signer;
pub use transfer::{
    associated_token_address, check_signed, deposit_transfer, payout_transfer, wallet_sign,
    SignedTransfer, TokenMint, UnsignedTransfer,
};

/// Everything talking to Solana can fail with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    /// No answer (connection refused, timeout, dropped response): the call may or may not
    /// have taken effect.
    #[error("no answer from the Solana RPC at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    /// The RPC answered with an error for this call.
    #[error("the Solana RPC refused {method}: {message}")]
    Rpc {
        method: &'static str,
        message: String,
    },
    /// The node rejected the transaction before running it (its preflight): an expired
    /// blockhash, too little SOL for fees, a failing instruction.
    #[error("the transaction was rejected: {0}")]
    Rejected(String),
    #[error("the Solana RPC answered {method} with something unexpected: {detail}")]
    Malformed {
        method: &'static str,
        detail: String,
    },
    #[error("{0}")]
    Key(String),
    #[error("'{0}' is not a Solana address (base58 of 32 bytes)")]
    Address(String),
    #[error("the transaction could not be built: {0}")]
    Build(String),
}

/// Parses a base58 Solana address with a specific error.
pub fn parse_address(text: &str) -> Result<Pubkey, ChainError> {
    text.trim()
        .parse()
        .map_err(|_| ChainError::Address(text.to_owned()))
}
