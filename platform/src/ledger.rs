//! The ledger: records balanced postings once per idempotency key, keeps each account's
//! balance in the same transaction, and refuses any movement that would take an internal
//! account below zero (a database check backs that up under races).

use domain::ledger::{Account, Posting, OPERATOR_CREDITS};
use domain::money::MicroUsd;
use domain::time::UnixMillis;
use sqlx::{AnyConnection, Row};

use crate::store::Store;
use crate::Error;

#[derive(Clone)]
pub struct LedgerService {
    store: Store,
}

/// Records `posting` inside the caller's transaction. Returns false (and changes nothing) when
/// a posting with the same key was recorded before.
pub(crate) async fn post(
    conn: &mut AnyConnection,
    posting: &Posting,
    now: UnixMillis,
) -> Result<bool, Error> {
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
    .map(|row| row.try_get(0))
    .transpose()?;
    let Some(id) = id else {
        return Ok(false);
    };
    for (account, amount) in entries {
        let name = account.to_string();
        sqlx::query(
            "INSERT INTO ledger_entries (transaction_id, account, amount) VALUES ($1, $2, $3)",
        )
        .bind(id)
        .bind(&name)
        .bind(amount.micros())
        .execute(&mut *conn)
        .await?;
        if account.must_stay_positive() && amount < MicroUsd::ZERO {
            // One conditional update: a concurrent spend of the same money (even on another
            // server process) finds the balance already lower and is refused here.
            let debited = sqlx::query(
                "UPDATE account_balances SET balance = balance + $2 \
                 WHERE account = $1 AND balance >= $3",
            )
            .bind(&name)
            .bind(amount.micros())
            .bind(-amount.micros())
            .execute(&mut *conn)
            .await?
            .rows_affected();
            if debited == 0 {
                let have = balance_in(&mut *conn, &name).await?;
                return Err(Error::Conflict(format!(
                    "{name} holds {have}, less than the {} this needs",
                    MicroUsd::from_micros(-amount.micros())
                )));
            }
        } else {
            sqlx::query(
                "INSERT INTO account_balances (account, balance) VALUES ($1, $2) \
                 ON CONFLICT (account) DO UPDATE SET balance = account_balances.balance + excluded.balance",
            )
            .bind(&name)
            .bind(amount.micros())
            .execute(&mut *conn)
            .await?;
        }
    }
    Ok(true)
}

pub(crate) async fn balance_in(conn: &mut AnyConnection, account: &str) -> Result<MicroUsd, Error> {
    let balance: Option<i64> =
        sqlx::query("SELECT balance FROM account_balances WHERE account = $1")
            .bind(account)
            .fetch_optional(conn)
            .await?
            .map(|row| row.try_get(0))
            .transpose()?;
    Ok(MicroUsd::from_micros(balance.unwrap_or(0)))
}

impl LedgerService {
    pub(crate) fn new(store: Store) -> LedgerService {
        LedgerService { store }
    }

    pub async fn balance(&self, account: &Account) -> Result<MicroUsd, Error> {
        let mut conn = self.store.pool().acquire().await?;
        balance_in(&mut conn, &account.to_string()).await
    }

    /// An operator's credit to a renter (a promotion or a goodwill refund), once per `key`.
    /// Returns whether this call recorded it.
    pub async fn operator_credit(
        &self,
        user_id: i64,
        amount: MicroUsd,
        key: &str,
        memo: &str,
        now: UnixMillis,
    ) -> Result<bool, Error> {
        if amount <= MicroUsd::ZERO {
            return Err(Error::Invalid(format!(
                "a credit must be positive, not {amount}"
            )));
        }
        let posting = Posting::new(format!("credit:{key}"), memo)
            .transfer(OPERATOR_CREDITS, Account::UserAvailable(user_id), amount)
            .map_err(|e| Error::Invalid(e.to_string()))?;
        let mut tx = self.store.begin_write().await?;
        let recorded = post(&mut tx, &posting, now).await?;
        tx.commit().await?;
        Ok(recorded)
    }

    /// The sum of every account's balance and of every entry: both zero in a sound ledger.
    pub async fn totals(&self) -> Result<(i64, i64), Error> {
        let row = sqlx::query(
            "SELECT CAST((SELECT COALESCE(SUM(balance), 0) FROM account_balances) AS BIGINT), \
                    CAST((SELECT COALESCE(SUM(amount), 0) FROM ledger_entries) AS BIGINT)",
        )
        .fetch_one(self.store.pool())
        .await?;
        Ok((row.try_get(0)?, row.try_get(1)?))
    }
}
