//! Placement: which free devices an order gets, chosen by the allocator from the fleet index.

use std::sync::Arc;

use domain::allocator::{self, Filters, Want};
use domain::cluster::{DeployOrder, DeployRequest, Hardware, SecurityCompliance};
use domain::fleet::ConnectivityTier;
use domain::time::UnixMillis;
use rustc_hash::{FxHashMap, FxHashSet};

use super::ProvisioningService;
use crate::Error;

/// What the allocator is asked to place: hardware under the filters, so many units.
pub(super) struct Placing<'a> {
    pub(super) hardware: &'a Hardware,
    pub(super) countries: &'a [String],
    pub(super) min_tier: Option<ConnectivityTier>,
    pub(super) compliance: SecurityCompliance,
    pub(super) want: Want,
}

impl<'a> Placing<'a> {
    pub(super) fn of(order: &'a DeployOrder) -> Placing<'a> {
        Placing {
            hardware: &order.hardware,
            countries: &order.countries,
            min_tier: order.min_tier,
            compliance: order.compliance,
            want: if order.kind.takes_every_matching_device() {
                Want::Everything
            } else {
                Want::Exactly(order.quantity)
            },
        }
    }
}

impl ProvisioningService {
    /// The devices (ids and units) the allocator picks for `placing` among the free ones now,
    /// leaving out `excluded`; the head first. Exact orders look first only in the countries
    /// with the most free units that admit them (the allocator prefers those anyway), so a
    /// placement over a million devices reads a few thousand; the whole supply is read only
    /// when those cannot fit the order exactly.
    pub(super) fn place(
        &self,
        placing: &Placing,
        excluded: &FxHashSet<String>,
        seed: u64,
        now: UnixMillis,
    ) -> Result<Vec<(String, u32)>, allocator::Shortfall> {
        let narrowed = match placing.want {
            Want::Exactly(wanted) => self.best_supplied(placing, wanted),
            Want::Everything => None,
        };
        let attempt = |countries: &[String]| {
            let (ids, candidates) = self.candidates(placing, countries, excluded, now);
            let placement =
                allocator::allocate(&candidates, &Filters::default(), placing.want, seed)?;
            Ok(placement
                .devices
                .iter()
                .map(|&i| (ids[i].to_string(), candidates[i].units))
                .collect())
        };
        match narrowed {
            Some(countries) => attempt(&countries).or_else(|_| attempt(placing.countries)),
            None => attempt(placing.countries),
        }
    }

    /// The admitted countries with the most free units of the hardware (on devices no larger
    /// than the order), in that order, until they hold twice `wanted`; None when that is all.
    pub(super) fn best_supplied(&self, placing: &Placing, wanted: u32) -> Option<Vec<String>> {
        let mut units: FxHashMap<String, u64> = FxHashMap::default();
        for cell in self.index.free_supply(placing.hardware, placing.compliance) {
            // Devices larger than the order can never be part of it.
            let admitted = cell.units <= wanted
                && (placing.countries.is_empty() || placing.countries.contains(&cell.country))
                && placing.min_tier.is_none_or(|min| cell.tier <= min);
            if admitted {
                *units.entry(cell.country).or_default() += cell.devices * u64::from(cell.units);
            }
        }
        let mut ranked: Vec<(String, u64)> = units.into_iter().collect();
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let mut held = 0;
        let enough = ranked
            .iter()
            .position(|(_, u)| {
                held += u;
                held >= 2 * u64::from(wanted)
            })
            .map_or(ranked.len(), |at| at + 1);
        (enough < ranked.len()).then(|| ranked.into_iter().take(enough).map(|(c, _)| c).collect())
    }

    /// The devices a deploy of `request` would hire now, without hiring them (empty when it
    /// cannot be placed): what `cluster-bench` times.
    pub fn plan(
        &self,
        request: &DeployRequest,
        seed: u64,
        now: UnixMillis,
    ) -> Result<Vec<(String, u32)>, Error> {
        let order = self.order(request)?;
        Ok(self
            .place(&Placing::of(&order), &FxHashSet::default(), seed, now)
            .unwrap_or_default())
    }

    /// The free devices in `countries` that `placing`'s other filters admit, as allocator
    /// candidates (with hours idle as reliability), and their ids in the same order.
    pub(super) fn candidates(
        &self,
        placing: &Placing,
        countries: &[String],
        excluded: &FxHashSet<String>,
        now: UnixMillis,
    ) -> (Vec<Arc<str>>, Vec<allocator::Candidate>) {
        self.index
            .free_devices(
                placing.hardware,
                countries,
                placing.min_tier,
                placing.compliance,
                excluded,
                now.0,
            )
            .into_iter()
            .unzip()
    }
}
