//! Which build this agent is, and replacing it with the build the server offers: downloaded,
//! checked against the SHA-256 and release the server names, swapped in with one rename, and
//! restarted in place (`exec`, so a service manager sees the same process).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use domain::agent_release::{
    marked_core, sha256_hex, update_decision, version_mark, AgentPlatform, AgentRelease,
    AgentVersion, ReleaseNumber, UpdateDecision, VERSION_MARK_LEN,
};

use crate::client::ApiClient;
use crate::error::AgentError;

/// The release number, where the server finds it in the binary it serves. Kept (`#[used]`) and
/// read back at run time, so the version reported is the one in the bytes.
#[used]
static VERSION_MARK: [u8; VERSION_MARK_LEN] = version_mark(env!("CARGO_PKG_VERSION"));

/// The largest agent binary the agent downloads.
const MAX_BINARY_BYTES: u64 = 512 * 1024 * 1024;
/// How often the agent asks for a new build.
pub const CHECK_EVERY: Duration = Duration::from_secs(3600);
/// How soon it asks again when an update waits for its clusters to end.
pub const RECHECK_WHEN_BUSY: Duration = Duration::from_secs(30);

/// This process's own build.
pub struct OwnBuild {
    /// What the agent reports: `CORE+BUILD`, or `CORE` alone when it cannot read its binary.
    pub version: String,
    pub parsed: Option<AgentVersion>,
    /// The binary it runs from, which an update replaces.
    pub exe: Option<PathBuf>,
}

pub fn own_build() -> &'static OwnBuild {
    static OWN: OnceLock<OwnBuild> = OnceLock::new();
    OWN.get_or_init(|| {
        // SAFETY: a plain read of an initialised static; volatile so the compiler cannot
        // replace it with the value it was built with.
        let mark = unsafe { std::ptr::read_volatile(&VERSION_MARK) };
        let core = marked_core(&mark).unwrap_or(ReleaseNumber(0, 0, 0));
        let exe = std::env::current_exe().ok();
        let sha = exe
            .as_deref()
            .and_then(|exe| std::fs::read(exe).ok())
            .map(|binary| sha256_hex(&binary));
        let parsed = sha.map(|sha| AgentVersion::of(core, &sha));
        OwnBuild {
            version: parsed
                .as_ref()
                .map_or_else(|| core.to_string(), ToString::to_string),
            parsed,
            exe,
        }
    })
}

/// What one look at the server's releases came to.
#[derive(Debug, PartialEq, Eq)]
pub enum Checked {
    Current,
    /// The server offers nothing for this platform (or the agent cannot name its own build).
    NothingOffered,
    /// A newer build waits until no cluster runs here.
    Deferred(String),
    /// The server offers an earlier release; this agent keeps its own.
    Downgrade(String),
    /// The offered build replaced this binary: restart.
    Installed(String),
}

/// Looks at the server's releases and, when it offers another build of this platform and
/// `busy` says no cluster runs here, installs it over this agent's binary.
pub async fn check(client: &ApiClient, busy: impl Fn() -> bool) -> Result<Checked, AgentError> {
    let own = own_build();
    let (Some(platform), Some(current), Some(exe)) = (
        AgentPlatform::this(),
        own.parsed.as_ref(),
        own.exe.as_deref(),
    ) else {
        return Ok(Checked::NothingOffered);
    };
    let releases = client.releases().await?;
    let Some(release) = releases.releases.iter().find(|r| r.platform == platform) else {
        return Ok(Checked::NothingOffered);
    };
    let offered = AgentVersion::parse(&release.version).ok_or_else(|| {
        AgentError::Transport(format!(
            "the server offers agent version '{}', which is not CORE+BUILD",
            release.version
        ))
    })?;
    match update_decision(current, &offered) {
        UpdateDecision::Current => Ok(Checked::Current),
        UpdateDecision::RefuseDowngrade => Ok(Checked::Downgrade(release.version.clone())),
        UpdateDecision::Install if busy() => Ok(Checked::Deferred(release.version.clone())),
        UpdateDecision::Install => {
            if release.size > MAX_BINARY_BYTES {
                return Err(AgentError::Transport(format!(
                    "the offered agent is {} bytes, more than the {MAX_BINARY_BYTES} an agent takes",
                    release.size
                )));
            }
            let binary = client.download(&release.path, release.size).await?;
            verified(&binary, release, &offered)?;
            install(exe, &binary).map_err(|e| {
                AgentError::Config(format!(
                    "cannot replace {} with agent {}: {e} (run the agent as the binary's owner, or update it yourself)",
                    exe.display(),
                    release.version
                ))
            })?;
            Ok(Checked::Installed(release.version.clone()))
        }
    }
}

