//! Where `gpuc login` keeps the server's address and the API key: a TOML file readable by its
//! owner alone (mode 0600), in `$GPUC_CONFIG_DIR`, else `$XDG_CONFIG_HOME/gpuc`, else
//! `~/.config/gpuc`. `GC_API_KEY` and `--server` (or `GC_SERVER`) override what it holds.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::api::{CliError, Result};

#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    pub server: Option<String>,
    pub api_key: Option<String>,
}

/// The credentials file's path.
pub fn path() -> Result<PathBuf> {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    let dir = if let Some(dir) = var("GPUC_CONFIG_DIR") {
        PathBuf::from(dir)
    } else if let Some(config) = var("XDG_CONFIG_HOME") {
        PathBuf::from(config).join("gpuc")
    } else if let Some(home) = var("HOME") {
        PathBuf::from(home).join(".config").join("gpuc")
    } else {
        return Err(CliError::Local(
            "no home folder to keep credentials in: set GPUC_CONFIG_DIR".into(),
        ));
    };
    Ok(dir.join("credentials.toml"))
}

/// What the file holds; nothing when there is no file yet.
pub fn load(at: &Path) -> Result<Credentials> {
    match std::fs::read_to_string(at) {
        Ok(text) => {
            toml::from_str(&text).map_err(|e| CliError::Local(format!("{}: {e}", at.display())))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Credentials::default()),
        Err(e) => Err(CliError::Local(format!("{}: {e}", at.display()))),
    }
}

/// Writes `credentials` to `at`, readable by its owner alone; an existing file is replaced
/// whole, never left half written.
pub fn save(at: &Path, credentials: &Credentials) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let local = |e: std::io::Error| CliError::Local(format!("{}: {e}", at.display()));
    if let Some(dir) = at.parent() {
        std::fs::create_dir_all(dir).map_err(local)?;
    }
    let text = toml::to_string(credentials).map_err(|e| CliError::Local(e.to_string()))?;
    let partial = at.with_extension("toml.partial");
    let _ = std::fs::remove_file(&partial);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&partial)
        .map_err(local)?;
    file.write_all(text.as_bytes()).map_err(local)?;
    file.sync_all().map_err(local)?;
    std::fs::rename(&partial, at).map_err(local)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn credentials_are_kept_for_their_owner_alone_and_read_back() {
        let dir = std::env::temp_dir().join(format!("gpuc-credentials-{}", std::process::id()));
        let at = dir.join("credentials.toml");
        assert_eq!(load(&at).unwrap(), Credentials::default());
        let kept = Credentials {
            server: Some("https://gpu.example".into()),
            api_key: Some("gck_secret".into()),
        };
        save(&at, &kept).unwrap();
        assert_eq!(load(&at).unwrap(), kept);
        let mode = std::fs::metadata(&at).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::write(&at, "api_kee = 1").unwrap();
        assert!(load(&at)
            .unwrap_err()
            .to_string()
            .contains("credentials.toml"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
