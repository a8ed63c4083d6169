/// Everything the agent can fail with; `main` turns each into a message and an exit code.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// A wrong flag, file or server address: fix and restart.
    #[error("{0}")]
    Config(String),
    #[error("credentials file '{path}': {source}")]
    Credentials {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The server refused the call; `code` is its stable error code.
    #[error("the server refused: {message} ({code})")]
    Refused {
        status: u16,
        code: String,
        message: String,
    },
    /// The server could not be reached or answered nonsense; worth retrying.
    #[error("cannot talk to the server: {0}")]
    Transport(String),
}

impl AgentError {
    /// Refusals after which running on is pointless: the device is gone or the credential dead.
    pub fn is_final(&self) -> bool {
        match self {
            AgentError::Config(_) | AgentError::Credentials { .. } => true,
            AgentError::Refused { code, .. } => matches!(
                code.as_str(),
                "credential_revoked"
                    | "device_removed"
                    | "unknown_device"
                    | "registration_token_unknown"
                    | "registration_token_used"
                    | "registration_token_expired"
                    | "invalid"
                    | "credential_missing"
            ),
            AgentError::Transport(_) => false,
        }
    }
}
