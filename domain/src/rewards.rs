//! Block rewards (DESIGN.md §2): every hour is a block that emits a fixed amount of the network
//! token, 95% to GPU devices and 5% to CPU devices, each share split by score among the devices
//! that are eligible. Integer arithmetic throughout: what a block pays never exceeds its
//! emission, and the rounding remainder stays in the rewards pool.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::fleet::{named_enum, ConnectivityTier, DeviceKind, DeviceStatus};
use crate::money::{MicroUsd, Tokens};

/// A block is one UTC hour; block `n` covers `[n, n + 1)` hours since the Unix epoch.
pub const BLOCK_MS: i64 = 3_600_000;
/// GPU devices share this percentage of each block's emission, CPU devices the rest.
pub const GPU_SHARE_PERCENT: i64 = 95;
/// Hours in a row a device must have been online, this block included, to be rewarded.
pub const STREAK_HOURS: u32 = 5;
/// An hour counts toward the streak when the device was online at least this long in it (90%).
pub const STREAK_HOUR_MIN_ONLINE_MS: i64 = BLOCK_MS * 9 / 10;

named_enum!(
    /// Where a device's reward from one block stands. Rewards are time-locked (issue 23): a
    /// block's reward is held until the device next passes a proof of its hardware, so a device
    /// caught faking loses every hour since it last proved itself, not only the hour it failed.
    RewardHold, "reward hold", {
        /// Waiting for the device's next proof; not claimable yet.
        Held => "held",
        /// A later proof passed: claimable.
        Released => "released",
        /// A later proof failed or went unanswered: back to the rewards pool.
        Forfeited => "forfeited",
    }
);

impl RewardHold {
    /// How the earnings page names it.
    pub fn label(self) -> &'static str {
        match self {
            RewardHold::Held => "held until the device's next proof",
            RewardHold::Released => "claimable",
            RewardHold::Forfeited => "forfeited: a later proof failed or was missed",
        }
    }
}

/// The block that contains `at_ms`.
pub fn block_of(at_ms: i64) -> i64 {
    at_ms.div_euclid(BLOCK_MS)
}

/// How much a device's hardware weighs in its pool. A GPU device weighs its GPUs' reference
/// price per hour in cents times their count, so an H100 outweighs an RTX 3090 by what renters
/// pay for them; a CPU device weighs its cores.
pub fn hardware_multiplier(
    kind: DeviceKind,
    gpu_price: MicroUsd,
    gpu_count: u32,
    cpu_cores: u32,
) -> u64 {
    match kind {
        DeviceKind::Gpu => (gpu_price.micros().max(0) as u64 / 10_000) * u64::from(gpu_count),
        DeviceKind::Cpu => u64::from(cpu_cores),
    }
}

/// How much a device's measured connectivity counts, in percent.
pub fn connectivity_factor_percent(tier: ConnectivityTier) -> u64 {
    match tier {
        ConnectivityTier::Ultra => 100,
        ConnectivityTier::High => 90,
        ConnectivityTier::Medium => 75,
        ConnectivityTier::Low => 50,
    }
}

/// What a block needs to know of one device that was online in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub device_id: String,
    pub owner_wallet: String,
    pub kind: DeviceKind,
    pub multiplier: u64,
    /// Online time within the block (capped at the block's length).
    pub online_ms: i64,
    pub tier: Option<ConnectivityTier>,
    pub verified: bool,
    pub status: DeviceStatus,
    /// Hours in a row, ending with this block, with at least [`STREAK_HOUR_MIN_ONLINE_MS`] online.
    pub streak_hours: u32,
    /// An idle-cap violation was recorded for it in the block's hour: busy with other work
    /// while it claimed to be idle, it forfeits the hour's reward (DESIGN.md §3).
    pub violated_idle_cap: bool,
    /// A proof of its hardware due in the block's hour failed or went unanswered: what it
    /// claimed to be was not shown to be there, so the hour earns nothing.
    pub failed_proof: bool,
}

/// Why a device online in a block earned nothing from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case", tag = "reason")]
pub enum Ineligible {
    NotVerified,
    Blocked,
    /// Busy with other work while idle in the block's hour.
    IdleCapViolation,
    /// A proof of its hardware due in the block's hour failed or was missed.
    FailedProof,
    /// No connectivity measurement (or one below the lowest tier).
    NoTier,
    ShortStreak {
        hours: u32,
    },
    /// Its hardware has no weight (an unsupported GPU).
    NoWeight,
}

