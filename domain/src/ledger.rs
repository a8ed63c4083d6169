//! Double-entry bookkeeping (DESIGN.md §2): named accounts and postings that are balanced by
//! construction. Every movement of money is one [`Posting`] with an idempotency key; the ledger
//! service records it once, as transfers that each debit one account and credit another by the
//! same amount of one asset, and derives balances from them.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::fleet::named_enum;
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
    /// A provider's block rewards waiting for the device's next passed proof of its hardware
    /// (issue 23's time lock): released to [`Account::ProviderClaimable`] when it passes,
    /// back to the rewards pool when it fails or goes unanswered.
    ProviderHeld(String),
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
            Account::ProviderHeld(wallet) => write!(f, "provider:{wallet}:held"),
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

named_enum!(
    /// What a posting is for. It is written with the posting and read back with it, so a
    /// statement never guesses from the idempotency key.
    PostingKind, "posting kind", {
        /// A cluster's price and fees, paid at deploy.
        ClusterCharge => "cluster_charge",
        /// More hours bought for a running cluster.
        ClusterExtension => "cluster_extension",
        /// A cluster's end: its providers paid for the time served, the rest back to the renter.
        ClusterEnd => "cluster_end",
        /// A device lost while hired: its provider paid for the time served, its down time back
        /// to the renter.
        DeviceLoss => "device_loss",
        /// Hire earnings settled hourly from a running cluster's escrow to a provider.
        HireSettlement => "hire_settlement",
        /// A reward block's emission shared among its devices, held until each device's next
        /// passed proof.
        BlockRewards => "block_rewards",
        /// A device's held rewards made claimable by a passed proof of its hardware.
        RewardsReleased => "rewards_released",
        /// A device's held rewards back to the pool: a proof failed or went unanswered.
        RewardsForfeited => "rewards_forfeited",
        /// A provider's claim, held until it lands on chain.
        PayoutClaim => "payout_claim",
        /// A claim that landed: it leaves for the chain.
        PayoutLanded => "payout_landed",
        /// A claim that could not be paid: its funds go back to the provider.
        PayoutReturned => "payout_returned",
        /// Money in from a renter's wallet, confirmed on chain.
        Deposit => "deposit",
        /// The credit a new account starts with.
        WelcomeCredit => "welcome_credit",
        /// An operator's credit (promotion, goodwill).
        OperatorCredit => "operator_credit",
    }
);

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
    pub kind: PostingKind,
    /// Unique per movement: recording the same key twice changes nothing.
    pub key: String,
    pub memo: String,
    /// The cluster it belongs to, if any.
    pub cluster_id: Option<String>,
    transfers: Vec<Transfer>,
}

impl Posting {
    pub fn new(kind: PostingKind, key: impl Into<String>, memo: impl Into<String>) -> Posting {
        Posting {
            kind,
            key: key.into(),
            memo: memo.into(),
            cluster_id: None,
            transfers: Vec::new(),
        }
    }

    /// The same posting, as part of cluster `id`'s money.
    pub fn of_cluster(self, id: impl Into<String>) -> Posting {
        Posting {
            cluster_id: Some(id.into()),
            ..self
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

/// What a movement on an account was, as its statement shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
    /// What a posting of `kind` was for `account`: a cluster's settlement pays its providers
    /// (earnings) and returns the rest to its renter (a refund).
    pub fn of(kind: PostingKind, account: &Account) -> MovementKind {
        match kind {
            PostingKind::ClusterCharge | PostingKind::ClusterExtension => MovementKind::Charge,
            PostingKind::ClusterEnd | PostingKind::DeviceLoss | PostingKind::HireSettlement => {
                match account {
                    Account::ProviderClaimable(_) => MovementKind::Earning,
                    _ => MovementKind::Refund,
                }
            }
            PostingKind::BlockRewards
            | PostingKind::RewardsReleased
            | PostingKind::RewardsForfeited => MovementKind::Reward,
            PostingKind::PayoutClaim | PostingKind::PayoutLanded | PostingKind::PayoutReturned => {
                MovementKind::Payout
            }
            PostingKind::Deposit => MovementKind::Deposit,
            PostingKind::WelcomeCredit | PostingKind::OperatorCredit => MovementKind::Credit,
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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Billing {
    pub available: MicroUsd,
    pub available_tokens: Tokens,
    /// Newest first.
    pub lines: Vec<StatementLine>,
}

/// Base units with six decimals, exactly (`-1.500000`).
pub fn decimal(units: i64) -> String {
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
        assert_eq!(
            Account::ProviderHeld("W".into()).to_string(),
            "provider:W:held"
        );
    }

    #[test]
    fn negative_transfers_are_refused_and_zero_ones_dropped() {
        let p = Posting::new(PostingKind::OperatorCredit, "k", "m");
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
    fn movements_follow_the_posting_kind_and_the_account() {
        let renter = Account::UserAvailable(1);
        let provider = Account::ProviderClaimable("W".into());
        let of = MovementKind::of;
        assert_eq!(
            of(PostingKind::ClusterCharge, &renter),
            MovementKind::Charge
        );
        assert_eq!(
            of(PostingKind::ClusterExtension, &renter),
            MovementKind::Charge
        );
        assert_eq!(of(PostingKind::DeviceLoss, &renter), MovementKind::Refund);
        assert_eq!(
            of(PostingKind::DeviceLoss, &provider),
            MovementKind::Earning
        );
        assert_eq!(
            of(PostingKind::HireSettlement, &provider),
            MovementKind::Earning
        );
        assert_eq!(of(PostingKind::ClusterEnd, &renter), MovementKind::Refund);
        assert_eq!(
            of(PostingKind::WelcomeCredit, &renter),
            MovementKind::Credit
        );
        assert_eq!(
            of(PostingKind::BlockRewards, &provider),
            MovementKind::Reward
        );
        assert_eq!(
            of(PostingKind::PayoutReturned, &provider),
            MovementKind::Payout
        );
        assert_eq!(of(PostingKind::Deposit, &renter), MovementKind::Deposit);
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
            let mut p = Posting::new(PostingKind::OperatorCredit, "k", "m");
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
