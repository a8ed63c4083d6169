//! The explorer's device list, read from the index: pages of the devices a filter admits, in
//! id order, keyed by the id beside them. A page walks whichever is cheaper: every device in
//! order, skipping those the filter refuses, or a merge of the matching combinations' own
//! ordered sets (a seek in each).

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::ops::Bound;
use std::sync::Arc;

use domain::explorer::{FleetDevice, FleetFilter, Page, PageAt};
use domain::fleet::{ConnectivityTier, DeviceKind, DeviceStatus};
use domain::time::UnixMillis;

use super::{FleetIndex, Key, Lists, Offer, State};

/// What a page's filter admits, in the index's own positions.
struct Admits {
    offer: Option<Offer>,
    country: Option<u16>,
    tier: Option<ConnectivityTier>,
    status: Option<DeviceStatus>,
}

impl Admits {
    fn key(&self, k: &Key) -> bool {
        self.offer.is_none_or(|o| (k.kind, k.model) == o)
            && self.country.is_none_or(|c| k.country == c)
            && self.tier.is_none_or(|t| k.tier == Some(t))
            && self.status.is_none_or(|s| k.status == s)
    }
}

/// How one page reads devices in id order.
struct Walk<'a> {
    lists: &'a Lists,
    admits: Admits,
    /// The combinations the filter admits.
    keys: Vec<Key>,
    /// Walk every device (true) or merge the admitted combinations' sets.
    scan: bool,
}

impl Walk<'_> {
    /// Up to `limit` admitted ids from `from` on, forward or back.
    fn ids(&self, from: Bound<&str>, forward: bool, limit: usize) -> Vec<Arc<str>> {
        if self.scan {
            let found = |(id, key): (&Arc<str>, &Key)| self.admits.key(key).then(|| id.clone());
            let ordered = &self.lists.ordered;
            if forward {
                ordered
                    .range::<str, _>((from, Bound::Unbounded))
                    .filter_map(found)
                    .take(limit)
                    .collect()
            } else {
                ordered
                    .range::<str, _>((Bound::Unbounded, from))
                    .rev()
                    .filter_map(found)
                    .take(limit)
                    .collect()
            }
        } else {
            let sets = self.keys.iter().filter_map(|k| self.lists.by_key.get(k));
            if forward {
                merge(
                    sets.map(|ids| ids.range::<str, _>((from, Bound::Unbounded)))
                        .collect(),
                    limit,
                    true,
                )
            } else {
                merge(
                    sets.map(|ids| ids.range::<str, _>((Bound::Unbounded, from)).rev())
                        .collect(),
                    limit,
                    false,
                )
            }
        }
    }

    /// The page's ids at `at` (at most `rows`, in order), and whether devices come before and
    /// after them.
    fn page(&self, at: &PageAt, rows: usize) -> (Vec<Arc<str>>, bool, bool) {
        let (mut ids, before, after) = match at {
            PageAt::First => {
                let ids = self.ids(Bound::Unbounded, true, rows + 1);
                let more = ids.len() > rows;
                (ids, false, more)
            }
            PageAt::After(key) => {
                let ids = self.ids(Bound::Excluded(key), true, rows + 1);
                let more = ids.len() > rows;
                let before = ids
                    .first()
                    .is_some_and(|first| !self.ids(Bound::Excluded(first), false, 1).is_empty());
                (ids, before, more)
            }
            PageAt::Before(key) => {
                let mut ids = self.ids(Bound::Excluded(key), false, rows + 1);
                let more = ids.len() > rows;
                ids.truncate(rows);
                ids.reverse();
                let after = ids
                    .last()
                    .is_some_and(|last| !self.ids(Bound::Excluded(last), true, 1).is_empty());
                (ids, more, after)
            }
            PageAt::Last => {
                let mut ids = self.ids(Bound::Unbounded, false, rows + 1);
                let more = ids.len() > rows;
                ids.truncate(rows);
                ids.reverse();
                (ids, more, false)
            }
        };
        ids.truncate(rows);
        (ids, before, after)
    }
}

impl FleetIndex {
    /// Makes the explorer's ordered lists now (they are otherwise made on the first request).
    pub fn prepare_lists(&self) {
        let mut state = self.write();
        if state.lists.is_none() {
            state.build_lists();
        }
    }

