//! The device credential, kept in a local file only the agent's user can read (0600), so a
//! restarted agent resumes without a new registration token.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::AgentError;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    pub server: String,
    pub device_id: String,
    pub credential: String,
}

/// `$XDG_CONFIG_HOME/gpu-commons/agent.json`, else `~/.config/gpu-commons/agent.json`.
pub fn default_path() -> PathBuf {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("gpu-commons").join("agent.json")
}

fn io_error(path: &Path) -> impl Fn(std::io::Error) -> AgentError + '_ {
    move |source| AgentError::Credentials {
        path: path.display().to_string(),
        source,
    }
}

impl Credentials {
    /// The saved credentials, or None when this machine has not registered yet.
    pub fn load(path: &Path) -> Result<Option<Credentials>, AgentError> {
        match std::fs::read_to_string(path) {
            Ok(text) => serde_json::from_str(&text).map(Some).map_err(|e| {
                AgentError::Config(format!(
                    "credentials file '{}' is damaged ({e}); delete it and register again",
                    path.display()
                ))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error(path)(e)),
        }
    }

    /// Writes the file readable by its owner only, replacing any earlier one atomically.
    pub fn save(&self, path: &Path) -> Result<(), AgentError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io_error(path))?;
        }
        let temporary = path.with_extension("json.tmp");
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&temporary).map_err(io_error(path))?;
        let text = serde_json::to_string_pretty(self)
            .map_err(|e| AgentError::Config(format!("cannot encode the credentials: {e}")))?;
        file.write_all(text.as_bytes()).map_err(io_error(path))?;
        file.sync_all().map_err(io_error(path))?;
        std::fs::rename(&temporary, path).map_err(io_error(path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_credentials_load_back_and_only_the_owner_can_read_them() {
        let dir = std::env::temp_dir().join(format!("gc-agent-cred-{}", std::process::id()));
        let path = dir.join("nested").join("agent.json");
        assert_eq!(Credentials::load(&path).unwrap(), None);
        let credentials = Credentials {
            server: "http://127.0.0.1:1".into(),
            device_id: "dev-1".into(),
            credential: "dev-1.secret".into(),
        };
        credentials.save(&path).unwrap();
        assert_eq!(Credentials::load(&path).unwrap(), Some(credentials));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(&path, "{").unwrap();
        assert!(Credentials::load(&path)
            .unwrap_err()
            .to_string()
            .contains("damaged"));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
