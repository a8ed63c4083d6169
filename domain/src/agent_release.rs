//! Agent releases: the version an agent binary carries, how the server and the agent name a
//! build, and whether an agent should replace itself with the server's.
//!
//! An agent's version is `CORE+BUILD`: `CORE` the release number (`0.1.0`) written into the
//! binary itself behind [`VERSION_MARK_PREFIX`], so the server reads it from the file it serves
//! without running it; `BUILD` the first 12 hex digits of the binary's SHA-256, so two builds of
//! one release differ, and the server and the agent compute the same name for the same bytes.

use serde::{Deserialize, Serialize};

/// What comes before the release number inside an agent binary.
pub const VERSION_MARK_PREFIX: &[u8] = b"GPU-COMMONS-AGENT-RELEASE:";
/// The whole mark's size: the prefix, the release number, NUL padding.
pub const VERSION_MARK_LEN: usize = 64;
/// Hex digits of the SHA-256 that name a build.
pub const BUILD_DIGITS: usize = 12;

/// The mark an agent binary carries for release `core` (built at compile time).
pub const fn version_mark(core: &str) -> [u8; VERSION_MARK_LEN] {
    let mut mark = [0u8; VERSION_MARK_LEN];
    let prefix = VERSION_MARK_PREFIX;
    let core = core.as_bytes();
    assert!(prefix.len() + core.len() < VERSION_MARK_LEN);
    let mut i = 0;
    while i < prefix.len() {
        mark[i] = prefix[i];
        i += 1;
    }
    let mut j = 0;
    while j < core.len() {
        mark[i + j] = core[j];
        j += 1;
    }
    mark
}

/// A binary's SHA-256 as lowercase hex: what names its build, and what the server announces
/// and the agent checks before installing it.
pub fn sha256_hex(binary: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(binary)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The release number marked in `binary`, if it carries a well-formed mark. The prefix alone
/// may occur elsewhere too (the code that looks for it holds it), so every occurrence counts.
pub fn marked_core(binary: &[u8]) -> Option<ReleaseNumber> {
    binary
        .windows(VERSION_MARK_PREFIX.len())
        .enumerate()
        .filter(|(_, window)| *window == VERSION_MARK_PREFIX)
        .find_map(|(at, _)| {
            let start = at + VERSION_MARK_PREFIX.len();
            let rest = &binary[start..binary.len().min(at + VERSION_MARK_LEN)];
            let end = rest.iter().position(|&b| b == 0)?;
            ReleaseNumber::parse(std::str::from_utf8(&rest[..end]).ok()?).ok()
        })
}

/// A release number, `MAJOR.MINOR.PATCH`, ordered as numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReleaseNumber(pub u32, pub u32, pub u32);

impl ReleaseNumber {
    pub fn parse(text: &str) -> Result<ReleaseNumber, String> {
        let parts: Vec<&str> = text.split('.').collect();
        let number = |part: &str| {
            (!part.is_empty() && part.len() <= 9 && part.bytes().all(|b| b.is_ascii_digit()))
                .then(|| part.parse::<u32>().ok())
                .flatten()
        };
        match parts.as_slice() {
            [a, b, c] => match (number(a), number(b), number(c)) {
                (Some(a), Some(b), Some(c)) => Ok(ReleaseNumber(a, b, c)),
                _ => Err(format!("'{text}' is not a release number like 0.1.0")),
            },
            _ => Err(format!("'{text}' is not a release number like 0.1.0")),
        }
    }
}

impl std::fmt::Display for ReleaseNumber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

/// One build of the agent: its release number and the start of its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AgentVersion {
    pub core: ReleaseNumber,
    /// [`BUILD_DIGITS`] lowercase hex digits.
    pub build: String,
}

impl AgentVersion {
    /// The version of the binary whose SHA-256 (lowercase hex) is `sha256`.
    pub fn of(core: ReleaseNumber, sha256: &str) -> AgentVersion {
        AgentVersion {
            core,
            build: sha256.chars().take(BUILD_DIGITS).collect(),
        }
    }

