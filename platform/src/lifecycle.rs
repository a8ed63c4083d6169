//! The device lifecycle: every status change of a device goes through [`apply_event`], which
//! asks the domain state machine (`domain::device_status`), updates the row conditionally on the
//! status it read, and records the transition with its reason in `device_events`; once committed,
//! [`mirror`] copies it into the live fleet and the fleet index.

use domain::device_status::{DeviceEvent, DeviceState, Transition};
use domain::fleet::DeviceStatus;
use domain::time::UnixMillis;
use domain::worker::DeviceEventKind;
use sqlx::AnyConnection;

use crate::index::FleetIndex;
use crate::live::LiveFleet;
use crate::rows::enum_in;
use crate::store::{flag, flag_sql};
use crate::Error;

/// A device's status as the database has it now.
pub(crate) async fn stored_status(
    conn: &mut AnyConnection,
    device_id: &str,
) -> Result<DeviceStatus, Error> {
    let row = sqlx::query("SELECT status FROM devices WHERE id = $1")
        .bind(device_id)
        .fetch_optional(conn)
        .await?
        .ok_or_else(|| Error::NotFound(format!("no device '{device_id}'")))?;
    enum_in(&row, "status", DeviceStatus::parse)
}

/// Appends one line to a device's history.
pub(crate) async fn record_event(
    conn: &mut AnyConnection,
    device_id: &str,
    at: UnixMillis,
    kind: DeviceEventKind,
    change: Option<(Option<DeviceStatus>, DeviceStatus)>,
    detail: &str,
) -> Result<(), Error> {
    sqlx::query(
        "INSERT INTO device_events (device_id, at, kind, from_status, to_status, detail) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(device_id)
    .bind(at.0)
    .bind(kind.as_str())
    .bind(change.and_then(|(from, _)| from).map(DeviceStatus::as_str))
    .bind(change.map(|(_, to)| to.as_str()))
    .bind(detail)
    .execute(conn)
    .await?;
    Ok(())
}

/// Applies `event` to the stored device through the domain state machine and records the
/// transition with its reason, inside the caller's transaction. The update is conditional on the
/// status read, so a concurrent change (another replica) makes this fail instead of overwriting it.
/// The change goes on the change feed, so every replica mirrors it.
pub(crate) async fn apply_event(
    conn: &mut AnyConnection,
    device_id: &str,
    event: &DeviceEvent,
    now: UnixMillis,
) -> Result<Transition, Error> {
    apply_event_where(conn, device_id, event, now, None).await
}

/// [`apply_event`] only while the replica serving the device is `served_by` (None: no replica
/// has claimed it): a replica's silence, or a dead replica's, decides nothing about a device
/// another replica hears now (issue 16). A device claimed meanwhile fails with a conflict.
pub(crate) async fn apply_event_if_served_by(
    conn: &mut AnyConnection,
    device_id: &str,
    event: &DeviceEvent,
    now: UnixMillis,
    served_by: Option<&str>,
) -> Result<Transition, Error> {
    apply_event_where(conn, device_id, event, now, Some(served_by)).await
}

async fn apply_event_where(
    conn: &mut AnyConnection,
    device_id: &str,
    event: &DeviceEvent,
    now: UnixMillis,
    served_by: Option<Option<&str>>,
) -> Result<Transition, Error> {
    let row = sqlx::query(concat!(
        "SELECT status, ",
        flag_sql!("verified"),
        " FROM devices WHERE id = $1"
    ))
    .bind(device_id)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| Error::NotFound(format!("no device '{device_id}'")))?;
    let from = DeviceState {
        status: enum_in(&row, "status", DeviceStatus::parse)?,
        verified: flag(&row, "verified")?,
    };
    let transition = from
        .apply(event)
        .map_err(|e| Error::Conflict(e.to_string()))?;
    let guard = if served_by.is_some() {
        " AND served_by IS NOT DISTINCT FROM $7"
    } else {
        ""
    };
    let sql = format!(
        "UPDATE devices SET status = $1, verified = $2, status_reason = $3, \
           status_changed_at = CASE WHEN status = $1 THEN status_changed_at ELSE $4 END \
         WHERE id = $5 AND status = $6{guard}"
    );
    let mut update = sqlx::query(&sql)
        .bind(transition.to.status.as_str())
        .bind(transition.to.verified)
        .bind(&transition.reason)
        .bind(now.0)
        .bind(device_id)
        .bind(from.status.as_str());
    if let Some(served_by) = served_by {
        update = update.bind(served_by);
    }
    let changed = update.execute(&mut *conn).await?.rows_affected();
    if changed == 0 {
        return Err(Error::Conflict(
            "the device changed at the same moment; try again".into(),
        ));
    }
    record_event(
        conn,
        device_id,
        now,
        DeviceEventKind::Status,
        Some((Some(from.status), transition.to.status)),
        &transition.reason,
    )
    .await?;
    crate::replicas::record_change(conn, device_id, now).await?;
    Ok(transition)
}

/// Mirrors a committed transition into the live fleet and the fleet index.
pub(crate) fn mirror(
    live: &LiveFleet,
    index: &FleetIndex,
    device_id: &str,
    t: &Transition,
    now: UnixMillis,
) {
    if t.to.status == DeviceStatus::Terminated {
        live.remove(device_id);
        index.remove(device_id);
        return;
    }
    index.set_status(device_id, t.to.status, t.to.verified, now.0);
    live.with(device_id, |d| {
        if d.status != t.to.status {
            d.status_changed_at = now.0;
        }
        d.status = t.to.status;
        d.verified = t.to.verified;
        d.reason = t.reason.as_str().into();
    });
}
