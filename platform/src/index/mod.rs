//! The fleet index: every device that is still part of the network, keyed in memory by kind,
//! GPU model, country, connectivity tier, status and verification, with running counts per
//! combination. Network queries read the counts (a few thousand combinations) instead of
//! scanning a million rows. A cache rebuilt from the database at start-up and updated after
//! every committed change, never the source of truth (DESIGN.md §4).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock};

use rustc_hash::FxHashMap;

use domain::allocator::{Candidate, SupplyCell};
use domain::catalog::GpuCatalog;
use domain::cluster::{Hardware, SecurityCompliance};
use domain::compliance::Attestations;
use domain::fleet::{ConnectivityTier, DeviceKind, DeviceStatus};
use domain::network::{NetworkSummary, SupplyCount};

use crate::live::HOUR_MS;

mod pages;

/// What the index holds of one device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IndexedDevice<'a> {
    pub kind: DeviceKind,
    /// Canonical catalog name, if the device's GPUs are in the catalog.
    pub gpu_model: Option<&'a str>,
    pub gpu_count: i64,
    pub country: &'a str,
    pub tier: Option<ConnectivityTier>,
    pub status: DeviceStatus,
    pub verified: bool,
    /// The owner's wallet: the provider.
    pub owner: &'a str,
    /// Whether an agent runs the device (demo devices have none and are never hired).
    pub agent_run: bool,
    /// When the device entered its status (UTC ms): how long an idle one has been available.
    pub status_changed_at: i64,
}

/// One combination of the keys; models and countries are small integers so a key is a few
/// bytes and hashes fast.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    kind: DeviceKind,
    model: Option<u16>,
    country: u16,
    tier: Option<ConnectivityTier>,
    status: DeviceStatus,
    verified: bool,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    key: Key,
    gpus: i64,
    provider: u32,
    agent_run: bool,
    /// When it entered its status (UTC ms).
    since: i64,
}

/// Which hardware a device offers: its kind and catalog model.
type Offer = (DeviceKind, Option<u16>);

/// A device a cluster can hire now: idle, verified, agent-run, with a measured tier.
#[derive(Debug, Clone, Copy)]
struct Free {
    country: u16,
    tier: ConnectivityTier,
    units: u32,
    provider: u32,
    /// Idle since (UTC ms): the allocator's reliability.
    since: i64,
}

