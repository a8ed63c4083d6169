//! Double-entry bookkeeping (DESIGN.md §2): named accounts and postings that are balanced by
//! construction. Every movement of money is one [`Posting`] with an idempotency key; the ledger
//! service records it once and derives balances from the entries.

use std::fmt;

use crate::money::MicroUsd;

/// An account of the ledger; its text form is what the database stores.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Account {
    /// What a renter can spend.
    UserAvailable(i64),
    /// Money paid for a cluster and not yet earned by its providers or refunded.
    ClusterEscrow(String),
    /// A provider's (owner wallet's) hire earnings.
    ProviderEarned(String),
    PlatformFees,
    /// Where money enters or leaves the platform: a payment rail, or operator credits.
    External(&'static str),
}

/// Operator credits (promotions, goodwill refunds) come from here.
pub const OPERATOR_CREDITS: Account = Account::External("operator");

impl fmt::Display for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Account::UserAvailable(id) => write!(f, "user:{id}:available"),
            Account::ClusterEscrow(id) => write!(f, "cluster:{id}:escrow"),
            Account::ProviderEarned(wallet) => write!(f, "provider:{wallet}:earned"),
            Account::PlatformFees => f.write_str("platform:fees"),
            Account::External(rail) => write!(f, "external:{rail}"),
        }
    }
}

impl Account {
    /// Whether the account may never go below zero (the database enforces it too).
    pub fn must_stay_positive(&self) -> bool {
        !matches!(self, Account::External(_))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PostingError {
    #[error("a transfer of a negative amount ({0}) is not allowed")]
    Negative(MicroUsd),
    #[error("the amounts are too large")]
    Overflow,
}

/// One balanced transaction: a list of transfers, each debiting one account and crediting
/// another by the same amount, so the entries always sum to zero.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Posting {
    /// Unique per movement: recording the same key twice changes nothing.
    pub key: String,
    pub memo: String,
    transfers: Vec<(Account, Account, MicroUsd)>,
}

impl Posting {
    pub fn new(key: impl Into<String>, memo: impl Into<String>) -> Posting {
        Posting {
            key: key.into(),
            memo: memo.into(),
            transfers: Vec::new(),
        }
    }

    /// Moves `amount` from one account to another; zero amounts are left out.
    pub fn transfer(
        mut self,
        from: Account,
        to: Account,
        amount: MicroUsd,
    ) -> Result<Posting, PostingError> {
        if amount < MicroUsd::ZERO {
            return Err(PostingError::Negative(amount));
        }
        if amount > MicroUsd::ZERO {
            self.transfers.push((from, to, amount));
        }
        Ok(self)
    }

    /// The net change per account, sorted by account; sums to zero.
    pub fn entries(&self) -> Result<Vec<(Account, MicroUsd)>, PostingError> {
        let mut net: std::collections::BTreeMap<&Account, MicroUsd> = Default::default();
        for (from, to, amount) in &self.transfers {
            let debit = net.entry(from).or_default();
            *debit = debit.checked_sub(*amount).ok_or(PostingError::Overflow)?;
            let credit = net.entry(to).or_default();
            *credit = credit.checked_add(*amount).ok_or(PostingError::Overflow)?;
        }
        Ok(net
            .into_iter()
            .filter(|(_, amount)| *amount != MicroUsd::ZERO)
            .map(|(account, amount)| (account.clone(), amount))
            .collect())
    }

    pub fn is_empty(&self) -> bool {
        self.transfers.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accounts_have_the_design_names() {
        assert_eq!(Account::UserAvailable(7).to_string(), "user:7:available");
        assert_eq!(
            Account::ClusterEscrow("cl-1".into()).to_string(),
            "cluster:cl-1:escrow"
        );
        assert_eq!(OPERATOR_CREDITS.to_string(), "external:operator");
    }

    #[test]
    fn negative_transfers_are_refused_and_zero_ones_dropped() {
        let p = Posting::new("k", "m");
        assert!(p
            .clone()
            .transfer(
                Account::PlatformFees,
                OPERATOR_CREDITS,
                MicroUsd::from_micros(-1)
            )
            .is_err());
        let p = p
            .transfer(Account::PlatformFees, OPERATOR_CREDITS, MicroUsd::ZERO)
            .unwrap();
        assert!(p.is_empty());
    }

    proptest! {
        #[test]
        fn entries_always_sum_to_zero(transfers in prop::collection::vec((0i64..4, 0i64..4, 0i64..1_000_000_000), 0..20)) {
            let mut p = Posting::new("k", "m");
            for (from, to, amount) in transfers {
                p = p.transfer(Account::UserAvailable(from), Account::UserAvailable(to), MicroUsd::from_micros(amount)).unwrap();
            }
            let sum: i64 = p.entries().unwrap().iter().map(|(_, a)| a.micros()).sum();
            prop_assert_eq!(sum, 0);
        }
    }
}
