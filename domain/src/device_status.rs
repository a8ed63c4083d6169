//! The device status state machine (DESIGN.md §2): one function decides every change of a
//! device's status from an event, and says why, so the fleet service records a reason with each
//! transition and nothing else sets a status by hand.

use serde::{Deserialize, Serialize};

use crate::fleet::DeviceStatus;

/// Consecutive failed proof-of-work challenges after which a device is blocked.
pub const MAX_VERIFICATION_FAILURES: u32 = 3;

/// Idle-cap violations within [`VIOLATION_WINDOW_MS`] after which a device is blocked for abuse
/// (DESIGN.md §3: "violations are recorded and can block it").
pub const VIOLATIONS_BEFORE_BLOCK: i64 = 3;
/// The window [`VIOLATIONS_BEFORE_BLOCK`] counts in: a day.
pub const VIOLATION_WINDOW_MS: i64 = 24 * 3_600_000;

/// Whether a device in `status` earns uptime from its heartbeats. A paused device is not on
/// offer and a blocked one is not trusted, so neither is credited, however it heartbeats.
pub fn earns_uptime(status: DeviceStatus) -> bool {
    match status {
        DeviceStatus::Pending
        | DeviceStatus::Idle
        | DeviceStatus::Hired
        | DeviceStatus::Down
        | DeviceStatus::Inactive => true,
        DeviceStatus::Paused
        | DeviceStatus::Blocked
        | DeviceStatus::Unsupported
        | DeviceStatus::Terminated => false,
    }
}

/// What happened to a device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum DeviceEvent {
    VerificationPassed,
    /// `consecutive` counts this failure too.
    VerificationFailed {
        consecutive: u32,
    },
    HardwareUnsupported {
        reported: String,
    },
    Hired {
        cluster_id: String,
    },
    Released {
        cluster_id: String,
    },
    PausedByOwner,
    ResumedByOwner,
    HeartbeatsMissed,
    HeartbeatsResumed,
    /// Down for longer than the inactivity window (5 days by default).
    DownTooLong,
    RemovedByOwner,
    BlockedForAbuse {
        reason: String,
    },
    /// An operator lifted a block; the device must pass verification again.
    UnblockedByOperator,
}

/// A device's status and whether it has ever passed verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeviceState {
    pub status: DeviceStatus,
    pub verified: bool,
}

/// An allowed change, with the reason to record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Transition {
    pub to: DeviceState,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a {from} device cannot take '{event}': {why}")]
pub struct TransitionError {
    pub from: DeviceStatus,
    pub event: &'static str,
    pub why: &'static str,
}

impl DeviceEvent {
    fn name(&self) -> &'static str {
        match self {
            DeviceEvent::VerificationPassed => "verification passed",
            DeviceEvent::VerificationFailed { .. } => "verification failed",
            DeviceEvent::HardwareUnsupported { .. } => "hardware unsupported",
            DeviceEvent::Hired { .. } => "hired",
            DeviceEvent::Released { .. } => "released",
            DeviceEvent::PausedByOwner => "paused by owner",
            DeviceEvent::ResumedByOwner => "resumed by owner",
            DeviceEvent::HeartbeatsMissed => "heartbeats missed",
            DeviceEvent::HeartbeatsResumed => "heartbeats resumed",
            DeviceEvent::DownTooLong => "down too long",
            DeviceEvent::RemovedByOwner => "removed by owner",
            DeviceEvent::BlockedForAbuse { .. } => "blocked for abuse",
            DeviceEvent::UnblockedByOperator => "unblocked by the operator",
        }
    }
}

impl DeviceState {
    /// A device that has just registered.
    pub const NEW: DeviceState = DeviceState {
        status: DeviceStatus::Pending,
        verified: false,
    };

    /// Where a device goes back to when it is available again: idle if verified, else pending.
    fn available(self) -> DeviceState {
        let status = if self.verified {
            DeviceStatus::Idle
        } else {
            DeviceStatus::Pending
        };
        DeviceState { status, ..self }
    }

