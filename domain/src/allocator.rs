//! Placing a cluster on the fleet. [`allocate`] picks whole devices that add up to exactly the
//! units ordered, honouring every filter, preferring fewer countries, then fewer providers, then
//! better connectivity and reliability; the head goes to the most reliable device.
//! [`fillability`] answers "can this be placed now, and if not, why and what can" from supply
//! counts alone, with the same feasibility rule, so a "yes" is a placement the allocator finds.

use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::fleet::ConnectivityTier;

/// A device that could join the cluster: idle, verified, run by an agent, of the ordered
/// hardware. Countries and providers are small integers chosen by the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// Stable identity for the tie-break (the device id's hash, say).
    pub key: u64,
    pub country: u16,
    pub provider: u32,
    pub tier: ConnectivityTier,
    /// GPUs on the device, or 1 for a CPU device.
    pub units: u32,
    /// Higher is more reliable (e.g. hours of unbroken availability).
    pub reliability: u32,
}

/// The filters of an order in the caller's numbering.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Filters {
    /// Empty means anywhere.
    pub countries: Vec<u16>,
    pub min_tier: Option<ConnectivityTier>,
}

impl Filters {
    pub fn admits(&self, country: u16, tier: ConnectivityTier) -> bool {
        (self.countries.is_empty() || self.countries.contains(&country))
            && self.min_tier.is_none_or(|min| tier <= min)
    }
}

/// How many units: an exact count, or every match (Mega-Ray).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    Exactly(u32),
    Everything,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// Positions in the candidate slice; the first is the head.
    pub devices: Vec<usize>,
    pub units: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Shortfall {
    #[error("no device matches")]
    NothingMatches,
    #[error("{available} units match, {wanted} wanted; at most {placeable} can be placed exactly")]
    NotEnough {
        wanted: u32,
        available: u64,
        placeable: u32,
    },
}

/// Greedy exact fill: largest devices first, each taken if it still fits. Feasibility for
/// both the allocator and fillability, so they agree. Returns the units placed.
fn fill(sizes_largest_first: impl Iterator<Item = (u32, u64)>, wanted: u32) -> u32 {
    let mut remaining = wanted;
    for (size, count) in sizes_largest_first {
        if size == 0 || remaining == 0 {
            continue;
        }
        let take = u64::from(remaining / size).min(count) as u32;
        remaining -= take * size;
    }
    wanted - remaining
}

fn mix(key: u64, seed: u64) -> u64 {
    // SplitMix64 finaliser: a cheap, well-spread, deterministic tie-break.
    let mut z = key ^ seed.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Places the order on `candidates`. Deterministic for the same candidates (in any order) and
/// seed; never returns a device twice or one that a filter excludes.
pub fn allocate(
    candidates: &[Candidate],
    filters: &Filters,
    want: Want,
    seed: u64,
) -> Result<Placement, Shortfall> {
    let eligible: Vec<usize> = (0..candidates.len())
        .filter(|&i| filters.admits(candidates[i].country, candidates[i].tier))
        .collect();
    if eligible.is_empty() {
        return Err(Shortfall::NothingMatches);
    }
    // The device order every preference ends with, as a sortable key: better tier, more
    // reliable, larger, then a seeded tie-break.
    let better = |i: usize| {
        let c = &candidates[i];
        (
            c.tier,
            Reverse(c.reliability),
            Reverse(c.units),
            mix(c.key, seed),
            c.key,
            i,
        )
    };
    let mut chosen = match want {
        Want::Everything => eligible,
        Want::Exactly(wanted) => {
            let mut sizes: BTreeMap<u32, u64> = BTreeMap::new();
            for &i in &eligible {
                *sizes.entry(candidates[i].units).or_default() += 1;
            }
            let placeable = fill(sizes.iter().rev().map(|(s, c)| (*s, *c)), wanted);
            if placeable < wanted {
                return Err(Shortfall::NotEnough {
                    wanted,
                    available: sizes.iter().map(|(s, c)| u64::from(*s) * c).sum(),
                    placeable,
                });
            }
            preferred(candidates, &eligible, wanted, seed, &better)
                .unwrap_or_else(|| largest_first(candidates, eligible, wanted, &better))
        }
    };
    let head = (0..chosen.len())
        .min_by_key(|&a| {
            (
                Reverse(candidates[chosen[a]].reliability),
                better(chosen[a]),
            )
        })
        .unwrap_or(0);
    chosen.swap(0, head);
    let units = chosen.iter().map(|&i| candidates[i].units).sum();
    Ok(Placement {
        devices: chosen,
        units,
    })
}

/// Fewest countries, then fewest providers: countries and providers with the most units come
/// first. None when that order cannot reach the exact count.
fn preferred<K: Ord>(
    candidates: &[Candidate],
    eligible: &[usize],
    wanted: u32,
    seed: u64,
    better: &impl Fn(usize) -> K,
) -> Option<Vec<usize>> {
    let mut country_units: HashMap<u16, u64> = HashMap::new();
    let mut provider_units: HashMap<u32, u64> = HashMap::new();
    for &i in eligible {
        let c = &candidates[i];
        *country_units.entry(c.country).or_default() += u64::from(c.units);
        *provider_units.entry(c.provider).or_default() += u64::from(c.units);
    }
    // Keys computed once per device, not once per comparison.
    let mut ranked: Vec<_> = eligible
        .iter()
        .map(|&i| {
            let c = &candidates[i];
            (
                Reverse(country_units[&c.country]),
                mix(u64::from(c.country), seed),
                c.country,
                Reverse(provider_units[&c.provider]),
                c.provider,
                better(i),
            )
        })
        .zip(eligible.iter().copied())
        .collect();
    ranked.sort_unstable();
    let chosen = take_fitting(candidates, ranked.into_iter().map(|(_, i)| i), wanted);
    (chosen.iter().map(|&i| candidates[i].units).sum::<u32>() == wanted).then_some(chosen)
}

/// The feasibility rule's own order: largest devices first, then the best.
fn largest_first<K: Ord>(
    candidates: &[Candidate],
    mut order: Vec<usize>,
    wanted: u32,
    better: &impl Fn(usize) -> K,
) -> Vec<usize> {
    order.sort_by_cached_key(|&i| (Reverse(candidates[i].units), better(i)));
    take_fitting(candidates, order, wanted)
}

fn take_fitting(
    candidates: &[Candidate],
    order: impl IntoIterator<Item = usize>,
    wanted: u32,
) -> Vec<usize> {
    let mut remaining = wanted;
    let mut chosen = Vec::new();
    for i in order {
        if remaining == 0 {
            break;
        }
        if candidates[i].units > 0 && candidates[i].units <= remaining {
            remaining -= candidates[i].units;
            chosen.push(i);
        }
    }
    chosen
}

/// Free supply of one hardware in one place: `devices` devices with `units` each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SupplyCell {
    pub country: String,
    pub tier: ConnectivityTier,
    pub units: u32,
    pub devices: u64,
}

