//! The agent API over HTTP(S), with the server's error bodies turned into [`AgentError`]s.

use std::time::Duration;

use domain::agent_protocol::{
    AssignmentChange, AssignmentWait, Heartbeat, HeartbeatReply, RegisterRequest, Registered,
    SpeedTestResult, SpeedTestStarted, VerificationOutcome, MAX_ASSIGNMENT_WAIT_SECS,
};
use domain::agent_release::AgentReleases;
use domain::proof_of_work::Answer;
use domain::tunnel::{OrderWait, TunnelOrder, TunnelOrders, MAX_ORDER_WAIT_SECS, STREAM_PROTOCOL};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::error::AgentError;

#[derive(Clone)]
pub struct ApiClient {
    http: reqwest::Client,
    /// For tunnel streams, which last as long as the renter's connection: no total time limit.
    streams: reqwest::Client,
    /// The server's root URL (`https://gpucommons.example`), for its public agent downloads.
    root: String,
    base: String,
    credential: Option<String>,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    code: String,
    message: String,
}

fn transport(e: reqwest::Error) -> AgentError {
    AgentError::Transport(e.to_string())
}

impl ApiClient {
    pub fn new(server: &str) -> Result<ApiClient, AgentError> {
        let url = reqwest::Url::parse(server)
            .map_err(|e| AgentError::Config(format!("--server '{server}' is not a URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(AgentError::Config(format!(
                "--server '{server}' must be an http(s) URL"
            )));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(120))
            .user_agent(concat!("gpu-commons-agent/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(transport)?;
        let streams = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("gpu-commons-agent/", env!("CARGO_PKG_VERSION")))
            .http1_only()
            .build()
            .map_err(transport)?;
        Ok(ApiClient {
            http,
            streams,
            root: server.trim_end_matches('/').to_owned(),
            base: format!("{}/api/agent/v1", server.trim_end_matches('/')),
            credential: None,
        })
    }

    pub fn with_credential(mut self, credential: String) -> ApiClient {
        self.credential = Some(credential);
        self
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.request_on(&self.http, method, path)
    }

    fn request_on(
        &self,
        http: &reqwest::Client,
        method: reqwest::Method,
        path: &str,
    ) -> reqwest::RequestBuilder {
        let builder = http.request(method, format!("{}{path}", self.base));
        match &self.credential {
            Some(c) => builder.bearer_auth(c),
            None => builder,
        }
    }

    async fn answer_of(response: reqwest::Response) -> Result<reqwest::Response, AgentError> {
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let text = response.text().await.unwrap_or_default();
        match serde_json::from_str::<ErrorBody>(&text) {
            Ok(body) => Err(AgentError::Refused {
                status: status.as_u16(),
                code: body.error.code,
                message: body.error.message,
            }),
            Err(_) => Err(AgentError::Transport(format!(
                "HTTP {status}: {}",
                text.chars().take(200).collect::<String>()
            ))),
        }
    }

    async fn json<T: DeserializeOwned>(
        &self,
        builder: reqwest::RequestBuilder,
    ) -> Result<T, AgentError> {
        let response = builder.send().await.map_err(transport)?;
        Self::answer_of(response)
            .await?
            .json()
            .await
            .map_err(transport)
    }

    /// The agent builds the server offers.
    pub async fn releases(&self) -> Result<AgentReleases, AgentError> {
        self.json(self.http.get(format!("{}/agent/releases.json", self.root)))
            .await
    }

    /// Downloads the release at `path` (a path on this server), refusing more than `size` bytes.
    pub async fn download(&self, path: &str, size: u64) -> Result<Vec<u8>, AgentError> {
        if !path.starts_with("/agent/download/") {
            return Err(AgentError::Transport(format!(
                "the server names '{path}' as a download, which is not one of its agent downloads"
            )));
        }
        let mut response = Self::answer_of(
            self.http
                .get(format!("{}{path}", self.root))
                .timeout(Duration::from_secs(600))
                .send()
                .await
                .map_err(transport)?,
        )
        .await?;
        let mut binary = Vec::with_capacity(size.min(64 << 20) as usize);
        while let Some(chunk) = response.chunk().await.map_err(transport)? {
            if (binary.len() + chunk.len()) as u64 > size {
                return Err(AgentError::Transport(format!(
                    "the download of {path} runs past the {size} bytes offered"
                )));
            }
            binary.extend_from_slice(&chunk);
        }
        Ok(binary)
    }

    pub async fn register(&self, request: &RegisterRequest) -> Result<Registered, AgentError> {
        self.json(
            self.request(reqwest::Method::POST, "/register")
                .json(request),
        )
        .await
    }

