//! Double-entry bookkeeping (DESIGN.md §2): named accounts and postings that are balanced by
//! construction. Every movement of money is one [`Posting`] with an idempotency key; the ledger
//! service records it once, as transfers that each debit one account and credit another by the
//! same amount of one asset, and derives balances from them.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::money::{Asset, MicroUsd, Tokens};

/// An account of the ledger; its text form is what the database stores. Each account holds a
/// balance per [`Asset`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Account {
    /// What a renter can spend.
    UserAvailable(i64),
    /// Money paid for a cluster and not yet earned by its providers or refunded.
    ClusterEscrow(String),
    /// What a provider (owner wallet) has earned and not yet claimed: hire earnings, settled at
    /// least hourly, and block rewards.
    ProviderClaimable(String),
    PlatformFees,
    /// Each block's emission passes through here; what no eligible device earned stays.
    RewardsPool,
    /// What a payout holds from its claim until it lands (or fails and goes back).
    PayoutHeld(String),
    /// Where money enters or leaves the platform: a payment rail, operator credits, emission.
    External(&'static str),
}

/// Operator credits (promotions, goodwill refunds) come from here.
pub const OPERATOR_CREDITS: Account = Account::External("operator");
/// The network token's block emission comes from here.
pub const EMISSION: Account = Account::External("emission");
/// Payouts that landed leave to the chain.
pub const SOLANA: Account = Account::External("solana");
/// Where the platform takes the network token for dollars at the operator's price (clusters
/// paid in the token) and gives it back for their refunds.
pub const TOKEN_EXCHANGE: Account = Account::External("token_exchange");

impl fmt::Display for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Account::UserAvailable(id) => write!(f, "user:{id}:available"),
            Account::ClusterEscrow(id) => write!(f, "cluster:{id}:escrow"),
            Account::ProviderClaimable(wallet) => write!(f, "provider:{wallet}:claimable"),
            Account::PlatformFees => f.write_str("platform:fees"),
            Account::RewardsPool => f.write_str("platform:rewards_pool"),
            Account::PayoutHeld(id) => write!(f, "payout:{id}:held"),
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
    Negative(String),
    #[error("a transfer from {0} to itself is not allowed")]
    ToItself(Account),
    #[error("the amounts are too large")]
    Overflow,
}

/// One line of a posting: `units` of `asset` leave `from` and arrive in `to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transfer {
    pub asset: Asset,
    pub from: Account,
    pub to: Account,
    /// Always more than zero.
    pub units: i64,
}

/// One balanced transaction: a list of transfers, each debiting one account and crediting
/// another by the same amount, so the entries always sum to zero per asset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Posting {
    /// Unique per movement: recording the same key twice changes nothing.
    pub key: String,
    pub memo: String,
    transfers: Vec<Transfer>,
}

impl Posting {
    pub fn new(key: impl Into<String>, memo: impl Into<String>) -> Posting {
        Posting {
            key: key.into(),
            memo: memo.into(),
            transfers: Vec::new(),
        }
    }

    /// Moves `amount` of USDC from one account to another; zero amounts are left out.
    pub fn transfer(
        self,
        from: Account,
        to: Account,
        amount: MicroUsd,
    ) -> Result<Posting, PostingError> {
        self.transfer_units(Asset::Usdc, from, to, amount.micros())
    }

    /// Moves `amount` of the network token; zero amounts are left out.
    pub fn transfer_tokens(
        self,
        from: Account,
        to: Account,
        amount: Tokens,
    ) -> Result<Posting, PostingError> {
        self.transfer_units(Asset::Token, from, to, amount.units())
    }

    /// Moves `units` base units of `asset`; zero amounts are left out.
    pub fn transfer_units(
        mut self,
        asset: Asset,
        from: Account,
        to: Account,
        units: i64,
    ) -> Result<Posting, PostingError> {
        if units < 0 {
            return Err(PostingError::Negative(asset.show(units)));
        }
        if from == to {
            return Err(PostingError::ToItself(from));
        }
        if units > 0 {
            self.transfers.push(Transfer {
                asset,
                from,
                to,
                units,
            });
        }
        Ok(self)
    }

    pub fn transfers(&self) -> &[Transfer] {
        &self.transfers
    }

