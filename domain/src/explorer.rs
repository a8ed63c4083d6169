//! The explorer's public read models: filters and pages of the device list, the public view of
//! a device and a cluster, and what a search box entry is. Only what anyone may see: no device
//! names (owners choose them), no renter identities, no workloads, no credentials.

use serde::{Deserialize, Serialize};

use crate::catalog::GpuCatalog;
use crate::cluster::{ClusterKind, ClusterStatus, Hardware, Purpose};
use crate::compliance::{Attestations, Facility};
use crate::fleet::{ConnectivityTier, DeviceKind, DeviceStatus, OperatingSystem};
use crate::ledger::DailyAmount;
use crate::money::{MicroUsd, Tokens};
use crate::time::{UnixMillis, DAY_MS, HOUR_MS};
use crate::uptime::UptimeDay;
use crate::worker::{DeviceDetail, DeviceHistoryEntry, VerificationRecord};

/// Rows per page of every explorer list.
pub const PAGE_ROWS: usize = 50;

/// Which devices the list shows; every part is optional and they combine.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FleetFilter {
    /// `cpu` or a catalog GPU model.
    pub hardware: Option<String>,
    /// ISO alpha-2 code.
    pub country: Option<String>,
    pub tier: Option<ConnectivityTier>,
    pub status: Option<DeviceStatus>,
}

impl FleetFilter {
    /// The filter of a query string's raw values (empty means "any"), each checked with an
    /// error that names the field and what it accepts.
    pub fn parse(
        hardware: &str,
        country: &str,
        tier: &str,
        status: &str,
        catalog: &GpuCatalog,
        known_country: impl Fn(&str) -> bool,
    ) -> Result<FleetFilter, String> {
        let given = |s: &str| {
            let s = s.trim();
            (!s.is_empty()).then(|| s.to_owned())
        };
        let hardware = given(hardware)
            .map(|h| Hardware::parse(&h, catalog).map(|h| h.as_str().to_owned()))
            .transpose()?;
        let country = given(country)
            .map(|c| {
                let code = c.to_ascii_uppercase();
                if known_country(&code) {
                    Ok(code)
                } else {
                    Err(format!("'{c}' is not an ISO country code (like DE or US)"))
                }
            })
            .transpose()?;
        let tier = given(tier)
            .map(|t| ConnectivityTier::parse(&t).map_err(|e| e.to_string()))
            .transpose()?;
        let status = given(status)
            .map(|s| DeviceStatus::parse(&s).map_err(|e| e.to_string()))
            .transpose()?;
        Ok(FleetFilter {
            hardware,
            country,
            tier,
            status,
        })
    }
}

/// The device list's query string as given (empty means "any"): what the page's GET form and
/// the JSON API both send.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema, utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
#[serde(deny_unknown_fields, default)]
pub struct DeviceListQuery {
    pub hardware: String,
    pub country: String,
    pub tier: String,
    pub status: String,
    pub after: String,
    pub before: String,
    pub last: bool,
}

/// Where in a list a page starts. Pages are keyed by the id next to them, never by an offset,
/// so the last page costs what the first does.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum PageAt {
    #[default]
    First,
    /// The rows after this key.
    After(String),
    /// The rows before this key.
    Before(String),
    Last,
}

impl PageAt {
    /// From the `after`, `before` and `last` query parameters (at most one may be given).
    pub fn parse(after: &str, before: &str, last: bool) -> Result<PageAt, String> {
        match (after.trim(), before.trim(), last) {
            ("", "", false) => Ok(PageAt::First),
            (a, "", false) => Ok(PageAt::After(a.to_owned())),
            ("", b, false) => Ok(PageAt::Before(b.to_owned())),
            ("", "", true) => Ok(PageAt::Last),
            _ => Err("give at most one of after, before and last".into()),
        }
    }
}

/// A page of a list, with the keys of the pages beside it (None at either end).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Page<T> {
    pub rows: Vec<T>,
    /// How many rows the whole list (with its filter) has.
    pub matching: i64,
    /// Ask for `Before(previous)` to get the page before this one.
    pub previous: Option<String>,
    /// Ask for `After(next)` to get the page after this one.
    pub next: Option<String>,
}

/// One device in the public list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FleetDevice {
    pub id: String,
    pub kind: DeviceKind,
    /// Catalog model; None for CPU devices and GPUs outside the catalog.
    pub gpu_model: Option<String>,
    pub gpu_count: i64,
    pub country: String,
    pub tier: Option<ConnectivityTier>,
    pub status: DeviceStatus,
    pub verified: bool,
    /// The owner's wallet (public on chain anyway).
    pub provider: String,
    /// When the device entered its status.
    pub status_since: UnixMillis,
}