    /// Ships lines a workload printed; Ok once the server stored them.
    pub async fn ship_output(
        &self,
        shipment: &domain::output::OutputShipment,
    ) -> Result<(), AgentError> {
        let response = self
            .request(reqwest::Method::POST, "/output")
            .json(shipment)
            .send()
            .await
            .map_err(transport)?;
        Self::answer_of(response).await.map(|_| ())
    }

    pub async fn heartbeat(&self, heartbeat: &Heartbeat) -> Result<HeartbeatReply, AgentError> {
        self.json(
            self.request(reqwest::Method::POST, "/heartbeat")
                .json(heartbeat),
        )
        .await
    }

    /// Waits (up to the server's limit) until the server has other cluster work for this
    /// device than `known`; true when it has.
    pub async fn wait_for_assignment(&self, known: &[String]) -> Result<bool, AgentError> {
        let wait = AssignmentWait {
            known: known.to_vec(),
            wait_secs: MAX_ASSIGNMENT_WAIT_SECS,
        };
        let change: AssignmentChange = self
            .json(
                self.request(reqwest::Method::POST, "/assignments/wait")
                    .json(&wait),
            )
            .await?;
        Ok(change.changed)
    }

    /// Waits (up to the server's limit) for connections the server asks this device to open.
    pub async fn wait_for_tunnel_orders(&self) -> Result<Vec<TunnelOrder>, AgentError> {
        let wait = OrderWait {
            wait_secs: MAX_ORDER_WAIT_SECS,
        };
        let orders: TunnelOrders = self
            .json(
                self.request(reqwest::Method::POST, "/tunnel/orders")
                    .json(&wait),
            )
            .await?;
        Ok(orders.orders)
    }

    /// Opens the stream of tunnel order `stream`: the connection, upgraded, then carries the
    /// renter's bytes.
    pub async fn open_tunnel_stream(&self, stream: &str) -> Result<reqwest::Upgraded, AgentError> {
        let response = self
            .request_on(
                &self.streams,
                reqwest::Method::GET,
                &format!("/tunnel/streams/{stream}"),
            )
            .header(reqwest::header::CONNECTION, "upgrade")
            .header(reqwest::header::UPGRADE, STREAM_PROTOCOL)
            .send()
            .await
            .map_err(transport)?;
        if response.status() != reqwest::StatusCode::SWITCHING_PROTOCOLS {
            return Err(Self::answer_of(response).await.err().unwrap_or_else(|| {
                AgentError::Transport("the server did not switch the tunnel stream".into())
            }));
        }
        response.upgrade().await.map_err(transport)
    }

    /// Tells the server why order `stream` cannot be connected.
    pub async fn refuse_tunnel_stream(&self, stream: &str, why: &str) -> Result<(), AgentError> {
        let response = self
            .request(
                reqwest::Method::POST,
                &format!("/tunnel/streams/{stream}/refused"),
            )
            .json(&serde_json::json!({ "reason": why }))
            .send()
            .await
            .map_err(transport)?;
        Self::answer_of(response).await.map(|_| ())
    }

    pub async fn answer(&self, answer: &Answer) -> Result<VerificationOutcome, AgentError> {
        let path = format!("/challenges/{}", answer.challenge_id);
        self.json(self.request(reqwest::Method::POST, &path).json(answer))
            .await
    }

    /// Runs the server's rounds: each downloads the server's payload, then uploads as many bytes
    /// with the payload's digest; the server times both and answers, after the last round, with
    /// each direction's best. The digest is taken as the bytes arrive and the upload is ready
    /// before the download starts, so the agent's own work adds as little as it can to the
    /// download time the server counts.
    pub async fn speed_test(&self) -> Result<SpeedTestResult, AgentError> {
        let started: SpeedTestStarted = self
            .json(self.request(reqwest::Method::POST, "/speed-tests"))
            .await?;
        let upload = bytes::Bytes::from(vec![0u8; started.bytes as usize]);
        loop {
            let mut response = Self::answer_of(
                self.request(
                    reqwest::Method::GET,
                    &format!("/speed-tests/{}/download", started.id),
                )
                .send()
                .await
                .map_err(transport)?,
            )
            .await?;
            let mut digest = Sha256::new();
            while let Some(chunk) = response.chunk().await.map_err(transport)? {
                digest.update(&chunk);
            }
            let digest: String = digest
                .finalize()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            let result: SpeedTestResult = self
                .json(
                    self.request(
                        reqwest::Method::POST,
                        &format!("/speed-tests/{}/upload", started.id),
                    )
                    .header("x-download-sha256", digest)
                    .body(upload.clone()),
                )
                .await?;
            if result.rounds_left == 0 {
                return Ok(result);
            }
        }
    }
}
