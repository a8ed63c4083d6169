use domain::siws::SiwsError;

/// Everything a platform service can refuse or fail with. The server maps each variant to an
/// HTTP status once (see `server::api::ApiError` and `app::errors`).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request itself is wrong; the message says how to fix it.
    #[error("{0}")]
    Invalid(String),
    #[error("sign-in refused: {0}")]
    SignInRefused(#[from] SignInRefusal),
    #[error("not signed in (or the session has ended)")]
    NotSignedIn,
    #[error("cannot reach the database at {url}: {source}")]
    Unreachable {
        url: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// A stored row breaks the domain's rules (a bug or a hand edit), never the caller's fault.
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
    #[error("database migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignInRefusal {
    #[error("{0}")]
    Message(#[from] SiwsError),
    #[error("this sign-in request was not issued by this server; ask for a new one")]
    UnknownNonce,
    #[error("this sign-in request was already used; ask for a new one")]
    NonceUsed,
    #[error("this sign-in request has expired; ask for a new one")]
    NonceExpired,
    #[error("this sign-in request was issued to another wallet")]
    WrongWallet,
}
