//! Verification: proof-of-work challenges issued to pending and idle devices, and their answers
//! checked and recorded.

use domain::agent_protocol::VerificationOutcome;
use domain::device_status::DeviceEvent;
use domain::fleet::DeviceKind;
use domain::proof_of_work::{self, Answer, Challenge};
use domain::time::UnixMillis;
use domain::worker::ChallengeOutcome;
use sqlx::Row;

use super::AgentService;
use crate::lifecycle::{apply_event, mirror};
use crate::live::OpenChallenge;
use crate::secret::{random_hex, random_u64};
use crate::{AgentRefusal, Error};

impl AgentService {
    /// A challenge for a device of `kind` with `gpu_count` GPUs. A `spot` check, for a device
    /// hired by a cluster, is one product of half the side (an eighth of one product's work),
    /// small enough to fit beside the renter's workload.
    pub(super) fn new_challenge(&self, kind: DeviceKind, gpu_count: i64, spot: bool) -> Challenge {
        let config = &self.config;
        let (size, products) = match kind {
            DeviceKind::Gpu => (config.gpu_challenge_size, gpu_count.clamp(1, 16) as u32),
            DeviceKind::Cpu => (config.cpu_challenge_size, 1),
        };
        let (size, products) = if spot {
            ((size / 2).max(config.challenge_openings), 1)
        } else {
            (size, products)
        };
        Challenge {
            id: format!("chl-{}", random_hex(8)),
            seed: random_u64(),
            size,
            products,
            openings: config.challenge_openings,
            deadline_secs: config.challenge_deadline_secs,
        }
    }

    pub(super) async fn store_challenge(
        &self,
        device_id: &str,
        challenge: &Challenge,
        now: UnixMillis,
    ) -> Result<(), Error> {
        sqlx::query(
            "INSERT INTO device_challenges (id, device_id, seed, size, products, openings, \
               issued_at, deadline_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&challenge.id)
        .bind(device_id)
        // The seed's bits, stored in a signed column.
        .bind(challenge.seed as i64)
        .bind(i64::from(challenge.size))
        .bind(i64::from(challenge.products))
        .bind(i64::from(challenge.openings))
        .bind(now.0)
        .bind(now.0 + i64::from(challenge.deadline_secs) * 1000)
        .execute(self.store.pool())
        .await?;
        Ok(())
    }

    /// Checks a challenge answer (off the async threads: it multiplies a few rows) and records
    /// the outcome: passing makes the device idle and verified, failing counts towards blocking.
    pub async fn answer_challenge(
        &self,
        device_id: &str,
        challenge_id: &str,
        answer: Answer,
        now: UnixMillis,
    ) -> Result<VerificationOutcome, Error> {
        let open = self
            .live
            .with(device_id, |d| match &d.challenge {
                Some(open) if open.challenge.id == challenge_id => d.challenge.take(),
                _ => None,
            })
            .flatten()
            .ok_or_else(|| AgentRefusal::NoSuchChallenge(challenge_id.to_owned()))?;
        let verdict = if now.0 > open.deadline_at {
            Err(format!(
                "answered after the {} s deadline",
                open.challenge.deadline_secs
            ))
        } else {
            let challenge = open.challenge.clone();
            tokio::task::spawn_blocking(move || proof_of_work::check(&challenge, &answer))
                .await
                .map_err(|e| Error::Invalid(format!("checking the answer failed: {e}")))?
                .map_err(|failure| failure.to_string())
        };
        self.settle_challenge(
            device_id,
            &open.challenge,
            verdict,
            ChallengeOutcome::Failed,
            now,
        )
        .await
    }

    /// Records a challenge's outcome and applies it to the device's status.
    pub(super) async fn settle_challenge(
        &self,
        device_id: &str,
        challenge: &Challenge,
        verdict: Result<(), String>,
        failed_as: ChallengeOutcome,
        now: UnixMillis,
    ) -> Result<VerificationOutcome, Error> {
        let failures = self
            .live
            .with(device_id, |d| {
                d.consecutive_failures = if verdict.is_ok() {
                    0
                } else {
                    d.consecutive_failures + 1
                };
                d.consecutive_failures
            })
            .unwrap_or(1);
        let (outcome, detail) = match &verdict {
            Ok(()) => (
                ChallengeOutcome::Passed,
                format!(
                    "{} × {}³ matrix products checked",
                    challenge.products, challenge.size
                ),
            ),
            Err(why) => (failed_as, why.clone()),
        };
        let mut tx = self.store.begin_write().await?;
        sqlx::query(
            "UPDATE device_challenges SET answered_at = $1, outcome = $2, detail = $3 WHERE id = $4",
        )
        .bind((failed_as != ChallengeOutcome::Expired).then_some(now.0))
        .bind(outcome.as_str())
        .bind(&detail)
        .bind(&challenge.id)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE devices SET verification_failures = $1, \
               verified_at = CASE WHEN $2 = 1 THEN $3 ELSE verified_at END WHERE id = $4",
        )
        .bind(i64::from(failures))
        .bind(i64::from(verdict.is_ok()))
        .bind(now.0)
        .bind(device_id)
        .execute(&mut *tx)
        .await?;
        // The proof settles the rewards held since the device's last one (issue 23's time lock).
        let settled =
            crate::rewards::settle_held(&mut tx, device_id, &challenge.id, verdict.is_ok(), now)
                .await?;
        let event = match &verdict {
            Ok(()) => DeviceEvent::VerificationPassed,
            Err(_) => DeviceEvent::VerificationFailed {
                consecutive: failures,
            },
        };
        // The challenge is settled even where the status cannot follow (the device went down
        // or was hired meanwhile); the record stays true either way.
        let transition = match apply_event(&mut tx, device_id, &event, now).await {
            Ok(t) => Some(t),
            Err(Error::Conflict(why)) => {
                tracing::debug!(device = device_id, %why, "verification outcome left the status as it was");
                None
            }
            Err(e) => return Err(e),
        };
        tx.commit().await?;
        if let Some(t) = &transition {
            mirror(&self.live, &self.index, device_id, t, now);
        }
        let next = match verdict {
            Ok(()) => proof_of_work::next_challenge_at(
                now.0,
                self.config.reverify_after_secs * 1000,
                random_u64(),
            ),
            Err(_) => now.0,
        };
        self.live.with(device_id, |d| d.next_challenge_at = next);
        if verdict.is_err() {
            self.recheck_siblings(device_id, now).await?;
        }
        tracing::info!(device = device_id, %outcome, %detail, rewards_settled = %settled, "verification settled");
        let (status, reason) = self
            .live
            .with(device_id, |d| (d.status, d.reason.to_string()))
            .ok_or_else(|| AgentRefusal::UnknownDevice(device_id.to_owned()))?;
        Ok(VerificationOutcome {
            passed: outcome == ChallengeOutcome::Passed,
            status,
            reason,
        })
    }
}