/// A status change, violation or verification step anyone may see; credential events are the
/// owner's business and are left out.
fn is_public(entry: &DeviceHistoryEntry) -> bool {
    entry.kind != crate::worker::DeviceEventKind::Credential
}

/// The device page of the explorer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PublicDevice {
    pub id: String,
    pub provider: String,
    pub kind: DeviceKind,
    pub os: OperatingSystem,
    pub gpu_model: Option<String>,
    pub gpu_count: i64,
    /// What the agent reported, for GPUs the catalog does not know.
    pub reported_gpus: String,
    pub cpu_model: String,
    pub cpu_cores: i64,
    pub ram_gb: i64,
    pub disk_gb: i64,
    pub country: String,
    pub tier: Option<ConnectivityTier>,
    pub download_mb_per_s: Option<i64>,
    pub upload_mb_per_s: Option<i64>,
    /// The certified facility an operator placed it in (its SOC 2 / HIPAA attestation).
    pub facility: Option<Facility>,
    /// What it is attested for now: nothing once its facility's certification lapsed.
    pub attested: Attestations,
    pub status: DeviceStatus,
    pub status_reason: String,
    pub status_changed_at: Option<UnixMillis>,
    pub verified: bool,
    pub simulated: bool,
    pub agent_version: Option<String>,
    pub created_at: UnixMillis,
    pub last_heartbeat_at: Option<UnixMillis>,
    /// Online share of the last 30 days, in tenths of a percent.
    pub uptime_permille: u16,
    pub uptime_days: Vec<UptimeDay>,
    /// Hire earnings settled so far, before fees.
    pub earned: MicroUsd,
    /// Newest first.
    pub history: Vec<DeviceHistoryEntry>,
    /// Newest first.
    pub verifications: Vec<VerificationRecord>,
    /// Newest first.
    pub clusters_served: Vec<ServedCluster>,
    /// Newest block first.
    pub rewards: Vec<DeviceBlockLine>,
}

/// A cluster a device served, without the renter's name for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ServedCluster {
    pub cluster_id: String,
    pub joined_at: i64,
    pub left_at: Option<i64>,
    pub earned: MicroUsd,
}

/// One device's line in one block: its score and reward, or why it earned nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeviceBlockLine {
    pub block: i64,
    pub device_id: String,
    pub provider: String,
    pub kind: DeviceKind,
    pub score: i64,
    /// Share of its pool in parts per million.
    pub share_ppm: i64,
    pub reward: Tokens,
    pub ineligible: Option<String>,
}

impl PublicDevice {
    /// What of the owner's view of a device the explorer shows.
    pub fn of(
        detail: DeviceDetail,
        provider: String,
        facility: Option<Facility>,
        rewards: Vec<DeviceBlockLine>,
        now: UnixMillis,
    ) -> PublicDevice {
        let s = detail.summary;
        PublicDevice {
            id: s.id,
            provider,
            kind: s.kind,
            os: detail.os,
            gpu_model: s.gpu_model,
            gpu_count: s.gpu_count,
            reported_gpus: detail.reported_gpus,
            cpu_model: detail.cpu_model,
            cpu_cores: detail.cpu_cores,
            ram_gb: detail.ram_gb,
            disk_gb: detail.disk_gb,
            country: s.country,
            tier: s.tier,
            download_mb_per_s: detail.download_mb_per_s,
            upload_mb_per_s: detail.upload_mb_per_s,
            attested: facility
                .as_ref()
                .map_or(Attestations::NONE, |f| f.attestations_at(now)),
            facility,
            status: s.status,
            status_reason: detail.status_reason,
            status_changed_at: detail.status_changed_at,
            verified: s.verified,
            simulated: s.simulated,
            agent_version: detail.agent_version,
            created_at: detail.created_at,
            last_heartbeat_at: s.last_heartbeat_at,
            uptime_permille: s.uptime_30d_permille,
            uptime_days: detail.uptime_days,
            earned: s.earned,
            history: detail.history.into_iter().filter(is_public).collect(),
            verifications: detail.verifications,
            clusters_served: detail
                .clusters_served
                .into_iter()
                .map(|h| ServedCluster {
                    cluster_id: h.cluster_id,
                    joined_at: h.joined_at,
                    left_at: h.left_at,
                    earned: h.earned,
                })
                .collect(),
            rewards,
        }
    }
}