impl Entry {
    fn free(&self) -> Option<(Offer, Free)> {
        let k = &self.key;
        let tier = k.tier?;
        (self.agent_run && k.status == DeviceStatus::Idle && k.verified).then(|| {
            let units = if k.kind == DeviceKind::Cpu {
                1
            } else {
                self.gpus.clamp(0, 1 << 16) as u32
            };
            (
                (k.kind, k.model),
                Free {
                    country: k.country,
                    tier,
                    units,
                    provider: self.provider,
                    since: self.since,
                },
            )
        })
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Count {
    devices: i64,
    gpus: i64,
}

/// The devices in id order, for the explorer's list: all of them, and per combination of keys,
/// so a page with a filter reads only the devices it shows (plus a few), at any depth.
#[derive(Default)]
struct Lists {
    ordered: BTreeMap<Arc<str>, Key>,
    by_key: FxHashMap<Key, BTreeSet<Arc<str>>>,
}

// Device ids are made by the server, never chosen by a caller, so a fast non-keyed hash is safe.
#[derive(Default)]
struct State {
    devices: FxHashMap<Arc<str>, Entry>,
    /// Made on the first list request rather than at start-up, which it would slow by a
    /// second at a million devices; kept up to date from then on.
    lists: Option<Lists>,
    counts: FxHashMap<Key, Count>,
    /// Country codes as first seen; `Key::country` is a position here.
    countries: Vec<String>,
    country_positions: FxHashMap<String, u16>,
    /// Owner wallets as first seen; `Entry::provider` is a position here.
    providers: Vec<String>,
    provider_positions: FxHashMap<String, u32>,
    /// The devices clusters can hire now, by what they offer and where.
    /// Ids are shared with the candidates handed out, so a placement copies no strings.
    free: FxHashMap<(Offer, u16), FxHashMap<Arc<str>, Free>>,
    /// How many of them per offer, country, tier and size: what fillability reads.
    free_counts: FxHashMap<(Offer, u16, ConnectivityTier, u32), u64>,
    /// What operators attested devices for (SOC 2, HIPAA): an operator's list, small, so
    /// orders that need an attestation read it rather than a dimension of every count.
    attested: FxHashMap<Arc<str>, Attestations>,
}

impl State {
    fn add(&mut self, id: &Arc<str>, entry: Entry) {
        if let Some(lists) = &mut self.lists {
            lists.ordered.insert(id.clone(), entry.key);
            lists
                .by_key
                .entry(entry.key)
                .or_default()
                .insert(id.clone());
        }
        let count = self.counts.entry(entry.key).or_default();
        count.devices += 1;
        count.gpus += entry.gpus;
        if let Some((offer, free)) = entry.free() {
            *self
                .free_counts
                .entry((offer, free.country, free.tier, free.units))
                .or_default() += 1;
            self.free
                .entry((offer, free.country))
                .or_default()
                .insert(id.clone(), free);
        }
    }

    fn subtract(&mut self, id: &str, entry: Entry) {
        if let Some(lists) = &mut self.lists {
            lists.ordered.remove(id);
            if let Some(ids) = lists.by_key.get_mut(&entry.key) {
                ids.remove(id);
                if ids.is_empty() {
                    lists.by_key.remove(&entry.key);
                }
            }
        }
        if let Some(count) = self.counts.get_mut(&entry.key) {
            count.devices -= 1;
            count.gpus -= entry.gpus;
            if count.devices == 0 {
                self.counts.remove(&entry.key);
            }
        }
        if let Some((offer, free)) = entry.free() {
            let cell = (offer, free.country, free.tier, free.units);
            if let Some(n) = self.free_counts.get_mut(&cell) {
                *n -= 1;
                if *n == 0 {
                    self.free_counts.remove(&cell);
                }
            }
            if let Some(devices) = self.free.get_mut(&(offer, free.country)) {
                devices.remove(id);
            }
        }
    }

    fn provider(&mut self, owner: &str) -> u32 {
        if let Some(&position) = self.provider_positions.get(owner) {
            return position;
        }
        let position = self.providers.len() as u32;
        self.providers.push(owner.to_owned());
        self.provider_positions.insert(owner.to_owned(), position);
        position
    }

    fn country(&mut self, code: &str) -> u16 {
        if let Some(&position) = self.country_positions.get(code) {
            return position;
        }
        let position = self.countries.len() as u16;
        self.countries.push(code.to_owned());
        self.country_positions.insert(code.to_owned(), position);
        position
    }

    fn replace(&mut self, id: &str, change: impl FnOnce(&mut Entry)) {
        if let Some((id, mut entry)) = self.devices.get_key_value(id).map(|(k, e)| (k.clone(), *e))
        {
            self.subtract(&id, entry);
            change(&mut entry);
            self.add(&id, entry);
            if let Some(stored) = self.devices.get_mut(&id) {
                *stored = entry;
            }
        }
    }

    fn build_lists(&mut self) {
        let mut ids: Vec<(Arc<str>, Key)> = self
            .devices
            .iter()
            .map(|(id, e)| (id.clone(), e.key))
            .collect();
        ids.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let mut by_key: FxHashMap<Key, Vec<Arc<str>>> = FxHashMap::default();
        for (id, key) in &ids {
            by_key.entry(*key).or_default().push(id.clone());
        }
        // Both are built from sorted input, which the standard collections load in bulk.
        self.lists = Some(Lists {
            ordered: ids.into_iter().collect(),
            by_key: by_key
                .into_iter()
                .map(|(key, ids)| (key, ids.into_iter().collect()))
                .collect(),
        });
    }
}

pub(crate) struct FleetIndex {
    catalog: GpuCatalog,
    model_positions: FxHashMap<String, u16>,
    state: RwLock<State>,
    /// Moves with every change, so what is derived from the counts can be kept until it does.
    version: std::sync::atomic::AtomicU64,
}

impl FleetIndex {
    pub fn new(catalog: GpuCatalog) -> FleetIndex {
        let model_positions = catalog
            .models()
            .iter()
            .enumerate()
            .map(|(i, m)| (m.name.clone(), i as u16))
            .collect();
        FleetIndex {
            catalog,
            model_positions,
            state: RwLock::new(State::default()),
            version: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Makes room for `devices` more, so a rebuild does not grow the map step by step.
    pub fn reserve(&self, devices: usize) {
        self.write().devices.reserve(devices);
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        // Counts are plain integers: a panic elsewhere cannot leave them half-written.
        let guard = self.state.write().unwrap_or_else(|p| p.into_inner());
        // Moved while the lock is held: a reader that sees the old version read the old state.
        self.version
            .fetch_add(1, std::sync::atomic::Ordering::Release);
        guard
    }

    /// Changes with every write, so a summary made at one version holds until it moves.
    pub fn version(&self) -> u64 {
        self.version.load(std::sync::atomic::Ordering::Acquire)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a device or replaces what the index holds of it.
    pub fn upsert(&self, id: &str, device: &IndexedDevice) {
        self.upsert_many([(id, device)]);
    }

    /// [`FleetIndex::upsert`] for many devices under one lock.
    pub fn upsert_many<'d>(
        &self,
        devices: impl IntoIterator<Item = (&'d str, &'d IndexedDevice<'d>)>,
    ) {
        let mut state = self.write();
        for (id, device) in devices {
            self.upsert_locked(&mut state, id, device);
        }
    }

    fn upsert_locked(&self, state: &mut State, id: &str, device: &IndexedDevice) {
        let model = device
            .gpu_model
            .and_then(|name| self.model_positions.get(name).copied());
        let entry = Entry {
            key: Key {
                kind: device.kind,
                model,
                country: state.country(device.country),
                tier: device.tier,
                status: device.status,
                verified: device.verified,
            },
            gpus: device.gpu_count,
            provider: state.provider(device.owner),
            agent_run: device.agent_run,
            since: device.status_changed_at,
        };
        let id: Arc<str> = match state
            .devices
            .get_key_value(id)
            .map(|(k, e)| (k.clone(), *e))
        {
            Some((known, old)) => {
                state.subtract(&known, old);
                known
            }
            None => Arc::from(id),
        };
        state.devices.insert(id.clone(), entry);
        state.add(&id, entry);
    }

    /// A device's new status, entered `at` (UTC ms).
    pub fn set_status(&self, id: &str, status: DeviceStatus, verified: bool, at: i64) {
        self.write().replace(id, |e| {
            if e.key.status != status {
                e.since = at;
            }
            e.key.status = status;
            e.key.verified = verified;
        });
    }

    pub fn set_tier(&self, id: &str, tier: Option<ConnectivityTier>) {
        self.write().replace(id, |e| e.key.tier = tier);
    }

    pub fn remove(&self, id: &str) {
        let mut state = self.write();
        if let Some(old) = state.devices.remove(id) {
            state.subtract(id, old);
        }
    }

    /// Replaces what devices are attested for (devices left out are attested for nothing).
    pub fn set_attestations(&self, attested: Vec<(String, Attestations)>) {
        let attested: FxHashMap<Arc<str>, Attestations> = attested
            .into_iter()
            .filter(|(_, a)| !a.is_none())
            .map(|(id, a)| (Arc::from(id), a))
            .collect();
        if self.read().attested == attested {
            return;
        }
        // Not through `write`: nothing derived from the counts depends on attestations.
        self.state
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .attested = attested;
    }

    fn offer(&self, hardware: &Hardware) -> Option<Offer> {
        match hardware {
            Hardware::Cpu => Some((DeviceKind::Cpu, None)),
            Hardware::Gpu(name) => self
                .model_positions
                .get(name.as_str())
                .map(|&m| (DeviceKind::Gpu, Some(m))),
        }
    }

    /// The free supply of `hardware` that meets `compliance`, by country, tier and device size.
    pub fn free_supply(
        &self,
        hardware: &Hardware,
        compliance: SecurityCompliance,
    ) -> Vec<SupplyCell> {
        let Some(offer) = self.offer(hardware) else {
            return Vec::new();
        };
        let state = self.read();
        let cell = |(country, tier, units): (u16, ConnectivityTier, u32), devices| SupplyCell {
            country: state.countries[usize::from(country)].clone(),
            tier,
            units,
            devices,
        };
        if !compliance.needs_attestation() {
            return state
                .free_counts
                .iter()
                .filter(|((o, ..), _)| *o == offer)
                .map(|(&(_, country, tier, units), &devices)| cell((country, tier, units), devices))
                .collect();
        }
        let mut attested: FxHashMap<(u16, ConnectivityTier, u32), u64> = FxHashMap::default();
        for (id, attestations) in &state.attested {
            let free = state.devices.get(id).and_then(Entry::free);
            if let Some((o, free)) = free.filter(|_| attestations.meets(compliance)) {
                if o == offer {
                    *attested
                        .entry((free.country, free.tier, free.units))
                        .or_default() += 1;
                }
            }
        }
        attested
            .into_iter()
            .map(|(at, devices)| cell(at, devices))
            .collect()
    }

    /// The free devices of `hardware` in `countries` (all when empty) at `min_tier` or better
    /// that meet `compliance`, leaving out `excluded`, as allocator candidates (reliability:
    /// hours idle by `now`) with their ids.
    pub fn free_devices(
        &self,
        hardware: &Hardware,
        countries: &[String],
        min_tier: Option<ConnectivityTier>,
        compliance: SecurityCompliance,
        excluded: &rustc_hash::FxHashSet<String>,
        now: i64,
    ) -> Vec<(Arc<str>, Candidate)> {
        use std::hash::BuildHasher;
        let Some(offer) = self.offer(hardware) else {
            return Vec::new();
        };
        let state = self.read();
        let places: Vec<u16> = if countries.is_empty() {
            state
                .free
                .keys()
                .filter(|(o, _)| *o == offer)
                .map(|&(_, country)| country)
                .collect()
        } else {
            countries
                .iter()
                .filter_map(|c| state.country_positions.get(c).copied())
                .collect()
        };
        places
            .iter()
            .filter_map(|&country| state.free.get(&(offer, country)))
            .flat_map(|devices| devices.iter())
            .filter(|(id, free)| {
                min_tier.is_none_or(|min| free.tier <= min)
                    && !excluded.contains(&***id)
                    && (!compliance.needs_attestation()
                        || state.attested.get(*id).is_some_and(|a| a.meets(compliance)))
            })
            .map(|(id, free)| {
                let candidate = Candidate {
                    key: rustc_hash::FxBuildHasher.hash_one(&**id),
                    country: free.country,
                    provider: free.provider,
                    tier: free.tier,
                    units: free.units,
                    // Hours of unbroken availability: longer is more reliable.
                    reliability: ((now - free.since).max(0) / HOUR_MS) as u32,
                };
                (id.clone(), candidate)
            })
            .collect()
    }

    /// Free units (GPUs, or CPU devices) per hardware clusters can be made of now.
    pub fn free_units_by_hardware(&self) -> Vec<(Hardware, u64)> {
        let state = self.read();
        let models = self.catalog.models();
        let mut units: FxHashMap<Offer, u64> = FxHashMap::default();
        for (&((kind, model), _, _, size), &devices) in &state.free_counts {
            *units.entry((kind, model)).or_default() += devices * u64::from(size);
        }
        units
            .into_iter()
            .filter_map(|((kind, model), units)| {
                let hardware = match (kind, model) {
                    (DeviceKind::Cpu, _) => Hardware::Cpu,
                    (DeviceKind::Gpu, Some(m)) => {
                        Hardware::Gpu(models[usize::from(m)].name.clone())
                    }
                    (DeviceKind::Gpu, None) => return None,
                };
                Some((hardware, units))
            })
            .collect()
    }

    /// How many devices the index holds in each status (those it holds none in left out), for
    /// the operator's metrics.
    pub fn devices_by_status(&self) -> Vec<(DeviceStatus, i64)> {
        let state = self.read();
        let mut by_status: Vec<(DeviceStatus, i64)> = Vec::new();
        for (key, count) in &state.counts {
            match by_status
                .iter_mut()
                .find(|(status, _)| *status == key.status)
            {
                Some((_, devices)) => *devices += count.devices,
                None => by_status.push((key.status, count.devices)),
            }
        }
        by_status.retain(|(_, devices)| *devices > 0);
        by_status
    }

    /// The network totals and supply by model and country, from the counts alone.
    pub fn summary(&self, country_name: impl Fn(&str) -> Option<String>) -> NetworkSummary {
        let state = self.read();
        let models = self.catalog.models();
        let counts = state.counts.iter().map(|(key, count)| SupplyCount {
            kind: key.kind,
            model: key.model.map(|m| models[usize::from(m)].name.as_str()),
            country: &state.countries[usize::from(key.country)],
            status: key.status,
            verified: key.verified,
            devices: count.devices,
            gpus: count.gpus,
        });
        NetworkSummary::tally(counts, &self.catalog, country_name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::explorer::{FleetFilter, PageAt};

    const E2E: SecurityCompliance = SecurityCompliance::E2eEncrypted;

    fn gpu<'a>(
        model: &'a str,
        count: i64,
        country: &'a str,
        status: DeviceStatus,
    ) -> IndexedDevice<'a> {
        IndexedDevice {
            kind: DeviceKind::Gpu,
            gpu_model: Some(model),
            gpu_count: count,
            country,
            tier: Some(ConnectivityTier::High),
            status,
            verified: true,
            owner: "owner",
            agent_run: true,
            status_changed_at: 0,
        }
    }

    /// A small deterministic fleet of mixed devices: (id, model, country, status, tier).
    fn mixed_fleet(
        index: &FleetIndex,
        n: u64,
    ) -> Vec<(
        String,
        &'static str,
        &'static str,
        DeviceStatus,
        ConnectivityTier,
    )> {
        let models = ["H100 80GB SXM", "RTX 4090 24GB", "A100 80GB PCIe"];
        let countries = ["DE", "US", "FR", "IS"];
        let statuses = [DeviceStatus::Idle, DeviceStatus::Hired, DeviceStatus::Down];
        let mut x = 0x9e3779b97f4a7c15_u64;
        (0..n)
            .map(|i| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let id = format!("dev-{:016x}", x);
                // Iceland is rare, so filters on it are sparse and use the merge.
                let country = if i % 97 == 0 {
                    "IS"
                } else {
                    countries[(x % 3) as usize]
                };
                let d = (
                    id,
                    models[(x >> 8) as usize % 3],
                    country,
                    statuses[(x >> 16) as usize % 3],
                    ConnectivityTier::ALL[(x >> 24) as usize % 4],
                );
                index.upsert(
                    &d.0,
                    &IndexedDevice {
                        tier: Some(d.4),
                        ..gpu(d.1, 1, d.2, d.3)
                    },
                );
                d
            })
            .collect()
    }

    #[test]
    fn device_pages_walk_the_filtered_fleet_in_id_order_both_ways() {
        let index = FleetIndex::new(GpuCatalog::builtin());
        let mut fleet = mixed_fleet(&index, 1200);
        // Changes before and after the lists are made must both show.
        index.set_status(&fleet[0].0, DeviceStatus::Paused, true, 5);
        fleet[0].3 = DeviceStatus::Paused;
        let _ = index.page(&FleetFilter::default(), &PageAt::First, 1);
        index.set_status(&fleet[1].0, DeviceStatus::Paused, true, 5);
        fleet[1].3 = DeviceStatus::Paused;
        index.remove(&fleet[2].0);
        fleet.remove(2);
        let filters = [
            FleetFilter::default(),
            FleetFilter {
                country: Some("IS".into()),
                ..FleetFilter::default()
            },
            FleetFilter {
                hardware: Some("H100 80GB SXM".into()),
                status: Some(DeviceStatus::Idle),
                ..FleetFilter::default()
            },
            FleetFilter {
                country: Some("IS".into()),
                tier: Some(ConnectivityTier::Ultra),
                hardware: Some("RTX 4090 24GB".into()),
                status: Some(DeviceStatus::Hired),
            },
            FleetFilter {
                status: Some(DeviceStatus::Paused),
                ..FleetFilter::default()
            },
            FleetFilter {
                hardware: Some("cpu".into()),
                ..FleetFilter::default()
            },
            FleetFilter {
                country: Some("JP".into()),
                ..FleetFilter::default()
            },
        ];
        for filter in &filters {
            let mut expected: Vec<&str> = fleet
                .iter()
                .filter(|d| {
                    filter.hardware.as_deref().is_none_or(|h| h == d.1)
                        && filter.country.as_deref().is_none_or(|c| c == d.2)
                        && filter.status.is_none_or(|s| s == d.3)
                        && filter.tier.is_none_or(|t| t == d.4)
                })
                .map(|d| d.0.as_str())
                .collect();
            expected.sort();
            let rows = 7;
            // Forward from the first page to the end.
            let mut seen = Vec::new();
            let mut at = PageAt::First;
            loop {
                let page = index.page(filter, &at, rows);
                assert_eq!(page.matching, expected.len() as i64, "{filter:?}");
                assert!(page.rows.len() <= rows);
                assert_eq!(
                    page.previous.is_some(),
                    !seen.is_empty() && !page.rows.is_empty(),
                    "{filter:?}"
                );
                seen.extend(page.rows.iter().map(|r| r.id.clone()));
                match page.next {
                    Some(next) => at = PageAt::After(next),
                    None => break,
                }
            }
            assert_eq!(seen, expected, "{filter:?} forward");
            // Backward from the last page to the start.
            let mut seen = Vec::new();
            let mut at = PageAt::Last;
            loop {
                let page = index.page(filter, &at, rows);
                assert_eq!(
                    page.next.is_some(),
                    !seen.is_empty() && !page.rows.is_empty(),
                    "{filter:?}"
                );
                let mut ids: Vec<String> = page.rows.iter().map(|r| r.id.clone()).collect();
                ids.extend(seen);
                seen = ids;
                match page.previous {
                    Some(previous) => at = PageAt::Before(previous),
                    None => break,
                }
            }
            assert_eq!(seen, expected, "{filter:?} backward");
            if let Some(first) = expected.first() {
                let page = index.page(filter, &PageAt::First, rows);
                assert_eq!(page.rows[0].id, *first);
                let d = fleet.iter().find(|d| d.0 == *first).unwrap();
                assert_eq!(page.rows[0].country, d.2);
                assert_eq!(page.rows[0].gpu_model.as_deref(), Some(d.1));
                assert_eq!(page.rows[0].provider, "owner");
            }
        }
    }

    #[test]
    fn counts_follow_every_change_of_a_device() {
        let index = FleetIndex::new(GpuCatalog::builtin());
        index.upsert("a", &gpu("H100 80GB SXM", 8, "DE", DeviceStatus::Idle));
        index.upsert("b", &gpu("H100 80GB SXM", 4, "US", DeviceStatus::Idle));
        index.upsert("c", &gpu("RTX 4090 24GB", 1, "US", DeviceStatus::Hired));
        let t = index.summary(|_| None).totals;
        assert_eq!((t.devices, t.gpus_idle, t.gpus_hired), (3, 12, 1));

        let before = index.version();
        index.set_status("a", DeviceStatus::Hired, true, 0);
        assert!(index.version() > before, "every change moves the version");
        index.set_tier("b", None);
        index.upsert("b", &gpu("H100 80GB SXM", 2, "US", DeviceStatus::Idle));
        let s = index.summary(|_| None);
        assert_eq!((s.totals.gpus_idle, s.totals.gpus_hired), (2, 9));
        assert_eq!(s.totals.gpus, 11, "re-adding a device replaces it");

        index.remove("a");
        index.remove("a");
        index.set_status("missing", DeviceStatus::Idle, true, 0);
        let s = index.summary(|_| None);
        assert_eq!((s.totals.devices, s.totals.gpus), (2, 3));
        assert_eq!(index.read().devices.len(), 2);
        assert_eq!(s.by_country.len(), 1, "DE left with its only device");
    }

    #[test]
    fn an_emptied_combination_disappears() {
        let index = FleetIndex::new(GpuCatalog::builtin());
        index.upsert("a", &gpu("H100 80GB SXM", 8, "DE", DeviceStatus::Pending));
        index.set_status("a", DeviceStatus::Idle, true, 0);
        assert_eq!(index.read().counts.len(), 1);
        index.remove("a");
        assert!(index.read().counts.is_empty());
        assert_eq!(index.summary(|_| None), NetworkSummary::default());
    }

    #[test]
    fn only_idle_verified_agent_run_devices_are_free_for_hire() {
        let index = FleetIndex::new(GpuCatalog::builtin());
        let h100 = Hardware::Gpu("H100 80GB SXM".into());
        index.upsert("a", &gpu("H100 80GB SXM", 8, "DE", DeviceStatus::Idle));
        index.upsert("b", &gpu("H100 80GB SXM", 8, "DE", DeviceStatus::Idle));
        index.upsert(
            "c",
            &IndexedDevice {
                agent_run: false,
                ..gpu("H100 80GB SXM", 8, "DE", DeviceStatus::Idle)
            },
        );
        index.upsert("d", &gpu("H100 80GB SXM", 4, "US", DeviceStatus::Paused));
        let none = rustc_hash::FxHashSet::default();
        assert_eq!(index.free_devices(&h100, &[], None, E2E, &none, 0).len(), 2);
        index.set_status("a", DeviceStatus::Hired, true, 0);
        index.set_status("d", DeviceStatus::Idle, true, 0);
        let cells = index.free_supply(&h100, E2E);
        let total: u64 = cells.iter().map(|c| c.devices * u64::from(c.units)).sum();
        assert_eq!(total, 12);
        let in_us = index.free_devices(
            &h100,
            &["US".into()],
            Some(ConnectivityTier::High),
            E2E,
            &none,
            0,
        );
        assert_eq!(in_us.iter().map(|(id, _)| &**id).collect::<Vec<_>>(), ["d"]);
        assert!(index
            .free_devices(&h100, &["FR".into()], None, E2E, &none, 0)
            .is_empty());
        index.set_tier("b", None);
        index.remove("d");
        assert!(index.free_supply(&h100, E2E).is_empty());
        assert!(index
            .free_devices(&h100, &[], None, E2E, &none, 0)
            .is_empty());
    }

    #[test]
    fn attested_orders_see_only_free_devices_attested_for_their_standard() {
        use SecurityCompliance::{Hipaa, Soc2};
        let index = FleetIndex::new(GpuCatalog::builtin());
        let h100 = Hardware::Gpu("H100 80GB SXM".into());
        for id in ["a", "b", "c", "d"] {
            index.upsert(id, &gpu("H100 80GB SXM", 8, "DE", DeviceStatus::Idle));
        }
        let soc2 = Attestations {
            soc2: true,
            hipaa: false,
        };
        let both = Attestations {
            soc2: true,
            hipaa: true,
        };
        let version = index.version();
        index.set_attestations(vec![
            ("a".into(), soc2),
            ("b".into(), both),
            ("c".into(), Attestations::NONE),
            ("gone".into(), both),
        ]);
        assert_eq!(index.version(), version, "the counts did not change");
        let none = rustc_hash::FxHashSet::default();
        let units = |compliance| -> u64 {
            index
                .free_supply(&h100, compliance)
                .iter()
                .map(|c| c.devices * u64::from(c.units))
                .sum()
        };
        let ids = |compliance| {
            let mut ids: Vec<String> = index
                .free_devices(&h100, &[], None, compliance, &none, 0)
                .into_iter()
                .map(|(id, _)| id.to_string())
                .collect();
            ids.sort();
            ids
        };
        assert_eq!((units(E2E), units(Soc2), units(Hipaa)), (32, 16, 8));
        assert_eq!(ids(Soc2), ["a", "b"]);
        assert_eq!(ids(Hipaa), ["b"]);
        index.set_status("b", DeviceStatus::Hired, true, 0);
        assert_eq!((units(Soc2), units(Hipaa)), (8, 0), "hired is not free");
        index.set_attestations(vec![("d".into(), both)]);
        assert_eq!(ids(Soc2), ["d"], "the new list replaces the old one");
    }
}
