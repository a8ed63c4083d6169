//! Tunnels through the real server to a real agent's sandboxed workload: a renter reaches the
//! port their cluster declares, over a connection the agent opened outwards, with HTTP and an
//! upgraded (WebSocket-style) connection, with an API key or the cluster's access token; the
//! bytes are counted, an open connection's too. And what a renter or a
//! provider would try: another renter, no credentials, an undeclared port (the provider's
//! other services), the renter's platform credentials reaching the provider, a workload
//! planting the platform's session cookie, a guessed, foreign or rotated access token, a
//! tunnel after the cluster ended.

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use domain::cluster::{ClusterDetail, ClusterKind, ClusterStatus, Workload};
use support::{free_port, h100_request, Fleet};
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

server = http.server.ThreadingHTTPServer(("0.0.0.0", int(sys.argv[1])), Echo)
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

/// A one-device cluster of `renter`'s on `fleet`'s device `agent`, running the echo server on
/// `port`; its detail once running.
async fn echo_cluster(fleet: &Fleet, agent: &str, renter: i64, port: u16) -> ClusterDetail {
    if !std::path::Path::new("/usr/bin/python3").exists() {
        // The test command installs python3 (`cargo xtask test`); say so rather than pass.
        panic!("this test needs /usr/bin/python3 for its workload's HTTP server");
    }
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
        .wait_for_output(agent, &cluster.id, "listening", 30)
        .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let detail = platform
            .provisioning
            .cluster(renter, &cluster.id, platform::now())
            .await
            .unwrap();
        if detail.summary.status == ClusterStatus::Running {
            return detail;
        }
        assert!(
            Instant::now() < deadline,
            "never running: {:?}",
            detail.events
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renter_reaches_their_port_through_the_agents_tunnel_and_nobody_else_does() {
    let fleet = Fleet::start(platform::testing::fresh_sqlite_url()).await;
    let bin = echo_bin(&fleet.dir);
    let started = fleet.start_h100("t", Some(&bin)).await;
    let renter = support::funded_renter(&fleet, 7, 100).await;
    let other = support::funded_renter(&fleet, 8, 100).await;
    let (key, other_key) = (api_key(&fleet, renter).await, api_key(&fleet, other).await);
    let port = free_port();
    let platform = &fleet.server.platform;
    let detail = echo_cluster(&fleet, "t", renter, port).await;
    let cluster = &detail.summary;
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
    let posted = json_of(
        http.post(format!("{base}upload"))
            .bearer_auth(&key)
            .body(vec![7u8; 1 << 20]),
    )
    .await;
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

    // The bytes of closed connections are counted, both ways.
    wait_for_bytes(platform, &cluster.id, 1 << 20).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    platform.tunnels.flush_meters().await.unwrap();
    let counted = platform.tunnels.bytes_of(&cluster.id).await.unwrap();

    // An upgraded connection carries bytes both ways, and they are counted while it stays
    // open.
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
    wait_for_bytes(platform, &cluster.id, counted + 46).await;
    drop(raw);

    // Nobody else: no credentials, another renter, a port the cluster does not declare (the
    // provider's other services on that loopback), a device not in the cluster.
    assert_eq!(status_of(&http, &base, None).await, 401);
    assert_eq!(status_of(&http, &base, Some(&other_key)).await, 404);
    let undeclared = format!("{}c/{}/{}/22/", origin.as_str(), cluster.id, started.device);
    assert_eq!(status_of(&http, &undeclared, Some(&key)).await, 404);
    let elsewhere = format!("{}c/{}/dev-0000/{port}/", origin.as_str(), cluster.id);
    assert_eq!(status_of(&http, &elsewhere, Some(&key)).await, 404);

    // The cluster's access token, made through the API as a script would.
    let token_url = format!(
        "{}api/v1/cloud/clusters/{}/access-token",
        fleet.server.public_url, cluster.id
    );
    let made = http
        .post(&token_url)
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(made.status(), 200);
    let made: serde_json::Value = made.json().await.unwrap();
    let token = made["token"].as_str().unwrap().to_owned();
    assert!(domain::tunnel::is_access_token(&token), "{token}");
    assert_eq!(made["links"][0]["url"], format!("{base}?gc_access={token}"));
    // As a bearer: it passes, and the workload never sees it.
    let seen = json_of(http.get(format!("{base}t?y=2")).bearer_auth(&token)).await;
    assert_eq!(seen["path"], "/t?y=2");
    assert!(seen["headers"].get("authorization").is_none(), "{seen}");
    // In a link: the browser keeps it in a cookie for this cluster's tunnels and goes on to
    // the address without it.
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let link = no_redirects
        .get(format!("{base}page?gc_access={token}&z=3"))
        .send()
        .await
        .unwrap();
    assert_eq!(link.status(), 303);
    assert_eq!(
        link.headers()["location"],
        format!("/c/{}/{}/{port}/page?z=3", cluster.id, started.device)
    );
    assert_eq!(
        link.headers()["set-cookie"],
        domain::tunnel::access_cookie(&cluster.id, &token, false).as_str()
    );
    let by_cookie = |cookie: String| http.get(format!("{base}page?z=3")).header("cookie", cookie);
    let seen = json_of(by_cookie(format!("gc_access={token}; app=2"))).await;
    assert_eq!(seen["path"], "/page?z=3");
    assert_eq!(
        seen["headers"]["cookie"], "app=2",
        "the token's cookie stays"
    );
    // It opens this cluster alone, and a guess opens nothing.
    let foreign = format!("{}c/cl-0000/{}/{port}/", origin.as_str(), started.device);
    assert_eq!(status_of(&http, &foreign, Some(&token)).await, 401);
    let guess = format!("gct_{}", "0".repeat(64));
    assert_eq!(status_of(&http, &base, Some(&guess)).await, 401);
    let query_guess = format!("{base}?gc_access=gct_{}", "1".repeat(64));
    assert_eq!(status_of(&no_redirects, &query_guess, None).await, 401);
    // Another renter cannot make one for this cluster.
    let stolen = http.post(&token_url).bearer_auth(&other_key).send().await;
    assert_eq!(stolen.unwrap().status(), 404);
    // A new token ends the one before, in a header and in a kept cookie.
    let renewed = json_of(http.post(&token_url).bearer_auth(&key)).await;
    let renewed = renewed["token"].as_str().unwrap().to_owned();
    assert_ne!(renewed, token);
    assert_eq!(status_of(&http, &base, Some(&token)).await, 401);
    let stale = by_cookie(format!("gc_access={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), 401);
    assert_eq!(status_of(&http, &base, Some(&renewed)).await, 200);

    // After the end, no tunnel, and no new token.
    platform
        .provisioning
        .terminate(renter, &cluster.id, platform::now())
        .await
        .unwrap();
    assert_eq!(status_of(&http, &base, Some(&key)).await, 409);
    assert_eq!(status_of(&http, &base, Some(&renewed)).await, 409);
    let late = http.post(&token_url).bearer_auth(&key).send().await;
    assert_eq!(late.unwrap().status(), 409);
    drop(started);
    fleet.stop().await;
}

/// With a DNS name for the tunnel origin, each device of each cluster is served at a host of
/// its own, so one provider's pages never share an origin with the renter's other tunnels: its
/// links name that host, the tunnel answers there alone (not at the shared host, not at another
/// device's), and an access token's cookie is kept for that host alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_device_is_served_at_a_host_of_its_own() {
    let tunnel_port = free_port();
    let fleet = Fleet::start_with(platform::testing::fresh_sqlite_url(), |config| {
        config.tunnel_listen = Some(([127, 0, 0, 1], tunnel_port).into());
        config.tunnel_url = Some(format!("http://localhost:{tunnel_port}").parse().unwrap());
    })
    .await;
    let bin = echo_bin(&fleet.dir);
    let started = fleet.start_h100("h", Some(&bin)).await;
    let renter = support::funded_renter(&fleet, 9, 100).await;
    let key = api_key(&fleet, renter).await;
    let port = free_port();
    let detail = echo_cluster(&fleet, "h", renter, port).await;
    let cluster = &detail.summary.id;
    let own_host = format!("{cluster}-{}.localhost", started.device);
    let path = format!("/c/{cluster}/{}/{port}/", started.device);
    assert_eq!(
        detail.tunnels[0].url,
        format!("http://{own_host}:{tunnel_port}{path}")
    );
    // No resolver here knows the wildcard: the client is told where the hosts are.
    let listener: std::net::SocketAddr = ([127, 0, 0, 1], tunnel_port).into();
    let elsewhere = format!("{cluster}-dev-0000000000000000.localhost");
    let http = reqwest::Client::builder()
        .resolve(&own_host, listener)
        .resolve(&elsewhere, listener)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let own = format!("http://{own_host}:{tunnel_port}{path}");
    assert_eq!(status_of(&http, &own, Some(&key)).await, 200);
    let shared = format!("http://localhost:{tunnel_port}{path}");
    let refused = http.get(&shared).bearer_auth(&key).send().await.unwrap();
    assert_eq!(refused.status(), 404);
    let said: serde_json::Value = refused.json().await.unwrap();
    assert!(
        said["error"]["message"].as_str().unwrap().contains(&own),
        "{said}"
    );
    let other_device = format!("http://{elsewhere}:{tunnel_port}{path}");
    assert_eq!(status_of(&http, &other_device, Some(&key)).await, 404);
    // An access token's link lands on the device's host and keeps the token there alone.
    let made = fleet
        .server
        .platform
        .tunnels
        .rotate_access_token(renter, cluster, platform::now())
        .await
        .unwrap();
    assert!(made.links[0].url.starts_with(&own), "{:?}", made.links);
    let kept = http.get(&made.links[0].url).send().await.unwrap();
    assert_eq!(kept.status(), 303);
    let cookie = kept.headers()["set-cookie"].to_str().unwrap();
    assert!(!cookie.to_ascii_lowercase().contains("domain="), "{cookie}");
    drop(started);
    fleet.stop().await;
}

/// What a request answers, as JSON.
async fn json_of(request: reqwest::RequestBuilder) -> serde_json::Value {
    request.send().await.unwrap().json().await.unwrap()
}

/// Waits until the cluster's metered bytes reach `at_least` (tunnels' counts are written every
/// few seconds); the count then.
async fn wait_for_bytes(platform: &platform::Platform, cluster_id: &str, at_least: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let bytes = platform.tunnels.bytes_of(cluster_id).await.unwrap();
        if bytes >= at_least {
            return bytes;
        }
        assert!(
            Instant::now() < deadline,
            "only {bytes} bytes counted, not {at_least}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
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
