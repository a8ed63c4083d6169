//! The fleet index: every device that is still part of the network, keyed in memory by kind,
//! GPU model, country, connectivity tier, status and verification, with running counts per
//! combination. Network queries read the counts (a few thousand combinations) instead of
//! scanning a million rows. A cache rebuilt from the database at start-up and updated after
//! every committed change, never the source of truth (DESIGN.md §4).

use std::sync::{Arc, RwLock};

use rustc_hash::FxHashMap;

use domain::allocator::{Candidate, SupplyCell};
use domain::catalog::GpuCatalog;
use domain::cluster::Hardware;
use domain::fleet::{ConnectivityTier, DeviceKind, DeviceStatus};
use domain::network::{NetworkSummary, SupplyCount};

use crate::live::HOUR_MS;

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

// Device ids are made by the server, never chosen by a caller, so a fast non-keyed hash is safe.
#[derive(Default)]
struct State {
    devices: FxHashMap<Box<str>, Entry>,
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
}

impl State {
    fn add(&mut self, id: &str, entry: Entry) {
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
                .insert(id.into(), free);
        }
    }

    fn subtract(&mut self, id: &str, entry: Entry) {
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
        if let Some(mut entry) = self.devices.get(id).copied() {
            self.subtract(id, entry);
            change(&mut entry);
            self.add(id, entry);
            if let Some(stored) = self.devices.get_mut(id) {
                *stored = entry;
            }
        }
    }
}

pub(crate) struct FleetIndex {
    catalog: GpuCatalog,
    model_positions: FxHashMap<String, u16>,
    state: RwLock<State>,
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
        }
    }

    /// Makes room for `devices` more, so a rebuild does not grow the map step by step.
    pub fn reserve(&self, devices: usize) {
        self.write().devices.reserve(devices);
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        // Counts are plain integers: a panic elsewhere cannot leave them half-written.
        self.state.write().unwrap_or_else(|p| p.into_inner())
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
        if let Some(old) = state.devices.insert(id.into(), entry) {
            state.subtract(id, old);
        }
        state.add(id, entry);
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

    fn offer(&self, hardware: &Hardware) -> Option<Offer> {
        match hardware {
            Hardware::Cpu => Some((DeviceKind::Cpu, None)),
            Hardware::Gpu(name) => self
                .model_positions
                .get(name.as_str())
                .map(|&m| (DeviceKind::Gpu, Some(m))),
        }
    }

    /// The free supply of `hardware` by country, tier and device size.
    pub fn free_supply(&self, hardware: &Hardware) -> Vec<SupplyCell> {
        let Some(offer) = self.offer(hardware) else {
            return Vec::new();
        };
        let state = self.read();
        state
            .free_counts
            .iter()
            .filter(|((o, ..), _)| *o == offer)
            .map(|(&(_, country, tier, units), &devices)| SupplyCell {
                country: state.countries[usize::from(country)].clone(),
                tier,
                units,
                devices,
            })
            .collect()
    }

    /// The free devices of `hardware` in `countries` (all when empty) at `min_tier` or better,
    /// leaving out `excluded`, as allocator candidates (reliability: hours idle by `now`) with
    /// their ids.
    pub fn free_devices(
        &self,
        hardware: &Hardware,
        countries: &[String],
        min_tier: Option<ConnectivityTier>,
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
                min_tier.is_none_or(|min| free.tier <= min) && !excluded.contains(&***id)
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

    #[test]
    fn counts_follow_every_change_of_a_device() {
        let index = FleetIndex::new(GpuCatalog::builtin());
        index.upsert("a", &gpu("H100 80GB SXM", 8, "DE", DeviceStatus::Idle));
        index.upsert("b", &gpu("H100 80GB SXM", 4, "US", DeviceStatus::Idle));
        index.upsert("c", &gpu("RTX 4090 24GB", 1, "US", DeviceStatus::Hired));
        let t = index.summary(|_| None).totals;
        assert_eq!((t.devices, t.gpus_idle, t.gpus_hired), (3, 12, 1));

        index.set_status("a", DeviceStatus::Hired, true, 0);
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
        assert_eq!(index.free_devices(&h100, &[], None, &none, 0).len(), 2);
        index.set_status("a", DeviceStatus::Hired, true, 0);
        index.set_status("d", DeviceStatus::Idle, true, 0);
        let cells = index.free_supply(&h100);
        let total: u64 = cells.iter().map(|c| c.devices * u64::from(c.units)).sum();
        assert_eq!(total, 12);
        let in_us = index.free_devices(
            &h100,
            &["US".into()],
            Some(ConnectivityTier::High),
            &none,
            0,
        );
        assert_eq!(in_us.iter().map(|(id, _)| &**id).collect::<Vec<_>>(), ["d"]);
        assert!(index
            .free_devices(&h100, &["FR".into()], None, &none, 0)
            .is_empty());
        index.set_tier("b", None);
        index.remove("d");
        assert!(index.free_supply(&h100).is_empty());
        assert!(index.free_devices(&h100, &[], None, &none, 0).is_empty());
    }
}
