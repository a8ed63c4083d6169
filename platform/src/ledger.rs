//! The ledger: records balanced postings once per idempotency key, as append-only transfers
//! (one debit, one credit, one positive amount of one asset: an unbalanced transaction cannot
//! be stored), keeps each account's balance per asset in the same transaction, and refuses any
//! movement that would take an internal account below zero (a database check backs that up
//! under races).

use domain::ledger::{
    Account, MovementKind, Posting, PostingKind, StatementLine, OPERATOR_CREDITS,
};
use domain::money::{Asset, MicroUsd, Tokens};
use domain::time::UnixMillis;
use sqlx::{AnyConnection, Row};

use crate::rows::enum_in;
use crate::store::{rows_per_statement, values_list, Store};
use crate::Error;

#[derive(Clone)]
pub struct LedgerService {
    store: Store,
}

/// Records `posting` inside the caller's transaction. Returns false (and changes nothing) when
/// a posting with the same key was recorded before, or it moves nothing.
pub(crate) async fn post(
    conn: &mut AnyConnection,
    posting: &Posting,
    now: UnixMillis,
) -> Result<bool, Error> {
    if posting.is_empty() {
        return Ok(false);
    }
    let entries = posting
        .entries()
        .map_err(|e| Error::Invalid(e.to_string()))?;
    let id: Option<i64> = sqlx::query(
        "INSERT INTO ledger_transactions (idempotency_key, at, memo) VALUES ($1, $2, $3) \
         ON CONFLICT (idempotency_key) DO NOTHING RETURNING id",
    )
    .bind(&posting.key)
    .bind(now.0)
    .bind(&posting.memo)
    .fetch_optional(&mut *conn)
    .await?
    .map(|row| row.try_get("id"))
    .transpose()?;
    let Some(id) = id else {
        return Ok(false);
    };
    sqlx::query(
        "INSERT INTO ledger_transaction_kinds (transaction_id, kind, cluster_id) VALUES ($1, $2, $3)",
    )
    .bind(id)
    .bind(posting.kind.as_str())
    .bind(posting.cluster_id.as_deref())
    .execute(&mut *conn)
    .await?;
    // Many rows per statement: a block's posting pays every provider (a hundred thousand and
    // more), and one statement per row is one round trip each on PostgreSQL.
    const TRANSFER_COLUMNS: usize = 5;
    for chunk in posting
        .transfers()
        .chunks(rows_per_statement(conn, TRANSFER_COLUMNS))
    {
        let sql = format!(
            "INSERT INTO ledger_transfers (transaction_id, asset, debit, credit, amount) VALUES {}",
            values_list(chunk.len(), TRANSFER_COLUMNS)
        );
        let mut query = sqlx::query(&sql);
        for transfer in chunk {
            query = query
                .bind(id)
                .bind(transfer.asset.as_str())
                .bind(transfer.from.to_string())
                .bind(transfer.to.to_string())
                .bind(transfer.units);
        }
        query.execute(&mut *conn).await?;
    }
    let (debits, credits): (Vec<_>, Vec<_>) = entries
        .into_iter()
        .partition(|(account, _, units)| account.must_stay_positive() && *units < 0);
    for (account, asset, units) in debits {
        let name = account.to_string();
        // One conditional update: a concurrent spend of the same money (even on another
        // server process) finds the balance already lower and is refused here.
        let debited = sqlx::query(
            "UPDATE ledger_balances SET balance = balance + $3 \
             WHERE account = $1 AND asset = $2 AND balance >= $4",
        )
        .bind(&name)
        .bind(asset.as_str())
        .bind(units)
        .bind(-units)
        .execute(&mut *conn)
        .await?
        .rows_affected();
        if debited == 0 {
            let have = balance_in(&mut *conn, &account, asset).await?;
            return Err(Error::Conflict(format!(
                "{name} holds {}, less than the {} this needs",
                asset.show(have),
                asset.show(-units)
            )));
        }
    }
    // Credits (and the outside world's debits) add to balances; each account and asset
    // appears once in the entries, so one statement never updates a row twice.
    const BALANCE_COLUMNS: usize = 3;
    for chunk in credits.chunks(rows_per_statement(conn, BALANCE_COLUMNS)) {
        let sql = format!(
            "INSERT INTO ledger_balances (account, asset, balance) VALUES {} \
             ON CONFLICT (account, asset) DO UPDATE \
             SET balance = ledger_balances.balance + excluded.balance",
            values_list(chunk.len(), BALANCE_COLUMNS)
        );
        let mut query = sqlx::query(&sql);
        for (account, asset, units) in chunk {
            query = query
                .bind(account.to_string())
                .bind(asset.as_str())
                .bind(*units);
        }
        query.execute(&mut *conn).await?;
    }
    Ok(true)
}

