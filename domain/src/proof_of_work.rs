//! Proof-of-work verification of a device (DESIGN.md §3, "pending window"): the device multiplies
//! seeded matrices and commits to the whole product; the server checks a few rows chosen by that
//! commitment. Answering costs the agent `size³` multiply-adds per product; checking costs the
//! server `openings × size²` per product, so the server's share is `openings / size` of the work.
//!
//! Soundness: the opened rows are picked from a hash of every row's hash (Fiat–Shamir), so an
//! agent that computed only a fraction `f` of the rows passes with probability about
//! `f^openings`, and cannot choose which rows are opened without recomputing the commitment.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Entries are taken modulo this prime, small enough that a row of `size` products of two
/// entries sums in a `u64` without overflow for any size below 2³².
pub const MODULUS: u64 = 65_521;

/// Largest matrix side a challenge may ask for (keeps the server's own check bounded).
pub const MAX_SIZE: u32 = 2048;
/// Most products one challenge may ask for.
pub const MAX_PRODUCTS: u32 = 64;
/// Most rows one product may open.
pub const MAX_OPENINGS: u32 = 64;

/// What the server asks a device to compute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
// Named apart from the sign-in `Challenge` in the OpenAPI document.
#[cfg_attr(feature = "openapi", schema(as = ProofChallenge))]
#[serde(deny_unknown_fields)]
pub struct Challenge {
    pub id: String,
    pub seed: u64,
    /// Side of the square matrices.
    pub size: u32,
    /// Independent products to compute (one per claimed GPU).
    pub products: u32,
    /// Rows the answer must open per product.
    pub openings: u32,
    /// Seconds the device has to answer from when the challenge was issued.
    pub deadline_secs: u32,
}

/// The device's answer: per product, the SHA-256 of every row of the product and the rows
/// that the commitment selects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Answer {
    pub challenge_id: String,
    pub products: Vec<ProductProof>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ProductProof {
    /// Lowercase hex SHA-256 of each row's little-endian `u32` entries, in row order.
    pub row_hashes: Vec<String>,
    /// The rows at [`opened_rows`] of the commitment, in that order.
    pub opened: Vec<Vec<u32>>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    #[error("the answer is for challenge {got}, not {expected}")]
    WrongChallenge { expected: String, got: String },
    #[error("expected {expected} products, got {got}")]
    ProductCount { expected: u32, got: usize },
    #[error("product {product}: expected {expected} row hashes, got {got}")]
    RowHashCount {
        product: usize,
        expected: u32,
        got: usize,
    },
    #[error("product {product}: row hash {row} is not 64 hex digits")]
    MalformedHash { product: usize, row: usize },
    #[error("product {product}: expected {expected} opened rows, got {got}")]
    OpeningCount {
        product: usize,
        expected: u32,
        got: usize,
    },
    #[error("product {product}: opened row {row} does not match its committed hash")]
    OpeningMismatch { product: usize, row: u32 },
    #[error("product {product}: row {row} is not the product of the challenge matrices")]
    WrongProduct { product: usize, row: u32 },
}

impl Challenge {
    /// Whether the parameters are within the bounds the protocol allows.
    pub fn is_within_limits(&self) -> bool {
        (1..=MAX_SIZE).contains(&self.size)
            && (1..=MAX_PRODUCTS).contains(&self.products)
            && (1..=MAX_OPENINGS).contains(&self.openings)
    }

    /// Multiply-adds an honest device performs to answer.
    pub fn work(&self) -> u64 {
        u64::from(self.size).pow(3) * u64::from(self.products)
    }
}

