//! The `local-solana` binary that the browser tests and local demos run, as they run it: it
//! makes the treasury's key file (mode 0600) or keeps the one there, serves Solana JSON-RPC over
//! its in-process runtime, and refuses bad flags with its usage. Testing it here also builds it
//! in the test run, so the browser tests use the binary of this very build.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chain::{Keypair, Signer};

const BIN: &str = env!("CARGO_BIN_EXE_local-solana");

/// A running `local-solana`, killed when dropped.
struct LocalSolana {
    child: Child,
    url: String,
}

impl Drop for LocalSolana {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn mint() -> String {
    Keypair::new().pubkey().to_string()
}

async fn start(key: &Path) -> LocalSolana {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let child = Command::new(BIN)
        .args(["--listen", &listen, "--treasury-key"])
        .arg(key)
        .args(["--usdc-mint", &mint(), "--token-mint", &mint()])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let running = LocalSolana {
        child,
        url: format!("http://{listen}/"),
    };
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let health = http.get(format!("{}health", running.url)).send().await;
        if health.is_ok_and(|r| r.status().is_success()) {
            return running;
        }
        assert!(Instant::now() < deadline, "local-solana never became ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn call(url: &str, method: &str) -> serde_json::Value {
    reqwest::Client::new()
        .post(url)
        .json(&serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": []}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn scratch() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gc-local-solana-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test]
async fn local_solana_serves_json_rpc_with_a_treasury_key_it_keeps() {
    let dir = scratch();
    let key = dir.join("treasury.json");
    let first = start(&key).await;
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the treasury key is the owner's alone");
    let treasury = chain::read_treasury_key(&key).unwrap().pubkey();
    let blockhash = call(&first.url, "getLatestBlockhash").await;
    assert!(
        blockhash["result"]["value"]["blockhash"].is_string(),
        "{blockhash}"
    );
    let unknown = call(&first.url, "noSuchMethod").await;
    assert!(unknown["error"].is_object(), "{unknown}");
    drop(first);

    // Started again on the same file, it keeps the treasury.
    let _second = start(&key).await;
    assert_eq!(chain::read_treasury_key(&key).unwrap().pubkey(), treasury);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_flags_are_refused_with_the_usage() {
    let out = Command::new(BIN).arg("--nope").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("usage: local-solana --listen ADDR"), "{said}");
}