/// `account`'s balance of `asset`, in base units.
pub(crate) async fn balance_in(
    conn: &mut AnyConnection,
    account: &Account,
    asset: Asset,
) -> Result<i64, Error> {
    let balance: Option<i64> =
        sqlx::query("SELECT balance FROM ledger_balances WHERE account = $1 AND asset = $2")
            .bind(account.to_string())
            .bind(asset.as_str())
            .fetch_optional(conn)
            .await?
            .map(|row| row.try_get("balance"))
            .transpose()?;
    Ok(balance.unwrap_or(0))
}

/// `account`'s USDC balance.
pub(crate) async fn usdc_in(
    conn: &mut AnyConnection,
    account: &Account,
) -> Result<MicroUsd, Error> {
    balance_in(conn, account, Asset::Usdc)
        .await
        .map(MicroUsd::from_micros)
}

pub(crate) async fn tokens_in(
    conn: &mut AnyConnection,
    account: &Account,
) -> Result<Tokens, Error> {
    balance_in(conn, account, Asset::Token)
        .await
        .map(Tokens::from_units)
}

impl LedgerService {
    pub fn new(store: Store) -> LedgerService {
        LedgerService { store }
    }

    /// `account`'s USDC balance.
    pub async fn balance(&self, account: &Account) -> Result<MicroUsd, Error> {
        let mut conn = self.store.pool().acquire().await?;
        usdc_in(&mut conn, account).await
    }

    /// `account`'s balance of the network token.
    pub async fn tokens(&self, account: &Account) -> Result<Tokens, Error> {
        let mut conn = self.store.pool().acquire().await?;
        tokens_in(&mut conn, account).await
    }

    /// The transactions that moved `account`'s money, newest first, at most `limit`.
    pub async fn statement(
        &self,
        account: &Account,
        limit: u32,
    ) -> Result<Vec<StatementLine>, Error> {
        let name = account.to_string();
        let fees = Account::PlatformFees.to_string();
        // Per transaction and asset: the account's net change, and the part of it that went
        // to (or came back from) the platform's fees.
        let rows = sqlx::query(
            "SELECT t.id, t.at, k.kind, k.cluster_id, t.memo, x.asset, \
               CAST(SUM(CASE WHEN x.credit = $1 THEN x.amount ELSE -x.amount END) AS BIGINT) AS amount, \
               CAST(SUM(CASE WHEN x.credit = $2 THEN -x.amount WHEN x.debit = $2 THEN x.amount \
                             ELSE 0 END) AS BIGINT) AS fees \
             FROM ledger_transfers x JOIN ledger_transactions t ON t.id = x.transaction_id \
               JOIN ledger_transaction_kinds k ON k.transaction_id = t.id \
             WHERE x.transaction_id IN ( \
               SELECT transaction_id FROM ledger_transfers WHERE debit = $1 \
               UNION SELECT transaction_id FROM ledger_transfers WHERE credit = $1 \
               ORDER BY transaction_id DESC LIMIT $3) \
               AND (x.debit = $1 OR x.credit = $1) \
             GROUP BY t.id, t.at, k.kind, k.cluster_id, t.memo, x.asset \
             ORDER BY t.id DESC, x.asset",
        )
        .bind(&name)
        .bind(&fees)
        .bind(i64::from(limit))
        .fetch_all(self.store.pool())
        .await?;
        rows.iter()
            .map(|row| {
                let kind = enum_in(row, "kind", PostingKind::parse)?;
                Ok(StatementLine {
                    at_ms: row.try_get("at")?,
                    kind: MovementKind::of(kind, account),
                    cluster_id: row.try_get("cluster_id")?,
                    memo: row.try_get("memo")?,
                    asset: Asset::parse(row.try_get("asset")?)
                        .map_err(|e| Error::Corrupt(e.to_string()))?,
                    amount: row.try_get("amount")?,
                    fees: row.try_get("fees")?,
                })
            })
            .collect()
    }