impl fmt::Display for Ineligible {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ineligible::NotVerified => f.write_str("not verified"),
            Ineligible::Blocked => f.write_str("blocked"),
            Ineligible::IdleCapViolation => {
                f.write_str("busy with other work while idle this hour: its reward is forfeited")
            }
            Ineligible::FailedProof => f.write_str(
                "failed or missed a proof of its hardware this hour: its reward is forfeited",
            ),
            Ineligible::NoTier => f.write_str("no measured connectivity tier"),
            Ineligible::ShortStreak { hours } => write!(
                f,
                "online {hours} h in a row; rewards start after {STREAK_HOURS} h"
            ),
            Ineligible::NoWeight => f.write_str("hardware not in the catalog"),
        }
    }
}

/// One device's line in a block: its score, its share of its pool in parts per million, and
/// its reward; or why it earned nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RewardRecord {
    pub device_id: String,
    pub owner_wallet: String,
    pub kind: DeviceKind,
    pub score: u64,
    pub share_ppm: u32,
    pub reward: Tokens,
    pub ineligible: Option<Ineligible>,
}

/// A closed block's split of its emission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockSplit {
    pub gpu_pool: Tokens,
    pub cpu_pool: Tokens,
    /// What the records pay in all; at most the emission.
    pub paid: Tokens,
    pub records: Vec<RewardRecord>,
}

impl BlockSplit {
    /// How many devices the block pays.
    pub fn rewarded(&self) -> usize {
        self.records
            .iter()
            .filter(|r| r.reward > Tokens::ZERO)
            .count()
    }
}

impl Candidate {
    fn ineligible(&self) -> Option<Ineligible> {
        if self.status == DeviceStatus::Blocked {
            Some(Ineligible::Blocked)
        } else if self.failed_proof {
            Some(Ineligible::FailedProof)
        } else if self.violated_idle_cap {
            Some(Ineligible::IdleCapViolation)
        } else if !self.verified {
            Some(Ineligible::NotVerified)
        } else if self.multiplier == 0 {
            Some(Ineligible::NoWeight)
        } else if self.tier.is_none() {
            Some(Ineligible::NoTier)
        } else if self.streak_hours < STREAK_HOURS {
            Some(Ineligible::ShortStreak {
                hours: self.streak_hours,
            })
        } else {
            None
        }
    }

    /// Hardware multiplier × online milliseconds in the block × connectivity factor.
    fn score(&self) -> u64 {
        let online = self.online_ms.clamp(0, BLOCK_MS) as u64;
        let factor = self.tier.map(connectivity_factor_percent).unwrap_or(0);
        self.multiplier
            .saturating_mul(online)
            .saturating_mul(factor)
    }
}

/// Splits `emission` over `candidates`: 95% to the GPU pool and the rest to the CPU pool, each
/// pool over its eligible devices in proportion to their scores (rounded down). Records come
/// back in the order of the candidates. Deterministic: the same input gives the same split.
pub fn split_block(emission: Tokens, candidates: &[Candidate]) -> BlockSplit {
    let emission_units = emission.units().max(0);
    let gpu_pool =
        emission_units / 100 * GPU_SHARE_PERCENT + emission_units % 100 * GPU_SHARE_PERCENT / 100;
    let cpu_pool = emission_units - gpu_pool;
    let scored: Vec<(u64, Option<Ineligible>)> = candidates
        .iter()
        .map(|c| match c.ineligible() {
            Some(why) => (0, Some(why)),
            None => (c.score(), None),
        })
        .collect();
    let total = |kind: DeviceKind| -> u128 {
        candidates
            .iter()
            .zip(&scored)
            .filter(|(c, _)| c.kind == kind)
            .map(|(_, (score, _))| u128::from(*score))
            .sum()
    };
    let (gpu_total, cpu_total) = (total(DeviceKind::Gpu), total(DeviceKind::Cpu));
    let mut paid: i64 = 0;
    let records = candidates
        .iter()
        .zip(scored)
        .map(|(c, (score, ineligible))| {
            let (pool, pool_total) = match c.kind {
                DeviceKind::Gpu => (gpu_pool, gpu_total),
                DeviceKind::Cpu => (cpu_pool, cpu_total),
            };
            let (reward, share_ppm) = if pool_total == 0 || score == 0 {
                (0, 0)
            } else {
                let score = u128::from(score);
                (
                    // pool ≤ i64::MAX and score ≤ total, so the quotient fits in i64.
                    (pool as u128 * score / pool_total) as i64,
                    (score * 1_000_000 / pool_total) as u32,
                )
            };
            paid += reward;
            RewardRecord {
                device_id: c.device_id.clone(),
                owner_wallet: c.owner_wallet.clone(),
                kind: c.kind,
                score,
                share_ppm,
                reward: Tokens::from_units(reward),
                ineligible,
            }
        })
        .collect();
    BlockSplit {
        gpu_pool: Tokens::from_units(gpu_pool),
        cpu_pool: Tokens::from_units(cpu_pool),
        paid: Tokens::from_units(paid),
        records,
    }
}