/// Entry `index` (row-major) of matrix `which` (0 = left, 1 = right) of product `product`.
/// Counter-based (splitmix64), so any row can be generated without the ones before it.
fn entry(seed: u64, product: u32, which: u32, index: u64) -> u32 {
    let stream =
        seed ^ (u64::from(product) << 40) ^ (u64::from(which) << 32) ^ 0xA076_1D64_78BD_642F;
    let mut z = stream.wrapping_add(index.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    ((z ^ (z >> 31)) % MODULUS) as u32
}

fn left_row(challenge: &Challenge, product: u32, row: u32) -> Vec<u32> {
    let n = u64::from(challenge.size);
    (0..n)
        .map(|k| entry(challenge.seed, product, 0, u64::from(row) * n + k))
        .collect()
}

fn right_matrix(challenge: &Challenge, product: u32) -> Vec<u32> {
    let n = u64::from(challenge.size);
    (0..n * n)
        .map(|i| entry(challenge.seed, product, 1, i))
        .collect()
}

/// One row of the product: `left_row × right`, reduced modulo [`MODULUS`].
fn product_row(left_row: &[u32], right: &[u32], n: usize) -> Vec<u32> {
    let mut sums = vec![0u64; n];
    for (k, &a) in left_row.iter().enumerate() {
        let a = u64::from(a);
        for (sum, &b) in sums.iter_mut().zip(&right[k * n..(k + 1) * n]) {
            *sum += a * u64::from(b);
        }
    }
    sums.into_iter().map(|s| (s % MODULUS) as u32).collect()
}

fn row_hash(row: &[u32]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for value in row {
        hasher.update(value.to_le_bytes());
    }
    hasher.finalize().into()
}

/// The rows a product must open, derived from its row hashes.
pub fn opened_rows(row_hashes: &[[u8; 32]], size: u32, openings: u32) -> Vec<u32> {
    let mut commitment = Sha256::new();
    for hash in row_hashes {
        commitment.update(hash);
    }
    let commitment: [u8; 32] = commitment.finalize().into();
    (0..openings)
        .map(|j| {
            let pick: [u8; 32] = Sha256::new()
                .chain_update(commitment)
                .chain_update(j.to_le_bytes())
                .finalize()
                .into();
            let mut first = [0u8; 8];
            first.copy_from_slice(&pick[..8]);
            (u64::from_le_bytes(first) % u64::from(size)) as u32
        })
        .collect()
}

/// Does the work honestly. `progress` is called after each product (for the agent's log).
pub fn solve(challenge: &Challenge, mut progress: impl FnMut(u32)) -> Answer {
    let n = challenge.size as usize;
    let products = (0..challenge.products)
        .map(|p| {
            let right = right_matrix(challenge, p);
            let rows: Vec<Vec<u32>> = (0..challenge.size)
                .map(|i| product_row(&left_row(challenge, p, i), &right, n))
                .collect();
            let hashes: Vec<[u8; 32]> = rows.iter().map(|r| row_hash(r)).collect();
            let opened = opened_rows(&hashes, challenge.size, challenge.openings)
                .into_iter()
                .map(|i| rows[i as usize].clone())
                .collect();
            progress(p + 1);
            ProductProof {
                row_hashes: hashes.iter().map(to_hex).collect(),
                opened,
            }
        })
        .collect();
    Answer {
        challenge_id: challenge.id.clone(),
        products,
    }
}

/// Checks an answer at a small fraction of the cost of producing it.
pub fn check(challenge: &Challenge, answer: &Answer) -> Result<(), Failure> {
    if answer.challenge_id != challenge.id {
        return Err(Failure::WrongChallenge {
            expected: challenge.id.clone(),
            got: answer.challenge_id.clone(),
        });
    }
    if answer.products.len() != challenge.products as usize {
        return Err(Failure::ProductCount {
            expected: challenge.products,
            got: answer.products.len(),
        });
    }
    let n = challenge.size as usize;
    for (p, proof) in answer.products.iter().enumerate() {
        if proof.row_hashes.len() != n {
            return Err(Failure::RowHashCount {
                product: p,
                expected: challenge.size,
                got: proof.row_hashes.len(),
            });
        }
        let hashes = proof
            .row_hashes
            .iter()
            .enumerate()
            .map(|(row, text)| from_hex(text).ok_or(Failure::MalformedHash { product: p, row }))
            .collect::<Result<Vec<_>, _>>()?;
        let picks = opened_rows(&hashes, challenge.size, challenge.openings);
        if proof.opened.len() != picks.len() {
            return Err(Failure::OpeningCount {
                product: p,
                expected: challenge.openings,
                got: proof.opened.len(),
            });
        }
        let right = right_matrix(challenge, p as u32);
        for (&row, opened) in picks.iter().zip(&proof.opened) {
            if opened.len() != n || row_hash(opened) != hashes[row as usize] {
                return Err(Failure::OpeningMismatch { product: p, row });
            }
            if product_row(&left_row(challenge, p as u32, row), &right, n) != *opened {
                return Err(Failure::WrongProduct { product: p, row });
            }
        }
    }
    Ok(())
}

fn to_hex(bytes: &[u8; 32]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn from_hex(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// When a device that passed a proof at `passed_at` is challenged next: at a moment drawn
/// from `random` between a quarter of `longest_gap_ms` and all of it after the pass. A fixed
/// period would tell a provider exactly when the claimed hardware must be present; this way
/// it must be present all the time.
pub fn next_challenge_at(passed_at: i64, longest_gap_ms: i64, random: u64) -> i64 {
    let shortest = longest_gap_ms.max(0) / 4;
    let spread = (longest_gap_ms.max(0) - shortest) as u64;
    passed_at.saturating_add(shortest + (random % (spread + 1)) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_challenge_comes_at_an_unpredictable_time_within_the_longest_gap() {
        let gap = 6 * 3_600_000;
        let times: Vec<i64> = (0..2000u64)
            .map(|n| next_challenge_at(1_000, gap, n.wrapping_mul(0x9E37_79B9_7F4A_7C15)))
            .collect();
        assert!(times
            .iter()
            .all(|&t| (1_000 + gap / 4..=1_000 + gap).contains(&t)));
        // Spread over the window, not bunched at one end.
        let early = times.iter().filter(|&&t| t < 1_000 + gap / 2).count();
        assert!(
            (600..=730).contains(&early),
            "{early} of 2000 in the first third"
        );
        assert_eq!(next_challenge_at(5, 0, 77), 5);
        assert_eq!(next_challenge_at(i64::MAX - 1, gap, u64::MAX), i64::MAX);
    }

    fn challenge(size: u32, products: u32) -> Challenge {
        Challenge {
            id: "ch-1".into(),
            seed: 0xDEAD_BEEF,
            size,
            products,
            openings: 8,
            deadline_secs: 60,
        }
    }

    #[test]
    fn an_honest_answer_passes() {
        let c = challenge(48, 2);
        let mut seen = Vec::new();
        let answer = solve(&c, |p| seen.push(p));
        assert_eq!(seen, vec![1, 2]);
        assert_eq!(check(&c, &answer), Ok(()));
    }

    #[test]
    fn product_rows_match_a_naive_multiplication() {
        let c = challenge(5, 1);
        let right = right_matrix(&c, 0);
        for i in 0..5 {
            let left = left_row(&c, 0, i);
            let naive: Vec<u32> = (0..5)
                .map(|j| {
                    let s: u64 = (0..5)
                        .map(|k| u64::from(left[k]) * u64::from(right[k * 5 + j]))
                        .sum();
                    (s % MODULUS) as u32
                })
                .collect();
            assert_eq!(product_row(&left, &right, 5), naive);
        }
    }

    #[test]
    fn answers_to_another_seed_fail() {
        let c = challenge(32, 1);
        let other = Challenge {
            seed: 7,
            ..c.clone()
        };
        let answer = solve(&other, |_| {});
        assert!(matches!(
            check(&c, &answer),
            Err(Failure::WrongProduct { .. })
        ));
    }

    #[test]
    fn a_forged_row_is_caught_by_its_hash_or_its_value() {
        let c = challenge(32, 1);
        let honest = solve(&c, |_| {});
        // Changing an opened row without its hash breaks the commitment.
        let mut forged = honest.clone();
        forged.products[0].opened[0][0] ^= 1;
        assert!(matches!(
            check(&c, &forged),
            Err(Failure::OpeningMismatch { .. })
        ));
        // Skipping the work (all-zero rows, hashes consistent) fails on the value check.
        let zero_rows = vec![vec![0u32; 32]; 32];
        let hashes: Vec<[u8; 32]> = zero_rows.iter().map(|r| row_hash(r)).collect();
        let lazy = Answer {
            challenge_id: c.id.clone(),
            products: vec![ProductProof {
                row_hashes: hashes.iter().map(to_hex).collect(),
                opened: opened_rows(&hashes, 32, 8)
                    .iter()
                    .map(|&i| zero_rows[i as usize].clone())
                    .collect(),
            }],
        };
        assert!(matches!(
            check(&c, &lazy),
            Err(Failure::WrongProduct { .. })
        ));
    }

    #[test]
    fn malformed_answers_say_what_is_wrong() {
        let c = challenge(16, 2);
        let mut answer = solve(&c, |_| {});
        answer.products[1].row_hashes[3] = "zz".into();
        assert_eq!(
            check(&c, &answer),
            Err(Failure::MalformedHash { product: 1, row: 3 })
        );
        answer.products.pop();
        assert_eq!(
            check(&c, &answer).unwrap_err().to_string(),
            "expected 2 products, got 1"
        );
    }

    #[test]
    fn limits_and_work_scale_with_the_request() {
        assert!(challenge(512, 8).is_within_limits());
        assert!(!challenge(0, 1).is_within_limits());
        assert!(!challenge(MAX_SIZE + 1, 1).is_within_limits());
        assert_eq!(challenge(10, 3).work(), 3_000);
    }
}
