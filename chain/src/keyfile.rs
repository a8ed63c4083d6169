//! The treasury key: a Solana CLI key file (a JSON array of the 64 keypair bytes). It is read
//! once at start-up and never written to logs or answers; a file others can read is refused.

use std::path::Path;

use solana_keypair::Keypair;

use crate::ChainError;

/// Reads the key at `path`, refusing a file that group or others may read.
pub fn read_treasury_key(path: &Path) -> Result<Keypair, ChainError> {
    let shown = path.display();
    let failed = |why: String| ChainError::Key(format!("treasury key file '{shown}': {why}"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .map_err(|e| failed(e.to_string()))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(failed(format!(
                "readable by others (mode {:o}); run chmod 600 on it",
                mode & 0o777
            )));
        }
    }
    let text = std::fs::read_to_string(path).map_err(|e| failed(e.to_string()))?;
    let bytes: Vec<u8> = serde_json::from_str(&text).map_err(|_| {
        failed("expected a JSON array of 64 numbers (a Solana CLI key file)".into())
    })?;
    Keypair::try_from(bytes.as_slice())
        .map_err(|_| failed(format!("expected 64 key bytes, found {}", bytes.len())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use solana_signer::Signer;

    fn write(name: &str, text: &str, mode: u32) -> std::path::PathBuf {
        let path = std::env::temp_dir().join(format!("gc-key-{}-{name}.json", std::process::id()));
        std::fs::write(&path, text).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        path
    }

    #[test]
    fn reads_a_cli_key_file_and_refuses_bad_ones() {
        let key = Keypair::new();
        let json = serde_json::to_string(&key.to_bytes().to_vec()).unwrap();
        let good = write("good", &json, 0o600);
        assert_eq!(read_treasury_key(&good).unwrap().pubkey(), key.pubkey());
        #[cfg(unix)]
        {
            let open = write("open", &json, 0o644);
            let err = read_treasury_key(&open).unwrap_err().to_string();
            assert!(err.contains("chmod 600"), "{err}");
        }
        let short = write("short", "[1, 2, 3]", 0o600);
        assert!(read_treasury_key(&short)
            .unwrap_err()
            .to_string()
            .contains("found 3"));
        let text = write("text", "hello", 0o600);
        assert!(read_treasury_key(&text)
            .unwrap_err()
            .to_string()
            .contains("JSON array"));
        let missing = std::path::Path::new("/nonexistent/key.json");
        assert!(read_treasury_key(missing)
            .unwrap_err()
            .to_string()
            .contains("/nonexistent/key.json"));
    }
}
