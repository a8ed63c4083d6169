//! Flushes: merged heartbeats written to `device_uptime` and `last_heartbeat_at` in multi-row
//! statements, stopped devices at once and online ones staggered.

use domain::fleet::DeviceStatus;
use domain::time::UnixMillis;
use domain::uptime::HourlyUptime;

use super::AgentService;
use crate::store::values_list;
use crate::Error;

/// How often an online device's merged heartbeats are written (pages read them from memory);
/// what a crash can lose.
pub(super) const WRITE_ONLINE_EVERY_MS: i64 = 10 * 60_000;

/// Devices whose merged heartbeats one flush transaction writes.
pub(super) const FLUSH_DEVICES_PER_TRANSACTION: usize = 2_000;

/// What [`AgentService::flush`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flush {
    /// Devices that stopped, and online ones not written for a while. The periodic flush.
    Due,
    /// Everything held in memory: when the server stops.
    Everything,
}

impl AgentService {
    /// Writes merged heartbeats (uptime per device-hour, last heartbeat) of the devices that
    /// `scope` says are due, in multi-row statements, a few thousand devices per transaction
    /// so other writers (state changes, registrations) get the database between them. What
    /// fails to be written goes back to be written next time. Returns how many devices were
    /// written.
    pub async fn flush(&self, scope: Flush, now: UnixMillis) -> Result<usize, Error> {
        let taken = self
            .scan(move |id, d| {
                let online = matches!(
                    d.status,
                    DeviceStatus::Pending | DeviceStatus::Idle | DeviceStatus::Hired
                );
                // Pages read an online device's merged heartbeats from memory: the database needs
                // them for a device that stopped, and every few minutes against a crash.
                let due = scope == Flush::Everything
                    || !online
                    || now.0 - d.written_at >= WRITE_ONLINE_EVERY_MS;
                let last_heartbeat = d.last_heartbeat.filter(|_| d.heartbeat_dirty);
                if !due || (last_heartbeat.is_none() && d.unflushed.is_empty()) {
                    return None;
                }
                d.heartbeat_dirty = false;
                d.written_at = now.0;
                Some((
                    id.to_owned(),
                    last_heartbeat,
                    std::mem::take(&mut d.unflushed),
                ))
            })
            .await?;
        let mut written = 0;
        let mut chunks = taken.chunks(FLUSH_DEVICES_PER_TRANSACTION);
        while let Some(chunk) = chunks.next() {
            if let Err(e) = self.write_flush(chunk).await {
                for (id, last_heartbeat, deltas) in std::iter::once(chunk).chain(chunks).flatten() {
                    self.live.with(id, |d| {
                        d.heartbeat_dirty |= last_heartbeat.is_some();
                        d.written_at = 0;
                        deltas.iter().for_each(|delta| d.merge(*delta));
                    });
                }
                return Err(e);
            }
            written += chunk.len();
        }
        Ok(written)
    }

    pub(super) async fn write_flush(
        &self,
        taken: &[(String, Option<i64>, Vec<HourlyUptime>)],
    ) -> Result<(), Error> {
        let mut tx = self.store.begin_write().await?;
        let heartbeats: Vec<(&str, i64)> = taken
            .iter()
            .filter_map(|(id, at, _)| at.map(|at| (id.as_str(), at)))
            .collect();
        for chunk in heartbeats.chunks(self.store.rows_per_statement(3)) {
            let mut sql = String::from("UPDATE devices SET last_heartbeat_at = CASE id");
            for i in 0..chunk.len() {
                sql.push_str(&format!(" WHEN ${} THEN ${}", 2 * i + 1, 2 * i + 2));
            }
            sql.push_str(" ELSE last_heartbeat_at END WHERE id IN (");
            let ids: Vec<String> = (0..chunk.len())
                .map(|i| format!("${}", 2 * chunk.len() + i + 1))
                .collect();
            sql.push_str(&ids.join(", "));
            sql.push(')');
            let mut query = sqlx::query(&sql);
            for (id, at) in chunk {
                query = query.bind(*id).bind(*at);
            }
            for (id, _) in chunk {
                query = query.bind(*id);
            }
            query.execute(&mut *tx).await?;
        }
        let rows: Vec<(&str, &HourlyUptime)> = taken
            .iter()
            .flat_map(|(id, _, deltas)| deltas.iter().map(move |d| (id.as_str(), d)))
            .collect();
        for chunk in rows.chunks(self.store.rows_per_statement(6)) {
            let mut sql = String::from(
                "INSERT INTO device_uptime (device_id, hour, online_ms, samples, gpu_util_sum, cpu_util_sum) VALUES ",
            );
            sql.push_str(&values_list(chunk.len(), 6));
            sql.push_str(
                // An hour holds at most an hour online, whichever replicas heard the device
                // in it (an agent that reached two replicas is credited by both).
                " ON CONFLICT (device_id, hour) DO UPDATE SET \
                   online_ms = CASE WHEN device_uptime.online_ms + excluded.online_ms > 3600000 \
                     THEN 3600000 ELSE device_uptime.online_ms + excluded.online_ms END, \
                   samples = device_uptime.samples + excluded.samples, \
                   gpu_util_sum = device_uptime.gpu_util_sum + excluded.gpu_util_sum, \
                   cpu_util_sum = device_uptime.cpu_util_sum + excluded.cpu_util_sum",
            );
            let mut query = sqlx::query(&sql);
            for (id, d) in chunk {
                query = query
                    .bind(*id)
                    .bind(d.hour)
                    .bind(d.online_ms)
                    .bind(d.samples)
                    .bind(d.gpu_util_sum)
                    .bind(d.cpu_util_sum);
            }
            query.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

/// A point in the last write period, different for each device, so devices loaded together
/// are not all due in the same flush.
pub(super) fn staggered(now: UnixMillis, id: &str) -> i64 {
    use std::hash::BuildHasher;
    let offset = rustc_hash::FxBuildHasher.hash_one(id) % WRITE_ONLINE_EVERY_MS as u64;
    now.0 - offset as i64
}
