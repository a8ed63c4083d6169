//! Random secrets (session tokens, registration tokens, agent credentials) and the SHA-256
//! digests that are stored in their place.

use rand::RngCore;
use sha2::{Digest, Sha256};

/// `bytes` random bytes from the OS, as lowercase hex.
pub(crate) fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut buf);
    hex(&buf)
}

/// A random `u64` from the OS (challenge seeds).
pub(crate) fn random_u64() -> u64 {
    rand::rngs::OsRng.next_u64()
}

/// The lowercase hex SHA-256 of a secret: what the database keeps instead of the secret.
pub(crate) fn sha256_hex(secret: &str) -> String {
    hex(&sha256(secret))
}

pub(crate) fn sha256(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// A digest stored as [`sha256_hex`] back in bytes; None if it is not 64 hex digits.
pub(crate) fn digest_from_hex(text: &str) -> Option<[u8; 32]> {
    let text = text.as_bytes();
    if text.len() != 64 {
        return None;
    }
    let nibble = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut digest = [0u8; 32];
    for (i, byte) in digest.iter_mut().enumerate() {
        *byte = nibble(text[2 * i])? << 4 | nibble(text[2 * i + 1])?;
    }
    Some(digest)
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    // On every agent call (the credential's digest): no formatting machinery per byte.
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// Compares two digests without leaking where they first differ.
pub(crate) fn same_digest(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    #[test]
    fn digests_are_lowercase_hex() {
        assert_eq!(super::hex(&[0x00, 0x0f, 0xa5, 0xff]), "000fa5ff");
        let digest = super::sha256_hex("abc");
        assert_eq!(
            digest,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(super::digest_from_hex(&digest), Some(super::sha256("abc")));
        assert_eq!(super::digest_from_hex("ab"), None);
        assert_eq!(super::digest_from_hex(&"g".repeat(64)), None);
        assert!(super::same_digest(b"abc", b"abc") && !super::same_digest(b"abc", b"abd"));
    }
}
