//! Agent delivery: the agent binary this server offers (read once at start, so what is served
//! always matches the SHA-256 announced), the list of releases agents update from, and the
//! install script the Worker tab's one-line command runs.
//!
//! `GET /install.sh`, `GET /agent/releases.json`, `GET /agent/download/{platform}`: public, on
//! the agents' lean path (a binary of tens of megabytes is not worth compressing per request).

use std::path::Path;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use domain::agent_release::{
    marked_core, platform_of_binary, sha256_hex, AgentPlatform, AgentRelease, AgentReleases,
    AgentVersion,
};

use crate::error::Error;

/// The install script, before the server fills in its address and releases.
const INSTALL_TEMPLATE: &str = include_str!("../../deploy/install.sh");

/// The agent builds this server offers.
#[derive(Default)]
pub struct AgentDownloads {
    offered: Vec<(AgentRelease, Bytes)>,
}

impl AgentDownloads {
    /// Reads the agent binary at `binary`. A missing or unrecognisable file offers nothing
    /// (said in the log): the server runs, and the Worker tab shows the plain agent command.
    pub fn load(binary: &Path) -> AgentDownloads {
        let bytes = match std::fs::read(binary) {
            Ok(bytes) => bytes,
            Err(e) => {
                tracing::info!(agent = %binary.display(), error = %e, "no agent binary to offer for download (give --agent-binary)");
                return AgentDownloads::default();
            }
        };
        match AgentDownloads::of_binary(bytes) {
            Ok(downloads) => {
                if let Some((release, _)) = downloads.offered.first() {
                    tracing::info!(agent = %binary.display(), version = %release.version, platform = %release.platform, "agent offered for download");
                }
                downloads
            }
            Err(why) => {
                tracing::warn!(agent = %binary.display(), "not offered for download: {why}");
                AgentDownloads::default()
            }
        }
    }

    /// The downloads of one agent binary, or why it is not one.
    pub fn of_binary(bytes: Vec<u8>) -> Result<AgentDownloads, String> {
        let platform =
            platform_of_binary(&bytes).ok_or("not a Linux x86_64 or aarch64 executable (ELF)")?;
        let core = marked_core(&bytes).ok_or("it carries no agent release mark")?;
        let sha256 = sha256_hex(&bytes);
        let release = AgentRelease {
            platform,
            version: AgentVersion::of(core, &sha256).to_string(),
            sha256,
            size: bytes.len() as u64,
            path: format!("/agent/download/{platform}"),
        };
        Ok(AgentDownloads {
            offered: vec![(release, Bytes::from(bytes))],
        })
    }

    pub fn releases(&self) -> AgentReleases {
        AgentReleases {
            releases: self.offered.iter().map(|(r, _)| r.clone()).collect(),
        }
    }

    /// The build agents of the server's own platform should run, for the Worker tab's flags.
    pub fn offered_version(&self) -> Option<AgentVersion> {
        self.offered
            .iter()
            .find(|(r, _)| Some(r.platform) == AgentPlatform::this())
            .or(self.offered.first())
            .and_then(|(r, _)| AgentVersion::parse(&r.version))
    }

    /// The install script for agents of this server at `server_url`.
    pub fn install_script(&self, server_url: &str) -> String {
        let releases: String = self
            .offered
            .iter()
            .map(|(r, _)| {
                format!(
                    "    {}) VERSION={}; SHA256={} ;;\n",
                    r.platform,
                    shell_quoted(&r.version),
                    shell_quoted(&r.sha256)
                )
            })
            .collect();
        INSTALL_TEMPLATE
            .replacen(
                "SERVER=@SERVER@",
                &format!("SERVER={}", shell_quoted(server_url)),
                1,
            )
            .replacen("@RELEASES@\n", &releases, 1)
    }
}

/// `text` as one single-quoted shell word.
fn shell_quoted(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

#[derive(Clone)]
struct Delivery {
    downloads: Arc<AgentDownloads>,
    server_url: Arc<str>,
}

pub fn routes(downloads: Arc<AgentDownloads>, server_url: &str) -> Router {
    Router::new()
        .route("/install.sh", get(install_script))
        .route("/agent/releases.json", get(releases))
        .route("/agent/download/{platform}", get(download))
        .with_state(Delivery {
            downloads,
            server_url: Arc::from(server_url.trim_end_matches('/')),
        })
}

async fn install_script(State(delivery): State<Delivery>) -> Result<Response, Error> {
    if delivery.downloads.offered.is_empty() {
        return Err(no_agent());
    }
    Ok((
        [
            (header::CONTENT_TYPE, "text/x-shellscript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        delivery.downloads.install_script(&delivery.server_url),
    )
        .into_response())
}

async fn releases(State(delivery): State<Delivery>) -> Json<AgentReleases> {
    Json(delivery.downloads.releases())
}

async fn download(
    State(delivery): State<Delivery>,
    UrlPath(platform): UrlPath<String>,
) -> Result<Response, Error> {
    let platform = AgentPlatform::parse(&platform)
        .map_err(|e| Error::Platform(platform::Error::NotFound(e.to_string())))?;
    let (release, bytes) = delivery
        .downloads
        .offered
        .iter()
        .find(|(r, _)| r.platform == platform)
        .ok_or_else(no_agent)?;
    let mut response = bytes.clone().into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"gpu-commons-agent\""),
    );
    for (name, value) in [
        ("x-agent-version", &release.version),
        ("x-checksum-sha256", &release.sha256),
    ] {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(name, value);
        }
    }
    Ok(response)
}

fn no_agent() -> Error {
    Error::Platform(platform::Error::NotFound(
        "this server offers no agent download for that platform (its operator gives the agent binary with --agent-binary)".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_agent(release: &str) -> Vec<u8> {
        let mut binary = vec![0u8; 64];
        binary[..6].copy_from_slice(b"\x7fELF\x02\x01");
        binary[18] = 62;
        binary.extend_from_slice(&domain::agent_release::version_mark(release));
        binary
    }

    #[test]
    fn a_marked_binary_is_offered_under_its_build() {
        let downloads = AgentDownloads::of_binary(fake_agent("0.4.2")).unwrap();
        let releases = downloads.releases().releases;
        assert_eq!(releases.len(), 1);
        assert_eq!(releases[0].platform, AgentPlatform::LinuxX86_64);
        assert!(
            releases[0].version.starts_with("0.4.2+"),
            "{:?}",
            releases[0]
        );
        assert_eq!(releases[0].path, "/agent/download/linux-x86_64");
        assert!(AgentDownloads::of_binary(b"#!/bin/sh\n".to_vec())
            .err()
            .unwrap()
            .contains("not a Linux"));
        let mut unmarked = fake_agent("0.4.2");
        unmarked.truncate(64);
        assert!(AgentDownloads::of_binary(unmarked)
            .err()
            .unwrap()
            .contains("no agent release mark"));
    }

    #[test]
    fn the_script_names_the_server_and_each_build_as_single_words() {
        let downloads = AgentDownloads::of_binary(fake_agent("0.4.2")).unwrap();
        let release = &downloads.releases().releases[0];
        let script = downloads.install_script("https://gc.example/it's");
        assert!(script.contains(r"SERVER='https://gc.example/it'\''s'"));
        assert!(script.contains(&format!(
            "    linux-x86_64) VERSION='{}'; SHA256='{}' ;;\n",
            release.version, release.sha256
        )));
        assert!(!script.contains('@'), "every placeholder filled");
    }
}
