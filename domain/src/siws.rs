//! Sign-In With Solana (SIWS): the exact message a wallet signs, its parser, and the checks that
//! make a signature worth a session. The server builds the message (so it carries the server's
//! nonce, domain and times), the wallet signs its UTF-8 bytes, and the server parses what came
//! back and verifies it here before looking the nonce up in its store.

use ed25519_dalek::{Signature, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::time::{TimeParseError, UnixMillis};
use crate::wallet::{WalletAddress, WalletAddressError};

pub const STATEMENT: &str =
    "Sign in to GPU Commons. This request costs nothing and moves no funds.";
const HEADER_SUFFIX: &str = " wants you to sign in with your Solana account:";

/// A server-issued single-use nonce: letters and digits only, at least 8 (as SIWS requires).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Nonce(String);

impl Nonce {
    pub fn parse(text: &str) -> Result<Nonce, SiwsError> {
        if text.len() < 8 || text.len() > 128 || !text.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(SiwsError::Malformed(
                "the nonce must be 8 to 128 letters or digits",
            ));
        }
        Ok(Nonce(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Who a live session belongs to, as the header and the API show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SignedIn {
    pub wallet: WalletAddress,
    pub expires_at: UnixMillis,
    /// The account's id on this server (ledger accounts are named by it); never sent out.
    #[serde(skip)]
    pub user_id: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SignInMessage {
    /// `host[:port]` of the site asking for the signature.
    pub domain: String,
    pub address: WalletAddress,
    pub uri: String,
    pub chain_id: String,
    pub nonce: Nonce,
    pub issued_at: UnixMillis,
    pub expiration_time: UnixMillis,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SiwsError {
    #[error("the sign-in message is malformed: {0}")]
    Malformed(&'static str),
    #[error("the sign-in message has a bad time: {0}")]
    BadTime(#[from] TimeParseError),
    #[error("the sign-in message names a bad wallet address: {0}")]
    BadAddress(#[from] WalletAddressError),
    #[error("the sign-in message is for '{found}', but this site is '{expected}'")]
    WrongDomain { expected: String, found: String },
    #[error("the sign-in message is for chain '{found}', but this site uses '{expected}'")]
    WrongChain { expected: String, found: String },
    #[error("the signature is not base58 text of 64 bytes")]
    MalformedSignature,
    #[error("the signature does not match the message and wallet address")]
    BadSignature,
}

/// The text form of a signature that wallets return as bytes (Solana convention: base58).
pub fn signature_to_base58(signature: &[u8]) -> String {
    bs58::encode(signature).into_string()
}

impl SignInMessage {
    /// The text the wallet shows and signs, in the SIWS layout.
    pub fn to_text(&self) -> String {
        format!(
            "{domain}{HEADER_SUFFIX}\n{address}\n\n{STATEMENT}\n\nURI: {uri}\nVersion: 1\nChain ID: {chain}\nNonce: {nonce}\nIssued At: {issued}\nExpiration Time: {expires}",
            domain = self.domain,
            address = self.address,
            uri = self.uri,
            chain = self.chain_id,
            nonce = self.nonce.as_str(),
            issued = self.issued_at,
            expires = self.expiration_time,
        )
    }

    /// Parses exactly the layout [`to_text`](Self::to_text) writes; anything else is refused.
    pub fn parse(text: &str) -> Result<SignInMessage, SiwsError> {
        let mut lines = text.split('\n');
        let mut next = |what: &'static str| lines.next().ok_or(SiwsError::Malformed(what));
        let domain = next("missing header")?
            .strip_suffix(HEADER_SUFFIX)
            .filter(|d| !d.is_empty() && !d.contains(char::is_whitespace))
            .ok_or(SiwsError::Malformed(
                "the first line must be '<domain> wants you to sign in with your Solana account:'",
            ))?
            .to_owned();
        let address = WalletAddress::parse(next("missing address")?)?;
        let expect = |line: &str, wanted: &str, what: &'static str| {
            if line == wanted {
                Ok(())
            } else {
                Err(SiwsError::Malformed(what))
            }
        };
        expect(
            next("missing blank line")?,
            "",
            "expected a blank line after the address",
        )?;
        expect(
            next("missing statement")?,
            STATEMENT,
            "the statement is not this site's",
        )?;
        expect(
            next("missing blank line")?,
            "",
            "expected a blank line after the statement",
        )?;
        let field = |line: &str, name: &'static str| -> Result<String, SiwsError> {
            line.strip_prefix(name)
                .and_then(|rest| rest.strip_prefix(": "))
                .map(str::to_owned)
                .ok_or(SiwsError::Malformed(name))
        };
        let uri = field(next("missing URI")?, "URI")?;
        expect(
            &field(next("missing Version")?, "Version")?,
            "1",
            "only version 1 is supported",
        )?;
        let chain_id = field(next("missing Chain ID")?, "Chain ID")?;
        let nonce = Nonce::parse(&field(next("missing Nonce")?, "Nonce")?)?;
        let issued_at =
            UnixMillis::parse_rfc3339(&field(next("missing Issued At")?, "Issued At")?)?;
        let expiration_time = UnixMillis::parse_rfc3339(&field(
            next("missing Expiration Time")?,
            "Expiration Time",
        )?)?;
        if lines.next().is_some() {
            return Err(SiwsError::Malformed(
                "unexpected text after the Expiration Time",
            ));
        }
        Ok(SignInMessage {
            domain,
            address,
            uri,
            chain_id,
            nonce,
            issued_at,
            expiration_time,
        })
    }

    /// Checks that the message is meant for this site and chain and that `signature_b58` is the
    /// address's ed25519 signature of exactly `text`. Nonce freshness is the store's job.
    pub fn verify(
        text: &str,
        signature_b58: &str,
        expected_domain: &str,
        expected_chain: &str,
    ) -> Result<SignInMessage, SiwsError> {
        let message = SignInMessage::parse(text)?;
        if message.domain != expected_domain {
            return Err(SiwsError::WrongDomain {
                expected: expected_domain.to_owned(),
                found: message.domain,
            });
        }
        if message.chain_id != expected_chain {
            return Err(SiwsError::WrongChain {
                expected: expected_chain.to_owned(),
                found: message.chain_id,
            });
        }
        let signature_bytes: [u8; 64] = bs58::decode(signature_b58.trim())
            .into_vec()
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or(SiwsError::MalformedSignature)?;
        let key = VerifyingKey::from_bytes(&message.address.public_key_bytes())
            .map_err(|_| SiwsError::BadSignature)?;
        key.verify_strict(text.as_bytes(), &Signature::from_bytes(&signature_bytes))
            .map_err(|_| SiwsError::BadSignature)?;
        Ok(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};

    fn key() -> SigningKey {
        SigningKey::generate(&mut rand::rngs::OsRng)
    }

    fn message_for(key: &SigningKey) -> SignInMessage {
        SignInMessage {
            domain: "gpu.example:3000".into(),
            address: WalletAddress::from_public_key(&key.verifying_key().to_bytes()),
            uri: "http://gpu.example:3000".into(),
            chain_id: "solana:mainnet".into(),
            nonce: Nonce::parse("a1b2c3d4e5f6a7b8").unwrap(),
            issued_at: UnixMillis(1_795_600_000_000),
            expiration_time: UnixMillis(1_795_600_600_000),
        }
    }

    fn sign(key: &SigningKey, text: &str) -> String {
        bs58::encode(key.sign(text.as_bytes()).to_bytes()).into_string()
    }

    #[test]
    fn message_text_round_trips_through_parse() {
        let message = message_for(&key());
        assert_eq!(SignInMessage::parse(&message.to_text()), Ok(message));
    }

    #[test]
    fn a_correct_signature_verifies() {
        let key = key();
        let text = message_for(&key).to_text();
        let verified = SignInMessage::verify(
            &text,
            &sign(&key, &text),
            "gpu.example:3000",
            "solana:mainnet",
        );
        assert_eq!(
            verified.unwrap().address.public_key_bytes(),
            key.verifying_key().to_bytes()
        );
    }

    #[test]
    fn a_signature_by_another_key_is_refused() {
        let (owner, thief) = (key(), key());
        let text = message_for(&owner).to_text();
        let result = SignInMessage::verify(
            &text,
            &sign(&thief, &text),
            "gpu.example:3000",
            "solana:mainnet",
        );
        assert_eq!(result, Err(SiwsError::BadSignature));
    }

    #[test]
    fn a_tampered_message_is_refused() {
        let key = key();
        let text = message_for(&key).to_text();
        let signature = sign(&key, &text);
        let tampered = text.replace("a1b2c3d4e5f6a7b8", "a1b2c3d4e5f6a7b9");
        let result =
            SignInMessage::verify(&tampered, &signature, "gpu.example:3000", "solana:mainnet");
        assert_eq!(result, Err(SiwsError::BadSignature));
    }

    #[test]
    fn a_message_for_another_domain_or_chain_is_refused() {
        let key = key();
        let text = message_for(&key).to_text();
        let signature = sign(&key, &text);
        assert!(matches!(
            SignInMessage::verify(&text, &signature, "evil.example", "solana:mainnet"),
            Err(SiwsError::WrongDomain { .. })
        ));
        assert!(matches!(
            SignInMessage::verify(&text, &signature, "gpu.example:3000", "solana:devnet"),
            Err(SiwsError::WrongChain { .. })
        ));
    }

    #[test]
    fn garbage_signatures_and_messages_get_specific_errors() {
        let key = key();
        let text = message_for(&key).to_text();
        let verify =
            |t: &str, s: &str| SignInMessage::verify(t, s, "gpu.example:3000", "solana:mainnet");
        assert_eq!(
            verify(&text, "not-base58!"),
            Err(SiwsError::MalformedSignature)
        );
        assert_eq!(verify(&text, "abc"), Err(SiwsError::MalformedSignature));
        assert!(matches!(
            verify("hello", "abc"),
            Err(SiwsError::Malformed(_))
        ));
        let extra = format!("{text}\nResources: x");
        assert!(matches!(
            verify(&extra, &sign(&key, &extra)),
            Err(SiwsError::Malformed(_))
        ));
    }
}
