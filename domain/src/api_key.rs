//! API keys: what scripts and agents of a renter use instead of the browser's session cookie.
//! The secret is shown once when the key is made; only its hash is kept.

use serde::{Deserialize, Serialize};

use crate::time::UnixMillis;

/// How the secret of every key begins, so a leaked one is recognisable (and scannable).
pub const SECRET_PREFIX: &str = "gck_";
/// How long a key works unless revoked first.
pub const LIFETIME_DAYS: i64 = 365;
const MAX_NAME_CHARS: usize = 48;

/// A key as its owner sees it in the console: never the secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApiKey {
    pub id: String,
    pub name: String,
    /// The first characters of the secret, to tell keys apart.
    pub prefix: String,
    pub created_at: UnixMillis,
    pub expires_at: UnixMillis,
    pub last_used_at: Option<UnixMillis>,
    pub revoked_at: Option<UnixMillis>,
}

/// A key just made, with its secret: the only time the secret leaves the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreatedApiKey {
    pub key: ApiKey,
    pub secret: String,
}

/// A key's name: 1–48 characters, trimmed.
pub fn parse_key_name(text: &str) -> Result<String, String> {
    let name = text.trim();
    if name.is_empty() {
        return Err("give the key a name (what will use it?)".into());
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(format!(
            "a key name has at most {MAX_NAME_CHARS} characters"
        ));
    }
    crate::text::check_name("a key name", name)?;
    Ok(name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_names_are_trimmed_and_bounded() {
        assert_eq!(parse_key_name("  ci deploys "), Ok("ci deploys".into()));
        assert!(parse_key_name("   ")
            .unwrap_err()
            .contains("give the key a name"));
        assert!(parse_key_name(&"x".repeat(49))
            .unwrap_err()
            .contains("at most 48"));
        assert!(parse_key_name("a\u{7}b").is_err());
    }
}