/// One cluster in the public list and on its page: what was hired, where and for how long;
/// never who hired it, what they named it or what it runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PublicCluster {
    pub id: String,
    pub kind: ClusterKind,
    pub purpose: Purpose,
    /// `cpu` or a catalog GPU model.
    pub hardware: String,
    /// GPUs (or CPU devices) hired.
    pub units: i64,
    /// Where the renter asked for; empty for anywhere.
    pub countries: Vec<String>,
    pub status: ClusterStatus,
    pub hours: i64,
    pub rate_per_unit_hour: MicroUsd,
    pub created_at: UnixMillis,
    pub running_at: Option<UnixMillis>,
    pub ends_at: Option<UnixMillis>,
    pub finished_at: Option<UnixMillis>,
    /// Unit-hours the devices actually served so far.
    pub compute_hours: i64,
}

/// A device of a cluster, on the cluster's public page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PublicClusterDevice {
    pub device_id: String,
    pub role: crate::cluster::ClusterRole,
    pub units: i64,
    pub country: String,
    pub joined_at: UnixMillis,
    pub left_at: Option<UnixMillis>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PublicClusterDetail {
    pub cluster: PublicCluster,
    pub devices: Vec<PublicClusterDevice>,
}

/// A block's page: its summary and one page of its per-device lines, in device id order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BlockDetail {
    pub block: crate::rewards::BlockSummary,
    pub gpu_pool: Tokens,
    pub cpu_pool: Tokens,
    pub lines: Page<DeviceBlockLine>,
}

/// A block's lines as CSV: one row per device, rewards in token base units.
pub fn block_csv(lines: &[DeviceBlockLine]) -> String {
    let mut out = String::from(
        "block,device_id,provider,kind,score,share_ppm,reward_base_units,ineligible\r\n",
    );
    for l in lines {
        out.push_str(&format!(
            "{},{},{},{},{},{},{},\"{}\"\r\n",
            l.block,
            l.device_id,
            l.provider,
            l.kind,
            l.score,
            l.share_ppm,
            l.reward.units(),
            l.ineligible.as_deref().unwrap_or("").replace('"', "\"\""),
        ));
    }
    out
}

/// A provider's public page: their devices and what the network paid them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PublicWallet {
    pub address: String,
    /// The first of their devices in id order.
    pub devices: Page<FleetDevice>,
    /// Hire earnings settled to their devices, before fees.
    pub hire_earned: MicroUsd,
    pub rewards_earned: Tokens,
    pub blocks_rewarded: i64,
}

/// What the network earned its providers: hire earnings settled and block rewards paid.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NetworkEarnings {
    pub hire_earned: MicroUsd,
    pub rewards_paid: Tokens,
    pub blocks: i64,
}

/// The explorer's front page beyond the live supply: what was recently hired and rewarded.
/// Figures that need the database are read at most once a minute, never per request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NetworkActivity {
    /// Newest first.
    pub recent_clusters: Vec<PublicCluster>,
    /// The devices rewarded most in the newest block, most first.
    pub trending: Vec<DeviceBlockLine>,
    /// Unit-hours (GPU-hours, or CPU-device-hours) served per UTC day, oldest first.
    pub daily_compute_hours: Vec<DailyAmount>,
    pub earnings: NetworkEarnings,
    /// When these figures were read.
    pub as_of: UnixMillis,
}

/// A stretch of time a device served a cluster with `units`: joined, and left (None: still).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServedSpan {
    pub units: i64,
    pub joined_at: i64,
    pub left_at: Option<i64>,
}

/// Unit-hours served on each of the `days` UTC days ending with `now`'s, oldest first: each
/// span is split at midnight and counted in whole hours per day, rounded down.
pub fn daily_unit_hours(spans: &[ServedSpan], now: i64, days: i64) -> Vec<DailyAmount> {
    let today = now.div_euclid(DAY_MS) * DAY_MS;
    let first = today - (days - 1) * DAY_MS;
    let mut unit_ms = vec![0i64; days.max(0) as usize];
    for s in spans {
        let start = s.joined_at.max(first);
        let end = s.left_at.unwrap_or(now).min(now);
        let mut at = start;
        while at < end {
            let day = (at - first) / DAY_MS;
            let day_end = first + (day + 1) * DAY_MS;
            let until = end.min(day_end);
            unit_ms[day as usize] += s.units * (until - at);
            at = until;
        }
    }
    unit_ms
        .into_iter()
        .enumerate()
        .map(|(i, ms)| DailyAmount {
            day_ms: first + i as i64 * DAY_MS,
            units: ms / HOUR_MS,
        })
        .collect()
}

/// What a search box entry can be, by its shape alone; whether it exists is the server's job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SearchShape {
    Device(String),
    Cluster(String),
    Block(i64),
    Wallet(String),
    /// Anything else: a model, a country, a word.
    Text(String),
}

