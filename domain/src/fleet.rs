//! Fleet vocabulary shared by every layer: device status, OS, kind and connectivity tier, each
//! with the exact lowercase names the database and the API use.

use serde::{Deserialize, Serialize};

macro_rules! named_enum {
    ($(#[$meta:meta])* $name:ident, $what:literal, { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            pub fn parse(text: &str) -> Result<$name, UnknownName> {
                match text {
                    $($text => Ok($name::$variant),)+
                    _ => Err(UnknownName { what: $what, value: text.to_owned(), allowed: &[$($text),+] }),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

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
    /// Measured (never declared) network tier, best first.
    ConnectivityTier, "connectivity tier", {
        Ultra => "ultra",
        High => "high",
        Medium => "medium",
        Low => "low",
    }
);

#[cfg(test)]
mod tests {
    use super::*;

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
    fn unknown_names_list_what_is_allowed() {
        let err = OperatingSystem::parse("beos").unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown operating system 'beos' (expected one of: linux, windows, macos)"
        );
    }
}
