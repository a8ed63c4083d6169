use domain::siws::SiwsError;

/// Everything a platform service can refuse or fail with. The server maps each variant to an
/// HTTP status once (see `server::api::ApiError` and `app::errors`).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request itself is wrong; the message says how to fix it.
    #[error("{0}")]
    Invalid(String),
    /// A form or request with one problem per named field.
    #[error("{}", .0.iter().map(|e| format!("{}: {}", e.field, e.message)).collect::<Vec<_>>().join("; "))]
    InvalidFields(Vec<domain::cluster::FieldError>),
    #[error("sign-in refused: {0}")]
    SignInRefused(#[from] SignInRefusal),
    #[error("not signed in (or the session has ended)")]
    NotSignedIn,
    #[error("this API key is unknown, revoked or expired; make a new one in the Cloud console")]
    ApiKeyRejected,
    #[error(
        "this access token does not open this cluster's tunnels: it is wrong, or was rotated since"
    )]
    AccessTokenRejected,
    /// Nothing by that id, or it belongs to someone else (the two are not told apart).
    #[error("{0}")]
    NotFound(String),
    /// The request is valid but the thing's current state refuses it; the message says why.
    #[error("{0}")]
    Conflict(String),
    /// Asked too often; the caller may ask again after `retry_after_secs`.
    #[error("{message}")]
    TooMany {
        message: String,
        retry_after_secs: u64,
    },
    #[error("{0}")]
    AgentRefused(#[from] AgentRefusal),
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
    /// Solana could not be reached or refused a call; the operation can be retried.
    #[error("Solana: {0}")]
    Chain(String),
    #[error("database migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    /// Work handed to another task or thread panicked or was cancelled.
    #[error("a background task failed: {0}")]
    Task(String),
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
    /// The signed message's nonce was issued here, but the message around it was changed.
    #[error("this sign-in message is not the one issued: its {0} was changed; ask for a new one")]
    Altered(&'static str),
}

/// Why the agent API refused a device's call. Each has a stable code the agent acts on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AgentRefusal {
    #[error("this registration token was not issued by this server; add the device again in the Worker tab")]
    TokenUnknown,
    #[error("this registration token was already used; add the device again in the Worker tab for a new one")]
    TokenUsed,
    #[error(
        "this registration token has expired; add the device again in the Worker tab for a new one"
    )]
    TokenExpired,
    #[error("no device '{0}' is registered here")]
    UnknownDevice(String),
    #[error(
        "the device credential was revoked or is wrong; add the device again in the Worker tab"
    )]
    CredentialRejected,
    #[error("the device was removed by its owner")]
    DeviceRemoved,
    #[error("the agent's clock is {skew_secs} s away from the server's (at most 300 s allowed); fix the system clock")]
    ClockSkew { skew_secs: i64 },
    #[error("no open challenge '{0}' for this device (it may have expired or been answered)")]
    NoSuchChallenge(String),
    #[error("{0}")]
    TooSoon(String),
}

impl AgentRefusal {
    /// The machine-readable code in the API's error body.
    pub fn code(&self) -> &'static str {
        match self {
            AgentRefusal::TokenUnknown => "registration_token_unknown",
            AgentRefusal::TokenUsed => "registration_token_used",
            AgentRefusal::TokenExpired => "registration_token_expired",
            AgentRefusal::UnknownDevice(_) => "unknown_device",
            AgentRefusal::CredentialRejected => "credential_revoked",
            AgentRefusal::DeviceRemoved => "device_removed",
            AgentRefusal::ClockSkew { .. } => "clock_skew",
            AgentRefusal::NoSuchChallenge(_) => "no_such_challenge",
            AgentRefusal::TooSoon(_) => "too_soon",
        }
    }
}