    /// The net change per account and asset, sorted; sums to zero per asset.
    pub fn entries(&self) -> Result<Vec<(Account, Asset, i64)>, PostingError> {
        let mut net: std::collections::BTreeMap<(&Account, Asset), i64> = Default::default();
        for t in &self.transfers {
            let debit = net.entry((&t.from, t.asset)).or_default();
            *debit = debit.checked_sub(t.units).ok_or(PostingError::Overflow)?;
            let credit = net.entry((&t.to, t.asset)).or_default();
            *credit = credit.checked_add(t.units).ok_or(PostingError::Overflow)?;
        }
        Ok(net
            .into_iter()
            .filter(|(_, units)| *units != 0)
            .map(|((account, asset), units)| (account.clone(), asset, units))
            .collect())
    }

    pub fn is_empty(&self) -> bool {
        self.transfers.is_empty()
    }
}

/// What a movement on an account was, read from its posting's idempotency key (the services
/// key each kind of movement with its own prefix).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MovementKind {
    /// A cluster's price and fees, at deploy or extension.
    Charge,
    /// Money back from a cluster: termination, failure, a lost device's unused time.
    Refund,
    /// The welcome credit, or an operator's credit.
    Credit,
    /// Hire earnings settled from a cluster's escrow to its provider.
    Earning,
    /// A block's reward.
    Reward,
    /// A claim to the wallet, or its funds coming back when it could not be paid.
    Payout,
    /// Money in from the renter's wallet, confirmed on chain.
    Deposit,
}

impl MovementKind {
    /// The kind of movement that a posting with `key` was for `account`, and the cluster it
    /// belongs to, if any.
    pub fn classify<'k>(key: &'k str, account: &Account) -> (MovementKind, Option<&'k str>) {
        let mut parts = key.split(':');
        let prefix = parts.next().unwrap_or_default();
        let cluster = parts.next();
        match prefix {
            "deploy" | "extend" => (MovementKind::Charge, cluster),
            "finish" | "lose" | "settle" => match account {
                Account::ProviderClaimable(_) => (MovementKind::Earning, cluster),
                _ => (MovementKind::Refund, cluster),
            },
            "block" => (MovementKind::Reward, None),
            "payout" | "unpaid" => (MovementKind::Payout, None),
            "deposit" => (MovementKind::Deposit, None),
            _ => (MovementKind::Credit, None),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            MovementKind::Charge => "charge",
            MovementKind::Refund => "refund",
            MovementKind::Credit => "credit",
            MovementKind::Earning => "earning",
            MovementKind::Reward => "reward",
            MovementKind::Payout => "payout",
            MovementKind::Deposit => "deposit",
        }
    }
}

/// One transaction as one account saw it: its net change in one asset, and the part of that
/// which paid (or came back from) platform fees.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatementLine {
    pub at_ms: i64,
    pub kind: MovementKind,
    pub cluster_id: Option<String>,
    pub memo: String,
    pub asset: Asset,
    /// Signed: money in is positive.
    pub amount: i64,
    /// Fees within `amount`, signed the same way (a charge's fees are negative).
    pub fees: i64,
}

/// A statement as CSV (RFC 4180: a header row, CRLF line ends, quoted text), amounts in
/// decimal units of their asset so spreadsheets read them exactly.
pub fn statement_csv(lines: &[StatementLine]) -> String {
    let mut out = String::from("time_utc_ms,kind,cluster,description,asset,amount,fees\r\n");
    let quoted = |text: &str| format!("\"{}\"", text.replace('"', "\"\""));
    for line in lines {
        out.push_str(&format!(
            "{},{},{},{},{},{},{}\r\n",
            line.at_ms,
            line.kind.as_str(),
            quoted(line.cluster_id.as_deref().unwrap_or("")),
            quoted(&line.memo),
            line.asset.as_str(),
            decimal(line.amount),
            decimal(line.fees),
        ));
    }
    out
}

/// What an account received on one UTC day, in one asset's base units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DailyAmount {
    /// Start of the day, UTC milliseconds.
    pub day_ms: i64,
    pub units: i64,
}

