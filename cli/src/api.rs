//! The platform's JSON API as the CLI calls it: one client with the server's address and the
//! caller's API key, and the one error type every command fails with, each kind with an exit
//! code of its own.

use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Why a command failed; [`CliError::exit_code`] is what the process exits with.
#[derive(Debug)]
pub enum CliError {
    /// The command line or a spec file is wrong (exit 2, as for a usage error).
    Usage(String),
    /// No API key, or the server refused it (exit 3).
    NotSignedIn(String),
    /// The server refused the request: bad input or a conflict (exit 4).
    Refused { status: StatusCode, message: String },
    /// Nothing by that id (exit 5).
    NotFound(String),
    /// The server could not be reached, or failed (exit 6).
    Unavailable(String),
    /// Local trouble: the credentials file, the terminal (exit 1).
    Local(String),
}

impl CliError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Local(_) => 1,
            CliError::Usage(_) => 2,
            CliError::NotSignedIn(_) => 3,
            CliError::Refused { .. } => 4,
            CliError::NotFound(_) => 5,
            CliError::Unavailable(_) => 6,
        }
    }
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CliError::Usage(m) | CliError::Local(m) | CliError::NotFound(m) => f.write_str(m),
            CliError::NotSignedIn(m) => {
                write!(
                    f,
                    "{m} (make a key in the Cloud console, then `gpuc login`)"
                )
            }
            CliError::Refused { status, message } => {
                write!(f, "refused ({}): {message}", status.as_u16())
            }
            CliError::Unavailable(m) => write!(f, "the server failed or cannot be reached: {m}"),
        }
    }
}

pub type Result<T> = std::result::Result<T, CliError>;

pub struct Api {
    base: String,
    key: Option<String>,
    http: reqwest::Client,
}

impl Api {
    pub fn new(server: &str, key: Option<String>) -> Result<Api> {
        let base = server.trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(CliError::Usage(format!(
                "the server '{server}' is not an http(s):// URL"
            )));
        }
        let http = reqwest::Client::builder()
            .user_agent(concat!("gpuc/", env!("CARGO_PKG_VERSION")))
            .timeout(std::time::Duration::from_secs(60))
            .build()
            .map_err(|e| CliError::Local(e.to_string()))?;
        Ok(Api { base, key, http })
    }

    pub fn server(&self) -> &str {
        &self.base
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.call(Method::GET, path, None::<&()>, None).await
    }

    pub async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
        idempotency_key: Option<&str>,
    ) -> Result<T> {
        self.call(Method::POST, path, Some(body), idempotency_key)
            .await
    }

    /// The body of a GET as text (the billing CSV).
    pub async fn get_text(&self, path: &str) -> Result<String> {
        let response = self.send(Method::GET, path, None::<&()>, None).await?;
        response
            .text()
            .await
            .map_err(|e| CliError::Unavailable(e.to_string()))
    }

    async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        idempotency_key: Option<&str>,
    ) -> Result<T> {
        let response = self.send(method, path, body, idempotency_key).await?;
        let bytes = response
            .bytes()
            .await
            .map_err(|e| CliError::Unavailable(e.to_string()))?;
        serde_json::from_slice(&bytes).map_err(|e| {
            CliError::Unavailable(format!(
                "an answer this gpuc cannot read ({e}); is the server newer than gpuc?"
            ))
        })
    }

    async fn send<B: Serialize>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        idempotency_key: Option<&str>,
    ) -> Result<reqwest::Response> {
        let key = self.key.as_deref().ok_or_else(|| {
            CliError::NotSignedIn("no API key: set GC_API_KEY or run `gpuc login`".into())
        })?;
        let mut request = self
            .http
            .request(method, format!("{}/api/v1{path}", self.base))
            .bearer_auth(key);
        if let Some(body) = body {
            request = request.json(body);
        }
        if let Some(idempotency_key) = idempotency_key {
            request = request.header("Idempotency-Key", idempotency_key);
        }
        let response = request
            .send()
            .await
            .map_err(|e| CliError::Unavailable(format!("{}: {e}", self.base)))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let text = response.text().await.unwrap_or_default();
        let message = error_message(&text).unwrap_or_else(|| text.trim().to_owned());
        Err(match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => CliError::NotSignedIn(message),
            StatusCode::NOT_FOUND => CliError::NotFound(message),
            s if s.is_client_error() => CliError::Refused { status, message },
            _ => CliError::Unavailable(format!("{}: {message}", status.as_u16())),
        })
    }
}

/// The message of the API's error body (`{"error":{"message", "fields"?}}`), each field's
/// problem named.
pub fn error_message(body: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(body).ok()?;
    let error = value.get("error")?;
    let message = error.get("message")?.as_str()?.to_owned();
    let fields: Vec<String> = error
        .get("fields")
        .and_then(|f| f.as_array())
        .map(|fields| {
            fields
                .iter()
                .filter_map(|f| {
                    Some(format!(
                        "{}: {}",
                        f.get("field")?.as_str()?,
                        f.get("message")?.as_str()?
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    Some(if fields.is_empty() {
        message
    } else {
        fields.join("; ")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_apis_error_body_is_told_plainly() {
        let plain = r#"{"error":{"code":"conflict","message":"no H100 free in DE"}}"#;
        assert_eq!(error_message(plain).unwrap(), "no H100 free in DE");
        let fields = r#"{"error":{"code":"invalid","message":"x","fields":[
            {"field":"name","message":"give the cluster a name"},
            {"field":"quantity","message":"at least 1"}]}}"#;
        assert_eq!(
            error_message(fields).unwrap(),
            "name: give the cluster a name; quantity: at least 1"
        );
        assert_eq!(error_message("<html>"), None);
    }

    #[test]
    fn each_failure_has_its_own_exit_code() {
        let codes: Vec<u8> = [
            CliError::Local(String::new()),
            CliError::Usage(String::new()),
            CliError::NotSignedIn(String::new()),
            CliError::Refused {
                status: StatusCode::CONFLICT,
                message: String::new(),
            },
            CliError::NotFound(String::new()),
            CliError::Unavailable(String::new()),
        ]
        .iter()
        .map(CliError::exit_code)
        .collect();
        assert_eq!(codes, [1, 2, 3, 4, 5, 6]);
        assert!(Api::new("ftp://x", None).is_err());
    }
}
