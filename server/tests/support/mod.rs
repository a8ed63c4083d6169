//! The real server on a free port with a fresh database, and an HTTP client for it: what the
//! HTTP test files share.
#![allow(dead_code)] // each test file uses its own part

use domain::wallet::WalletAddress;
use ed25519_dalek::{Signer, SigningKey};
use reqwest::StatusCode;
use serde_json::{json, Value};
use server::{start, Config, RunningServer};

pub struct TestApp {
    pub server: RunningServer,
    pub client: reqwest::Client,
    /// Held while the server runs; see [`ONE_SERVER_AT_A_TIME`].
    pub _turn: tokio::sync::OwnedMutexGuard<()>,
}

/// Each test runs its server on its own Tokio runtime, and two page-rendering servers on two
/// runtimes in one process sometimes leave a server-rendered page unanswered until the request
/// timeout (seen with the explorer's fully awaited pages; never with one server per process,
/// as in production and the browser tests). The tests here take turns.
pub static ONE_SERVER_AT_A_TIME: std::sync::LazyLock<std::sync::Arc<tokio::sync::Mutex<()>>> =
    std::sync::LazyLock::new(Default::default);

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.server.addr)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.unwrap()
    }

    pub async fn get_json(&self, path: &str) -> Value {
        let response = self.get(path).await;
        assert_eq!(response.status(), StatusCode::OK, "GET {path}");
        response.json().await.unwrap()
    }

    pub async fn post(&self, path: &str, body: Value) -> reqwest::Response {
        self.post_as(&self.client, path, body).await
    }

    /// [`TestApp::post`] from another client (another session, or none).
    pub async fn post_as(
        &self,
        client: &reqwest::Client,
        path: &str,
        body: Value,
    ) -> reqwest::Response {
        client
            .post(self.url(path))
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// [`TestApp::post_as`], answered with JSON.
    pub async fn post_json_as(&self, client: &reqwest::Client, path: &str, body: Value) -> Value {
        self.post_as(client, path, body).await.json().await.unwrap()
    }

    pub async fn challenge(&self, wallet: &SigningKey) -> String {
        let response = self
            .post(
                "/api/v1/auth/challenge",
                json!({ "address": address(wallet) }),
            )
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        response.json::<Value>().await.unwrap()["message"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    pub async fn sign_in(&self, wallet: &SigningKey) {
        self.sign_in_as(&self.client, wallet).await;
    }

    /// Signs `wallet` in on `client` (its cookie store keeps the session).
    pub async fn sign_in_as(&self, client: &reqwest::Client, wallet: &SigningKey) {
        let challenge = json!({ "address": address(wallet) });
        let message = self
            .post_json_as(client, "/api/v1/auth/challenge", challenge)
            .await;
        let message = message["message"].as_str().unwrap();
        let response = self
            .post_as(
                client,
                "/api/v1/auth/sign-in",
                json!({ "message": message, "signature": sign(wallet, message) }),
            )
            .await;
        assert_eq!(response.status(), StatusCode::OK);
    }

    /// A new client with its own session for `wallet`.
    pub async fn session_for(&self, wallet: &SigningKey) -> reqwest::Client {
        let client = reqwest::Client::builder()
            .cookie_store(true)
            .build()
            .unwrap();
        self.sign_in_as(&client, wallet).await;
        client
    }

    /// Adds a device through the Worker API and registers an agent for it through the agent
    /// API, reporting `gpu`; returns the device id.
    pub async fn registered_device(&self, name: &str, gpu: &str) -> String {
        let ticket: Value = self
            .post(
                "/api/v1/worker/devices",
                json!({ "name": name, "os": "linux", "kind": "gpu", "country": "DE" }),
            )
            .await
            .json()
            .await
            .unwrap();
        let registered = self
            .post(
                "/api/agent/v1/register",
                registration(&ticket["token"], true, gpu, 24_000),
            )
            .await;
        assert_eq!(registered.status(), StatusCode::CREATED);
        ticket["device_id"].as_str().unwrap().to_owned()
    }
}

/// An agent's registration with `token`, reporting one `gpu` of `memory_mb` on a 96-core host.
pub fn registration(token: &Value, simulated: bool, gpu: &str, memory_mb: u64) -> Value {
    json!({
        "token": token,
        "agent_version": "0.1.0",
        "simulated": simulated,
        "hardware": {
            "os": "linux", "cpu_model": "AMD EPYC 9654", "cpu_cores": 96,
            "ram_gb": 512, "disk_gb": 2000,
            "gpus": [{ "name": gpu, "memory_mb": memory_mb }]
        }
    })
}

pub fn address(wallet: &SigningKey) -> String {
    WalletAddress::from_public_key(&wallet.verifying_key().to_bytes()).to_string()
}

pub fn sign(wallet: &SigningKey, message: &str) -> String {
    bs58::encode(wallet.sign(message.as_bytes()).to_bytes()).into_string()
}

pub fn base64_decode(text: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap()
}

pub fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub fn new_wallet() -> SigningKey {
    SigningKey::generate(&mut rand::rngs::OsRng)
}

pub async fn error_code(response: reqwest::Response) -> String {
    let body: Value = response.json().await.unwrap();
    body["error"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

pub async fn error_message(response: reqwest::Response) -> String {
    let body: Value = response.json().await.unwrap();
    body["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

pub async fn spawn(database_url: String, tweak: impl FnOnce(&mut Config)) -> TestApp {
    let turn = ONE_SERVER_AT_A_TIME.clone().lock_owned().await;
    let mut config = Config::for_database(&database_url).unwrap();
    config.demo_devices = 60;
    config.fleet.accept_simulated = true;
    tweak(&mut config);
    let server = start(config).await.unwrap();
    let client = reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .unwrap();
    TestApp {
        server,
        client,
        _turn: turn,
    }
}
