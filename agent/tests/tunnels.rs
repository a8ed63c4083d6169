//! Tunnels through the real server to a real agent's sandboxed workload: a renter reaches the
//! port their cluster declares, over a connection the agent opened outwards, with HTTP and an
//! upgraded (WebSocket-style) connection; the bytes are counted. And what a renter or a
//! provider would try: another renter, no credentials, an undeclared port (the provider's
//! other services), the renter's platform credentials reaching the provider, a workload
//! planting the platform's session cookie, a tunnel after the cluster ended.

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use domain::cluster::{ClusterKind, ClusterStatus, Workload};
use support::{h100_request, Fleet};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A small HTTP server the workload runs: it answers what it was sent (path, headers, body
/// size), plants cookies, and echoes an upgraded connection's bytes in capitals.
const ECHO_SERVER: &str = r#"#!/usr/bin/python3
import http.server, json, sys

class Echo(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def answer(self, fields):
        body = json.dumps(fields).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Set-Cookie", "gc_session=planted; Path=/")
        self.send_header("Set-Cookie", "app=1; Path=/")
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.headers.get("Upgrade", "").lower() == "echo":
            self.send_response(101)
            self.send_header("Connection", "Upgrade")
            self.send_header("Upgrade", "echo")
            self.end_headers()
            self.wfile.flush()
            while True:
                data = self.connection.recv(65536)
                if not data:
                    break
                self.connection.sendall(data.upper())
            self.close_connection = True
            return
        headers = {k.lower(): v for k, v in self.headers.items()}
        self.answer({"path": self.path, "headers": headers})

    def do_POST(self):
        size = int(self.headers.get("Content-Length", "0"))
        received = len(self.rfile.read(size))
        self.answer({"path": self.path, "received": received})

    def log_message(self, *args):
        pass

server = http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Echo)
print("listening", flush=True)
server.serve_forever()
"#;

/// A folder holding the echo server, shown read-only in the agent's sandboxes.
fn echo_bin(dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let script = bin.join("tunnel-echo");
    std::fs::write(&script, ECHO_SERVER).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    bin
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn api_key(fleet: &Fleet, user: i64) -> String {
    fleet
        .server
        .platform
        .api_keys
        .create(user, "tunnel test", platform::now())
        .await
        .unwrap()
        .secret
}

async fn status_of(http: &reqwest::Client, url: &str, key: Option<&str>) -> u16 {
    let mut request = http.get(url);
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    request.send().await.unwrap().status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renter_reaches_their_port_through_the_agents_tunnel_and_nobody_else_does() {
    if !std::path::Path::new("/usr/bin/python3").exists() {
        // The test command installs python3 (`cargo xtask test`); say so rather than pass.
        panic!("this test needs /usr/bin/python3 for its workload's HTTP server");
    }
    let fleet = Fleet::start(platform::testing::fresh_sqlite_url()).await;
    let bin = echo_bin(&fleet.dir);
    let started = fleet.start_h100("t", Some(&bin)).await;
    let renter = support::funded_renter(&fleet, 7, 100).await;
    let other = support::funded_renter(&fleet, 8, 100).await;
    let (key, other_key) = (api_key(&fleet, renter).await, api_key(&fleet, other).await);
    let port = free_port();
    let platform = &fleet.server.platform;
    let cluster = platform
        .provisioning
        .deploy(
            renter,
            &h100_request(
                "tunnelled",
                ClusterKind::BareMetal,
                1,
                Workload {
                    command: format!("exec tunnel-echo {port}"),
                    port: Some(port),
                    ..Workload::default()
                },
            ),
            None,
            platform::now(),
        )
        .await
        .unwrap();
    fleet
        .wait_for_output("t", &cluster.id, "listening", 30)
        .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let detail = loop {
        let detail = platform
            .provisioning
            .cluster(renter, &cluster.id, platform::now())
            .await
            .unwrap();
        if detail.summary.status == ClusterStatus::Running {
            break detail;
        }
        assert!(
            Instant::now() < deadline,
            "never running: {:?}",
            detail.events
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let origin = fleet.server.tunnel_url.clone().expect("tunnels are served");
    assert_ne!(
        origin.port(),
        fleet.server.public_url.port(),
        "a separate origin"
    );
    let [link] = detail.tunnels.as_slice() else {
        panic!("one tunnel: {:?}", detail.tunnels)
    };
    let base = format!(
        "{}c/{}/{}/{port}/",
        origin.as_str(),
        cluster.id,
        started.device
    );
    assert_eq!(link.url, base);

    // The renter, with an API key: the request arrives with its path and query, without the
    // key or the platform's cookies, and the workload cannot plant the session cookie.
    let http = reqwest::Client::new();
    let answer = http
        .get(format!("{base}hello?x=1"))
        .bearer_auth(&key)
        .header("cookie", "gc_session=the-renters-session; app=1")
        .header("x-trace", "kept")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let cookies: Vec<String> = answer
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        cookies,
        ["app=1; Path=/"],
        "the platform's cookie is never set"
    );
    let seen: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(seen["path"], "/hello?x=1");
    let headers = &seen["headers"];
    assert_eq!(headers["x-trace"], "kept");
    assert_eq!(headers["cookie"], "app=1", "only the application's cookies");
    assert!(
        headers.get("authorization").is_none(),
        "the API key stays: {headers}"
    );
    assert_eq!(
        headers["x-forwarded-prefix"],
        format!("/c/{}/{}/{port}/", cluster.id, started.device)
    );
    // A body of a MiB arrives whole.
    let posted: serde_json::Value = http
        .post(format!("{base}upload"))
        .bearer_auth(&key)
        .body(vec![7u8; 1 << 20])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(posted["received"], 1 << 20);
    // The tunnel's address without its slash leads to it.
    let bare = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(base.trim_end_matches('/'))
        .send()
        .await
        .unwrap();
    assert_eq!(bare.status(), 308);

    // An upgraded connection carries bytes both ways.
    let mut raw = tokio::net::TcpStream::connect(origin.socket_addrs(|| None).unwrap()[0])
        .await
        .unwrap();
    let path = format!("/c/{}/{}/{port}/ws", cluster.id, started.device);
    raw.write_all(
        format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {key}\r\n\
             Connection: Upgrade\r\nUpgrade: echo\r\n\r\n",
            origin.host_str().unwrap()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let head = read_head(&mut raw).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    raw.write_all(b"ping through the tunnel").await.unwrap();
    let mut echoed = vec![0u8; 23];
    tokio::time::timeout(Duration::from_secs(10), raw.read_exact(&mut echoed))
        .await
        .expect("echoed in time")
        .unwrap();
    assert_eq!(echoed, b"PING THROUGH THE TUNNEL");
    drop(raw);

    // Nobody else: no credentials, another renter, a port the cluster does not declare (the
    // provider's other services on that loopback), a device not in the cluster.
    assert_eq!(status_of(&http, &base, None).await, 401);
    assert_eq!(status_of(&http, &base, Some(&other_key)).await, 404);
    let undeclared = format!("{}c/{}/{}/22/", origin.as_str(), cluster.id, started.device);
    assert_eq!(status_of(&http, &undeclared, Some(&key)).await, 404);
    let elsewhere = format!("{}c/{}/dev-0000/{port}/", origin.as_str(), cluster.id);
    assert_eq!(status_of(&http, &elsewhere, Some(&key)).await, 404);

    // The bytes were counted, both ways, once the connections closed.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let bytes = platform.tunnels.bytes_of(&cluster.id).await.unwrap();
        if bytes > 1 << 20 {
            break;
        }
        assert!(Instant::now() < deadline, "only {bytes} bytes counted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // After the end, no tunnel.
    platform
        .provisioning
        .terminate(renter, &cluster.id, platform::now())
        .await
        .unwrap();
    assert_eq!(status_of(&http, &base, Some(&key)).await, 409);
    drop(started);
    fleet.stop().await;
}

/// Reads an HTTP response head, up to its blank line.
async fn read_head(stream: &mut tokio::net::TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let read = tokio::time::timeout(Duration::from_secs(15), stream.read(&mut byte))
            .await
            .expect("an answer in time")
            .unwrap();
        assert_eq!(read, 1, "closed after {:?}", String::from_utf8_lossy(&head));
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap()
}