impl SearchShape {
    pub fn of(query: &str) -> SearchShape {
        let q = query.trim();
        let lower = q.to_ascii_lowercase();
        if lower.starts_with("dev-") {
            return SearchShape::Device(lower);
        }
        if lower.starts_with("cl-") {
            return SearchShape::Cluster(lower);
        }
        let number = lower.strip_prefix("block").unwrap_or(&lower).trim();
        let number = number.strip_prefix('#').unwrap_or(number);
        if let Ok(n) = number.parse::<i64>() {
            if n >= 0 {
                return SearchShape::Block(n);
            }
        }
        if crate::wallet::WalletAddress::parse(q).is_ok() {
            return SearchShape::Wallet(q.to_owned());
        }
        SearchShape::Text(q.to_owned())
    }
}

/// Where a search leads: straight to a page, or to suggestions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum SearchOutcome {
    /// The path of the page it found.
    Found(String),
    NotFound {
        query: String,
        suggestions: Vec<Suggestion>,
    },
}

/// A page that may be what the searcher meant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Suggestion {
    pub label: String,
    pub path: String,
}

/// Pages for a free-text query: GPU models and countries whose names contain it lead to the
/// device list filtered by them; always ends with the unfiltered lists, so there is a way on.
pub fn text_suggestions(
    query: &str,
    catalog: &GpuCatalog,
    countries: &[crate::country::Country],
) -> Vec<Suggestion> {
    let needle = query.trim().to_lowercase();
    let mut out = Vec::new();
    if !needle.is_empty() {
        for model in catalog.models() {
            if model.name.to_lowercase().contains(&needle) {
                out.push(Suggestion {
                    label: format!("{} devices", model.name),
                    path: format!("/explorer/devices?hardware={}", encode(&model.name)),
                });
            }
        }
        for c in countries {
            if c.name.to_lowercase().contains(&needle) || c.code.to_lowercase() == needle {
                out.push(Suggestion {
                    label: format!("Devices in {}", c.name),
                    path: format!("/explorer/devices?country={}", c.code),
                });
            }
        }
    }
    out.truncate(8);
    out.push(Suggestion {
        label: "All devices".into(),
        path: "/explorer/devices".into(),
    });
    out.push(Suggestion {
        label: "Recent clusters".into(),
        path: "/explorer/clusters".into(),
    });
    out.push(Suggestion {
        label: "Reward blocks".into(),
        path: "/explorer/blocks".into(),
    });
    out
}

