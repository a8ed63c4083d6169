//! Solana wallet addresses: base58 text of a 32-byte ed25519 public key.

use std::fmt;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(try_from = "String", into = "String")]
pub struct WalletAddress(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WalletAddressError {
    #[error("wallet address is empty")]
    Empty,
    #[error("wallet address '{0}' is not base58")]
    NotBase58(String),
    #[error("wallet address '{0}' is not a 32-byte Solana public key")]
    WrongLength(String),
}

impl WalletAddress {
    pub fn parse(text: &str) -> Result<Self, WalletAddressError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(WalletAddressError::Empty);
        }
        let bytes = bs58::decode(text)
            .into_vec()
            .map_err(|_| WalletAddressError::NotBase58(text.to_owned()))?;
        if bytes.len() != 32 {
            return Err(WalletAddressError::WrongLength(text.to_owned()));
        }
        Ok(WalletAddress(text.to_owned()))
    }

    pub fn from_public_key(bytes: &[u8; 32]) -> Self {
        WalletAddress(bs58::encode(bytes).into_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn public_key_bytes(&self) -> [u8; 32] {
        let mut key = [0u8; 32];
        // Checked at parse time: always 32 bytes of valid base58.
        if let Ok(bytes) = bs58::decode(&self.0).into_vec() {
            key.copy_from_slice(&bytes);
        }
        key
    }

    /// `7xKX…gAsU`: what the header shows for a signed-in wallet.
    pub fn short(&self) -> String {
        let s = &self.0;
        format!("{}…{}", &s[..4], &s[s.len() - 4..])
    }
}

impl fmt::Display for WalletAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for WalletAddress {
    type Error = WalletAddressError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        WalletAddress::parse(&value)
    }
}

impl From<WalletAddress> for String {
    fn from(value: WalletAddress) -> Self {
        value.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_a_real_public_key_and_shortens_it() {
        let addr = WalletAddress::from_public_key(&[7u8; 32]);
        let parsed = WalletAddress::parse(addr.as_str()).unwrap();
        assert_eq!(parsed.public_key_bytes(), [7u8; 32]);
        assert_eq!(parsed.short().chars().count(), 9);
        assert!(addr.as_str().starts_with(&parsed.short()[..4]));
    }

    #[test]
    fn rejects_bad_addresses_with_specific_errors() {
        assert_eq!(WalletAddress::parse(" "), Err(WalletAddressError::Empty));
        assert!(matches!(
            WalletAddress::parse("0OIl"),
            Err(WalletAddressError::NotBase58(_))
        ));
        assert!(matches!(
            WalletAddress::parse("abc"),
            Err(WalletAddressError::WrongLength(_))
        ));
    }
}
