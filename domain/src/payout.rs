//! Money over Solana (DESIGN.md §2). Payouts: a provider's claim of claimable balance to their
//! wallet, as a signed SPL token transfer tracked `requested → submitted → confirmed` (or
//! `failed`, funds returned). Deposits: a renter's transfer from their wallet, credited once it
//! is confirmed on chain. The rules both must meet live here.

use serde::{Deserialize, Serialize};

use crate::fleet::named_enum;
use crate::money::{Asset, MicroUsd, Tokens};

named_enum!(
    /// Where a payout is.
    PayoutStatus, "payout status", {
        /// Recorded with the funds held; not signed yet.
        Requested => "requested",
        /// Signed (the transaction stored before it was first sent) and sent; waiting to land.
        Submitted => "submitted",
        /// Landed on chain: the provider has the tokens.
        Confirmed => "confirmed",
        /// Could not be paid; the funds went back to the claimable balance.
        Failed => "failed",
    }
);

/// The smallest claim (and deposit) per asset, as the operator sets it: a transfer costs the
/// treasury a fee and possibly a token account's rent, which dust would not cover.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Minimums {
    pub usdc: MicroUsd,
    pub tokens: Tokens,
}

impl Default for Minimums {
    /// 1 USDC and 1 GCT.
    fn default() -> Minimums {
        Minimums {
            usdc: MicroUsd::from_micros(1_000_000),
            tokens: Tokens::from_units(1_000_000),
        }
    }
}

impl Minimums {
    /// The smallest transfer of `asset`, in base units.
    pub fn of(&self, asset: Asset) -> i64 {
        match asset {
            Asset::Usdc => self.usdc.micros(),
            Asset::Token => self.tokens.units(),
        }
    }
}

/// Claims one wallet may make in an hour, and may have in flight at once.
pub const CLAIMS_PER_HOUR: i64 = 10;
pub const CLAIMS_IN_FLIGHT: i64 = 3;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClaimError {
    #[error("the smallest claim is {minimum}; {asked} was asked")]
    BelowMinimum { asked: String, minimum: String },
    #[error("you can claim up to {claimable}; {asked} was asked")]
    MoreThanClaimable { asked: String, claimable: String },
    #[error("{CLAIMS_PER_HOUR} claims an hour at most; try again after {retry_after_secs} s")]
    TooMany { retry_after_secs: i64 },
    #[error("{CLAIMS_IN_FLIGHT} claims are still on their way; wait for one to land")]
    TooManyInFlight,
}

/// Checks a claim of `amount` base units of `asset` against the smallest claim and what the
/// wallet can claim.
pub fn check_claim(
    asset: Asset,
    amount: i64,
    claimable: i64,
    minimums: &Minimums,
) -> Result<(), ClaimError> {
    let minimum = minimums.of(asset);
    if amount < minimum {
        return Err(ClaimError::BelowMinimum {
            asked: asset.show(amount),
            minimum: asset.show(minimum),
        });
    }
    if amount > claimable {
        return Err(ClaimError::MoreThanClaimable {
            asked: asset.show(amount),
            claimable: asset.show(claimable),
        });
    }
    Ok(())
}

/// A payout as the provider sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Payout {
    pub id: String,
    pub asset: Asset,
    pub amount: i64,
    pub status: PayoutStatus,
    pub status_reason: String,
    pub requested_at: i64,
    /// The transaction's signature once signed (the one that landed, once confirmed).
    pub signature: Option<String>,
    pub finished_at: Option<i64>,
    /// Where anyone can check the transfer, once it landed.
    pub explorer_url: Option<String>,
}

/// The Solana explorer's page of a transaction on `cluster` (`mainnet`, `devnet`, …).
pub fn explorer_url(signature: &str, cluster: &str) -> String {
    match cluster {
        "mainnet" | "mainnet-beta" => format!("https://explorer.solana.com/tx/{signature}"),
        other => format!("https://explorer.solana.com/tx/{signature}?cluster={other}"),
    }
}

named_enum!(
    /// Where a deposit is.
    DepositStatus, "deposit status", {
        /// Built by the server; waiting for the wallet's signature.
        AwaitingSignature => "awaiting_signature",
        /// Signed by the wallet and sent; waiting to land.
        Submitted => "submitted",
        /// Landed: the balance was credited (once).
        Confirmed => "confirmed",
        /// Landed but failed on chain (too few tokens, say): nothing moved.
        Failed => "failed",
        /// Its blockhash expired before it landed: nothing moved; deposit again.
        Expired => "expired",
    }
);

/// A deposit as the renter sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Deposit {
    pub id: String,
    pub asset: Asset,
    pub amount: i64,
    pub status: DepositStatus,
    pub status_reason: String,
    pub created_at: i64,
    pub signature: Option<String>,
    pub finished_at: Option<i64>,
}

/// A deposit to sign: the transaction in wire format, base64, for the wallet's
/// `signTransaction` on `chain` (`solana:devnet`, …).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DepositToSign {
    pub deposit: Deposit,
    pub transaction: String,
    pub chain: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_must_be_at_least_the_minimum_and_at_most_what_is_claimable() {
        assert_eq!(
            check_claim(Asset::Usdc, 1_000_000, 5_000_000, &Minimums::default()),
            Ok(())
        );
        assert_eq!(
            check_claim(Asset::Usdc, 500_000, 5_000_000, &Minimums::default())
                .unwrap_err()
                .to_string(),
            "the smallest claim is $1.00; $0.50 was asked"
        );
        assert_eq!(
            check_claim(Asset::Token, 7_000_000, 2_500_000, &Minimums::default())
                .unwrap_err()
                .to_string(),
            "you can claim up to 2.5 GCT; 7 GCT was asked"
        );
    }

    #[test]
    fn transactions_link_to_the_explorer_of_their_cluster() {
        assert_eq!(
            explorer_url("5ig", "devnet"),
            "https://explorer.solana.com/tx/5ig?cluster=devnet"
        );
        assert_eq!(
            explorer_url("5ig", "mainnet"),
            "https://explorer.solana.com/tx/5ig"
        );
    }
}