/// Percent-encodes a query-string value (RFC 3986 unreserved characters pass).
pub fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A list path with `filter` and one more pair (the page key) in its query string.
pub fn list_path(base: &str, pairs: &[(&str, String)]) -> String {
    if pairs.is_empty() {
        return base.to_owned();
    }
    let query: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", encode(v)))
        .collect();
    format!("{base}?{}", query.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known(code: &str) -> bool {
        matches!(code, "DE" | "US")
    }

    #[test]
    fn a_filter_checks_each_field_and_names_it() {
        let catalog = GpuCatalog::builtin();
        let f = FleetFilter::parse("H100 80GB SXM", "de", "high", "idle", &catalog, known).unwrap();
        assert_eq!(f.hardware.as_deref(), Some("H100 80GB SXM"));
        assert_eq!(f.country.as_deref(), Some("DE"));
        assert_eq!(f.tier, Some(ConnectivityTier::High));
        assert_eq!(f.status, Some(DeviceStatus::Idle));
        assert_eq!(
            FleetFilter::parse("", "", "", "", &catalog, known).unwrap(),
            FleetFilter::default()
        );
        assert_eq!(
            FleetFilter::parse("GTX 9999", "", "", "", &catalog, known).unwrap_err(),
            "'GTX 9999' is not a GPU model in the catalog"
        );
        assert!(FleetFilter::parse("", "XX", "", "", &catalog, known)
            .unwrap_err()
            .contains("'XX' is not an ISO country code"));
        assert!(FleetFilter::parse("", "", "fast", "", &catalog, known)
            .unwrap_err()
            .starts_with("unknown connectivity tier 'fast'"));
        assert!(FleetFilter::parse("", "", "", "asleep", &catalog, known)
            .unwrap_err()
            .starts_with("unknown device status 'asleep'"));
    }

    #[test]
    fn block_csv_has_one_row_per_device_and_quotes_reasons() {
        let line = |id: &str, reward: i64, why: Option<&str>| DeviceBlockLine {
            block: 7,
            device_id: id.into(),
            provider: "W".into(),
            kind: DeviceKind::Gpu,
            score: 10,
            share_ppm: 500_000,
            reward: Tokens::from_units(reward),
            ineligible: why.map(str::to_owned),
        };
        let csv = block_csv(&[
            line("dev-a", 5, None),
            line("dev-b", 0, Some("said \"no\"")),
        ]);
        let rows: Vec<&str> = csv.split("\r\n").collect();
        assert_eq!(rows.len(), 4, "header, two lines, final newline");
        assert_eq!(rows[1], "7,dev-a,W,gpu,10,500000,5,\"\"");
        assert_eq!(rows[2], "7,dev-b,W,gpu,10,500000,0,\"said \"\"no\"\"\"");
    }

    #[test]
    fn compute_hours_are_split_at_midnight_and_counted_per_day() {
        let day = DAY_MS;
        let today = 20_000 * day;
        let now = today + 10 * HOUR_MS;
        let spans = [
            // 8 GPUs from 22:00 yesterday until 02:00 today: 16 GPU-hours each day.
            ServedSpan {
                units: 8,
                joined_at: today - 2 * HOUR_MS,
                left_at: Some(today + 2 * HOUR_MS),
            },
            // One GPU since 06:30 today, still serving: 3.5 hours, counted with the rest.
            ServedSpan {
                units: 1,
                joined_at: today + 6 * HOUR_MS + HOUR_MS / 2,
                left_at: None,
            },
            // Long before the window: nothing.
            ServedSpan {
                units: 4,
                joined_at: today - 10 * day,
                left_at: Some(today - 9 * day),
            },
        ];
        let days = daily_unit_hours(&spans, now, 2);
        assert_eq!(days.len(), 2);
        assert_eq!((days[0].day_ms, days[0].units), (today - day, 16));
        assert_eq!(
            (days[1].day_ms, days[1].units),
            (today, 19),
            "16 + 3.5 rounded down"
        );
        assert!(daily_unit_hours(&[], now, 30).iter().all(|d| d.units == 0));
    }

    #[test]
    fn links_keep_the_filter() {
        let pairs = [
            ("hardware", "RTX 4090 24GB".to_owned()),
            ("tier", "ultra".to_owned()),
            ("after", "dev-00ff".to_owned()),
        ];
        assert_eq!(
            list_path("/explorer/devices", &pairs),
            "/explorer/devices?hardware=RTX%204090%2024GB&tier=ultra&after=dev-00ff"
        );
        assert_eq!(list_path("/explorer/devices", &[]), "/explorer/devices");
    }

    #[test]
    fn a_page_position_is_one_of_after_before_or_last() {
        assert_eq!(PageAt::parse("", "", false), Ok(PageAt::First));
        assert_eq!(PageAt::parse("a", "", false), Ok(PageAt::After("a".into())));
        assert_eq!(
            PageAt::parse("", "b", false),
            Ok(PageAt::Before("b".into()))
        );
        assert_eq!(PageAt::parse("", "", true), Ok(PageAt::Last));
        assert!(PageAt::parse("a", "b", false).is_err());
        assert!(PageAt::parse("a", "", true).is_err());
    }

    #[test]
    fn search_entries_are_told_apart_by_shape() {
        assert_eq!(
            SearchShape::of(" DEV-00aa "),
            SearchShape::Device("dev-00aa".into())
        );
        assert_eq!(
            SearchShape::of("cl-12"),
            SearchShape::Cluster("cl-12".into())
        );
        assert_eq!(SearchShape::of("block #42"), SearchShape::Block(42));
        assert_eq!(SearchShape::of("493712"), SearchShape::Block(493712));
        let wallet = "9xQeWvG816bUx9EPjHmaT23yvVM2ZWbrrpZb9PusVFin";
        assert_eq!(SearchShape::of(wallet), SearchShape::Wallet(wallet.into()));
        assert_eq!(SearchShape::of("h100"), SearchShape::Text("h100".into()));
    }

    #[test]
    fn text_suggests_models_and_countries_and_always_a_way_on() {
        let catalog = GpuCatalog::builtin();
        let countries: Vec<_> = crate::country::all()
            .into_iter()
            .filter(|c| c.code == "DE")
            .collect();
        let s = text_suggestions("h100", &catalog, &countries);
        assert!(s
            .iter()
            .any(|s| s.path.starts_with("/explorer/devices?hardware=H100")));
        assert_eq!(s.last().unwrap().path, "/explorer/blocks");
        let s = text_suggestions("germ", &catalog, &countries);
        assert_eq!(s[0].path, "/explorer/devices?country=DE");
        assert_eq!(text_suggestions("zzz", &catalog, &countries).len(), 3);
    }
}