/// A closed block as pages list it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BlockSummary {
    pub number: i64,
    pub closed_at_ms: i64,
    pub emission: Tokens,
    pub paid: Tokens,
    pub devices_scored: i64,
    pub devices_rewarded: i64,
}

impl BlockSummary {
    /// When the block's hour began.
    pub fn starts_at_ms(&self) -> i64 {
        self.number * BLOCK_MS
    }
}

/// One of a provider's devices in one block, as the earnings page lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeviceBlockReward {
    pub block_number: i64,
    pub device_id: String,
    pub device_name: String,
    pub score: i64,
    pub share_ppm: i64,
    pub reward: Tokens,
    /// Why it earned nothing, when it did not.
    pub ineligible: Option<String>,
    /// Whether the reward waits for a proof, was released or was forfeited.
    pub hold: RewardHold,
}

/// A provider's money, as `/worker/earnings` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProviderEarnings {
    /// Hire earnings settled and not yet claimed.
    pub claimable: MicroUsd,
    /// Block rewards not yet claimed.
    pub claimable_tokens: Tokens,
    /// Block rewards held until their devices' next passed proof.
    pub held_tokens: Tokens,
    /// Every hire of the provider's devices, all time: earned (settled, before the fee) and
    /// forfeited (devices down or failed while hired).
    pub hired_earned: MicroUsd,
    pub hired_forfeited: MicroUsd,
    /// Per device and cluster, newest first.
    pub hires: Vec<crate::cluster::HireEarning>,
    /// The devices' lines in the newest blocks.
    pub rewards: Vec<DeviceBlockReward>,
    /// Every movement of the provider's claimable balance, newest first.
    pub payments: Vec<crate::ledger::StatementLine>,
    /// Hire earnings and block rewards received per day, oldest first.
    pub daily_hire: Vec<crate::ledger::DailyAmount>,
    pub daily_rewards: Vec<crate::ledger::DailyAmount>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn device(id: &str, kind: DeviceKind, multiplier: u64) -> Candidate {
        Candidate {
            device_id: id.into(),
            owner_wallet: format!("wallet-{id}"),
            kind,
            multiplier,
            online_ms: BLOCK_MS,
            tier: Some(ConnectivityTier::Ultra),
            verified: true,
            status: DeviceStatus::Idle,
            streak_hours: STREAK_HOURS,
            violated_idle_cap: false,
            failed_proof: false,
        }
    }

    fn reward(split: &BlockSplit, id: &str) -> i64 {
        split
            .records
            .iter()
            .find(|r| r.device_id == id)
            .map(|r| r.reward.units())
            .unwrap()
    }

    #[test]
    fn gpus_share_95_percent_and_cpus_5_by_score() {
        let h100 = hardware_multiplier(DeviceKind::Gpu, MicroUsd::from_micros(2_490_000), 1, 0);
        let rtx = hardware_multiplier(DeviceKind::Gpu, MicroUsd::from_micros(830_000), 1, 0);
        assert_eq!((h100, rtx), (249, 83));
        let fleet = [
            device("h100", DeviceKind::Gpu, h100),
            device("rtx", DeviceKind::Gpu, rtx),
            device("cpu-a", DeviceKind::Cpu, 16),
            device("cpu-b", DeviceKind::Cpu, 48),
        ];
        let split = split_block(Tokens::from_units(1_000_000_000), &fleet);
        assert_eq!(split.gpu_pool.units(), 950_000_000);
        assert_eq!(split.cpu_pool.units(), 50_000_000);
        assert_eq!(reward(&split, "h100"), 712_500_000);
        assert_eq!(reward(&split, "rtx"), 237_500_000);
        assert_eq!(reward(&split, "cpu-a"), 12_500_000);
        assert_eq!(reward(&split, "cpu-b"), 37_500_000);
        assert_eq!(split.records[0].share_ppm, 750_000);
        assert_eq!(split.paid.units(), 1_000_000_000);
    }

    #[test]
    fn uptime_and_connectivity_scale_the_score() {
        let mut half = device("half", DeviceKind::Gpu, 100);
        half.online_ms = BLOCK_MS / 2;
        let mut low = device("low", DeviceKind::Gpu, 100);
        low.tier = Some(ConnectivityTier::Low);
        let full = device("full", DeviceKind::Gpu, 100);
        let split = split_block(Tokens::from_units(2_000_000), &[half, low, full]);
        // Scores 50 : 50 : 100 of the 1,900,000-unit GPU pool.
        assert_eq!(reward(&split, "half"), 475_000);
        assert_eq!(reward(&split, "low"), 475_000);
        assert_eq!(reward(&split, "full"), 950_000);
    }

    #[test]
    fn ineligible_devices_get_nothing_and_say_why() {
        let mut pending = device("pending", DeviceKind::Gpu, 100);
        pending.verified = false;
        let mut fresh = device("fresh", DeviceKind::Gpu, 100);
        fresh.streak_hours = 3;
        let mut untiered = device("untiered", DeviceKind::Gpu, 100);
        untiered.tier = None;
        let mut blocked = device("blocked", DeviceKind::Gpu, 100);
        blocked.status = DeviceStatus::Blocked;
        let mut unknown = device("unknown", DeviceKind::Gpu, 0);
        unknown.status = DeviceStatus::Unsupported;
        let mut busy = device("busy", DeviceKind::Gpu, 100);
        busy.violated_idle_cap = true;
        let mut faked = device("faked", DeviceKind::Gpu, 100);
        faked.failed_proof = true;
        let split = split_block(
            Tokens::from_units(1_000),
            &[
                pending,
                fresh,
                untiered,
                blocked,
                unknown,
                busy,
                faked,
                device("ok", DeviceKind::Gpu, 1),
            ],
        );
        let why: Vec<Option<String>> = split
            .records
            .iter()
            .map(|r| r.ineligible.map(|i| i.to_string()))
            .collect();
        assert_eq!(
            why,
            [
                Some("not verified".to_owned()),
                Some("online 3 h in a row; rewards start after 5 h".to_owned()),
                Some("no measured connectivity tier".to_owned()),
                Some("blocked".to_owned()),
                Some("hardware not in the catalog".to_owned()),
                Some(
                    "busy with other work while idle this hour: its reward is forfeited".to_owned()
                ),
                Some(
                    "failed or missed a proof of its hardware this hour: its reward is forfeited"
                        .to_owned()
                ),
                None,
            ]
        );
        assert_eq!(reward(&split, "ok"), 950);
        assert_eq!(
            split.paid.units(),
            950,
            "no CPU device: the CPU share stays in the pool"
        );
    }

    #[test]
    fn blocks_are_utc_hours() {
        assert_eq!(block_of(0), 0);
        assert_eq!(block_of(BLOCK_MS - 1), 0);
        assert_eq!(block_of(BLOCK_MS), 1);
    }

    proptest! {
        #[test]
        fn a_block_never_pays_more_than_each_pool(
            emission in 0i64..1_000_000_000_000_000,
            devices in prop::collection::vec((any::<bool>(), 0u64..100_000, 0i64..BLOCK_MS * 2, 0u32..8, any::<bool>()), 0..40),
        ) {
            let candidates: Vec<Candidate> = devices.iter().enumerate().map(|(i, (gpu, multiplier, online, streak, verified))| Candidate {
                device_id: format!("d{i}"),
                owner_wallet: "w".into(),
                kind: if *gpu { DeviceKind::Gpu } else { DeviceKind::Cpu },
                multiplier: *multiplier,
                online_ms: *online,
                tier: Some(ConnectivityTier::ALL[i % 4]),
                verified: *verified,
                status: DeviceStatus::Idle,
                streak_hours: *streak,
                violated_idle_cap: i % 7 == 3,
                failed_proof: i % 11 == 5,
            }).collect();
            let split = split_block(Tokens::from_units(emission), &candidates);
            prop_assert_eq!(split.gpu_pool.units() + split.cpu_pool.units(), emission);
            let paid = |kind| split.records.iter().filter(|r| r.kind == kind).map(|r| r.reward.units()).sum::<i64>();
            prop_assert!(paid(DeviceKind::Gpu) <= split.gpu_pool.units());
            prop_assert!(paid(DeviceKind::Cpu) <= split.cpu_pool.units());
            prop_assert_eq!(paid(DeviceKind::Gpu) + paid(DeviceKind::Cpu), split.paid.units());
            for (record, candidate) in split.records.iter().zip(&candidates) {
                prop_assert!(record.reward.units() >= 0);
                prop_assert_eq!(record.ineligible, candidate.ineligible());
                if record.ineligible.is_some() {
                    prop_assert_eq!((record.score, record.reward), (0, Tokens::ZERO));
                }
            }
            prop_assert_eq!(split_block(Tokens::from_units(emission), &candidates), split);
        }
    }
}