impl AgentService {
    /// After a failed or missed proof, the same provider's other devices prove their hardware
    /// at their next heartbeat rather than at their drawn time: a provider caught faking one
    /// device may be faking others (issue 23). Devices on another replica are re-checked when
    /// their own proof falls due.
    async fn recheck_siblings(&self, device_id: &str, now: UnixMillis) -> Result<(), Error> {
        let siblings = sqlx::query(
            "SELECT id FROM devices WHERE id <> $1 \
               AND owner_wallet = (SELECT owner_wallet FROM devices WHERE id = $1)",
        )
        .bind(device_id)
        .fetch_all(self.store.pool())
        .await?;
        let mut rechecked = 0usize;
        for row in &siblings {
            let id: String = row.try_get("id")?;
            let brought = self.live.with(&id, |d| {
                let later = d.next_challenge_at > now.0;
                d.next_challenge_at = d.next_challenge_at.min(now.0);
                later
            });
            rechecked += usize::from(brought == Some(true));
        }
        if rechecked > 0 {
            tracing::info!(
                device = device_id,
                rechecked,
                "a failed proof brings the provider's other devices to proof"
            );
        }
        Ok(())
    }
}

pub(super) fn open_challenge(row: &sqlx::any::AnyRow) -> Result<OpenChallenge, Error> {
    let bounded = |column: &str| -> Result<u32, Error> {
        let v: i64 = row.try_get(column)?;
        u32::try_from(v).map_err(|_| Error::Corrupt(format!("challenge parameter {v}")))
    };
    let issued_at: i64 = row.try_get("issued_at")?;
    let deadline_at: i64 = row.try_get("deadline_at")?;
    Ok(OpenChallenge {
        challenge: Challenge {
            id: row.try_get("id")?,
            seed: row.try_get::<i64, _>("seed")? as u64,
            size: bounded("size")?,
            products: bounded("products")?,
            openings: bounded("openings")?,
            deadline_secs: ((deadline_at - issued_at) / 1000).max(0) as u32,
        },
        deadline_at,
    })
}
