//! The down monitor: a pass over the live fleet that marks silent devices down, long-down ones
//! inactive, and forgets speed tests never finished.

use domain::device_status::DeviceEvent;
use domain::fleet::DeviceStatus;
use domain::proof_of_work::Challenge;
use domain::time::UnixMillis;
use domain::worker::ChallengeOutcome;

use super::AgentService;
use crate::live::LiveDevice;
use crate::Error;

impl AgentService {
    /// Visits every live device on a blocking thread: a pass over a large fleet takes tens of
    /// milliseconds of cache misses, which would stall every request waiting on the async
    /// worker that ran it.
    pub(super) async fn scan<R: Send + 'static>(
        &self,
        visit: impl FnMut(&str, &mut LiveDevice) -> Option<R> + Send + 'static,
    ) -> Result<Vec<R>, Error> {
        let live = self.live.clone();
        tokio::task::spawn_blocking(move || live.collect(visit))
            .await
            .map_err(|e| Error::Task(format!("scanning the live fleet: {e}")))
    }

    /// The monitor's pass: marks silent devices down, long-down devices inactive, and settles
    /// challenges nobody answered in time. Returns how many devices changed.
    pub async fn sweep(&self, now: UnixMillis) -> Result<usize, Error> {
        let down_after_ms = self.config.down_after_secs * 1000;
        let inactive_after_ms = self.config.inactive_after_secs * 1000;
        enum Due {
            Silent,
            DownTooLong,
            Unanswered(Challenge),
        }
        let due = self
            .scan(move |id, d| {
                let mut due = Vec::new();
                // Only a device this replica hears can fall silent here; the rest are another
                // replica's to judge, or the leader's once their replica died.
                if d.watched
                    && matches!(
                        d.status,
                        DeviceStatus::Pending | DeviceStatus::Idle | DeviceStatus::Hired
                    )
                    && now.0 - d.last_seen > down_after_ms
                {
                    due.push(Due::Silent);
                }
                if d.status == DeviceStatus::Down && now.0 - d.status_changed_at > inactive_after_ms
                {
                    due.push(Due::DownTooLong);
                }
                // An unanswered challenge is settled by the replica the agent talks to.
                let watched = d.watched;
                if let Some(open) = d.challenge.take_if(|c| watched && now.0 > c.deadline_at) {
                    due.push(Due::Unanswered(open.challenge));
                }
                (!due.is_empty()).then(|| (id.to_owned(), due))
            })
            .await?;
        // A silent device is marked down only while this replica still serves it.
        let silent: Vec<String> = due
            .iter()
            .filter(|(_, items)| items.iter().any(|i| matches!(i, Due::Silent)))
            .map(|(id, _)| id.clone())
            .collect();
        let served: rustc_hash::FxHashMap<String, Option<String>> = if silent.is_empty() {
            Default::default()
        } else {
            self.still_served(silent).await?.into_iter().collect()
        };
        let mut changed = 0;
        for (device_id, due) in due {
            for item in due {
                let result = match item {
                    Due::Silent => match served.get(&device_id) {
                        Some(by) => self.mark_silent(&device_id, by.as_deref(), now).await,
                        None => Ok(()),
                    },
                    Due::DownTooLong => self
                        .transition(&device_id, DeviceEvent::DownTooLong, now)
                        .await
                        .map(|_| ()),
                    Due::Unanswered(challenge) => {
                        let why = format!("no answer within {} s", challenge.deadline_secs);
                        self.settle_challenge(
                            &device_id,
                            &challenge,
                            Err(why),
                            ChallengeOutcome::Expired,
                            now,
                        )
                        .await
                        .map(|_| ())
                    }
                };
                match result {
                    Ok(()) => changed += 1,
                    // Another event got there first (a heartbeat, the owner): nothing to do.
                    Err(Error::Conflict(why)) => {
                        tracing::debug!(device = %device_id, %why, "sweep skipped")
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(changed)
    }
}