/// The answer to "can this be placed now?".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Fillability {
    pub fillable: bool,
    /// Units the exact request would get (all of them when fillable).
    pub placeable: u32,
    /// Why not, one line per filter that limits the supply.
    pub reasons: Vec<String>,
    /// The nearest requests that can be placed now.
    pub alternatives: Vec<Alternative>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Alternative {
    pub description: String,
    pub quantity: u32,
    pub countries: Vec<String>,
    pub min_tier: Option<ConnectivityTier>,
}

/// What [`fillability`] is asked about: the order's filters in country codes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Asked<'a> {
    /// "H100 80GB SXM", "CPU device": how the reasons name the hardware.
    pub hardware: &'a str,
    pub unit_name: &'a str,
    pub want: Want,
    pub countries: &'a [String],
    pub min_tier: Option<ConnectivityTier>,
}

fn placeable(
    cells: &[SupplyCell],
    countries: &[String],
    min_tier: Option<ConnectivityTier>,
    wanted: u32,
) -> (u32, u64) {
    let mut sizes: BTreeMap<u32, u64> = BTreeMap::new();
    let mut units = 0u64;
    for cell in cells {
        let admitted = (countries.is_empty() || countries.contains(&cell.country))
            && min_tier.is_none_or(|min| cell.tier <= min);
        if admitted {
            *sizes.entry(cell.units).or_default() += cell.devices;
            units += u64::from(cell.units) * cell.devices;
        }
    }
    (
        fill(sizes.iter().rev().map(|(s, c)| (*s, *c)), wanted),
        units,
    )
}

fn plural(n: u64, unit: &str) -> String {
    if n == 1 {
        format!("1 {unit}")
    } else {
        format!("{n} {unit}s")
    }
}