/// Whether `binary` is the release the server named: its size, SHA-256 and marked release.
fn verified(
    binary: &[u8],
    release: &AgentRelease,
    offered: &AgentVersion,
) -> Result<(), AgentError> {
    let sha = sha256_hex(binary);
    if binary.len() as u64 != release.size || sha != release.sha256 {
        return Err(AgentError::Transport(format!(
            "the downloaded agent ({} bytes, SHA-256 {sha}) is not the one offered ({} bytes, {}); not installed",
            binary.len(),
            release.size,
            release.sha256
        )));
    }
    match marked_core(binary) {
        Some(core) if AgentVersion::of(core, &sha) == *offered => Ok(()),
        marked => Err(AgentError::Transport(format!(
            "the downloaded agent is marked {}, not {offered}; not installed",
            marked.map_or_else(|| "with no release".to_owned(), |c| c.to_string())
        ))),
    }
}

/// Writes `binary` beside `exe` and renames it over `exe`: a crash leaves the old binary or
/// the new one, never half of one.
fn install(exe: &Path, binary: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = exe.parent().unwrap_or(Path::new("."));
    let name = exe.file_name().and_then(|n| n.to_str()).unwrap_or("agent");
    let staged = dir.join(format!(".{name}.update-{}", std::process::id()));
    let written = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o755)
            .open(&staged)?;
        file.write_all(binary)?;
        file.sync_all()?;
        std::fs::rename(&staged, exe)?;
        // The rename itself survives a power cut once the folder is synced.
        std::fs::File::open(dir)?.sync_all()
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&staged);
    }
    written
}

/// Replaces this process with the binary at `exe`, with the same arguments. Returns only on
/// failure.
pub fn restart(exe: &Path) -> std::io::Error {
    use std::os::unix::process::CommandExt;
    std::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .exec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mark_names_this_crates_release() {
        assert_eq!(
            marked_core(&VERSION_MARK).map(|c| c.to_string()).as_deref(),
            Some(env!("CARGO_PKG_VERSION"))
        );
    }

    #[test]
    fn only_the_named_bytes_pass() {
        let mut binary = b"code".to_vec();
        binary.extend_from_slice(&version_mark("0.3.0"));
        let sha = sha256_hex(&binary);
        let offered = AgentVersion::of(ReleaseNumber(0, 3, 0), &sha);
        let release = AgentRelease {
            platform: AgentPlatform::LinuxX86_64,
            version: offered.to_string(),
            sha256: sha.clone(),
            size: binary.len() as u64,
            path: "/agent/download/linux-x86_64".into(),
        };
        assert!(verified(&binary, &release, &offered).is_ok());
        let mut tampered = binary.clone();
        tampered[0] = b'C';
        assert!(verified(&tampered, &release, &offered)
            .unwrap_err()
            .to_string()
            .contains("is not the one offered"));
        // Right bytes, but a release that claims another number than the binary carries.
        let claimed = AgentVersion::of(ReleaseNumber(0, 4, 0), &sha);
        assert!(verified(&binary, &release, &claimed)
            .unwrap_err()
            .to_string()
            .contains("marked 0.3.0"));
    }

    #[test]
    fn an_install_swaps_the_whole_file() {
        let dir = std::env::temp_dir().join(format!("gc-agent-install-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let exe = dir.join("gpu-commons-agent");
        std::fs::write(&exe, b"old build").unwrap();
        install(&exe, b"new build").unwrap();
        assert_eq!(std::fs::read(&exe).unwrap(), b"new build");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&exe).unwrap().permissions().mode() & 0o777,
            0o755
        );
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            1,
            "no staged file left"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