    /// An operator's credit of `units` of `asset` to a renter (a promotion or a goodwill
    /// refund), once per `key`. Returns whether this call recorded it.
    pub async fn operator_credit(
        &self,
        user_id: i64,
        asset: Asset,
        units: i64,
        key: &str,
        memo: &str,
        now: UnixMillis,
    ) -> Result<bool, Error> {
        if units <= 0 {
            return Err(Error::Invalid(format!(
                "a credit must be positive, not {}",
                asset.show(units)
            )));
        }
        let posting = Posting::new(PostingKind::OperatorCredit, format!("credit:{key}"), memo)
            .transfer_units(
                asset,
                OPERATOR_CREDITS,
                Account::UserAvailable(user_id),
                units,
            )
            .map_err(|e| Error::Invalid(e.to_string()))?;
        let mut tx = self.store.begin_write().await?;
        let recorded = post(&mut tx, &posting, now).await?;
        tx.commit().await?;
        Ok(recorded)
    }

    /// What `account` received of `asset` per UTC day since `since`, as `(day start, units)`.
    pub async fn daily_credits(
        &self,
        account: &Account,
        asset: Asset,
        since: UnixMillis,
    ) -> Result<Vec<(i64, i64)>, Error> {
        const DAY_MS: i64 = 86_400_000;
        sqlx::query(
            "SELECT CAST(t.at / $3 AS BIGINT) * $3 AS day, CAST(SUM(x.amount) AS BIGINT) AS amount \
             FROM ledger_transfers x JOIN ledger_transactions t ON t.id = x.transaction_id \
             WHERE x.credit = $1 AND x.asset = $2 AND t.at >= $4 \
             GROUP BY CAST(t.at / $3 AS BIGINT)",
        )
        .bind(account.to_string())
        .bind(asset.as_str())
        .bind(DAY_MS)
        .bind(since.0)
        .fetch_all(self.store.pool())
        .await?
        .iter()
        .map(|row| Ok((row.try_get("day")?, row.try_get("amount")?)))
        .collect()
    }

    /// An operator's credit to the account of `wallet` (which must have signed in once), once
    /// per `key`. Returns whether this call recorded it.
    pub async fn operator_credit_wallet(
        &self,
        wallet: &domain::wallet::WalletAddress,
        asset: Asset,
        units: i64,
        key: &str,
        memo: &str,
        now: UnixMillis,
    ) -> Result<bool, Error> {
        let user_id: Option<i64> = sqlx::query_scalar("SELECT id FROM users WHERE wallet = $1")
            .bind(wallet.as_str())
            .fetch_optional(self.store.pool())
            .await?;
        let user_id = user_id.ok_or_else(|| {
            Error::NotFound(format!(
                "no account for wallet {wallet}: it has to sign in once first"
            ))
        })?;
        self.operator_credit(user_id, asset, units, key, memo, now)
            .await
    }

