//! Connectivity measured by the server: download-and-upload rounds timed on this side, the best
//! round of each direction kept, and the tier derived from it.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use domain::agent_protocol::{SpeedTestResult, SpeedTestStarted};
use domain::fleet::{ConnectivityTier, SpeedFigures};
use domain::time::UnixMillis;
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};
use sha2::{Digest, Sha256};

use super::AgentService;
use crate::secret::{hex, random_hex, same_digest};
use crate::{AgentRefusal, Error};

/// A download is made and sent in chunks this large: a slow reader holds the server to one
/// chunk, never to the whole payload.
pub const PAYLOAD_CHUNK_BYTES: usize = 64 * 1024;

/// A device may start a speed test at most this often.
pub(super) const SPEED_TEST_EVERY_MS: i64 = 60_000;

/// Speed tests not finished within this are forgotten.
pub(super) const SPEED_TEST_TTL_MS: i64 = 300_000;

/// Download-and-upload rounds in one speed test; each direction keeps its best round.
pub(super) const SPEED_TEST_ROUNDS: u32 = 3;

/// Speed tests one provider's devices may have under way at once: each moves tens of MiB
/// through the server, and a provider with thousands of devices (or fake ones) must not hold
/// its bandwidth (issue 23). The rest are told to retry.
pub const SPEED_TESTS_PER_PROVIDER: usize = 4;

pub(super) struct SpeedTest {
    pub(super) device_id: String,
    /// The device owner's wallet, for the bound per provider.
    pub(super) owner: String,
    pub(super) bytes: u64,
    pub(super) started_at: i64,
    /// When the server last answered the agent (the start, or a round's upload): the wait for
    /// the next download request is a round trip.
    pub(super) answered: Instant,
    /// When the round's download was asked for, and its SHA-256 once the last byte was made.
    pub(super) download: Option<(Instant, Arc<OnceLock<String>>)>,
    pub(super) rounds_left: u32,
    pub(super) best: Option<SpeedFigures>,
}

impl AgentService {
    /// Starts a connectivity measurement: in each of `rounds` rounds the agent downloads
    /// `bytes`, then uploads as many. At most one a minute per device and
    /// [`SPEED_TESTS_PER_PROVIDER`] under way per provider.
    pub async fn start_speed_test(
        &self,
        device_id: &str,
        now: UnixMillis,
    ) -> Result<SpeedTestStarted, Error> {
        let owner: String = sqlx::query_scalar("SELECT owner_wallet FROM devices WHERE id = $1")
            .bind(device_id)
            .fetch_optional(self.store.pool())
            .await?
            .ok_or_else(|| AgentRefusal::UnknownDevice(device_id.to_owned()))?;
        let mut tests = self.speed_tests.lock().unwrap_or_else(|p| p.into_inner());
        tests.retain(|_, t| now.0 - t.started_at < SPEED_TEST_TTL_MS);
        let under_way = tests.values().filter(|t| t.owner == owner).count();
        if under_way >= SPEED_TESTS_PER_PROVIDER {
            return Err(AgentRefusal::TooSoon(format!(
                "{under_way} of this provider's devices are being measured now (at most \
                 {SPEED_TESTS_PER_PROVIDER} at once); retry when one has finished"
            ))
            .into());
        }
        let allowed = self
            .live
            .with(device_id, |d| {
                let ok = now.0 - d.speed_test_started_at >= SPEED_TEST_EVERY_MS;
                if ok {
                    d.speed_test_started_at = now.0;
                }
                ok
            })
            .ok_or_else(|| AgentRefusal::UnknownDevice(device_id.to_owned()))?;
        if !allowed {
            return Err(AgentRefusal::TooSoon(format!(
                "a speed test was started less than {} s ago",
                SPEED_TEST_EVERY_MS / 1000
            ))
            .into());
        }
        let id = format!("spd-{}", random_hex(8));
        tests.insert(
            id.clone(),
            SpeedTest {
                device_id: device_id.to_owned(),
                owner,
                bytes: self.config.speed_test_bytes,
                started_at: now.0,
                answered: Instant::now(),
                download: None,
                rounds_left: SPEED_TEST_ROUNDS,
                best: None,
            },
        );
        Ok(SpeedTestStarted {
            id,
            bytes: self.config.speed_test_bytes,
            rounds: SPEED_TEST_ROUNDS,
        })
    }

    /// The download half: bytes from a ChaCha generator seeded afresh by the server for each
    /// round and never sent, made as they are sent. The agent must return their SHA-256 with
    /// its upload, which only receiving every byte gives: no prefix predicts the rest.
    pub fn speed_test_payload(
        &self,
        device_id: &str,
        test_id: &str,
    ) -> Result<SpeedTestPayload, Error> {
        let mut tests = self.speed_tests.lock().unwrap_or_else(|p| p.into_inner());
        let test = tests
            .get_mut(test_id)
            .filter(|t| t.device_id == device_id && t.download.is_none())
            .ok_or_else(|| {
                Error::NotFound(format!(
                    "no speed test '{test_id}' waiting for its download"
                ))
            })?;
        let digest = Arc::new(OnceLock::new());
        test.download = Some((Instant::now(), digest.clone()));
        Ok(SpeedTestPayload {
            bytes: StdRng::from_entropy(),
            left: test.bytes,
            sent: Sha256::new(),
            digest,
        })
    }