/// Whether the order can be placed on the free supply `cells` of its hardware, and if not, why
/// and what nearby orders can.
pub fn fillability(cells: &[SupplyCell], asked: &Asked) -> Fillability {
    let wanted = match asked.want {
        Want::Exactly(n) => n,
        Want::Everything => {
            let (_, units) = placeable(cells, asked.countries, asked.min_tier, 0);
            let fillable = units > 0;
            return Fillability {
                fillable,
                placeable: u32::try_from(units).unwrap_or(u32::MAX),
                reasons: if fillable {
                    Vec::new()
                } else {
                    vec![format!("no free {} matches the filters", asked.hardware)]
                },
                alternatives: Vec::new(),
            };
        }
    };
    let (placed, units) = placeable(cells, asked.countries, asked.min_tier, wanted);
    if placed == wanted {
        return Fillability {
            fillable: true,
            placeable: placed,
            reasons: Vec::new(),
            alternatives: Vec::new(),
        };
    }
    let unit = asked.unit_name;
    let (_, anywhere_units) = placeable(cells, &[], None, 0);
    let mut reasons = vec![format!(
        "{} free in the network in all",
        plural(anywhere_units, &format!("{} {unit}", asked.hardware))
    )];
    let place = if asked.countries.is_empty() {
        String::new()
    } else {
        format!(" in {}", asked.countries.join(", "))
    };
    if !asked.countries.is_empty() {
        let (_, in_countries) = placeable(cells, asked.countries, None, 0);
        reasons.push(format!("only {}{place}", plural(in_countries, unit)));
    }
    if let Some(tier) = asked.min_tier {
        reasons.push(format!(
            "only {}{place} at tier {tier} or better",
            plural(units, unit)
        ));
    }
    if units >= u64::from(wanted) {
        reasons.push(format!(
            "the free devices' sizes cannot add up to exactly {} (at most {placed})",
            plural(u64::from(wanted), unit)
        ));
    }

    let mut alternatives = Vec::new();
    if placed > 0 {
        alternatives.push(Alternative {
            description: format!("{} with the same filters", plural(u64::from(placed), unit)),
            quantity: placed,
            countries: asked.countries.to_vec(),
            min_tier: asked.min_tier,
        });
    }
    if !asked.countries.is_empty() {
        if let Some(countries) = more_countries(cells, asked, wanted) {
            alternatives.push(Alternative {
                description: format!("add {}", countries[asked.countries.len()..].join(", ")),
                quantity: wanted,
                countries,
                min_tier: asked.min_tier,
            });
        }
    }
    if let Some(min) = asked.min_tier {
        let lower = ConnectivityTier::ALL
            .iter()
            .filter(|t| **t > min)
            .find(|t| placeable(cells, asked.countries, Some(**t), wanted).0 == wanted);
        if let Some(tier) = lower {
            alternatives.push(Alternative {
                description: format!("accept tier {tier}"),
                quantity: wanted,
                countries: asked.countries.to_vec(),
                min_tier: Some(*tier),
            });
        }
    }
    Fillability {
        fillable: false,
        placeable: placed,
        reasons,
        alternatives,
    }
}

