//! Sign-In With Solana and server-side sessions.
//!
//! A challenge stores a single-use nonce for one wallet and returns the exact message to sign.
//! Signing in verifies the message and signature (`domain::siws`), consumes the nonce with one
//! conditional update (so a replay, even racing on another server process, finds it used), and
//! creates a session whose random token goes to the browser while only its SHA-256 is stored.
//! Sessions end on sign-out, after `session_idle_secs` without use, or at `session_max_secs`.

use domain::siws::{Nonce, SignInMessage, SignedIn};
use domain::time::UnixMillis;
use domain::wallet::WalletAddress;
use sqlx::Row;

use crate::secret::{random_hex, sha256_hex};
use crate::store::Store;
use crate::{Error, SignInRefusal};

#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// `host[:port]` the messages name and sign-ins must match.
    pub domain: String,
    /// The site's URL, shown in the message.
    pub uri: String,
    /// CAIP-2 style chain id, e.g. `solana:mainnet`.
    pub chain_id: String,
    pub nonce_ttl_secs: i64,
    pub session_idle_secs: i64,
    pub session_max_secs: i64,
    /// Credited once to every new account (demo networks and promotions); zero for none.
    pub welcome_credit: domain::money::MicroUsd,
}

/// What the wallet must sign.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Challenge {
    pub message: String,
    pub expires_at: UnixMillis,
}

/// The secret a browser (or script) presents to use a session. Never stored or logged.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionToken(String);

/// Name of the cookie that carries the session token.
pub const SESSION_COOKIE: &str = "gc_session";

impl SessionToken {
    pub fn from_presented(text: &str) -> SessionToken {
        SessionToken(text.trim().to_owned())
    }

    /// The session token in a `Cookie:` header value, if any.
    pub fn from_cookie_header(header: &str) -> Option<SessionToken> {
        header
            .split(';')
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(name, value)| *name == SESSION_COOKIE && !value.is_empty())
            .map(|(_, value)| SessionToken::from_presented(value))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    fn hash(&self) -> String {
        sha256_hex(&self.0)
    }
}

impl std::fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionToken(***)")
    }
}

#[derive(Clone)]
pub struct AuthService {
    store: Store,
    // Shared: the service is cloned for every request.
    config: std::sync::Arc<AuthConfig>,
}

// Touching `last_seen_at` at most this often keeps reads from turning into writes.
const TOUCH_EVERY_MS: i64 = 60_000;

/// At most this many sign-in messages per wallet in a window of this long.
pub const CHALLENGES_PER_WINDOW: i64 = 20;
const CHALLENGE_WINDOW_MS: i64 = 60_000;

/// The shortest idle limit a session may have. `last_seen_at` lags use by up to a minute
/// ([`TOUCH_EVERY_MS`]), so a limit near that would end sessions that are in use.
pub const MIN_SESSION_IDLE_SECS: i64 = 5 * TOUCH_EVERY_MS / 1000;

impl AuthService {
    pub fn new(store: Store, config: AuthConfig) -> AuthService {
        AuthService {
            store,
            config: std::sync::Arc::new(config),
        }
    }

    pub fn config(&self) -> &AuthConfig {
        &self.config
    }

    /// `Set-Cookie` value that hands a new session to a browser: HttpOnly, SameSite=Lax, and
    /// Secure whenever the site is served over TLS.
    pub fn session_cookie(&self, token: &SessionToken) -> String {
        format!(
            "{SESSION_COOKIE}={}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}{}",
            token.expose(),
            self.config.session_max_secs,
            self.secure_attribute()
        )
    }

    /// `Set-Cookie` value that makes a browser forget its session.
    pub fn clearing_cookie(&self) -> String {
        format!(
            "{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0{}",
            self.secure_attribute()
        )
    }

