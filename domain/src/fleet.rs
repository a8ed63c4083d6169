//! Fleet vocabulary shared by every layer: device status, OS, kind and connectivity tier, each
//! with the exact lowercase names the database and the API use.

macro_rules! named_enum {
    ($(#[$meta:meta])* $name:ident, $what:literal, { $($(#[$variant_meta:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $($(#[$variant_meta])* $variant),+ }

        // On the wire a value is its name, the same text the database and the pages use, so
        // what the API documents, accepts and returns is one spelling (`macos`, not `mac_os`).
        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<$name, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                $name::parse(&text).map_err(serde::de::Error::custom)
            }
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            pub fn parse(text: &str) -> Result<$name, $crate::fleet::UnknownName> {
                match text {
                    $($text => Ok($name::$variant),)+
                    _ => Err($crate::fleet::UnknownName { what: $what, value: text.to_owned(), allowed: &[$($text),+] }),
                }
            }
        }

        // Its names, as the OpenAPI document lists them.
        #[cfg(feature = "openapi")]
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::schema::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .enum_values(Some([$($text),+]))
                    .into()
            }
        }

        #[cfg(feature = "openapi")]
        impl utoipa::ToSchema for $name {}

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        /// A value equals the name it is stored and sent as.
        impl PartialEq<&str> for $name {
            fn eq(&self, name: &&str) -> bool {
                self.as_str() == *name
            }
        }
    };
}
pub(crate) use named_enum;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} '{value}' (expected one of: {})", allowed.join(", "))]
pub struct UnknownName {
    pub what: &'static str,
    pub value: String,
    pub allowed: &'static [&'static str],
}

named_enum!(
    /// Where a device is in its life (see DESIGN.md §2).
    DeviceStatus, "device status", {
        Pending => "pending",
        Idle => "idle",
        Hired => "hired",
        Paused => "paused",
        Down => "down",
        Blocked => "blocked",
        Unsupported => "unsupported",
        Inactive => "inactive",
        Terminated => "terminated",
    }
);

named_enum!(OperatingSystem, "operating system", { Linux => "linux", Windows => "windows", MacOs => "macos" });

named_enum!(DeviceKind, "device kind", { Gpu => "gpu", Cpu => "cpu" });

named_enum!(
    /// What an owner can do to a device from the Worker tab (the last path segment in the API).
    OwnerAction, "device action", {
        Pause => "pause",
        Resume => "resume",
        Remove => "remove",
        RevokeCredential => "revoke-credential",
    }
);

named_enum!(
    /// Measured (never declared) network tier, best first.
    ConnectivityTier, "connectivity tier", {
        Ultra => "ultra",
        High => "high",
        Medium => "medium",
        Low => "low",
    }
);

/// How long after a measurement a device is measured again. A measurement below the lowest
/// tier leaves the device unhireable; a dip on a busy machine should not keep it so for a day,
/// so after `tierless_in_a_row` such measurements the next comes after a minute, doubling with
/// each one that finds no tier again (a slow link is not flooded), up to `regular_ms`.
pub fn remeasure_after_ms(tierless_in_a_row: u32, regular_ms: i64) -> i64 {
    match tierless_in_a_row {
        0 => regular_ms,
        n => (60_000i64 << (n - 1).min(20)).min(regular_ms),
    }
}

impl ConnectivityTier {
    /// Minimum (download, upload) throughput in MB/s for each tier, best first (DESIGN.md §2).
    const THRESHOLDS: [(ConnectivityTier, i64, i64); 4] = [
        (ConnectivityTier::Ultra, 1600, 1200),
        (ConnectivityTier::High, 800, 600),
        (ConnectivityTier::Medium, 400, 300),
        (ConnectivityTier::Low, 100, 10),
    ];

    /// The best tier whose download and upload floors the measurement meets; None below `low`.
    pub fn from_measurement(
        download_mb_per_s: i64,
        upload_mb_per_s: i64,
    ) -> Option<ConnectivityTier> {
        Self::THRESHOLDS
            .iter()
            .find(|(_, down, up)| download_mb_per_s >= *down && upload_mb_per_s >= *up)
            .map(|(tier, _, _)| *tier)
    }
}