    /// One page of the devices that match `filter`, in id order, at `at`: `rows` of them at most.
    pub fn page(&self, filter: &FleetFilter, at: &PageAt, rows: usize) -> Page<FleetDevice> {
        if self.read().lists.is_none() {
            self.prepare_lists();
        }
        let empty = Page {
            rows: Vec::new(),
            matching: 0,
            previous: None,
            next: None,
        };
        let state = self.read();
        let (Some(lists), Some(admits)) = (&state.lists, self.admits(&state, filter)) else {
            return empty;
        };
        let mut keys = Vec::new();
        let mut matching = 0;
        for (key, count) in &state.counts {
            if admits.key(key) {
                keys.push(*key);
                matching += count.devices;
            }
        }
        // Walking every device and skipping the others costs about (rows / share matching);
        // merging the matching combinations' own lists costs a seek in each. Take the cheaper.
        let total = state.devices.len().max(1) as i64;
        let scan_cost = (rows as i64 + 1) * total / matching.max(1);
        let merge_cost = keys.len() as i64 * 8;
        let walk = Walk {
            lists,
            admits,
            keys,
            scan: scan_cost <= merge_cost,
        };
        let (ids, more_before, more_after) = walk.page(at, rows);
        let rows = self.rows_locked(&state, &ids);
        Page {
            previous: more_before
                .then(|| rows.first().map(|r| r.id.clone()))
                .flatten(),
            next: more_after
                .then(|| rows.last().map(|r| r.id.clone()))
                .flatten(),
            rows,
            matching,
        }
    }

    /// What `filter` admits in the index's positions; None when it names a model or country
    /// the index has never seen, which no device matches.
    fn admits(&self, state: &State, filter: &FleetFilter) -> Option<Admits> {
        let offer = match filter.hardware.as_deref() {
            None => None,
            Some(h) if h.eq_ignore_ascii_case("cpu") => Some((DeviceKind::Cpu, None)),
            Some(model) => Some((DeviceKind::Gpu, Some(*self.model_positions.get(model)?))),
        };
        let country = match &filter.country {
            None => None,
            Some(code) => Some(*state.country_positions.get(code)?),
        };
        Some(Admits {
            offer,
            country,
            tier: filter.tier,
            status: filter.status,
        })
    }

    /// The list rows of these devices (those the index holds), in this order.
    pub fn rows(&self, ids: &[impl AsRef<str>]) -> Vec<FleetDevice> {
        self.rows_locked(&self.read(), ids)
    }

    fn rows_locked(&self, state: &State, ids: &[impl AsRef<str>]) -> Vec<FleetDevice> {
        let models = self.catalog.models();
        ids.iter()
            .filter_map(|id| {
                let id = id.as_ref();
                let e = state.devices.get(id)?;
                Some(FleetDevice {
                    id: id.to_owned(),
                    kind: e.key.kind,
                    gpu_model: e.key.model.map(|m| models[usize::from(m)].name.clone()),
                    gpu_count: e.gpus,
                    country: state.countries[usize::from(e.key.country)].clone(),
                    tier: e.key.tier,
                    status: e.key.status,
                    verified: e.key.verified,
                    provider: state.providers[e.provider as usize].clone(),
                    status_since: UnixMillis(e.since),
                })
            })
            .collect()
    }
}

/// The head of one sorted source in a merge: the next id it offers.
struct Head<'a> {
    id: &'a Arc<str>,
    source: usize,
    forward: bool,
}

impl Ord for Head<'_> {
    fn cmp(&self, other: &Self) -> Ordering {
        // The heap pops its greatest: the smallest id going forward, the largest going back.
        let by_id = if self.forward {
            other.id.cmp(self.id)
        } else {
            self.id.cmp(other.id)
        };
        by_id.then(other.source.cmp(&self.source))
    }
}

impl PartialOrd for Head<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Head<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Head<'_> {}

/// The first `limit` ids of several sorted (ascending if `forward`, else descending) sources,
/// in that order.
fn merge<'a, I: Iterator<Item = &'a Arc<str>>>(
    mut sources: Vec<I>,
    limit: usize,
    forward: bool,
) -> Vec<Arc<str>> {
    let mut heap = BinaryHeap::with_capacity(sources.len());
    for (source, ids) in sources.iter_mut().enumerate() {
        if let Some(id) = ids.next() {
            heap.push(Head {
                id,
                source,
                forward,
            });
        }
    }
    let mut out = Vec::with_capacity(limit);
    while out.len() < limit {
        let Some(head) = heap.pop() else { break };
        out.push(head.id.clone());
        if let Some(id) = sources[head.source].next() {
            heap.push(Head {
                id,
                source: head.source,
                forward,
            });
        }
    }
    out
}
