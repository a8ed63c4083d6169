//! What a cluster runs, and the checks every field passes before anything of it reaches a
//! provider's machine: the wizard (in WASM) and the API run the same code. The agent hands the
//! values to the container engine or the sandbox as data (an image argument after `--`, an
//! env file), never as flags or shell text of the engine's own.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Longest command, in bytes.
pub const MAX_COMMAND_BYTES: usize = 4_096;
/// Most environment variables.
pub const MAX_ENV_VARS: usize = 64;
/// Longest environment value, in bytes.
pub const MAX_ENV_VALUE_BYTES: usize = 4_096;
/// Longest image reference (Docker's limit on the name is 255; a tag and a digest may follow).
pub const MAX_IMAGE_BYTES: usize = 512;
/// Names the platform sets for every workload (`GC_CLUSTER_ID`, `GC_ROLE`, …): a renter's
/// variable may not shadow them.
pub const RESERVED_ENV_PREFIX: &str = "GC_";

/// What the agents of a cluster run. `command` runs through the system shell on each device;
/// containers also name an image and may expose a port.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields, default)]
pub struct Workload {
    pub image: String,
    pub command: String,
    pub port: Option<u16>,
    pub env: BTreeMap<String, String>,
}

impl Workload {
    /// Calls `fail` with the field and the problem for each thing wrong; `needs_image` for
    /// kinds that run a container.
    pub fn check(&self, needs_image: bool, mut fail: impl FnMut(&'static str, String)) {
        if self.image.is_empty() {
            if needs_image {
                fail(
                    "workload.image",
                    "a container cluster needs an image".into(),
                );
            }
        } else if let Err(why) = check_image_reference(&self.image) {
            fail("workload.image", why);
        }
        if self.command.len() > MAX_COMMAND_BYTES {
            fail(
                "workload.command",
                format!("a command has at most {MAX_COMMAND_BYTES} bytes"),
            );
        }
        if let Err(why) = crate::text::check_text("a command", &self.command) {
            fail("workload.command", why);
        }
        if self.port == Some(0) {
            fail("workload.port", "a port is 1 to 65535".into());
        }
        if self.env.len() > MAX_ENV_VARS {
            fail(
                "workload.env",
                format!("at most {MAX_ENV_VARS} environment variables"),
            );
        }
        for (name, value) in &self.env {
            if let Err(why) = check_env(name, value) {
                fail("workload.env", why);
                break;
            }
        }
    }
}

/// One environment variable: a name of letters, digits and `_` not starting with a digit and
/// not the platform's own, and a one-line value.
fn check_env(name: &str, value: &str) -> Result<(), String> {
    let shown: String = name.chars().take(64).collect();
    if name.is_empty()
        || name.len() > 128
        || name.starts_with(|c: char| c.is_ascii_digit())
        || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        return Err(format!(
            "'{shown}' is not an environment variable name (A-Z, 0-9, _)"
        ));
    }
    if name.to_ascii_uppercase().starts_with(RESERVED_ENV_PREFIX) {
        return Err(format!(
            "'{shown}': names starting with {RESERVED_ENV_PREFIX} are set by the platform"
        ));
    }
    if value.len() > MAX_ENV_VALUE_BYTES {
        return Err(format!(
            "the value of {shown} is longer than {MAX_ENV_VALUE_BYTES} bytes"
        ));
    }
    if let Some(c) = crate::text::refused_name_char(value) {
        return Err(format!(
            "the value of {shown} must be one line without {}",
            crate::text::describe(c)
        ));
    }
    Ok(())
}

/// Checks `reference` against the reference grammar Docker and Podman accept:
/// `[host[:port]/]path[:tag][@algorithm:hex]`, the path made of lowercase components joined by
/// `/`, each of letters and digits separated by `.`, `_`, `__` or dashes. Nothing that begins
/// with `-` (a flag to the engine) or holds spaces passes.
pub fn check_image_reference(reference: &str) -> Result<(), String> {
    let shown: String = reference.chars().take(64).collect();
    let bad = |why: &str| Err(format!("'{shown}' is not an image reference: {why}"));
    if reference.len() > MAX_IMAGE_BYTES {
        return Err(format!(
            "an image reference has at most {MAX_IMAGE_BYTES} characters"
        ));
    }
    let (named, digest) = match reference.split_once('@') {
        Some((named, digest)) => (named, Some(digest)),
        None => (reference, None),
    };
    if let Some(digest) = digest {
        let algorithm_ok = |a: &str| {
            a.starts_with(|c: char| c.is_ascii_alphabetic())
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '.' | '_' | '-'))
        };
        let hex_ok =
            |h: &str| h.len() >= 32 && h.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f'));
        match digest.split_once(':') {
            Some((algorithm, hex)) if algorithm_ok(algorithm) && hex_ok(hex) => {}
            _ => return bad("a digest is algorithm:hex, e.g. sha256:…"),
        }
    }
    // A tag follows the last ':' after the last '/' (a ':' before it is a registry's port).
    let last_slash = named.rfind('/').map_or(0, |at| at + 1);
    let (name, tag) = match named[last_slash..].rfind(':') {
        Some(at) => (
            &named[..last_slash + at],
            Some(&named[last_slash + at + 1..]),
        ),
        None => (named, None),
    };
    if let Some(tag) = tag {
        let tag_ok = (1..=128).contains(&tag.len())
            && tag.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
            && tag
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if !tag_ok {
            return bad("a tag is letters, digits, '_', '.' and '-', not starting with '.' or '-'");
        }
    }
    if name.is_empty() || name.len() > 255 {
        return bad("a name has 1 to 255 characters");
    }
    let mut components: Vec<&str> = name.split('/').collect();
    // The first of several components is a registry when it looks like a host.
    if components.len() > 1 && (components[0].contains(['.', ':']) || components[0] == "localhost")
    {
        let registry = components.remove(0);
        if !registry_ok(registry) {
            return bad("a registry is host[:port]");
        }
    }
    let path_ok = components.iter().all(|c| component_ok(c));
    if !path_ok {
        return bad(
            "each part of a name is lowercase letters and digits, joined by '.', '_' or '-'",
        );
    }
    Ok(())
}

