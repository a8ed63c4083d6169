//! API keys: made and revoked by a signed-in renter in the console, presented by scripts as
//! `Authorization: Bearer gck_…` to every `/api/v1` endpoint the session cookie opens. Only the
//! SHA-256 of a secret is stored; the secret is shown once.

use domain::api_key::{parse_key_name, ApiKey, CreatedApiKey, LIFETIME_DAYS, SECRET_PREFIX};
use domain::siws::SignedIn;
use domain::time::UnixMillis;
use domain::wallet::WalletAddress;
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::secret::{random_hex, sha256_hex};
use crate::store::Store;
use crate::Error;

/// Active keys one account may hold at once.
const MAX_ACTIVE_KEYS: i64 = 20;
/// `last_used_at` is written at most this often per key (it is shown, not audited).
const TOUCH_EVERY_MS: i64 = 60_000;

#[derive(Clone)]
pub struct ApiKeyService {
    store: Store,
}

const KEY_COLUMNS: &str = "id, name, prefix, created_at, expires_at, last_used_at, revoked_at";

fn key_of(row: &AnyRow) -> Result<ApiKey, Error> {
    let at = |column: &str| -> Result<Option<UnixMillis>, Error> {
        Ok(row.try_get::<Option<i64>, _>(column)?.map(UnixMillis))
    };
    Ok(ApiKey {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        prefix: row.try_get("prefix")?,
        created_at: UnixMillis(row.try_get("created_at")?),
        expires_at: UnixMillis(row.try_get("expires_at")?),
        last_used_at: at("last_used_at")?,
        revoked_at: at("revoked_at")?,
    })
}

impl ApiKeyService {
    pub(crate) fn new(store: Store) -> ApiKeyService {
        ApiKeyService { store }
    }

    /// Makes a key for the account; the returned secret is not stored and cannot be shown again.
    pub async fn create(
        &self,
        user_id: i64,
        name: &str,
        now: UnixMillis,
    ) -> Result<CreatedApiKey, Error> {
        let name = parse_key_name(name).map_err(Error::Invalid)?;
        let mut tx = self.store.begin_write().await?;
        let active: i64 = sqlx::query(
            "SELECT CAST(COUNT(*) AS BIGINT) AS active FROM api_keys \
             WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > $2",
        )
        .bind(user_id)
        .bind(now.0)
        .fetch_one(&mut *tx)
        .await?
        .try_get("active")?;
        if active >= MAX_ACTIVE_KEYS {
            return Err(Error::Conflict(format!(
                "you have {active} active keys, the most allowed; revoke one first"
            )));
        }
        let secret = format!("{SECRET_PREFIX}{}", random_hex(32));
        let key = ApiKey {
            id: format!("key-{}", random_hex(8)),
            name,
            prefix: secret.chars().take(SECRET_PREFIX.len() + 6).collect(),
            created_at: now,
            expires_at: now.plus_seconds(LIFETIME_DAYS * 86_400),
            last_used_at: None,
            revoked_at: None,
        };
        sqlx::query(
            "INSERT INTO api_keys (id, user_id, name, prefix, secret_hash, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&key.id)
        .bind(user_id)
        .bind(&key.name)
        .bind(&key.prefix)
        .bind(sha256_hex(&secret))
        .bind(key.created_at.0)
        .bind(key.expires_at.0)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        tracing::info!(user = user_id, key = %key.id, "API key created");
        Ok(CreatedApiKey { key, secret })
    }

    /// The account's keys, newest first, revoked ones included.
    pub async fn list(&self, user_id: i64) -> Result<Vec<ApiKey>, Error> {
        sqlx::query(&format!(
            "SELECT {KEY_COLUMNS} FROM api_keys WHERE user_id = $1 ORDER BY created_at DESC, id"
        ))
        .bind(user_id)
        .fetch_all(self.store.pool())
        .await?
        .iter()
        .map(key_of)
        .collect()
    }

    /// Ends a key for good; revoking it again changes nothing. Other accounts' keys are not found.
    pub async fn revoke(&self, user_id: i64, id: &str, now: UnixMillis) -> Result<ApiKey, Error> {
        domain::id::IdKind::ApiKey
            .check(id)
            .map_err(Error::NotFound)?;
        sqlx::query(
            "UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND user_id = $3 AND revoked_at IS NULL",
        )
        .bind(now.0)
        .bind(id)
        .bind(user_id)
        .execute(self.store.pool())
        .await?;
        let row = sqlx::query(&format!(
            "SELECT {KEY_COLUMNS} FROM api_keys WHERE id = $1 AND user_id = $2"
        ))
        .bind(id)
        .bind(user_id)
        .fetch_optional(self.store.pool())
        .await?
        .ok_or_else(|| Error::NotFound(format!("no API key '{id}'")))?;
        key_of(&row)
    }

    /// Who a presented secret belongs to, or `None` for an unknown, revoked or expired key.
    pub async fn authenticate(
        &self,
        secret: &str,
        now: UnixMillis,
    ) -> Result<Option<SignedIn>, Error> {
        if !secret.starts_with(SECRET_PREFIX) {
            return Ok(None);
        }
        let hash = sha256_hex(secret);
        let Some(row) = sqlx::query(
            "SELECT u.wallet, u.id AS user_id, k.expires_at, k.last_used_at, k.revoked_at \
             FROM api_keys k JOIN users u ON u.id = k.user_id WHERE k.secret_hash = $1",
        )
        .bind(&hash)
        .fetch_optional(self.store.pool())
        .await?
        else {
            return Ok(None);
        };
        let expires_at: i64 = row.try_get("expires_at")?;
        let last_used: Option<i64> = row.try_get("last_used_at")?;
        if row.try_get::<Option<i64>, _>("revoked_at")?.is_some() || now.0 >= expires_at {
            return Ok(None);
        }
        if last_used.is_none_or(|at| now.0 - at >= TOUCH_EVERY_MS) {
            sqlx::query("UPDATE api_keys SET last_used_at = $1 WHERE secret_hash = $2")
                .bind(now.0)
                .bind(&hash)
                .execute(self.store.pool())
                .await?;
        }
        let wallet: String = row.try_get("wallet")?;
        Ok(Some(SignedIn {
            wallet: WalletAddress::parse(&wallet)
                .map_err(|e| Error::Corrupt(format!("user row: {e}")))?,
            expires_at: UnixMillis(expires_at),
            user_id: row.try_get("user_id")?,
        }))
    }
}
