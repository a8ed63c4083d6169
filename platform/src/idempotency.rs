//! Idempotency keys (issue 17): a caller's key makes a retried request return what the first one
//! did, and only for the same request. The key is bound to a fingerprint of the request it was
//! first used with (the SHA-256 of its canonical JSON, so spacing and field order do not
//! matter); the same key with another request is refused, as Stripe does, so the mistake is
//! seen instead of answered with an unrelated result.

use domain::time::UnixMillis;
use serde::Serialize;
use sqlx::AnyConnection;

use crate::secret::{random_hex, sha256_hex};
use crate::Error;

/// The caller's key (1–128 characters), or a fresh one when there is none.
pub(crate) fn key_or_fresh(key: Option<&str>) -> Result<String, Error> {
    match key.map(str::trim) {
        None => Ok(format!("auto-{}", random_hex(16))),
        Some(key) if key.is_empty() || key.len() > 128 => Err(Error::Invalid(
            "an idempotency key is 1–128 characters".into(),
        )),
        Some(key) => Ok(key.to_owned()),
    }
}

/// A key the caller gave, with where its keys live (one user's deploys, one cluster's
/// extensions, one wallet's claims) and the request it came with.
pub(crate) struct GivenKey {
    scope: String,
    key: String,
    fingerprint: String,
}

impl GivenKey {
    /// None when the caller gave no key: a fresh key is never sent again.
    pub(crate) fn of<T: Serialize>(
        scope: String,
        key: Option<&str>,
        request: &T,
    ) -> Result<Option<GivenKey>, Error> {
        let Some(key) = key else {
            return Ok(None);
        };
        let canonical = serde_json::to_string(request)
            .map_err(|e| Error::Invalid(format!("this request cannot be read back: {e}")))?;
        Ok(Some(GivenKey {
            scope,
            key: key_or_fresh(Some(key))?,
            fingerprint: sha256_hex(&canonical),
        }))
    }

    /// Refuses a retry whose request differs from the one the key was first used with. A key
    /// used before fingerprints were kept passes.
    pub(crate) async fn check(&self, conn: &mut AnyConnection) -> Result<(), Error> {
        let first: Option<String> = sqlx::query_scalar(
            "SELECT fingerprint FROM request_fingerprints WHERE scope = $1 AND idempotency_key = $2",
        )
        .bind(&self.scope)
        .bind(&self.key)
        .fetch_optional(&mut *conn)
        .await?;
        match first {
            Some(first) if first != self.fingerprint => Err(Error::Invalid(format!(
                "the Idempotency-Key '{}' was already used for another request; send the same \
                 request to retry it, or a new key for a new one",
                self.key
            ))),
            _ => Ok(()),
        }
    }

    /// Keeps the request's fingerprint for the key, in the transaction that acts on it.
    pub(crate) async fn record(
        &self,
        conn: &mut AnyConnection,
        now: UnixMillis,
    ) -> Result<(), Error> {
        sqlx::query(
            "INSERT INTO request_fingerprints (scope, idempotency_key, fingerprint, at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (scope, idempotency_key) DO NOTHING",
        )
        .bind(&self.scope)
        .bind(&self.key)
        .bind(&self.fingerprint)
        .bind(now.0)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }
}

/// Checks `given` (when the caller gave a key) on a connection of `store`'s.
pub(crate) async fn check_given(
    store: &crate::store::Store,
    given: Option<&GivenKey>,
) -> Result<(), Error> {
    if let Some(given) = given {
        let mut conn = store.pool().acquire().await?;
        given.check(&mut conn).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fingerprint_follows_the_request_not_its_spelling() {
        use domain::cluster::ExtendRequest;
        let read = |json: &str| serde_json::from_str::<ExtendRequest>(json).unwrap();
        let print = |request: &ExtendRequest| {
            GivenKey::of("s".into(), Some("k"), request)
                .unwrap()
                .unwrap()
                .fingerprint
        };
        let a = read(r#"{"duration_unit":"hourly","duration_count":2}"#);
        let b = read(r#"{ "duration_count": 2, "duration_unit": "hourly" }"#);
        let c = read(r#"{"duration_unit":"hourly","duration_count":3}"#);
        assert_eq!(print(&a), print(&b));
        assert_ne!(print(&a), print(&c));
        assert!(GivenKey::of("s".into(), None, &a).unwrap().is_none());
        assert!(GivenKey::of("s".into(), Some(" "), &a).is_err());
    }
}