    /// `CORE+BUILD`; `None` for anything else, such as a version an older agent reported
    /// without a build (`0.1.0`).
    pub fn parse(text: &str) -> Option<AgentVersion> {
        let (core, build) = text.split_once('+')?;
        let hex = build.len() == BUILD_DIGITS
            && build
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        Some(AgentVersion {
            core: ReleaseNumber::parse(core).ok()?,
            build: hex.then(|| build.to_owned())?,
        })
    }
}

impl std::fmt::Display for AgentVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}+{}", self.core, self.build)
    }
}

crate::fleet::named_enum!(
    /// The platforms an agent binary is built for, as the download paths name them.
    AgentPlatform, "agent platform", {
        LinuxX86_64 => "linux-x86_64",
        LinuxAarch64 => "linux-aarch64",
    }
);

impl AgentPlatform {
    /// The platform this code was compiled for, when an agent exists for it.
    pub fn this() -> Option<AgentPlatform> {
        match (std::env::consts::OS, std::env::consts::ARCH) {
            ("linux", "x86_64") => Some(AgentPlatform::LinuxX86_64),
            ("linux", "aarch64") => Some(AgentPlatform::LinuxAarch64),
            _ => None,
        }
    }
}

/// The platform a Linux ELF binary is built for, read from its header; `None` for anything
/// else (another format, a 32-bit or big-endian build, an architecture without agents).
pub fn platform_of_binary(binary: &[u8]) -> Option<AgentPlatform> {
    const X86_64: u16 = 62;
    const AARCH64: u16 = 183;
    // e_ident: magic, class 2 (64-bit), data 1 (little-endian); e_machine at byte 18.
    if binary.len() < 20 || &binary[..4] != b"\x7fELF" || binary[4] != 2 || binary[5] != 1 {
        return None;
    }
    match u16::from_le_bytes([binary[18], binary[19]]) {
        X86_64 => Some(AgentPlatform::LinuxX86_64),
        AARCH64 => Some(AgentPlatform::LinuxAarch64),
        _ => None,
    }
}

/// One agent binary the server offers (`GET /agent/releases.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AgentRelease {
    pub platform: AgentPlatform,
    /// `CORE+BUILD`, what the agent reports once it runs this binary.
    pub version: String,
    /// Lowercase hex SHA-256 of the whole binary.
    pub sha256: String,
    pub size: u64,
    /// Where to download it, a path on the server (`/agent/download/linux-x86_64`).
    pub path: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AgentReleases {
    pub releases: Vec<AgentRelease>,
}

/// What an agent running `own` does about the server's `offered` build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateDecision {
    /// It runs the offered build already.
    Current,
    /// It installs the offered build: a later release, or another build of its own release
    /// (the server's is the one the network runs).
    Install,
    /// The server offers an earlier release: the agent keeps its own and says so, since a
    /// server (or a man in the middle of plain HTTP) must not roll agents back to an old bug.
    RefuseDowngrade,
}

pub fn update_decision(own: &AgentVersion, offered: &AgentVersion) -> UpdateDecision {
    if offered.core < own.core {
        UpdateDecision::RefuseDowngrade
    } else if offered == own {
        UpdateDecision::Current
    } else {
        UpdateDecision::Install
    }
}