    fn secure_attribute(&self) -> &'static str {
        if self.config.uri.starts_with("https://") {
            "; Secure"
        } else {
            ""
        }
    }

    pub async fn challenge(&self, address: &str, now: UnixMillis) -> Result<Challenge, Error> {
        let address = WalletAddress::parse(address).map_err(|e| Error::Invalid(e.to_string()))?;
        // A wallet asks for one message per sign-in: a flood for one address is refused (each
        // is a row until the purge, and would drown a real owner's in the table).
        let (recent, oldest): (i64, Option<i64>) = {
            let row = sqlx::query(
                "SELECT CAST(COUNT(*) AS BIGINT) AS recent, MIN(issued_at) AS oldest \
                 FROM auth_nonces WHERE wallet = $1 AND issued_at > $2",
            )
            .bind(address.as_str())
            .bind(now.0 - CHALLENGE_WINDOW_MS)
            .fetch_one(self.store.pool())
            .await?;
            (row.try_get("recent")?, row.try_get("oldest")?)
        };
        if recent >= CHALLENGES_PER_WINDOW {
            let retry_after_secs =
                ((oldest.unwrap_or(now.0) + CHALLENGE_WINDOW_MS - now.0) / 1_000 + 1).max(1) as u64;
            return Err(Error::TooMany {
                message: format!(
                    "{CHALLENGES_PER_WINDOW} sign-in requests for this wallet in a minute; \
                     try again in {retry_after_secs} s"
                ),
                retry_after_secs,
            });
        }
        let nonce = Nonce::parse(&random_hex(16)).map_err(|e| Error::Invalid(e.to_string()))?;
        let message = SignInMessage {
            domain: self.config.domain.clone(),
            address,
            uri: self.config.uri.clone(),
            chain_id: self.config.chain_id.clone(),
            nonce,
            issued_at: now,
            expiration_time: now.plus_seconds(self.config.nonce_ttl_secs),
        };
        sqlx::query("INSERT INTO auth_nonces (nonce, wallet, issued_at, expires_at) VALUES ($1, $2, $3, $4)")
            .bind(message.nonce.as_str())
            .bind(message.address.as_str())
            .bind(message.issued_at.0)
            .bind(message.expiration_time.0)
            .execute(self.store.pool())
            .await?;
        Ok(Challenge {
            message: message.to_text(),
            expires_at: message.expiration_time,
        })
    }

    pub async fn sign_in(
        &self,
        message: &str,
        signature_b58: &str,
        now: UnixMillis,
    ) -> Result<(SessionToken, SignedIn), Error> {
        let message = SignInMessage::verify(
            message,
            signature_b58,
            &self.config.domain,
            &self.config.chain_id,
        )
        .map_err(SignInRefusal::from)?;
        // The message must be the one issued, word for word: a wallet that signs a copy with a
        // later expiry or another URI has not signed what this server asked.
        if message.uri != self.config.uri {
            return Err(SignInRefusal::Altered("URI").into());
        }
        let wallet = message.address.as_str();
        let mut tx = self.store.begin_write().await?;
        let consumed = sqlx::query(
            "UPDATE auth_nonces SET used_at = $1 \
             WHERE nonce = $2 AND wallet = $3 AND used_at IS NULL AND expires_at > $1 \
               AND issued_at = $4 AND expires_at = $5",
        )
        .bind(now.0)
        .bind(message.nonce.as_str())
        .bind(wallet)
        .bind(message.issued_at.0)
        .bind(message.expiration_time.0)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if consumed != 1 {
            let row = sqlx::query(
                "SELECT wallet, issued_at, expires_at, used_at FROM auth_nonces WHERE nonce = $1",
            )
            .bind(message.nonce.as_str())
            .fetch_optional(&mut *tx)
            .await?;
            let refusal = match row {
                None => SignInRefusal::UnknownNonce,
                Some(row) if row.try_get::<String, _>("wallet")? != wallet => {
                    SignInRefusal::WrongWallet
                }
                Some(row)
                    if row.try_get::<i64, _>("issued_at")? != message.issued_at.0
                        || row.try_get::<i64, _>("expires_at")? != message.expiration_time.0 =>
                {
                    SignInRefusal::Altered("issued-at or expiration time")
                }
                Some(row) if row.try_get::<Option<i64>, _>("used_at")?.is_some() => {
                    SignInRefusal::NonceUsed
                }
                Some(_) => SignInRefusal::NonceExpired,
            };
            return Err(refusal.into());
        }
        sqlx::query("INSERT INTO users (wallet, created_at) VALUES ($1, $2) ON CONFLICT (wallet) DO NOTHING")
            .bind(wallet)
            .bind(now.0)
            .execute(&mut *tx)
            .await?;
        let user_id: i64 = sqlx::query("SELECT id FROM users WHERE wallet = $1")
            .bind(wallet)
            .fetch_one(&mut *tx)
            .await?
            .try_get("id")?;
        let welcome = self.config.welcome_credit;
        if welcome > domain::money::MicroUsd::ZERO {
            // Keyed by account, so only the first sign-in records it.
            let credit = domain::ledger::Posting::new(
                domain::ledger::PostingKind::WelcomeCredit,
                format!("welcome:{user_id}"),
                "welcome credit",
            )
            .transfer(
                domain::ledger::OPERATOR_CREDITS,
                domain::ledger::Account::UserAvailable(user_id),
                welcome,
            )
            .map_err(|e| Error::Invalid(e.to_string()))?;
            crate::ledger::post(&mut tx, &credit, now).await?;
        }
        let token = SessionToken(random_hex(32));
        let expires_at = now.plus_seconds(self.config.session_max_secs);
        sqlx::query(
            "INSERT INTO sessions (token_hash, user_id, created_at, last_seen_at, expires_at) VALUES ($1, $2, $3, $3, $4)",
        )
        .bind(token.hash())
        .bind(user_id)
        .bind(now.0)
        .bind(expires_at.0)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        tracing::info!(wallet, "signed in");
        Ok((
            token,
            SignedIn {
                wallet: message.address,
                expires_at,
                user_id,
            },
        ))
    }

    /// The live session behind a token, or `None` if it never existed, was ended or expired.
    pub async fn session(
        &self,
        token: &SessionToken,
        now: UnixMillis,
    ) -> Result<Option<SignedIn>, Error> {
        let hash = token.hash();
        let row = sqlx::query(
            "SELECT u.wallet, s.last_seen_at, s.expires_at, u.id AS user_id FROM sessions s JOIN users u ON u.id = s.user_id \
             WHERE s.token_hash = $1",
        )
        .bind(&hash)
        .fetch_optional(self.store.pool())
        .await?;
        let Some(row) = row else { return Ok(None) };
        let (wallet, last_seen, expires_at): (String, i64, i64) = (
            row.try_get("wallet")?,
            row.try_get("last_seen_at")?,
            row.try_get("expires_at")?,
        );
        let idle_deadline = last_seen + self.config.session_idle_secs * 1000;
        if now.0 >= expires_at || now.0 >= idle_deadline {
            self.end_session(token).await?;
            return Ok(None);
        }
        if now.0 - last_seen >= TOUCH_EVERY_MS {
            sqlx::query("UPDATE sessions SET last_seen_at = $1 WHERE token_hash = $2")
                .bind(now.0)
                .bind(&hash)
                .execute(self.store.pool())
                .await?;
        }
        let wallet =
            WalletAddress::parse(&wallet).map_err(|e| Error::Corrupt(format!("user row: {e}")))?;
        Ok(Some(SignedIn {
            wallet,
            expires_at: UnixMillis(expires_at),
            user_id: row.try_get("user_id")?,
        }))
    }

    /// Ends a session for good; ending an unknown or ended one is not an error.
    pub async fn end_session(&self, token: &SessionToken) -> Result<(), Error> {
        sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
            .bind(token.hash())
            .execute(self.store.pool())
            .await?;
        Ok(())
    }

    /// Deletes nonces and sessions that can no longer be used; returns how many rows went.
    pub async fn purge_expired(&self, now: UnixMillis) -> Result<u64, Error> {
        let idle_cutoff = now.0 - self.config.session_idle_secs * 1000;
        let nonces = sqlx::query("DELETE FROM auth_nonces WHERE expires_at <= $1")
            .bind(now.0)
            .execute(self.store.pool())
            .await?
            .rows_affected();
        let sessions =
            sqlx::query("DELETE FROM sessions WHERE expires_at <= $1 OR last_seen_at <= $2")
                .bind(now.0)
                .bind(idle_cutoff)
                .execute(self.store.pool())
                .await?
                .rows_affected();
        Ok(nonces + sessions)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_session_token_among_other_cookies() {
        let token = SessionToken::from_cookie_header("theme=dark; gc_session=abc123; x=1").unwrap();
        assert_eq!(token.expose(), "abc123");
        assert!(SessionToken::from_cookie_header("gc_session=; theme=dark").is_none());
        assert!(SessionToken::from_cookie_header("other_gc_session=abc").is_none());
    }

    #[test]
    fn tokens_are_long_random_and_never_printed() {
        let (a, b) = (SessionToken(random_hex(32)), SessionToken(random_hex(32)));
        assert_eq!(a.expose().len(), 64, "256 bits of randomness");
        assert_ne!(a, b);
        assert_eq!(format!("{a:?}"), "SessionToken(***)");
        assert_ne!(a.hash(), a.expose());
    }
}