/// A connectivity measurement: throughput in MB/s each way and the round trip in ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpeedFigures {
    pub download_mb_per_s: i64,
    pub upload_mb_per_s: i64,
    pub latency_ms: i64,
}

impl SpeedFigures {
    /// Each direction's best of two rounds: the most throughput and the shortest round trip.
    /// A round is slowed by anything else on the line or the machine, never sped up, so the
    /// best round is the closest to what the device can do.
    pub fn best_with(self, other: Option<SpeedFigures>) -> SpeedFigures {
        match other {
            None => self,
            Some(o) => SpeedFigures {
                download_mb_per_s: self.download_mb_per_s.max(o.download_mb_per_s),
                upload_mb_per_s: self.upload_mb_per_s.max(o.upload_mb_per_s),
                latency_ms: self.latency_ms.min(o.latency_ms),
            },
        }
    }

    pub fn tier(self) -> Option<ConnectivityTier> {
        ConnectivityTier::from_measurement(self.download_mb_per_s, self.upload_mb_per_s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_without_a_tier_is_measured_again_soon_then_less_often() {
        let day = 86_400_000;
        assert_eq!(remeasure_after_ms(0, day), day);
        assert_eq!(remeasure_after_ms(1, day), 60_000);
        assert_eq!(remeasure_after_ms(2, day), 120_000);
        assert_eq!(remeasure_after_ms(5, day), 960_000);
        assert_eq!(remeasure_after_ms(12, day), day);
        assert_eq!(remeasure_after_ms(u32::MAX, day), day);
    }

    #[test]
    fn the_best_rounds_of_each_direction_set_the_tier() {
        let figures = |download_mb_per_s, upload_mb_per_s, latency_ms| SpeedFigures {
            download_mb_per_s,
            upload_mb_per_s,
            latency_ms,
        };
        let congested_down = figures(60, 40, 9);
        let congested_up = figures(450, 5, 30);
        assert_eq!(congested_down.tier(), None);
        assert_eq!(congested_up.tier(), None);
        let best = congested_down.best_with(Some(congested_up));
        assert_eq!(best, figures(450, 40, 9));
        assert_eq!(best.tier(), Some(ConnectivityTier::Low));
        assert_eq!(best.best_with(None), best);
        assert_eq!(
            congested_up.best_with(Some(congested_down)),
            best,
            "order does not matter"
        );
    }

    #[test]
    fn tiers_need_both_directions() {
        use ConnectivityTier as T;
        assert_eq!(T::from_measurement(2000, 1500), Some(T::Ultra));
        assert_eq!(T::from_measurement(2000, 700), Some(T::High));
        assert_eq!(T::from_measurement(450, 20), Some(T::Low));
        assert_eq!(T::from_measurement(100, 10), Some(T::Low));
        assert_eq!(T::from_measurement(99, 1000), None);
    }

    #[test]
    fn every_name_round_trips() {
        for s in DeviceStatus::ALL {
            assert_eq!(DeviceStatus::parse(s.as_str()), Ok(*s));
        }
        for t in ConnectivityTier::ALL {
            assert_eq!(ConnectivityTier::parse(t.as_str()), Ok(*t));
        }
    }

    #[test]
    fn json_carries_the_same_names() {
        for os in OperatingSystem::ALL {
            let json = serde_json::to_string(os).unwrap();
            assert_eq!(json, format!("\"{}\"", os.as_str()));
            assert_eq!(serde_json::from_str::<OperatingSystem>(&json).unwrap(), *os);
        }
        assert_eq!(
            serde_json::to_string(&OwnerAction::RevokeCredential).unwrap(),
            "\"revoke-credential\""
        );
        let refused = serde_json::from_str::<OperatingSystem>("\"mac_os\"").unwrap_err();
        assert!(
            refused.to_string().contains(
                "unknown operating system 'mac_os' (expected one of: linux, windows, macos)"
            ),
            "{refused}"
        );
    }

    #[test]
    fn unknown_names_list_what_is_allowed() {
        let err = OperatingSystem::parse("beos").unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown operating system 'beos' (expected one of: linux, windows, macos)"
        );
    }
}