/// One entry per day for the `days` days ending with `now`'s, oldest first, from sparse
/// `(day start, units)` sums; days without any count zero.
pub fn daily_series(sums: &[(i64, i64)], now_ms: i64, days: i64) -> Vec<DailyAmount> {
    const DAY_MS: i64 = 86_400_000;
    let today = now_ms.div_euclid(DAY_MS) * DAY_MS;
    (0..days)
        .rev()
        .map(|back| {
            let day_ms = today - back * DAY_MS;
            let units = sums
                .iter()
                .filter(|(day, _)| *day == day_ms)
                .map(|(_, units)| units)
                .sum();
            DailyAmount { day_ms, units }
        })
        .collect()
}

/// A renter's money, as `/cloud/billing` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Billing {
    pub available: MicroUsd,
    pub available_tokens: Tokens,
    /// Newest first.
    pub lines: Vec<StatementLine>,
}

/// Base units with six decimals, exactly (`-1.500000`).
fn decimal(units: i64) -> String {
    let sign = if units < 0 { "-" } else { "" };
    let abs = units.unsigned_abs();
    format!("{sign}{}.{:06}", abs / 1_000_000, abs % 1_000_000)
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
        assert_eq!(
            Account::ProviderClaimable("W".into()).to_string(),
            "provider:W:claimable"
        );
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
        assert_eq!(
            p.transfer_tokens(EMISSION, EMISSION, Tokens::from_units(1)),
            Err(PostingError::ToItself(EMISSION))
        );
    }

    #[test]
    fn movements_are_read_from_their_keys() {
        let renter = Account::UserAvailable(1);
        let provider = Account::ProviderClaimable("W".into());
        let of = MovementKind::classify;
        assert_eq!(
            of("deploy:cl-1", &renter),
            (MovementKind::Charge, Some("cl-1"))
        );
        assert_eq!(
            of("extend:cl-1:k", &renter),
            (MovementKind::Charge, Some("cl-1"))
        );
        assert_eq!(
            of("lose:cl-2:dev:5", &renter),
            (MovementKind::Refund, Some("cl-2"))
        );
        assert_eq!(
            of("lose:cl-2:dev:5", &provider),
            (MovementKind::Earning, Some("cl-2"))
        );
        assert_eq!(
            of("settle:cl-3:dev:9", &provider),
            (MovementKind::Earning, Some("cl-3"))
        );
        assert_eq!(of("welcome:3", &renter), (MovementKind::Credit, None));
        assert_eq!(of("block:42", &provider), (MovementKind::Reward, None));
    }

    #[test]
    fn statements_export_as_csv_with_exact_amounts_and_quoted_text() {
        let csv = statement_csv(&[StatementLine {
            at_ms: 1_000,
            kind: MovementKind::Charge,
            cluster_id: Some("cl-1".into()),
            memo: "cluster \"big\", 8 GPUs".into(),
            asset: Asset::Usdc,
            amount: -20_051_250,
            fees: -51_250,
        }]);
        assert_eq!(
            csv,
            "time_utc_ms,kind,cluster,description,asset,amount,fees\r\n\
             1000,charge,\"cl-1\",\"cluster \"\"big\"\", 8 GPUs\",usdc,-20.051250,-0.051250\r\n"
        );
    }

    #[test]
    fn daily_series_fill_missing_days_with_zero() {
        let day = 86_400_000;
        let now = 10 * day + 5;
        let series = daily_series(
            &[(9 * day, 7), (10 * day, 3), (10 * day, 2), (2 * day, 99)],
            now,
            3,
        );
        let units: Vec<(i64, i64)> = series.iter().map(|d| (d.day_ms / day, d.units)).collect();
        assert_eq!(units, [(8, 0), (9, 7), (10, 5)]);
    }

    proptest! {
        #[test]
        fn entries_always_sum_to_zero_per_asset(transfers in prop::collection::vec((0i64..4, 1i64..4, 0i64..1_000_000_000, any::<bool>()), 0..20)) {
            let mut p = Posting::new("k", "m");
            for (from, step, amount, tokens) in transfers {
                let (from, to) = (Account::UserAvailable(from), Account::UserAvailable(from + step));
                p = if tokens {
                    p.transfer_tokens(from, to, Tokens::from_units(amount))
                } else {
                    p.transfer(from, to, MicroUsd::from_micros(amount))
                }.unwrap();
            }
            for asset in Asset::ALL {
                let sum: i64 = p.entries().unwrap().iter().filter(|(_, a, _)| *a == asset).map(|(_, _, units)| units).sum();
                prop_assert_eq!(sum, 0);
            }
        }
    }
}
