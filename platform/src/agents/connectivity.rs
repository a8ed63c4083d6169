//! Connectivity measured by the server: download-and-upload rounds timed on this side, the best
//! round of each direction kept, and the tier derived from it.

use std::time::Instant;

use domain::agent_protocol::{SpeedTestResult, SpeedTestStarted};
use domain::fleet::{ConnectivityTier, SpeedFigures};
use domain::time::UnixMillis;
use sha2::{Digest, Sha256};

use super::AgentService;
use crate::secret::{hex, random_hex, random_u64, same_digest};
use crate::{AgentRefusal, Error};

/// A device may start a speed test at most this often.
pub(super) const SPEED_TEST_EVERY_MS: i64 = 60_000;

/// Speed tests not finished within this are forgotten.
pub(super) const SPEED_TEST_TTL_MS: i64 = 300_000;

/// Download-and-upload rounds in one speed test; each direction keeps its best round.
pub(super) const SPEED_TEST_ROUNDS: u32 = 3;

pub(super) struct SpeedTest {
    pub(super) device_id: String,
    pub(super) bytes: u64,
    pub(super) started_at: i64,
    /// When the server last answered the agent (the start, or a round's upload): the wait for
    /// the next download request is a round trip.
    pub(super) answered: Instant,
    pub(super) download: Option<(Instant, String)>,
    pub(super) rounds_left: u32,
    pub(super) best: Option<SpeedFigures>,
}

impl AgentService {
    /// Starts a connectivity measurement: in each of `rounds` rounds the agent downloads
    /// `bytes`, then uploads as many.
    pub fn start_speed_test(
        &self,
        device_id: &str,
        now: UnixMillis,
    ) -> Result<SpeedTestStarted, Error> {
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
        let mut tests = self.speed_tests.lock().unwrap_or_else(|p| p.into_inner());
        tests.retain(|_, t| now.0 - t.started_at < SPEED_TEST_TTL_MS);
        tests.insert(
            id.clone(),
            SpeedTest {
                device_id: device_id.to_owned(),
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

    /// The download half: random bytes whose digest the agent must return with its upload,
    /// which proves it received them.
    pub fn speed_test_payload(&self, device_id: &str, test_id: &str) -> Result<Vec<u8>, Error> {
        let mut tests = self.speed_tests.lock().unwrap_or_else(|p| p.into_inner());
        let test = tests
            .get_mut(test_id)
            .filter(|t| t.device_id == device_id && t.download.is_none())
            .ok_or_else(|| {
                Error::NotFound(format!(
                    "no speed test '{test_id}' waiting for its download"
                ))
            })?;
        let mut payload = vec![0u8; test.bytes as usize];
        let mut state = random_u64();
        for chunk in payload.chunks_mut(8) {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let bytes = (state ^ (state >> 31))
                .wrapping_mul(0xBF58_476D_1CE4_E5B9)
                .to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
        test.download = Some((Instant::now(), hex(&Sha256::digest(&payload))));
        Ok(payload)
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
        .execute(self.store.pool())
        .await?;
        self.live.with(device_id, |d| d.measured_at = Some(now.0));
        self.index.set_tier(device_id, tier);
        tracing::info!(device = device_id, download_mb_per_s = best.download_mb_per_s, upload_mb_per_s = best.upload_mb_per_s, latency_ms = best.latency_ms, tier = ?tier, "connectivity measured");
        Ok(result)
    }
}

/// When and how much of a speed test's upload the server received.
#[derive(Debug, Clone, Copy)]
pub struct SpeedTestUpload {
    pub arrived: Instant,
    pub finished: Instant,
    pub bytes: u64,
}
