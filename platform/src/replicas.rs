//! Several server replicas on one PostgreSQL (issue 16, DESIGN.md §4): each serving process's
//! row, renewed while it lives; leases of work one process does at a time; and the change feed,
//! from which every replica mirrors devices changed through the others into its live fleet and
//! fleet index. No consensus of our own: the database's row locks and conditional updates
//! decide, and PostgreSQL's `NOTIFY` only wakes followers early (they also poll).

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, OnceLock};

use domain::time::UnixMillis;
use sqlx::{AnyConnection, Row};

use crate::store::Store;
use crate::Error;

/// The channel `NOTIFY` wakes followers of the change feed on.
pub const CHANGES_CHANNEL: &str = "gc_device_changes";

/// Changes are kept this long, well past any follower's re-read window.
const KEEP_CHANGES_MS: i64 = 10 * 60_000;

/// A follower reads again the changes of this last stretch of time as well as the new ones:
/// a transaction that took its sequence number before another but committed after it shows
/// up behind the follower's position, within this long.
pub const REREAD_WINDOW_MS: i64 = 10_000;

#[derive(Clone)]
pub struct ReplicaService {
    store: Store,
    id: Arc<str>,
    /// When this replica first renewed its row (0 before): it judges no orphan within a down
    /// window of it.
    started_at: Arc<AtomicI64>,
    /// Where other replicas reach this one's tunnel listener, once it listens (and can be
    /// reached).
    tunnel_address: Arc<OnceLock<String>>,
}

impl ReplicaService {
    pub(crate) fn new(store: Store) -> ReplicaService {
        ReplicaService {
            store,
            id: format!("replica-{}", crate::secret::random_hex(6)).into(),
            started_at: Arc::default(),
            tunnel_address: Arc::default(),
        }
    }

    /// This process's name among the replicas.
    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn started_at(&self) -> UnixMillis {
        UnixMillis(self.started_at.load(Ordering::Relaxed))
    }

    /// Says where other replicas reach this one's tunnel listener (`host:port`), from its next
    /// renewal on. Set once, when the listener is bound.
    pub fn advertise_tunnels_at(&self, address: String) {
        let _ = self.tunnel_address.set(address);
    }

    /// Records this replica alive at `now`: at start-up (which starts it), then every few
    /// seconds.
    pub async fn renew(&self, now: UnixMillis) -> Result<(), Error> {
        let _ = self
            .started_at
            .compare_exchange(0, now.0, Ordering::Relaxed, Ordering::Relaxed);
        sqlx::query(
            "INSERT INTO replicas (id, started_at, renewed_at, tunnel_address) \
             VALUES ($1, $2, $3, $4) \
             ON CONFLICT (id) DO UPDATE SET renewed_at = excluded.renewed_at, \
               tunnel_address = excluded.tunnel_address",
        )
        .bind(self.id.as_ref())
        .bind(self.started_at().0)
        .bind(now.0)
        .bind(self.tunnel_address.get().cloned())
        .execute(self.store.pool())
        .await?;
        Ok(())
    }

    /// Holds lease `name` until `now + ttl_ms` when it is free, expired or already this
    /// replica's; false when another holds it. One conditional upsert, so two replicas asking
    /// at once cannot both get it.
    pub async fn hold(&self, name: &str, ttl_ms: i64, now: UnixMillis) -> Result<bool, Error> {
        let held = sqlx::query(
            "INSERT INTO leases (name, holder, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, \
               expires_at = excluded.expires_at \
             WHERE leases.holder = excluded.holder OR leases.expires_at < $4",
        )
        .bind(name)
        .bind(self.id.as_ref())
        .bind(now.0 + ttl_ms)
        .bind(now.0)
        .execute(self.store.pool())
        .await?
        .rows_affected();
        Ok(held == 1)
    }

    /// The tunnel listener of the live replica, other than this one, that device `device_id`'s
    /// agent is connected to; None when it is this one's, nobody's, or a replica that cannot
    /// be reached or has not renewed its row within `alive_ms`.
    pub async fn tunnels_of_device_at(
        &self,
        device_id: &str,
        alive_ms: i64,
        now: UnixMillis,
    ) -> Result<Option<String>, Error> {
        Ok(sqlx::query_scalar(
            "SELECT r.tunnel_address FROM devices d JOIN replicas r ON r.id = d.served_by \
             WHERE d.id = $1 AND r.id <> $2 AND r.renewed_at > $3 \
               AND r.tunnel_address IS NOT NULL",
        )
        .bind(device_id)
        .bind(self.id.as_ref())
        .bind(now.0 - alive_ms)
        .fetch_optional(self.store.pool())
        .await?)
    }

    /// Gives lease `name` up if this replica holds it (a clean stop), so another takes it at
    /// once rather than when it expires.
    pub async fn release(&self, name: &str) -> Result<(), Error> {
        sqlx::query("DELETE FROM leases WHERE name = $1 AND holder = $2")
            .bind(name)
            .bind(self.id.as_ref())
            .execute(self.store.pool())
            .await?;
        Ok(())
    }