/// The asked countries plus the fewest others (largest supply first) that make it placeable.
fn more_countries(cells: &[SupplyCell], asked: &Asked, wanted: u32) -> Option<Vec<String>> {
    let mut others: BTreeMap<&str, u64> = BTreeMap::new();
    for cell in cells {
        if !asked.countries.contains(&cell.country) && asked.min_tier.is_none_or(|m| cell.tier <= m)
        {
            *others.entry(cell.country.as_str()).or_default() +=
                u64::from(cell.units) * cell.devices;
        }
    }
    let mut ranked: Vec<(&str, u64)> = others.into_iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let mut countries = asked.countries.to_vec();
    for (country, _) in ranked {
        countries.push(country.to_owned());
        if placeable(cells, &countries, asked.min_tier, wanted).0 == wanted {
            return Some(countries);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use ConnectivityTier as T;

    fn device(
        key: u64,
        country: u16,
        provider: u32,
        tier: T,
        units: u32,
        reliability: u32,
    ) -> Candidate {
        Candidate {
            key,
            country,
            provider,
            tier,
            units,
            reliability,
        }
    }

    #[test]
    fn one_country_and_one_provider_are_preferred_and_the_head_is_the_most_reliable() {
        let fleet = vec![
            device(1, 0, 10, T::Ultra, 4, 5),
            device(2, 1, 20, T::High, 4, 90),
            device(3, 1, 20, T::High, 4, 10),
            device(4, 1, 21, T::Ultra, 4, 50),
            device(5, 0, 11, T::Ultra, 4, 5),
        ];
        let p = allocate(&fleet, &Filters::default(), Want::Exactly(8), 7).unwrap();
        // Country 1 has 12 units, provider 20 has 8 of them.
        let mut keys: Vec<u64> = p.devices.iter().map(|&i| fleet[i].key).collect();
        assert_eq!(keys[0], 2, "head is the most reliable");
        keys.sort();
        assert_eq!(keys, [2, 3]);
        assert_eq!(p.units, 8);
    }

    #[test]
    fn filters_and_exact_sizes_limit_the_placement() {
        let fleet = vec![
            device(1, 0, 1, T::Low, 8, 0),
            device(2, 1, 2, T::Ultra, 8, 0),
        ];
        let f = Filters {
            countries: vec![0],
            min_tier: Some(T::Medium),
        };
        assert_eq!(
            allocate(&fleet, &f, Want::Exactly(1), 0),
            Err(Shortfall::NothingMatches)
        );
        assert_eq!(
            allocate(&fleet, &Filters::default(), Want::Exactly(4), 0),
            Err(Shortfall::NotEnough {
                wanted: 4,
                available: 16,
                placeable: 0
            })
        );
        let all = allocate(&fleet, &Filters::default(), Want::Everything, 0).unwrap();
        assert_eq!(all.units, 16);
    }

    fn cell(country: &str, tier: T, units: u32, devices: u64) -> SupplyCell {
        SupplyCell {
            country: country.into(),
            tier,
            units,
            devices,
        }
    }

    #[test]
    fn an_unfillable_request_says_why_per_filter_and_what_can_be_placed() {
        let cells = vec![
            cell("DE", T::High, 1, 5),
            cell("DE", T::Low, 1, 4),
            cell("FR", T::Ultra, 1, 20),
        ];
        let countries = vec!["DE".to_owned()];
        let asked = Asked {
            hardware: "H100 80GB SXM",
            unit_name: "GPU",
            want: Want::Exactly(8),
            countries: &countries,
            min_tier: Some(T::High),
        };
        let answer = fillability(&cells, &asked);
        assert!(!answer.fillable);
        assert_eq!(
            answer.reasons,
            [
                "29 H100 80GB SXM GPUs free in the network in all",
                "only 9 GPUs in DE",
                "only 5 GPUs in DE at tier high or better"
            ]
        );
        let described: Vec<&str> = answer
            .alternatives
            .iter()
            .map(|a| a.description.as_str())
            .collect();
        assert_eq!(
            described,
            ["5 GPUs with the same filters", "add FR", "accept tier low"]
        );
        assert_eq!(answer.alternatives[1].countries, ["DE", "FR"]);
    }

    fn fleet_strategy() -> impl Strategy<Value = Vec<Candidate>> {
        prop::collection::vec(
            (
                0u16..5,
                0u32..6,
                0usize..4,
                prop::sample::select(vec![1u32, 2, 4, 8]),
                0u32..100,
            ),
            0..40,
        )
        .prop_map(|rows| {
            rows.into_iter()
                .enumerate()
                .map(|(i, (country, provider, tier, units, reliability))| {
                    device(
                        i as u64 * 7 + 1,
                        country,
                        provider,
                        T::ALL[tier],
                        units,
                        reliability,
                    )
                })
                .collect()
        })
    }

    proptest! {
        #[test]
        fn placements_honour_filters_never_repeat_and_match_fillability(
            fleet in fleet_strategy(),
            countries in prop::collection::vec(0u16..5, 0..3),
            tier in prop::option::of(0usize..4),
            wanted in 1u32..40,
            seed in any::<u64>(),
        ) {
            let filters = Filters { countries: countries.clone(), min_tier: tier.map(|t| T::ALL[t]) };
            let placed = allocate(&fleet, &filters, Want::Exactly(wanted), seed);
            if let Ok(p) = &placed {
                prop_assert_eq!(p.units, wanted);
                let mut seen = p.devices.clone();
                seen.sort();
                seen.dedup();
                prop_assert_eq!(seen.len(), p.devices.len());
                for &i in &p.devices {
                    prop_assert!(filters.admits(fleet[i].country, fleet[i].tier));
                }
            }
            // Fillability from counts agrees with the allocator on the devices themselves.
            let mut cells: BTreeMap<(u16, T, u32), u64> = BTreeMap::new();
            for c in &fleet {
                *cells.entry((c.country, c.tier, c.units)).or_default() += 1;
            }
            let cells: Vec<SupplyCell> = cells.into_iter()
                .map(|((country, tier, units), devices)| cell(&country.to_string(), tier, units, devices))
                .collect();
            let codes: Vec<String> = countries.iter().map(|c| c.to_string()).collect();
            let asked = Asked { hardware: "X", unit_name: "GPU", want: Want::Exactly(wanted), countries: &codes, min_tier: filters.min_tier };
            prop_assert_eq!(fillability(&cells, &asked).fillable, placed.is_ok());
        }

        #[test]
        fn the_same_fleet_in_any_order_gives_the_same_devices(
            fleet in fleet_strategy(), wanted in 1u32..30, seed in any::<u64>(), rotate in 0usize..40,
        ) {
            let mut turned = fleet.clone();
            if !turned.is_empty() {
                let by = rotate % turned.len();
                turned.rotate_left(by);
            }
            let keys = |f: &[Candidate], p: Result<Placement, Shortfall>| {
                p.map(|p| p.devices.iter().map(|&i| f[i].key).collect::<Vec<_>>())
            };
            let a = keys(&fleet, allocate(&fleet, &Filters::default(), Want::Exactly(wanted), seed));
            let b = keys(&turned, allocate(&turned, &Filters::default(), Want::Exactly(wanted), seed));
            prop_assert_eq!(a, b);
        }
    }
}
