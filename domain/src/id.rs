//! The shapes of the platform's ids (issue 19): a prefix that says what an id names, then a
//! random or sequential part of ASCII letters, digits, `-` and `_`. Services check an id from
//! outside against its kind before any query, so text that cannot be an id is "not found"
//! without reaching the database.

/// What an id names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdKind {
    Device,
    Cluster,
    Challenge,
    SpeedTest,
    Deposit,
    ApiKey,
}

/// The longest id the platform makes is far shorter; this bounds what is looked up.
const MAX_ID_CHARS: usize = 80;

impl IdKind {
    pub const fn prefix(self) -> &'static str {
        match self {
            IdKind::Device => "dev-",
            IdKind::Cluster => "cl-",
            IdKind::Challenge => "chl-",
            IdKind::SpeedTest => "spd-",
            IdKind::Deposit => "dep-",
            IdKind::ApiKey => "key-",
        }
    }

    const fn noun(self) -> &'static str {
        match self {
            IdKind::Device => "device",
            IdKind::Cluster => "cluster",
            IdKind::Challenge => "challenge",
            IdKind::SpeedTest => "speed test",
            IdKind::Deposit => "deposit",
            IdKind::ApiKey => "API key",
        }
    }

    /// `Ok` if `text` has this kind's shape; else a message for a 404 that names the shape.
    pub fn check(self, text: &str) -> Result<(), String> {
        let well_formed = text.len() <= MAX_ID_CHARS
            && text.strip_prefix(self.prefix()).is_some_and(|rest| {
                !rest.is_empty()
                    && rest
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            });
        if well_formed {
            return Ok(());
        }
        let shown: String = text.chars().take(40).filter(|c| !c.is_control()).collect();
        Err(format!(
            "no {} '{shown}': {} ids look like {}…",
            self.noun(),
            self.noun(),
            self.prefix()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_their_kinds_prefix_and_plain_characters() {
        assert!(IdKind::Device.check("dev-00ff12ab34cd56ef").is_ok());
        assert!(IdKind::Cluster.check("cl-1a2b").is_ok());
        assert!(IdKind::ApiKey.check("key-3f").is_ok());
        for bad in [
            "",
            "dev-",
            "cl-1",
            "dev-1 OR 1=1",
            "dev-\u{0}",
            "dev-é",
            "dev-../../etc",
        ] {
            assert!(IdKind::Device.check(bad).is_err(), "{bad:?}");
        }
        assert!(IdKind::Device
            .check(&format!("dev-{}", "a".repeat(80)))
            .is_err());
        assert_eq!(
            IdKind::Cluster.check("dev-1"),
            Err("no cluster 'dev-1': cluster ids look like cl-…".into())
        );
    }
}