    /// The changes recorded after `after`, and those of the last [`REREAD_WINDOW_MS`] (the
    /// caller skips what it applied), oldest first: `(seq, device id)`.
    pub async fn changes_since(
        &self,
        after: i64,
        now: UnixMillis,
        limit: u32,
    ) -> Result<Vec<(i64, String)>, Error> {
        let rows = sqlx::query(
            "SELECT seq, device_id FROM device_changes WHERE seq > $1 OR at > $2 \
             ORDER BY seq LIMIT $3",
        )
        .bind(after)
        .bind(now.0 - REREAD_WINDOW_MS)
        .bind(i64::from(limit))
        .fetch_all(self.store.pool())
        .await?;
        rows.iter()
            .map(|row| Ok((row.try_get("seq")?, row.try_get("device_id")?)))
            .collect()
    }

    /// The newest change's sequence number (0 when there is none): where a replica that has
    /// just rebuilt from the database starts following.
    pub async fn newest_change(&self) -> Result<i64, Error> {
        let newest: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM device_changes")
            .fetch_one(self.store.pool())
            .await?;
        Ok(newest.unwrap_or(0))
    }

    /// Deletes changes every follower has long read. Returns how many.
    pub async fn prune_changes(&self, now: UnixMillis) -> Result<u64, Error> {
        Ok(sqlx::query("DELETE FROM device_changes WHERE at < $1")
            .bind(now.0 - KEEP_CHANGES_MS)
            .execute(self.store.pool())
            .await?
            .rows_affected())
    }
}

/// Records, in the caller's transaction, that `device_id` changed in a way replicas mirror,
/// and on PostgreSQL wakes the followers (the notification goes out when the transaction
/// commits, and not at all if it rolls back).
pub(crate) async fn record_change(
    conn: &mut AnyConnection,
    device_id: &str,
    now: UnixMillis,
) -> Result<(), Error> {
    sqlx::query("INSERT INTO device_changes (device_id, at) VALUES ($1, $2)")
        .bind(device_id)
        .bind(now.0)
        .execute(&mut *conn)
        .await?;
    if crate::store::Backend::of_connection(conn) == crate::store::Backend::Postgres {
        sqlx::query(&format!("NOTIFY {CHANGES_CHANNEL}"))
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Wakes a follower of the change feed when a replica commits a change (PostgreSQL's
/// `LISTEN`; a lost connection is made again at the next wait).
pub struct ChangeListener(sqlx::postgres::PgListener);

impl ChangeListener {
    pub async fn connect(database_url: &str) -> Result<ChangeListener, Error> {
        let mut listener = sqlx::postgres::PgListener::connect(database_url).await?;
        listener.listen(CHANGES_CHANNEL).await?;
        Ok(ChangeListener(listener))
    }

    /// Waits for the next notification.
    pub async fn wait(&mut self) -> Result<(), Error> {
        self.0.recv().await?;
        Ok(())
    }
}

/// Where a follower of the change feed stands: the highest sequence number applied, and the
/// numbers applied within the re-read window (so each change is applied once).
#[derive(Debug, Default)]
pub struct FeedPosition {
    pub last: i64,
    recent: std::collections::BTreeSet<i64>,
}

impl FeedPosition {
    pub fn starting_at(last: i64) -> FeedPosition {
        FeedPosition {
            last,
            recent: Default::default(),
        }
    }

    /// The devices of `changes` not applied yet, each once, in order; marks them applied.
    pub fn take_new(&mut self, changes: &[(i64, String)]) -> Vec<String> {
        let mut devices: Vec<String> = Vec::new();
        for (seq, device) in changes {
            // Applied already (a change at or below the position and not in the window was
            // applied before the window moved past it, and is not read again).
            if !self.recent.insert(*seq) {
                continue;
            }
            if !devices.contains(device) {
                devices.push(device.clone());
            }
        }
        if let Some(&newest) = self.recent.iter().next_back() {
            self.last = self.last.max(newest);
        }
        // What is older than the window's oldest re-read change can never come back.
        let oldest = changes.first().map_or(self.last, |(seq, _)| *seq);
        self.recent = self.recent.split_off(&oldest);
        devices
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn changes(list: &[(i64, &str)]) -> Vec<(i64, String)> {
        list.iter().map(|(s, d)| (*s, (*d).to_owned())).collect()
    }

    #[test]
    fn each_change_is_applied_once_even_when_it_commits_behind_a_later_one() {
        let mut at = FeedPosition::starting_at(10);
        // Sequence 12 committed first; 11 is still in flight.
        assert_eq!(at.take_new(&changes(&[(12, "b")])), vec!["b"]);
        assert_eq!(at.last, 12);
        // The re-read window brings 12 again, and now 11.
        assert_eq!(at.take_new(&changes(&[(11, "a"), (12, "b")])), vec!["a"]);
        assert_eq!(
            at.take_new(&changes(&[(11, "a"), (12, "b")])),
            Vec::<String>::new()
        );
        assert_eq!(
            at.take_new(&changes(&[(11, "a"), (12, "b"), (13, "a"), (14, "a")])),
            vec!["a"],
            "one refresh per device per batch"
        );
        assert_eq!(at.last, 14);
    }
}
