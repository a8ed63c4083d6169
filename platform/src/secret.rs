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
    hex(&Sha256::digest(secret.as_bytes()))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Compares two digests without leaking where they first differ.
pub(crate) fn same_digest(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}
