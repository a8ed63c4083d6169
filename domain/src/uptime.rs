//! Uptime arithmetic shared by the Worker tab, the explorer and the cluster page: a device's
//! merged heartbeats per UTC hour, summed into days and hours, and its uptime over the window.

use serde::{Deserialize, Serialize};

use crate::time::{UnixMillis, DAY_MS, HOUR_MS};

/// Length of the uptime window the Worker tab and the explorer show.
pub const UPTIME_WINDOW_MS: i64 = 30 * 86_400_000;

/// Share of the window ending at `now` (30 days, or since `created_at` if later) that the device
/// was online, in tenths of a percent, capped at 100 %.
pub fn uptime_permille(online_ms: i64, created_at: UnixMillis, now: UnixMillis) -> u16 {
    let window = (now.0 - created_at.0.max(now.0 - UPTIME_WINDOW_MS)).max(0);
    if window == 0 {
        return 0;
    }
    (online_ms.clamp(0, window) as i128 * 1000 / window as i128) as u16
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UptimeDay {
    /// Start of the UTC day.
    pub day: UnixMillis,
    pub online_ms: i64,
}

impl UptimeDay {
    pub fn permille(&self) -> u16 {
        (self.online_ms.clamp(0, DAY_MS) * 1000 / DAY_MS) as u16
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UtilisationHour {
    /// Start of the UTC hour.
    pub hour: UnixMillis,
    pub online_ms: i64,
    /// Mean of the heartbeats' reports; None for an hour without heartbeats.
    pub gpu_percent: Option<u8>,
    pub cpu_percent: Option<u8>,
}

/// One device's merged heartbeats in one UTC hour, as the database keeps them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HourlyUptime {
    pub hour: i64,
    pub online_ms: i64,
    pub samples: i64,
    pub gpu_util_sum: i64,
    pub cpu_util_sum: i64,
}

/// Online time summed per UTC day for the `days` days ending with today's, oldest first;
/// days without data count zero.
pub fn uptime_by_day(hours: &[HourlyUptime], now: UnixMillis, days: i64) -> Vec<UptimeDay> {
    let today = now.0.div_euclid(DAY_MS) * DAY_MS;
    (0..days)
        .rev()
        .map(|back| {
            let day = today - back * DAY_MS;
            let online_ms = hours
                .iter()
                .filter(|h| (day..day + DAY_MS).contains(&h.hour))
                .map(|h| h.online_ms)
                .sum();
            UptimeDay {
                day: UnixMillis(day),
                online_ms,
            }
        })
        .collect()
}

/// Online time and mean reported utilisation for the `hours` UTC hours ending with the
/// current one, oldest first.
pub fn utilisation_by_hour(
    hours: &[HourlyUptime],
    now: UnixMillis,
    count: i64,
) -> Vec<UtilisationHour> {
    let current = now.0.div_euclid(HOUR_MS) * HOUR_MS;
    (0..count)
        .rev()
        .map(|back| {
            let hour = current - back * HOUR_MS;
            let merged =
                hours
                    .iter()
                    .filter(|h| h.hour == hour)
                    .fold(HourlyUptime::default(), |acc, h| HourlyUptime {
                        hour,
                        online_ms: acc.online_ms + h.online_ms,
                        samples: acc.samples + h.samples,
                        gpu_util_sum: acc.gpu_util_sum + h.gpu_util_sum,
                        cpu_util_sum: acc.cpu_util_sum + h.cpu_util_sum,
                    });
            let mean =
                |sum: i64| (merged.samples > 0).then(|| (sum / merged.samples).clamp(0, 100) as u8);
            UtilisationHour {
                hour: UnixMillis(hour),
                online_ms: merged.online_ms,
                gpu_percent: mean(merged.gpu_util_sum),
                cpu_percent: mean(merged.cpu_util_sum),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uptime_counts_over_thirty_days_or_the_devices_life() {
        let now = UnixMillis(100 * DAY_MS);
        // Created a day ago, online 12 hours of it.
        assert_eq!(
            uptime_permille(12 * HOUR_MS, UnixMillis(99 * DAY_MS), now),
            500
        );
        // Old device: the window is 30 days.
        assert_eq!(uptime_permille(3 * DAY_MS, UnixMillis(0), now), 100);
        assert_eq!(
            uptime_permille(40 * DAY_MS, UnixMillis(0), now),
            1000,
            "capped"
        );
        assert_eq!(uptime_permille(5, now, now), 0, "no window yet");
    }

    #[test]
    fn hourly_uptime_sums_into_days_and_hours_oldest_first() {
        let now = UnixMillis(10 * DAY_MS + 5 * HOUR_MS);
        let row = |hour: i64, online_ms: i64, samples: i64, gpu: i64| HourlyUptime {
            hour,
            online_ms,
            samples,
            gpu_util_sum: gpu,
            cpu_util_sum: samples * 10,
        };
        let hours = [
            row(10 * DAY_MS, HOUR_MS, 4, 200),
            row(10 * DAY_MS + HOUR_MS, HOUR_MS / 2, 2, 20),
            // Written in two flushes: both count.
            row(10 * DAY_MS + 5 * HOUR_MS, 1000, 1, 90),
            row(10 * DAY_MS + 5 * HOUR_MS, 1000, 1, 10),
            row(8 * DAY_MS + 3 * HOUR_MS, DAY_MS, 1, 0),
        ];
        let days = uptime_by_day(&hours, now, 3);
        assert_eq!(days.len(), 3);
        assert_eq!(
            days[0],
            UptimeDay {
                day: UnixMillis(8 * DAY_MS),
                online_ms: DAY_MS
            }
        );
        assert_eq!(days[1].online_ms, 0);
        assert_eq!(days[2].online_ms, HOUR_MS * 3 / 2 + 2000);
        assert_eq!(days[0].permille(), 1000);

        let by_hour = utilisation_by_hour(&hours, now, 6);
        assert_eq!(by_hour.len(), 6);
        assert_eq!(by_hour[0].hour, UnixMillis(10 * DAY_MS));
        assert_eq!(
            (by_hour[0].gpu_percent, by_hour[0].cpu_percent),
            (Some(50), Some(10))
        );
        assert_eq!(by_hour[2].gpu_percent, None, "no heartbeats that hour");
        assert_eq!(by_hour[5].online_ms, 2000);
        assert_eq!(by_hour[5].gpu_percent, Some(50));
    }
}
