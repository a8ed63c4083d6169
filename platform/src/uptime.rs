//! Reads of the merged heartbeats per device and UTC hour (`device_uptime`), for the charts and
//! uptime figures of the Worker tab and the cluster page.

use domain::uptime::HourlyUptime;
use sqlx::{AnyConnection, Row};

use crate::Error;

/// A device's merged heartbeats per UTC hour from `since` (UTC ms), as written so far.
pub(crate) async fn uptime_hours(
    conn: &mut AnyConnection,
    device_id: &str,
    since: i64,
) -> Result<Vec<HourlyUptime>, Error> {
    sqlx::query(
        "SELECT hour, online_ms, samples, gpu_util_sum, cpu_util_sum FROM device_uptime \
         WHERE device_id = $1 AND hour >= $2",
    )
    .bind(device_id)
    .bind(since)
    .fetch_all(conn)
    .await?
    .iter()
    .map(|r| {
        Ok(HourlyUptime {
            hour: r.try_get("hour")?,
            online_ms: r.try_get("online_ms")?,
            samples: r.try_get("samples")?,
            gpu_util_sum: r.try_get("gpu_util_sum")?,
            cpu_util_sum: r.try_get("cpu_util_sum")?,
        })
    })
    .collect()
}
