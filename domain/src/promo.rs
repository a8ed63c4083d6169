//! Promotional credit (the welcome credit, operator credits) must not become a provider's
//! claimable payout by way of the renter's own devices or a freshly made provider wallet
//! (issue 23's sybil limits). The rule, in two parts:
//!
//! - A renter is **bound** while the promotional credit they received in an asset is more than
//!   what they spent, net of refunds, on clusters paid in that asset while bound. Until then
//!   every cluster they pay for in that asset is a *promotional* cluster.
//! - A promotional cluster's devices (at deploy, replacement, and any later hire its money pays
//!   for) never belong to the renter's own wallet, nor to a provider whose account is younger
//!   than [`PROVIDER_MIN_AGE_MS`]; extending a cluster with such devices while bound is refused.
//!
//! So promotional money reaches only providers who were on the network before the renter got it
//! and who are not the renter: making wallets to farm welcome credits pays honest providers, not
//! the farmer. Spending promotional credit first (rather than deposits) is what makes the rule
//! hold whatever the renter's balance: a refund of a promotional cluster binds the renter again.

use crate::money::Asset;

/// Providers whose account is younger than this (7 days) are not paid from promotional credit.
pub const PROVIDER_MIN_AGE_MS: i64 = 7 * 86_400_000;

/// What a renter received and spent of promotional credit in one asset, in base units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PromoStanding {
    pub asset: Asset,
    /// Every promotional credit received.
    pub granted: i64,
    /// Net of refunds, what promotional clusters paid in this asset cost.
    pub spent_bound: i64,
}

impl PromoStanding {
    /// The promotional credit not yet spent on promotional clusters; zero once spent.
    pub fn unspent(self) -> i64 {
        self.granted.saturating_sub(self.spent_bound).max(0)
    }

    /// Whether a cluster paid now in this asset is promotional.
    pub fn binds(self) -> bool {
        self.unspent() > 0
    }

    /// Why a placement that left out the devices promotional money may not pay failed.
    pub fn reason(self) -> String {
        format!(
            "the devices that could serve it are yours or belong to providers whose account is \
             less than {} days old, and your balance still holds {} of promotional credit, which \
             pays only other providers of at least that age",
            PROVIDER_MIN_AGE_MS / 86_400_000,
            self.asset.show(self.unspent()),
        )
    }
}

/// Whether a provider whose account was made at `provider_since_ms` may be paid by a
/// promotional cluster of `renter_wallet` now: not the renter, and old enough. A provider with
/// no account on record (a seeded demo fleet) counts as old.
pub fn may_serve_promotional(
    renter_wallet: &str,
    provider_wallet: &str,
    provider_since_ms: Option<i64>,
    now_ms: i64,
) -> bool {
    provider_wallet != renter_wallet
        && provider_since_ms.is_none_or(|since| now_ms - since >= PROVIDER_MIN_AGE_MS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn standing(granted: i64, spent_bound: i64) -> PromoStanding {
        PromoStanding {
            asset: Asset::Usdc,
            granted,
            spent_bound,
        }
    }

    #[test]
    fn a_renter_is_bound_until_the_promotional_credit_is_spent_on_promotional_clusters() {
        assert!(!standing(0, 0).binds());
        assert!(standing(10_000_000, 0).binds());
        assert!(standing(10_000_000, 9_999_999).binds());
        assert!(!standing(10_000_000, 10_000_000).binds());
        assert!(!standing(10_000_000, 25_000_000).binds());
        assert_eq!(standing(10_000_000, 4_000_000).unspent(), 6_000_000);
        // A refund lowers what was spent, and binds the renter again.
        assert!(standing(10_000_000, 10_000_000 - 1).binds());
    }

    #[test]
    fn promotional_money_never_pays_the_renter_nor_a_new_provider() {
        let now = 100 * 86_400_000;
        let old = Some(now - PROVIDER_MIN_AGE_MS);
        let young = Some(now - PROVIDER_MIN_AGE_MS + 1);
        assert!(may_serve_promotional("R", "P", old, now));
        assert!(!may_serve_promotional("R", "R", old, now));
        assert!(!may_serve_promotional("R", "P", young, now));
        assert!(may_serve_promotional("R", "P", None, now));
    }

    #[test]
    fn the_reason_names_the_credit_and_the_age() {
        let why = standing(10_000_000, 2_500_000).reason();
        assert!(why.contains("yours"), "{why}");
        assert!(why.contains("7 days"), "{why}");
        assert!(why.contains("7.5"), "{why}");
    }
}