    pub fn apply(self, event: &DeviceEvent) -> Result<Transition, TransitionError> {
        use DeviceEvent as E;
        use DeviceStatus as S;
        let refuse = |why| {
            Err(TransitionError {
                from: self.status,
                event: event.name(),
                why,
            })
        };
        let to = |to: DeviceState, reason: String| Ok(Transition { to, reason });
        let with = |status| DeviceState { status, ..self };

        if self.status == S::Terminated {
            return refuse("the device was removed");
        }
        match (self.status, event) {
            (S::Pending | S::Idle, E::VerificationPassed) => to(
                DeviceState { status: S::Idle, verified: true },
                "passed the proof-of-work verification".into(),
            ),
            (S::Pending | S::Idle, E::VerificationFailed { consecutive }) if *consecutive >= MAX_VERIFICATION_FAILURES => to(
                DeviceState { status: S::Blocked, verified: false },
                format!("failed verification {consecutive} times in a row"),
            ),
            (S::Pending | S::Idle, E::VerificationFailed { consecutive }) => to(
                DeviceState { status: S::Pending, verified: false },
                format!("failed verification ({consecutive} of {MAX_VERIFICATION_FAILURES} allowed); it will be challenged again"),
            ),
            // A spot check while hired (issue 23) that passes changes nothing; one that fails
            // takes the device out of its cluster (the sweep replaces it) like a failure idle.
            (S::Hired, E::VerificationPassed) => refuse("a hired device stays hired when it passes"),
            (S::Hired, E::VerificationFailed { consecutive }) if *consecutive >= MAX_VERIFICATION_FAILURES => to(
                DeviceState { status: S::Blocked, verified: false },
                format!("failed verification {consecutive} times in a row, the last a spot check while hired"),
            ),
            (S::Hired, E::VerificationFailed { consecutive }) => to(
                DeviceState { status: S::Pending, verified: false },
                format!("failed a spot check of its hardware while hired ({consecutive} of {MAX_VERIFICATION_FAILURES} allowed); it will be challenged again"),
            ),
            (S::Pending, E::HardwareUnsupported { reported }) => {
                to(with(S::Unsupported), format!("hardware '{reported}' is not in the GPU catalog"))
            }
            (S::Idle, E::Hired { cluster_id }) if self.verified => {
                to(with(S::Hired), format!("hired by cluster {cluster_id}"))
            }
            (_, E::Hired { .. }) => refuse("only idle, verified devices can be hired"),
            (S::Hired, E::Released { cluster_id }) => {
                to(with(S::Idle), format!("released by cluster {cluster_id}"))
            }
            (S::Idle | S::Pending | S::Down, E::PausedByOwner) => to(with(S::Paused), "paused by its owner".into()),
            (S::Hired, E::PausedByOwner) => refuse("it is hired by a cluster; pause it when the cluster ends"),
            (S::Paused, E::ResumedByOwner) => to(self.available(), "resumed by its owner".into()),
            (S::Idle | S::Hired | S::Pending, E::HeartbeatsMissed) => {
                to(with(S::Down), "stopped sending heartbeats".into())
            }
            (S::Down | S::Inactive, E::HeartbeatsResumed) => {
                to(self.available(), "heartbeats resumed".into())
            }
            (S::Down, E::DownTooLong) => to(with(S::Inactive), "down for longer than the inactivity window".into()),
            (S::Hired, E::RemovedByOwner) => refuse("it is hired by a cluster; remove it when the cluster ends"),
            (_, E::RemovedByOwner) => to(with(S::Terminated), "removed by its owner".into()),
            (S::Blocked, E::BlockedForAbuse { .. }) => refuse("the device is already blocked"),
            (_, E::BlockedForAbuse { reason }) => {
                to(DeviceState { status: S::Blocked, verified: false }, format!("blocked: {reason}"))
            }
            (S::Blocked, E::UnblockedByOperator) => to(
                DeviceState { status: S::Pending, verified: false },
                "unblocked by the operator; it must pass verification again".into(),
            ),
            (_, E::UnblockedByOperator) => refuse("only a blocked device can be unblocked"),
            _ => refuse("that event does not apply in this status"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use DeviceStatus as S;

    fn run(events: &[DeviceEvent]) -> Result<DeviceState, TransitionError> {
        events.iter().try_fold(DeviceState::NEW, |state, event| {
            state.apply(event).map(|t| t.to)
        })
    }

    fn hired() -> DeviceEvent {
        DeviceEvent::Hired {
            cluster_id: "c-1".into(),
        }
    }

    #[test]
    fn a_new_device_becomes_rentable_only_after_verification() {
        assert!(run(&[hired()]).is_err());
        let verified = run(&[DeviceEvent::VerificationPassed]).unwrap();
        assert_eq!(
            verified,
            DeviceState {
                status: S::Idle,
                verified: true
            }
        );
        assert_eq!(
            run(&[DeviceEvent::VerificationPassed, hired()])
                .unwrap()
                .status,
            S::Hired
        );
    }

    #[test]
    fn repeated_verification_failures_block_the_device() {
        let once = DeviceState::NEW
            .apply(&DeviceEvent::VerificationFailed { consecutive: 1 })
            .unwrap();
        assert_eq!(once.to.status, S::Pending);
        assert!(once.reason.contains("1 of 3"));
        let third = DeviceState::NEW
            .apply(&DeviceEvent::VerificationFailed { consecutive: 3 })
            .unwrap();
        assert_eq!(third.to.status, S::Blocked);
    }

    #[test]
    fn only_an_operator_lifts_a_block_and_the_device_is_verified_again() {
        let blocked = run(&[
            DeviceEvent::VerificationPassed,
            DeviceEvent::BlockedForAbuse {
                reason: "3 idle-cap violations".into(),
            },
        ])
        .unwrap();
        assert_eq!(blocked.status, S::Blocked);
        assert!(blocked.apply(&DeviceEvent::ResumedByOwner).is_err());
        assert!(blocked.apply(&DeviceEvent::HeartbeatsResumed).is_err());
        let lifted = blocked.apply(&DeviceEvent::UnblockedByOperator).unwrap();
        assert_eq!(
            lifted.to,
            DeviceState {
                status: S::Pending,
                verified: false
            }
        );
        let idle = run(&[DeviceEvent::VerificationPassed]).unwrap();
        assert!(idle
            .apply(&DeviceEvent::UnblockedByOperator)
            .unwrap_err()
            .to_string()
            .contains("only a blocked device"));
    }

    #[test]
    fn paused_and_blocked_devices_earn_no_uptime() {
        assert!(earns_uptime(S::Idle) && earns_uptime(S::Hired) && earns_uptime(S::Pending));
        assert!(!earns_uptime(S::Paused) && !earns_uptime(S::Blocked));
    }

    #[test]
    fn a_failed_spot_check_takes_a_hired_device_out_and_repeated_ones_block_it() {
        let hired_state = run(&[DeviceEvent::VerificationPassed, hired()]).unwrap();
        let once = hired_state
            .apply(&DeviceEvent::VerificationFailed { consecutive: 1 })
            .unwrap();
        assert_eq!(
            once.to,
            DeviceState {
                status: S::Pending,
                verified: false
            }
        );
        assert!(once.reason.contains("spot check"), "{}", once.reason);
        let last = hired_state
            .apply(&DeviceEvent::VerificationFailed {
                consecutive: MAX_VERIFICATION_FAILURES,
            })
            .unwrap();
        assert_eq!(last.to.status, S::Blocked);
    }

    #[test]
    fn a_hired_device_cannot_be_paused_or_removed_and_stays_hired_when_it_passes() {
        let state = run(&[DeviceEvent::VerificationPassed, hired()]).unwrap();
        for event in [
            DeviceEvent::PausedByOwner,
            DeviceEvent::RemovedByOwner,
            DeviceEvent::VerificationPassed,
        ] {
            let err = state.apply(&event).unwrap_err();
            assert_eq!(err.from, S::Hired, "{err}");
        }
        assert_eq!(
            state.apply(&DeviceEvent::RemovedByOwner).unwrap_err().to_string(),
            "a hired device cannot take 'removed by owner': it is hired by a cluster; remove it when the cluster ends"
        );
    }

    #[test]
    fn a_device_that_comes_back_returns_to_where_its_verification_allows() {
        let verified_down = run(&[
            DeviceEvent::VerificationPassed,
            hired(),
            DeviceEvent::HeartbeatsMissed,
        ])
        .unwrap();
        assert_eq!(verified_down.status, S::Down);
        assert_eq!(
            verified_down
                .apply(&DeviceEvent::HeartbeatsResumed)
                .unwrap()
                .to
                .status,
            S::Idle
        );
        let unverified = run(&[
            DeviceEvent::HeartbeatsMissed,
            DeviceEvent::DownTooLong,
            DeviceEvent::HeartbeatsResumed,
        ])
        .unwrap();
        assert_eq!(unverified.status, S::Pending);
    }

    #[test]
    fn unsupported_hardware_names_what_was_reported() {
        let t = DeviceState::NEW
            .apply(&DeviceEvent::HardwareUnsupported {
                reported: "Matrox G200".into(),
            })
            .unwrap();
        assert_eq!(t.to.status, S::Unsupported);
        assert!(t.reason.contains("Matrox G200"));
    }

    fn any_event() -> impl Strategy<Value = DeviceEvent> {
        prop_oneof![
            Just(DeviceEvent::VerificationPassed),
            (1u32..5).prop_map(|consecutive| DeviceEvent::VerificationFailed { consecutive }),
            Just(DeviceEvent::HardwareUnsupported {
                reported: "X".into()
            }),
            Just(DeviceEvent::Hired {
                cluster_id: "c".into()
            }),
            Just(DeviceEvent::Released {
                cluster_id: "c".into()
            }),
            Just(DeviceEvent::PausedByOwner),
            Just(DeviceEvent::ResumedByOwner),
            Just(DeviceEvent::HeartbeatsMissed),
            Just(DeviceEvent::HeartbeatsResumed),
            Just(DeviceEvent::DownTooLong),
            Just(DeviceEvent::RemovedByOwner),
            Just(DeviceEvent::BlockedForAbuse { reason: "r".into() }),
            Just(DeviceEvent::UnblockedByOperator),
        ]
    }

    proptest! {
        #[test]
        fn every_history_keeps_the_invariants(events in proptest::collection::vec(any_event(), 0..60)) {
            let mut state = DeviceState::NEW;
            for event in &events {
                match state.apply(event) {
                    Ok(t) => {
                        prop_assert!(!t.reason.is_empty());
                        // Only verified devices are ever idle or hired.
                        if matches!(t.to.status, S::Idle | S::Hired) {
                            prop_assert!(t.to.verified);
                        }
                        // Hiring happens only from idle.
                        if t.to.status == S::Hired && state.status != S::Hired {
                            prop_assert_eq!(state.status, S::Idle);
                        }
                        state = t.to;
                    }
                    Err(e) => {
                        prop_assert_eq!(e.from, state.status);
                        prop_assert!(!e.to_string().is_empty());
                    }
                }
            }
            // Removal is final.
            if state.status == S::Terminated {
                for event in &events {
                    prop_assert!(state.apply(event).is_err());
                }
            }
        }
    }
}