    /// The upload half, timed by the server: `upload_arrived` when the request came in,
    /// `upload_finished` when its body was read. Download time is from the download request to
    /// the upload request, so it can only be over-, never under-estimated. The device's figures
    /// and tier are recorded after the last round, from each direction's best round.
    pub async fn finish_speed_test(
        &self,
        device_id: &str,
        test_id: &str,
        download_digest: &str,
        upload: SpeedTestUpload,
        now: UnixMillis,
    ) -> Result<SpeedTestResult, Error> {
        let mut test = {
            let mut tests = self.speed_tests.lock().unwrap_or_else(|p| p.into_inner());
            match tests.get(test_id) {
                Some(t) if t.device_id == device_id && t.download.is_some() => {
                    tests.remove(test_id)
                }
                _ => None,
            }
        }
        .ok_or_else(|| {
            Error::NotFound(format!("no speed test '{test_id}' waiting for its upload"))
        })?;
        let Some((download_started, digest)) = test.download.take() else {
            return Err(Error::Invalid("the download half was not taken".into()));
        };
        let Some(digest) = digest.get() else {
            return Err(Error::Invalid(
                "the download was not sent in full, so its upload cannot count".into(),
            ));
        };
        if !same_digest(digest.as_bytes(), download_digest.trim().as_bytes()) {
            return Err(Error::Invalid(
                "the downloaded data's SHA-256 does not match what was sent".into(),
            ));
        }
        if upload.bytes != test.bytes {
            return Err(Error::Invalid(format!(
                "expected {} uploaded bytes, got {}",
                test.bytes, upload.bytes
            )));
        }
        let per_s = |bytes: u64, from: Instant, to: Instant| -> i64 {
            // Bytes per microsecond is megabytes per second.
            let micros = to.saturating_duration_since(from).as_micros().max(1);
            (u128::from(bytes) / micros) as i64
        };
        let round = SpeedFigures {
            download_mb_per_s: per_s(test.bytes, download_started, upload.arrived),
            upload_mb_per_s: per_s(test.bytes, upload.arrived, upload.finished),
            latency_ms: download_started
                .saturating_duration_since(test.answered)
                .as_millis() as i64,
        };
        let best = round.best_with(test.best);
        let tier = best.tier();
        test.rounds_left -= 1;
        let result = SpeedTestResult {
            download_mb_per_s: best.download_mb_per_s,
            upload_mb_per_s: best.upload_mb_per_s,
            latency_ms: best.latency_ms,
            tier,
            rounds_left: test.rounds_left,
        };
        if test.rounds_left > 0 {
            test.best = Some(best);
            test.answered = Instant::now();
            let mut tests = self.speed_tests.lock().unwrap_or_else(|p| p.into_inner());
            tests.insert(test_id.to_owned(), test);
            return Ok(result);
        }
        let mut tx = self.store.begin_write().await?;
        sqlx::query(
            "UPDATE devices SET download_mb_per_s = $1, upload_mb_per_s = $2, latency_ms = $3, \
               measured_at = $4, tier = $5 WHERE id = $6",
        )
        .bind(best.download_mb_per_s)
        .bind(best.upload_mb_per_s)
        .bind(best.latency_ms)
        .bind(now.0)
        .bind(tier.map(ConnectivityTier::as_str))
        .bind(device_id)
        .execute(&mut *tx)
        .await?;
        // Other replicas place orders by tier too.
        crate::replicas::record_change(&mut tx, device_id, now).await?;
        tx.commit().await?;
        self.live.with(device_id, |d| {
            d.measured_at = Some(now.0);
            d.tierless_measurements = match tier {
                None => d.tierless_measurements.saturating_add(1),
                Some(_) => 0,
            };
        });
        self.index.set_tier(device_id, tier);
        tracing::info!(device = device_id, download_mb_per_s = best.download_mb_per_s, upload_mb_per_s = best.upload_mb_per_s, latency_ms = best.latency_ms, tier = ?tier, "connectivity measured");
        Ok(result)
    }
}

/// A round's download, made chunk by chunk ([`PAYLOAD_CHUNK_BYTES`]) as the response is sent;
/// the SHA-256 of all of it is recorded as the last chunk is made.
pub struct SpeedTestPayload {
    bytes: StdRng,
    left: u64,
    sent: Sha256,
    digest: Arc<OnceLock<String>>,
}

impl SpeedTestPayload {
    /// Bytes still to come.
    pub fn len(&self) -> u64 {
        self.left
    }

    pub fn is_empty(&self) -> bool {
        self.left == 0
    }
}

impl Iterator for SpeedTestPayload {
    type Item = Vec<u8>;

    fn next(&mut self) -> Option<Vec<u8>> {
        if self.left == 0 {
            return None;
        }
        let size = self.left.min(PAYLOAD_CHUNK_BYTES as u64) as usize;
        let mut chunk = vec![0u8; size];
        self.bytes.fill_bytes(&mut chunk);
        self.sent.update(&chunk);
        self.left -= size as u64;
        if self.left == 0 {
            let _ = self.digest.set(hex(&self.sent.finalize_reset()));
        }
        Some(chunk)
    }
}

/// When and how much of a speed test's upload the server received.
#[derive(Debug, Clone, Copy)]
pub struct SpeedTestUpload {
    pub arrived: Instant,
    pub finished: Instant,
    pub bytes: u64,
}