/// Whether a device whose agent reported `reported` runs an older build than the server
/// offers: the Worker tab flags it. An agent that reported no build (`0.1.0`, from before
/// builds were named) is outdated; one ahead of the server is not.
pub fn is_outdated(reported: &str, offered: &AgentVersion) -> bool {
    match AgentVersion::parse(reported) {
        Some(own) => update_decision(&own, offered) == UpdateDecision::Install,
        None => ReleaseNumber::parse(reported).map_or(true, |core| core <= offered.core),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(text: &str) -> AgentVersion {
        AgentVersion::parse(text).unwrap()
    }

    #[test]
    fn a_binary_carries_its_release_number() {
        let mut binary = b"\x7fELF some code".to_vec();
        binary.extend_from_slice(&version_mark("1.20.3"));
        binary.extend_from_slice(b"more code");
        assert_eq!(marked_core(&binary), Some(ReleaseNumber(1, 20, 3)));
        assert_eq!(marked_core(b"no mark here"), None);
        // The bare prefix before the mark (the code that searches holds it) is passed over.
        let mut twice = VERSION_MARK_PREFIX.to_vec();
        twice.extend_from_slice(&binary);
        assert_eq!(marked_core(&twice), Some(ReleaseNumber(1, 20, 3)));
        // A mark cut off before its end, or holding something else, names nothing.
        let cut = &binary[..binary.len() - 50];
        assert_eq!(marked_core(cut), None);
        let mut odd = version_mark("1.x.3").to_vec();
        odd.extend_from_slice(b"tail");
        assert_eq!(marked_core(&odd), None);
    }

    #[test]
    fn versions_name_release_and_build() {
        let version = AgentVersion::of(ReleaseNumber(0, 1, 0), &"ab12".repeat(16));
        assert_eq!(version.to_string(), "0.1.0+ab12ab12ab12");
        assert_eq!(AgentVersion::parse("0.1.0+ab12ab12ab12"), Some(version));
        for bad in [
            "0.1.0",
            "0.1+ab12ab12ab12",
            "0.1.0+AB12AB12AB12",
            "0.1.0+ab12",
            "x",
        ] {
            assert_eq!(AgentVersion::parse(bad), None, "{bad}");
        }
        assert!(ReleaseNumber(0, 10, 0) > ReleaseNumber(0, 9, 9));
    }

    #[test]
    fn agents_install_later_and_rebuilt_releases_but_never_roll_back() {
        let own = v("0.2.0+aaaaaaaaaaaa");
        assert_eq!(update_decision(&own, &own), UpdateDecision::Current);
        assert_eq!(
            update_decision(&own, &v("0.2.1+bbbbbbbbbbbb")),
            UpdateDecision::Install
        );
        assert_eq!(
            update_decision(&own, &v("0.2.0+bbbbbbbbbbbb")),
            UpdateDecision::Install
        );
        assert_eq!(
            update_decision(&own, &v("0.1.9+bbbbbbbbbbbb")),
            UpdateDecision::RefuseDowngrade
        );
    }

    #[test]
    fn outdated_agents_are_the_ones_that_would_install() {
        let offered = v("0.2.0+aaaaaaaaaaaa");
        assert!(!is_outdated("0.2.0+aaaaaaaaaaaa", &offered));
        assert!(is_outdated("0.1.0+aaaaaaaaaaaa", &offered));
        assert!(is_outdated("0.2.0+cccccccccccc", &offered));
        assert!(!is_outdated("0.3.0+cccccccccccc", &offered));
        assert!(is_outdated("0.1.0", &offered));
        assert!(!is_outdated("1.0.0", &offered));
        assert!(is_outdated("demo", &offered));
    }

    #[test]
    fn elf_headers_name_the_platform() {
        let mut header = vec![0u8; 64];
        header[..6].copy_from_slice(b"\x7fELF\x02\x01");
        header[18] = 62;
        assert_eq!(
            platform_of_binary(&header),
            Some(AgentPlatform::LinuxX86_64)
        );
        header[18] = 183;
        assert_eq!(
            platform_of_binary(&header),
            Some(AgentPlatform::LinuxAarch64)
        );
        header[18] = 3; // i386
        assert_eq!(platform_of_binary(&header), None);
        assert_eq!(platform_of_binary(b"#!/bin/sh\necho hi\n"), None);
    }

    #[test]
    fn platforms_are_named_as_downloads_are() {
        assert_eq!(
            AgentPlatform::parse("linux-x86_64"),
            Ok(AgentPlatform::LinuxX86_64)
        );
        assert_eq!(
            serde_json::to_string(&AgentPlatform::LinuxAarch64).unwrap(),
            "\"linux-aarch64\""
        );
    }
}