    /// Checks the ledger against itself: every kept balance equals what the transfers add up
    /// to, and each asset's balances sum to zero. Returns what disagrees (nothing when sound).
    pub async fn audit(&self) -> Result<Vec<String>, Error> {
        let rows = sqlx::query(
            "WITH derived AS ( \
               SELECT account, asset, CAST(SUM(amount) AS BIGINT) AS balance FROM ( \
                 SELECT credit AS account, asset, amount FROM ledger_transfers \
                 UNION ALL SELECT debit, asset, -amount FROM ledger_transfers) m \
               GROUP BY account, asset) \
             SELECT d.account, d.asset, d.balance AS derived, b.balance AS stored FROM derived d \
               LEFT JOIN ledger_balances b ON b.account = d.account AND b.asset = d.asset \
             WHERE b.balance IS NULL AND d.balance <> 0 OR b.balance <> d.balance \
             UNION ALL \
             SELECT b.account, b.asset, 0, b.balance FROM ledger_balances b \
             WHERE b.balance <> 0 AND NOT EXISTS (SELECT 1 FROM derived d \
               WHERE d.account = b.account AND d.asset = b.asset)",
        )
        .fetch_all(self.store.pool())
        .await?;
        let mut problems: Vec<String> = rows
            .iter()
            .map(|row| {
                Ok::<_, Error>(format!(
                    "{} ({}): transfers say {}, the balance says {}",
                    row.try_get::<String, _>("account")?,
                    row.try_get::<String, _>("asset")?,
                    row.try_get::<i64, _>("derived")?,
                    row.try_get::<Option<i64>, _>("stored")?.unwrap_or(0)
                ))
            })
            .collect::<Result<_, _>>()?;
        let sums = sqlx::query(
            "SELECT asset, CAST(SUM(balance) AS BIGINT) AS total FROM ledger_balances GROUP BY asset",
        )
        .fetch_all(self.store.pool())
        .await?;
        for row in sums {
            let sum: i64 = row.try_get("total")?;
            if sum != 0 {
                problems.push(format!(
                    "{} balances sum to {sum}, not zero",
                    row.try_get::<String, _>("asset")?
                ));
            }
        }
        Ok(problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::ledger::EMISSION;

    /// More transfers and balances than one SQLite statement carries (48 transfers, 80
    /// balances): a block paying 300 providers.
    async fn a_posting_larger_than_a_statement_is_recorded_whole_and_once(url: String) {
        let store = Store::open(&url).await.unwrap();
        let ledger = LedgerService::new(store.clone());
        let paid: Vec<i64> = (0..300).map(|n| 1_000 + n).collect();
        let mut posting = Posting::new(PostingKind::BlockRewards, "block:7", "block 7 rewards")
            .transfer_tokens(
                EMISSION,
                Account::RewardsPool,
                Tokens::from_units(paid.iter().sum::<i64>() + 5),
            )
            .unwrap();
        for (n, units) in paid.iter().enumerate() {
            posting = posting
                .transfer_tokens(
                    Account::RewardsPool,
                    Account::ProviderClaimable(format!("wallet-{n}")),
                    Tokens::from_units(*units),
                )
                .unwrap();
        }
        for recorded in [true, false] {
            let mut tx = store.begin_write().await.unwrap();
            assert_eq!(
                post(&mut tx, &posting, UnixMillis(1)).await.unwrap(),
                recorded
            );
            tx.commit().await.unwrap();
        }
        for (n, units) in paid.iter().enumerate() {
            let account = Account::ProviderClaimable(format!("wallet-{n}"));
            assert_eq!(ledger.tokens(&account).await.unwrap().units(), *units);
        }
        assert_eq!(
            ledger.tokens(&Account::RewardsPool).await.unwrap().units(),
            5
        );
        assert_eq!(ledger.audit().await.unwrap(), Vec::<String>::new());
        let transfers: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM ledger_transfers")
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert_eq!(transfers, 301);
        store.close().await;
    }

    #[tokio::test]
    async fn sqlite_a_posting_larger_than_a_statement_is_recorded_whole_and_once() {
        a_posting_larger_than_a_statement_is_recorded_whole_and_once(
            crate::testing::fresh_sqlite_url(),
        )
        .await;
    }

    #[tokio::test]
    async fn postgres_a_posting_larger_than_a_statement_is_recorded_whole_and_once() {
        let Some(url) = crate::testing::fresh_postgres_url().await else {
            return;
        };
        a_posting_larger_than_a_statement_is_recorded_whole_and_once(url).await;
    }
}