/// One part of an image's path: runs of lowercase letters and digits joined by `.`, `_`, `__`
/// or dashes.
fn component_ok(component: &str) -> bool {
    let alphanumeric = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    component.starts_with(alphanumeric)
        && component.ends_with(alphanumeric)
        && component
            .split(alphanumeric)
            .filter(|separator| !separator.is_empty())
            .all(|separator| {
                matches!(separator, "." | "_" | "__") || separator.chars().all(|c| c == '-')
            })
}

/// `host[:port]`: dot-separated labels of letters, digits and inner dashes, and a port of digits.
fn registry_ok(registry: &str) -> bool {
    let (host, port) = match registry.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (registry, None),
    };
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    host.split('.').all(label_ok)
        && port
            .is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.chars().all(|c| c.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_references_follow_the_engines_grammar() {
        let digest = "a".repeat(64);
        for good in [
            "ubuntu".to_owned(),
            "ubuntu:22.04".to_owned(),
            "library/ubuntu".to_owned(),
            "ghcr.io/example/server:1.2".to_owned(),
            "localhost:5000/team/model-server:v2_rc.1".to_owned(),
            "registry.example.com:443/a_b/c__d/e-f.g".to_owned(),
            format!("pytorch/pytorch@sha256:{digest}"),
            format!("nvcr.io/nvidia/pytorch:24.05-py3@sha256:{digest}"),
        ] {
            assert_eq!(check_image_reference(&good), Ok(()), "{good}");
        }
        for bad in [
            "--privileged",
            "-it",
            "--volume=/:/host",
            "Ubuntu",
            "ubuntu latest",
            "ubuntu:",
            "ubuntu:-rc",
            "ubuntu:.x",
            "/ubuntu",
            "team//model",
            "team/model/",
            "a..b",
            "a._b",
            "a-.b",
            "a___b",
            "ghcr.io:port/x",
            "-ghcr.io/x",
            "ubuntu@sha256:abc",
            "ubuntu@sha256",
            "x\u{202e}y",
        ] {
            let why = check_image_reference(bad).unwrap_err();
            assert!(why.contains("not an image reference"), "{bad}: {why}");
        }
        assert!(check_image_reference(&"a".repeat(600))
            .unwrap_err()
            .contains("at most 512"));
    }

    fn problems(workload: &Workload, needs_image: bool) -> Vec<(String, String)> {
        let mut out = Vec::new();
        workload.check(needs_image, |field, message| {
            out.push((field.to_owned(), message))
        });
        out
    }

    #[test]
    fn every_field_is_checked_with_a_specific_message() {
        let fine = Workload {
            image: "ghcr.io/example/server:1.2".into(),
            command: "python serve.py".into(),
            port: Some(8000),
            env: [("MODEL".to_owned(), "llama 3".to_owned())].into(),
        };
        assert!(problems(&fine, true).is_empty());
        assert_eq!(
            problems(&Workload::default(), true),
            [(
                "workload.image".to_owned(),
                "a container cluster needs an image".to_owned()
            )]
        );
        assert!(problems(&Workload::default(), false).is_empty());
        let cases: [(Workload, &str); 7] = [
            (
                Workload {
                    command: "echo \0".into(),
                    ..fine.clone()
                },
                "NUL",
            ),
            (
                Workload {
                    port: Some(0),
                    ..fine.clone()
                },
                "1 to 65535",
            ),
            (
                Workload {
                    env: [("DOCKER HOST".to_owned(), "x".to_owned())].into(),
                    ..fine.clone()
                },
                "not an environment variable name",
            ),
            (
                Workload {
                    env: [("9LIVES".to_owned(), "x".to_owned())].into(),
                    ..fine.clone()
                },
                "not an environment variable name",
            ),
            (
                Workload {
                    env: [("GC_ROLE".to_owned(), "head".to_owned())].into(),
                    ..fine.clone()
                },
                "set by the platform",
            ),
            (
                Workload {
                    env: [("TOKEN".to_owned(), "a\nb".to_owned())].into(),
                    ..fine.clone()
                },
                "one line",
            ),
            (
                Workload {
                    env: [("TOKEN".to_owned(), "x".repeat(5_000))].into(),
                    ..fine.clone()
                },
                "longer than",
            ),
        ];
        for (workload, expected) in cases {
            let found = problems(&workload, true);
            assert_eq!(found.len(), 1, "{found:?}");
            assert!(found[0].1.contains(expected), "{found:?}");
        }
    }
}
