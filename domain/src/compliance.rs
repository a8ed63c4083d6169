//! Compliance attestations (DESIGN.md §2): an operator keeps a list of certified facilities,
//! each holding some standards (SOC 2, HIPAA) until a date, and places devices in them. A
//! device meets a cluster's security compliance when its facility holds that standard and its
//! certification has not lapsed; every device meets end-to-end encryption (the agent encrypts
//! all cluster traffic).

use serde::{Deserialize, Serialize};

use crate::cluster::SecurityCompliance;
use crate::time::UnixMillis;

/// The standards a device is attested for now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Attestations {
    pub soc2: bool,
    pub hipaa: bool,
}

impl Attestations {
    pub const NONE: Attestations = Attestations {
        soc2: false,
        hipaa: false,
    };

    /// Whether a device with these attestations may serve a cluster that asks for `compliance`.
    pub fn meets(self, compliance: SecurityCompliance) -> bool {
        match compliance {
            SecurityCompliance::E2eEncrypted => true,
            SecurityCompliance::Soc2 => self.soc2,
            SecurityCompliance::Hipaa => self.hipaa,
        }
    }

    pub fn is_none(self) -> bool {
        self == Attestations::NONE
    }

    /// The standards held, in words: "SOC 2, HIPAA".
    pub fn names(self) -> String {
        let mut names = Vec::new();
        if self.soc2 {
            names.push(SecurityCompliance::Soc2.label());
        }
        if self.hipaa {
            names.push(SecurityCompliance::Hipaa.label());
        }
        names.join(", ")
    }

    /// Parses an operator's list, e.g. `soc2,hipaa`; at least one standard.
    pub fn parse_list(text: &str) -> Result<Attestations, String> {
        let mut held = Attestations::NONE;
        for word in text.split(',').map(str::trim).filter(|w| !w.is_empty()) {
            match SecurityCompliance::parse(&word.to_ascii_lowercase()) {
                Ok(SecurityCompliance::Soc2) => held.soc2 = true,
                Ok(SecurityCompliance::Hipaa) => held.hipaa = true,
                _ => {
                    return Err(format!(
                        "'{word}' is not a standard facilities are attested for (soc2, hipaa)"
                    ))
                }
            }
        }
        if held.is_none() {
            return Err("name at least one standard: soc2, hipaa or soc2,hipaa".into());
        }
        Ok(held)
    }
}

/// The longest facility name.
const MAX_FACILITY_NAME_CHARS: usize = 80;

/// A certified facility as an operator records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Facility {
    pub name: String,
    pub standards: Attestations,
    /// The first instant the certification no longer holds (UTC ms).
    pub certified_until: UnixMillis,
}

impl Facility {
    /// Checks an operator's entry: a printable name of 1–80 characters, at least one standard,
    /// a certification that still holds at `now`. `until` is the last day it holds
    /// (`YYYY-MM-DD`, UTC): it holds through that day.
    pub fn new(
        name: &str,
        standards: &str,
        until: &str,
        now: UnixMillis,
    ) -> Result<Facility, String> {
        let name = name.trim();
        if name.is_empty()
            || name.chars().count() > MAX_FACILITY_NAME_CHARS
            || crate::text::refused_name_char(name).is_some()
        {
            return Err(format!(
                "a facility name has 1–{MAX_FACILITY_NAME_CHARS} printable characters, e.g. \"Equinix FR5\""
            ));
        }
        let standards = Attestations::parse_list(standards)?;
        let certified_until = end_of_day(until)?;
        if certified_until <= now {
            return Err(format!(
                "the certification ended with {until}; give the date it holds until"
            ));
        }
        Ok(Facility {
            name: name.to_owned(),
            standards,
            certified_until,
        })
    }

    /// What devices in this facility meet at `now`: nothing once the certification lapsed.
    pub fn attestations_at(&self, now: UnixMillis) -> Attestations {
        if now < self.certified_until {
            self.standards
        } else {
            Attestations::NONE
        }
    }
}

/// The instant after the UTC day `date` (`YYYY-MM-DD`).
fn end_of_day(date: &str) -> Result<UnixMillis, String> {
    let date = date.trim();
    let bad = || format!("'{date}' is not a date of the form 2027-06-30");
    if date.len() != 10 {
        return Err(bad());
    }
    UnixMillis::parse_rfc3339(&format!("{date}T00:00:00Z"))
        .map(|start| start.plus_seconds(86_400))
        .map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;
    use SecurityCompliance as C;

    const NOW: UnixMillis = UnixMillis(1_795_000_000_000); // 2026-11-18

    #[test]
    fn a_device_meets_only_what_its_facility_holds() {
        let soc2 = Attestations::parse_list("soc2").unwrap();
        assert!(soc2.meets(C::Soc2) && soc2.meets(C::E2eEncrypted) && !soc2.meets(C::Hipaa));
        let both = Attestations::parse_list(" HIPAA , soc2 ").unwrap();
        assert!(both.meets(C::Soc2) && both.meets(C::Hipaa));
        assert_eq!(both.names(), "SOC 2, HIPAA");
        assert!(Attestations::NONE.meets(C::E2eEncrypted));
        assert!(!Attestations::NONE.meets(C::Soc2));
    }

    #[test]
    fn operators_get_specific_errors() {
        assert!(Attestations::parse_list("")
            .unwrap_err()
            .contains("at least one"));
        assert!(Attestations::parse_list("soc2,iso27001")
            .unwrap_err()
            .contains("'iso27001' is not a standard"));
        assert!(Attestations::parse_list("e2e_encrypted").is_err());
        assert!(Facility::new("", "soc2", "2027-06-30", NOW)
            .unwrap_err()
            .contains("1–80 printable"));
        assert!(Facility::new("FR5", "soc2", "30/06/2027", NOW)
            .unwrap_err()
            .contains("not a date"));
        assert!(Facility::new("FR5", "soc2", "2027-02-30", NOW).is_err());
        assert!(Facility::new("FR5", "soc2", "2026-11-17", NOW)
            .unwrap_err()
            .contains("ended with 2026-11-17"));
    }

    #[test]
    fn a_certification_holds_through_its_last_day_and_then_lapses() {
        let facility = Facility::new(" Equinix FR5 ", "soc2,hipaa", "2026-11-18", NOW).unwrap();
        assert_eq!(facility.name, "Equinix FR5");
        assert_eq!(
            facility.certified_until,
            UnixMillis::parse_rfc3339("2026-11-19T00:00:00Z").unwrap()
        );
        let last_moment = UnixMillis(facility.certified_until.0 - 1);
        assert!(facility.attestations_at(last_moment).meets(C::Hipaa));
        assert!(facility.attestations_at(facility.certified_until).is_none());
    }
}
