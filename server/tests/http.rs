//! The real server on a free port with a fresh database, driven over HTTP — once on SQLite and
//! once on PostgreSQL.

use ed25519_dalek::SigningKey;
use reqwest::header;
use reqwest::StatusCode;
use serde_json::{json, Value};
use server::{start, Config};

mod support;

use support::*;

/// A page of another origin (the tunnel origin is one: same host, another port) cannot write
/// as the signed-in renter; the console's own pages and plain API clients can.
async fn writes_from_another_origin_are_refused(app: TestApp) {
    let tunnels = app.server.tunnel_url.clone().expect("tunnels are served");
    let foreign = tunnels.as_str().trim_end_matches('/').to_owned();
    let own = format!("http://{}", app.server.addr);
    let sign_out = |origin: Option<String>| {
        let mut request = app.client.post(app.url("/api/v1/auth/sign-out"));
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        request.send()
    };
    // A browser that sends no Origin still says where the write comes from.
    let fetched_from = |site: &'static str| {
        app.client
            .post(app.url("/api/v1/auth/sign-out"))
            .header("sec-fetch-site", site)
            .send()
    };
    for (site, status) in [
        ("same-site", StatusCode::FORBIDDEN),
        ("cross-site", StatusCode::FORBIDDEN),
        ("same-origin", StatusCode::NO_CONTENT),
        ("none", StatusCode::NO_CONTENT),
    ] {
        assert_eq!(fetched_from(site).await.unwrap().status(), status, "{site}");
    }
    // Sign-in too (login CSRF: a page of another origin signing the renter in as itself).
    let challenge = app
        .client
        .post(app.url("/api/v1/auth/challenge"))
        .header("origin", "http://elsewhere.example")
        .json(&json!({ "address": address(&new_wallet()) }))
        .send()
        .await
        .unwrap();
    assert_eq!(challenge.status(), StatusCode::FORBIDDEN);
    let refused = sign_out(Some(foreign)).await.unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert_eq!(error_code(refused).await, "cross_origin");
    assert_eq!(
        sign_out(Some("null".into())).await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        sign_out(Some(own)).await.unwrap().status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        sign_out(None).await.unwrap().status(),
        StatusCode::NO_CONTENT
    );
    // Reads are not writes.
    let read = app
        .client
        .get(app.url("/api/v1/network/summary"))
        .header("origin", "http://elsewhere.example")
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), StatusCode::OK);
    app.server.stop().await;
}

async fn health_and_readiness_answer(app: TestApp) {
    assert_eq!(app.get("/healthz").await.text().await.unwrap(), "ok");
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status(), StatusCode::OK);
    app.server.stop().await;
}

async fn each_section_renders_on_the_server_with_hydration_and_navigation(app: TestApp) {
    for (path, heading) in [
        ("/explorer", "Network explorer"),
        ("/cloud", "Cloud"),
        ("/worker", "Worker"),
    ] {
        let response = app.get(path).await;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let html = response.text().await.unwrap();
        assert!(
            html.contains(&format!("<h1>{heading}</h1>")),
            "{path} lacks its heading"
        );
        for link in ["href=\"/explorer\"", "href=\"/cloud\"", "href=\"/worker\""] {
            assert!(html.contains(link), "{path} lacks the nav link {link}");
        }
        assert!(
            html.contains("/pkg/gpu_commons.js"),
            "{path} does not load the hydrate bundle"
        );
        assert!(
            html.contains("data-testid=\"connect-wallet\""),
            "{path} lacks the wallet button"
        );
    }
    let explorer = app.get("/explorer").await.text().await.unwrap();
    assert!(
        explorer.contains("Supply by GPU model")
            && explorer.contains("data-testid=\"network-totals\"")
    );
    let summary = app.get_json("/api/v1/network/summary").await;
    let gpus = summary["totals"]["gpus"].as_i64().unwrap();
    assert!(gpus > 0);
    assert!(
        // The figure is the element's first text (a hydration marker may follow it).
        explorer.contains(&format!("<div class=\"stat-value\">{gpus}<")),
        "explorer shows the API's GPU total"
    );
    app.server.stop().await;
}

async fn the_root_redirects_to_the_explorer(app: TestApp) {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let response = client.get(app.url("/")).send().await.unwrap();
    assert!(response.status().is_redirection(), "{}", response.status());
    assert_eq!(response.headers()[header::LOCATION], "/explorer");
    app.server.stop().await;
}

async fn an_unknown_page_is_a_404_page(app: TestApp) {
    let response = app.get("/no/such/page").await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let html = response.text().await.unwrap();
    assert!(html.contains("This page does not exist") && html.contains("href=\"/explorer\""));
    app.server.stop().await;
}

async fn responses_carry_security_headers_and_compress(app: TestApp) {
    let response = app
        .client
        .get(app.url("/explorer"))
        .header(header::ACCEPT_ENCODING, "br")
        .send()
        .await
        .unwrap();
    let h = response.headers();
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["x-frame-options"], "DENY");
    assert!(h["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("frame-ancestors 'none'"));
    assert_eq!(h[header::CONTENT_ENCODING], "br");
    app.server.stop().await;
}

async fn wallet_sign_in_starts_a_session_that_sign_out_ends(app: TestApp) {
    let wallet = new_wallet();
    assert_eq!(
        app.get("/api/v1/auth/session").await.status(),
        StatusCode::UNAUTHORIZED
    );
    let message = app.challenge(&wallet).await;
    assert!(message.starts_with(&format!(
        "127.0.0.1:{} wants you to sign in",
        app.server.addr.port()
    )));

    let response = app
        .post(
            "/api/v1/auth/sign-in",
            json!({ "message": message, "signature": sign(&wallet, &message) }),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let cookie = response.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        cookie.starts_with("gc_session=")
            && cookie.contains("HttpOnly")
            && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    assert!(
        !cookie.contains("Secure"),
        "plain-http site must not mark the cookie Secure"
    );
    let token = cookie
        .trim_start_matches("gc_session=")
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    assert!(
        token.len() >= 32,
        "session id must carry at least 128 random bits"
    );

    let session: Value = app.get("/api/v1/auth/session").await.json().await.unwrap();
    assert_eq!(session["wallet"], address(&wallet));
    let worker = app.get("/worker").await.text().await.unwrap();
    assert!(
        worker.contains("data-testid=\"wallet-address\""),
        "signed-in header shows the wallet"
    );
    assert_eq!(
        app.get("/api/v1/worker/devices").await.status(),
        StatusCode::OK
    );

    assert_eq!(
        app.post("/api/v1/auth/sign-out", json!({})).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.get("/api/v1/auth/session").await.status(),
        StatusCode::UNAUTHORIZED
    );
    // The old token is dead on the server, not just forgotten by this client.
    let replay = reqwest::Client::new()
        .get(app.url("/api/v1/auth/session"))
        .header(header::COOKIE, format!("gc_session={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), StatusCode::UNAUTHORIZED);
    app.server.stop().await;
}

async fn refused_sign_ins_say_why(app: TestApp) {
    let wallet = new_wallet();
    let message = app.challenge(&wallet).await;

    let mut forged = bs58::decode(sign(&wallet, &message)).into_vec().unwrap();
    forged[10] ^= 0x40;
    let tampered = app
        .post(
            "/api/v1/auth/sign-in",
            json!({ "message": message, "signature": bs58::encode(forged).into_string() }),
        )
        .await;
    assert_eq!(tampered.status(), StatusCode::UNAUTHORIZED);
    assert!(error_message(tampered).await.contains("does not match"));

    let other_site = message.replacen("127.0.0.1:", "127.0.0.2:", 1);
    let phished = app
        .post(
            "/api/v1/auth/sign-in",
            json!({ "message": other_site, "signature": sign(&wallet, &other_site) }),
        )
        .await;
    assert_eq!(phished.status(), StatusCode::UNAUTHORIZED);
    assert!(error_message(phished).await.contains("but this site is"));

    let good = json!({ "message": message, "signature": sign(&wallet, &message) });
    assert_eq!(
        app.post("/api/v1/auth/sign-in", good.clone())
            .await
            .status(),
        StatusCode::OK
    );
    let reused = app.post("/api/v1/auth/sign-in", good).await;
    assert_eq!(reused.status(), StatusCode::UNAUTHORIZED);
    assert!(error_message(reused).await.contains("already used"));
    app.server.stop().await;
}

async fn an_expired_sign_in_message_is_refused(app: TestApp) {
    let wallet = new_wallet();
    let message = app.challenge(&wallet).await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let late = app
        .post(
            "/api/v1/auth/sign-in",
            json!({ "message": message, "signature": sign(&wallet, &message) }),
        )
        .await;
    assert_eq!(late.status(), StatusCode::UNAUTHORIZED);
    assert!(error_message(late).await.contains("expired"));
    app.server.stop().await;
}

async fn bad_api_input_gets_specific_errors(app: TestApp) {
    let bad_address = app
        .post(
            "/api/v1/auth/challenge",
            json!({ "address": "not-a-wallet" }),
        )
        .await;
    assert_eq!(bad_address.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(error_message(bad_address).await.contains("not base58"));

    let missing_field = app
        .post("/api/v1/auth/challenge", json!({ "wallet": "x" }))
        .await;
    assert_eq!(missing_field.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(error_message(missing_field)
        .await
        .contains("unknown field `wallet`"));

    let not_json = app
        .client
        .post(app.url("/api/v1/auth/challenge"))
        .header(header::CONTENT_TYPE, "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(not_json.status(), StatusCode::BAD_REQUEST);

    let huge = json!({ "address": "1".repeat(100_000) });
    assert_eq!(
        app.post("/api/v1/auth/challenge", huge).await.status(),
        StatusCode::PAYLOAD_TOO_LARGE
    );

    let garbage_message = app
        .post(
            "/api/v1/auth/sign-in",
            json!({ "message": "hello", "signature": "abc" }),
        )
        .await;
    assert_eq!(garbage_message.status(), StatusCode::UNAUTHORIZED);
    assert!(error_message(garbage_message).await.contains("malformed"));
    app.server.stop().await;
}

async fn the_worker_api_filters_sorts_renames_and_charts(app: TestApp) {
    app.sign_in(&new_wallet()).await;
    let rtx = app
        .registered_device("b-rtx", "NVIDIA GeForce RTX 4090")
        .await;
    let odd = app.registered_device("a-odd", "Matrox G200").await;
    let names = |body: Value| -> Vec<String> {
        body["devices"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let all = app.get_json("/api/v1/worker/devices").await;
    assert_eq!(names(all.clone()), ["a-odd", "b-rtx"]);
    assert_eq!(all["devices"][1]["uptime_30d_permille"], 0);
    let pending = app
        .get_json("/api/v1/worker/devices?status=pending&sort=name")
        .await;
    assert_eq!(names(pending), ["b-rtx"]);
    let by_model = app
        .get_json("/api/v1/worker/devices?model=RTX%204090%2024GB")
        .await;
    assert_eq!(names(by_model), ["b-rtx"]);

    let bad_filter = app.get("/api/v1/worker/devices?status=sleeping").await;
    assert_eq!(bad_filter.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(error_message(bad_filter)
        .await
        .contains("unknown device status 'sleeping' (expected one of: "));
    let unknown_parameter = app.get("/api/v1/worker/devices?colour=red").await;
    assert_eq!(unknown_parameter.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(error_message(unknown_parameter).await.contains("colour"));

    let renamed = app
        .post(
            &format!("/api/v1/worker/devices/{odd}/rename"),
            json!({ "name": " c-odd " }),
        )
        .await;
    assert_eq!(renamed.status(), StatusCode::OK);
    assert_eq!(renamed.json::<Value>().await.unwrap()["name"], "c-odd");
    let blank = app
        .post(
            &format!("/api/v1/worker/devices/{odd}/rename"),
            json!({ "name": "" }),
        )
        .await;
    assert_eq!(blank.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(error_message(blank)
        .await
        .contains("give the device a name"));
    let all = app.get_json("/api/v1/worker/devices").await;
    assert_eq!(names(all), ["b-rtx", "c-odd"]);

    let detail = app.get_json(&format!("/api/v1/worker/devices/{rtx}")).await;
    assert_eq!(detail["uptime_days"].as_array().unwrap().len(), 30);
    assert_eq!(detail["utilisation_hours"].as_array().unwrap().len(), 48);
    // The page draws both charts on the server.
    let page = app
        .get(&format!("/worker/devices/{rtx}"))
        .await
        .text()
        .await
        .unwrap();
    for chart in ["uptime-chart", "utilisation-chart"] {
        let at = page
            .find(&format!("data-testid=\"{chart}\""))
            .unwrap_or_else(|| panic!("no {chart} on the page"));
        assert!(
            page[at..at + 60].contains("><svg "),
            "{}",
            &page[at..at + 60]
        );
    }
    assert!(page.contains("data-testid=\"rename-input\""));
    app.server.stop().await;
}

/// Sign-in messages that expire in a second, and $100 for every new account.
fn short_sign_in(config: &mut Config) {
    config.sign_in_ttl_secs = 1;
    config.welcome_credit = domain::money::MicroUsd::from_micros(100_000_000);
}

async fn the_cloud_api_quotes_deploys_extends_and_terminates(app: TestApp) {
    let platform = &app.server.platform;
    platform::testing::seed_agent_fleet(&platform.store, 92, platform::now())
        .await
        .unwrap();
    platform.agents.rebuild(platform::now()).await.unwrap();
    let options = app
        .get_json("/api/v1/cloud/options?hardware=H200%20141GB")
        .await;
    let h200 = options["hardware"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["hardware"] == "H200 141GB")
        .unwrap()
        .clone();
    // Every 23rd seeded device is an H200, with 1, 8, 4 and 2 GPUs.
    assert_eq!(h200["free_units"], 15);
    assert_eq!(h200["rate_per_unit_hour"], 3_490_000);
    // The four countries with free H200s come first, then every other country by name.
    let countries = options["countries"].as_array().unwrap();
    let free: Vec<&Value> = countries
        .iter()
        .take_while(|c| c["free_units"].as_u64() > Some(0))
        .collect();
    assert_eq!(free.len(), 4, "{countries:?}");
    assert!(countries.len() > 240, "every country is offered");
    let rest: Vec<&str> = countries[4..]
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert!(rest.windows(2).all(|w| w[0] <= w[1]), "{rest:?}");

    let order = json!({
        "name": "api-cluster", "kind": "bare_metal", "hardware": "H200 141GB", "quantity": 4,
        "duration_unit": "hourly", "duration_count": 2, "payment": "usdc",
        "workload": { "command": "python serve.py", "env": { "MODEL": "llama" } }
    });
    let quote = app.post("/api/v1/cloud/quote", order.clone()).await;
    assert_eq!(quote.status(), StatusCode::OK);
    let quote: Value = quote.json().await.unwrap();
    assert_eq!(quote["fillability"]["fillable"], true);
    assert_eq!(quote["quote"]["unit_hours"], 8);
    let total = quote["quote"]["total"].as_i64().unwrap();
    let bad = app
        .post(
            "/api/v1/cloud/quote",
            json!({ "name": "", "kind": "ray", "hardware": "Voodoo", "quantity": 0,
                    "duration_unit": "daily", "duration_count": 400, "payment": "usdc" }),
        )
        .await;
    assert_eq!(bad.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let fields: Value = bad.json().await.unwrap();
    let named: Vec<&str> = fields["error"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["field"].as_str().unwrap())
        .collect();
    assert_eq!(named, ["name", "hardware", "quantity", "duration_count"]);
    // This server sets no token price: paying in the token is refused on its field.
    assert_eq!(options["token_price"], Value::Null);
    let mut in_tokens = order.clone();
    in_tokens["payment"] = json!("token");
    let refused = app.post("/api/v1/cloud/quote", in_tokens).await;
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let fields: Value = refused.json().await.unwrap();
    assert_eq!(fields["error"]["fields"][0]["field"], "payment");
    assert!(
        fields["error"]["fields"][0]["message"]
            .as_str()
            .unwrap()
            .contains("paying in GCT is not offered here"),
        "{fields}"
    );

    let deploy = |key: &'static str| {
        app.client
            .post(app.url("/api/v1/cloud/clusters"))
            .header("Idempotency-Key", key)
            .json(&order)
            .send()
    };
    assert_eq!(
        deploy("k1").await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    app.sign_in(&new_wallet()).await;
    let first = deploy("k1").await.unwrap();
    assert_eq!(first.status(), StatusCode::CREATED);
    let first: Value = first.json().await.unwrap();
    let again: Value = deploy("k1").await.unwrap().json().await.unwrap();
    assert_eq!(
        first["id"], again["id"],
        "a retry with the same key is the same cluster"
    );
    // The same key with another order is refused, not answered with the first cluster.
    let mut other_order = order.clone();
    other_order["name"] = json!("another");
    let reused = app
        .client
        .post(app.url("/api/v1/cloud/clusters"))
        .header("Idempotency-Key", "k1")
        .json(&other_order)
        .send()
        .await
        .unwrap();
    assert_eq!(reused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(error_message(reused)
        .await
        .contains("'k1' was already used for another request"));
    assert_eq!(first["status"], "deploying");
    let balance = app.get_json("/api/v1/cloud/balance").await;
    assert_eq!(balance["available"].as_i64().unwrap(), 100_000_000 - total);
    let taken_name = deploy("k2").await.unwrap();
    assert_eq!(taken_name.status(), StatusCode::CONFLICT);
    assert!(error_message(taken_name)
        .await
        .contains("already have a cluster named"));

    let id = first["id"].as_str().unwrap();
    let listed = app
        .get_json("/api/v1/cloud/clusters?status=deploying&search=API")
        .await;
    assert_eq!(listed.as_array().unwrap().len(), 1);
    let detail = app.get_json(&format!("/api/v1/cloud/clusters/{id}")).await;
    let units: i64 = detail["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["units"].as_i64().unwrap())
        .sum();
    assert_eq!(units, 4);
    assert_eq!(detail["workload"]["env"]["MODEL"], "llama");
    assert_eq!(detail["utilisation_hours"].as_array().unwrap().len(), 48);
    let extended = app
        .client
        .post(app.url(&format!("/api/v1/cloud/clusters/{id}/extend")))
        .header("Idempotency-Key", "more-1")
        .json(&json!({ "duration_unit": "hourly", "duration_count": 3 }))
        .send()
        .await
        .unwrap();
    assert_eq!(extended.status(), StatusCode::OK);
    assert_eq!(extended.json::<Value>().await.unwrap()["hours"], 5);
    let ended = app
        .post(&format!("/api/v1/cloud/clusters/{id}/terminate"), json!({}))
        .await;
    assert_eq!(ended.status(), StatusCode::OK);
    assert_eq!(ended.json::<Value>().await.unwrap()["status"], "terminated");
    // Never ran: everything back, fees included.
    let balance = app.get_json("/api/v1/cloud/balance").await;
    assert_eq!(balance["available"], 100_000_000);
    // Billing: the welcome credit, the two charges and the refund, newest first, as JSON,
    // CSV and a page rendered on the server.
    let billing = app.get_json("/api/v1/cloud/billing").await;
    let kinds: Vec<&str> = billing["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["refund", "charge", "charge", "credit"], "{billing}");
    assert_eq!(billing["lines"][1]["cluster_id"], id);
    let csv = app.get("/api/v1/cloud/billing.csv").await;
    assert_eq!(csv.headers()["content-type"], "text/csv; charset=utf-8");
    let csv = csv.text().await.unwrap();
    assert_eq!(csv.lines().count(), 5, "{csv}");
    assert!(csv.contains(&format!("refund,\"{id}\"")), "{csv}");
    let page = app.get("/cloud/billing").await.text().await.unwrap();
    assert_eq!(
        page.matches("data-testid=\"movement\"").count(),
        4,
        "{page}"
    );

    // Another renter sees none of it; the wizard page renders on the server.
    app.sign_in(&new_wallet()).await;
    let empty = app.get_json("/api/v1/worker/earnings").await;
    assert_eq!(empty["claimable"], 0);
    assert_eq!(empty["daily_hire"].as_array().unwrap().len(), 30);
    let page = app.get("/worker/earnings").await.text().await.unwrap();
    assert!(
        page.contains("data-testid=\"no-hires\"") && page.contains("<svg"),
        "{page}"
    );
    let hidden = app.get(&format!("/api/v1/cloud/clusters/{id}")).await;
    assert_eq!(hidden.status(), StatusCode::NOT_FOUND);
    let page = app.get("/cloud/deploy").await.text().await.unwrap();
    assert!(page.contains("data-testid=\"deploy-form\""));
    assert!(
        page.contains("GCT token (not offered here)"),
        "no token price here"
    );
    assert!(
        page.contains("H200 141GB — 15 free at $3.49/GPU-hour"),
        "{page}"
    );
    app.server.stop().await;
}

async fn api_keys_open_the_api_until_revoked(app: TestApp) {
    app.sign_in(&new_wallet()).await;
    let made = app
        .post("/api/v1/keys", json!({ "name": " ci deploys " }))
        .await;
    assert_eq!(made.status(), StatusCode::CREATED);
    let made: Value = made.json().await.unwrap();
    let secret = made["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("gck_") && secret.len() == 68, "{secret}");
    assert_eq!(made["key"]["name"], "ci deploys");
    assert!(secret.starts_with(made["key"]["prefix"].as_str().unwrap()));
    let blank = app.post("/api/v1/keys", json!({ "name": "  " })).await;
    assert_eq!(blank.status(), StatusCode::UNPROCESSABLE_ENTITY);

    // A script with the key and no cookie.
    let script = reqwest::Client::new();
    let with_key = |path: &str| script.get(app.url(path)).bearer_auth(&secret).send();
    let balance = with_key("/api/v1/cloud/balance").await.unwrap();
    assert_eq!(balance.status(), StatusCode::OK);
    assert_eq!(
        balance.json::<Value>().await.unwrap()["available"],
        100_000_000
    );
    // A key may list the account's keys (names and prefixes, never secrets: `gpuc keys`),
    // but not make or revoke one: that takes the wallet's session.
    let seen: Value = with_key("/api/v1/keys")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(seen[0]["name"], "ci deploys", "{seen}");
    assert!(seen[0].get("secret").is_none());
    let made_by_key = script
        .post(app.url("/api/v1/keys"))
        .bearer_auth(&secret)
        .json(&json!({ "name": "made by a key" }))
        .send()
        .await
        .unwrap();
    assert_eq!(made_by_key.status(), StatusCode::UNAUTHORIZED);
    let wrong = script
        .get(app.url("/api/v1/cloud/balance"))
        .bearer_auth("gck_0000")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert!(error_message(wrong)
        .await
        .contains("API key is unknown, revoked or expired"));

    let listed = app.get_json("/api/v1/keys").await;
    assert!(listed[0]["last_used_at"].is_number(), "{listed}");
    assert!(
        listed.to_string().find(&secret).is_none(),
        "the secret is never listed"
    );
    let id = made["key"]["id"].as_str().unwrap();
    let revoked = app
        .post(&format!("/api/v1/keys/{id}/revoke"), json!({}))
        .await;
    assert_eq!(revoked.status(), StatusCode::OK);
    assert!(revoked.json::<Value>().await.unwrap()["revoked_at"].is_number());
    assert_eq!(
        with_key("/api/v1/cloud/balance").await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    // Someone else's key id is not found.
    app.sign_in(&new_wallet()).await;
    let foreign = app
        .post(&format!("/api/v1/keys/{id}/revoke"), json!({}))
        .await;
    assert_eq!(foreign.status(), StatusCode::NOT_FOUND);
    app.server.stop().await;
}

async fn the_openapi_document_names_routes_that_answer(app: TestApp) {
    let document = app.get_json("/api/v1/openapi.json").await;
    assert_eq!(document["openapi"], "3.1.0");
    // Generated from the handlers: each names its body, its answers and how it is signed in.
    let deploy = &document["paths"]["/api/v1/cloud/clusters"]["post"];
    assert_eq!(
        deploy["requestBody"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/DeployRequest"
    );
    assert_eq!(
        deploy["responses"]["201"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/ClusterSummary"
    );
    assert!(deploy["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["name"] == "Idempotency-Key" && p["in"] == "header"));
    assert_eq!(
        deploy["security"],
        json!([{ "session": [] }, { "api_key": [] }])
    );
    assert_eq!(
        document["components"]["schemas"]["OperatingSystem"]["enum"],
        json!(["linux", "windows", "macos"])
    );
    // The same document as a page.
    let page = app.get("/api/docs").await;
    assert_eq!(page.status(), StatusCode::OK);
    let page = page.text().await.unwrap();
    assert!(
        page.contains("<code>POST /api/v1/cloud/clusters</code>"),
        "{page}"
    );
    assert!(page.contains("id=\"schema-DeployRequest\""));
    let paths = document["paths"].as_object().unwrap();
    assert!(paths.len() >= 20, "{}", paths.len());
    for (path, operations) in paths {
        for method in operations.as_object().unwrap().keys() {
            let url = app.url(&path.replace("{id}", "nope").replace("{action}", "pause"));
            let response = match method.as_str() {
                "get" => app.client.get(url).send().await.unwrap(),
                "post" => app.client.post(url).json(&json!({})).send().await.unwrap(),
                other => panic!("{other} {path}: only GET and POST are served"),
            };
            // A route that exists answers for itself: a 404 from it names what is missing.
            let status = response.status();
            let body = response.text().await.unwrap();
            assert!(
                status != StatusCode::NOT_FOUND || body.contains("\"error\""),
                "{method} {path}: no such route"
            );
            assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        }
    }
    app.server.stop().await;
}

/// The explorer's pages render whole on the server (no JavaScript needed) and its JSON twins
/// answer with caching headers and specific errors.
async fn the_explorer_serves_pages_and_cached_json(app: TestApp) {
    // The device list: 60 demo devices, 50 a page.
    let first = app.get("/api/v1/explorer/devices").await;
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(first.headers()[header::CACHE_CONTROL], "public, max-age=5");
    let etag = first.headers()[header::ETAG].clone();
    let first: Value = first.json().await.unwrap();
    assert_eq!(first["matching"], 60);
    assert_eq!(first["rows"].as_array().unwrap().len(), 50);
    assert!(first["previous"].is_null());
    let next = first["next"].as_str().unwrap();
    let second = app
        .get_json(&format!("/api/v1/explorer/devices?after={next}"))
        .await;
    assert_eq!(second["rows"].as_array().unwrap().len(), 10);
    assert!(second["next"].is_null());
    // The last page is the last 50 rows, keyed like any other.
    let last = app.get_json("/api/v1/explorer/devices?last=true").await;
    let last_rows = last["rows"].as_array().unwrap();
    assert_eq!(last_rows.len(), 50);
    assert_eq!(last_rows[40..], second["rows"].as_array().unwrap()[..]);
    assert!(last["next"].is_null() && last["previous"].is_string());
    let unchanged = app
        .client
        .get(app.url("/api/v1/explorer/devices"))
        .header(header::IF_NONE_MATCH, etag)
        .send()
        .await
        .unwrap();
    assert_eq!(unchanged.status(), StatusCode::NOT_MODIFIED);
    let bad = app.get("/api/v1/explorer/devices?tier=warp").await;
    assert_eq!(bad.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(error_message(bad)
        .await
        .contains("connectivity tier 'warp'"));
    let bad = app.get("/api/v1/explorer/devices?after=a&last=true").await;
    assert_eq!(bad.status(), StatusCode::UNPROCESSABLE_ENTITY);

    // The same list as a page, filtered by a GET form's fields, with links to the next page.
    let device = first["rows"][0]["id"].as_str().unwrap().to_owned();
    let provider = first["rows"][0]["provider"].as_str().unwrap().to_owned();
    let country = first["rows"][0]["country"].as_str().unwrap().to_owned();
    let html = app
        .get(&format!("/explorer/devices?country={country}"))
        .await
        .text()
        .await
        .unwrap();
    assert!(html.contains(&format!("href=\"/explorer/devices/{device}\"")));
    let in_country = app
        .get_json(&format!("/api/v1/explorer/devices?country={country}"))
        .await;
    assert_eq!(
        html.matches("data-testid=\"device-row\"").count(),
        in_country["rows"].as_array().unwrap().len()
    );
    let html = app.get("/explorer/devices").await.text().await.unwrap();
    assert!(html.contains(&format!("href=\"/explorer/devices?after={next}\"")));

    // A device's page, its JSON twin, a provider's page; unknown ids are 404 pages.
    let page = app.get(&format!("/explorer/devices/{device}")).await;
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(html.contains("Uptime, last 30 days") && html.contains("<svg"));
    // Rendered whole before it is sent: nothing waits for JavaScript to swap it in.
    assert!(
        !html.contains("Loading the device"),
        "the page streamed a placeholder"
    );
    let json = app
        .get_json(&format!("/api/v1/explorer/devices/{device}"))
        .await;
    assert_eq!(json["provider"], provider.as_str());
    assert_eq!(json["simulated"], true);
    let html = app
        .get(&format!("/explorer/wallets/{provider}"))
        .await
        .text()
        .await
        .unwrap();
    assert!(html.contains(&format!("href=\"/explorer/devices/{device}\"")));
    assert_eq!(
        app.get("/explorer/devices/dev-nope").await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get("/api/v1/explorer/devices/dev-nope").await.status(),
        StatusCode::NOT_FOUND
    );
    // Blocks: the demo fleet's uptime may already have closed some, and the monitor may close
    // one between two reads; the page lists what the API does, once both see the same blocks.
    let (mut blocks, mut listed) = (String::new(), Value::Null);
    for _ in 0..20 {
        listed = app.get_json("/api/v1/explorer/blocks").await;
        blocks = app.get("/explorer/blocks").await.text().await.unwrap();
        if listed == app.get_json("/api/v1/explorer/blocks").await {
            break;
        }
    }
    match listed["rows"].as_array().unwrap().first() {
        None => assert!(blocks.contains("No block has closed yet.")),
        Some(newest) => {
            let number = newest["number"].as_i64().unwrap();
            assert!(blocks.contains(&format!("href=\"/explorer/blocks/{number}\"")));
            let block = app.get(&format!("/explorer/blocks/{number}")).await;
            assert!(block
                .text()
                .await
                .unwrap()
                .contains(&format!("Block {number}")));
            let json = app.get(&format!("/api/v1/explorer/blocks/{number}")).await;
            assert_eq!(
                json.headers()[header::CACHE_CONTROL],
                "public, max-age=86400, immutable"
            );
        }
    }
    // The demo fleet's finished clusters: listed newest first, each with its public page.
    let clusters = app.get_json("/api/v1/explorer/clusters").await;
    let listed = clusters["rows"].as_array().unwrap();
    assert!(!listed.is_empty());
    assert_eq!(clusters["matching"].as_i64().unwrap(), listed.len() as i64);
    let newest = listed[0]["id"].as_str().unwrap();
    let page = app.get(&format!("/explorer/clusters/{newest}")).await;
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(html.contains("public-cluster-devices") && !html.contains("demo-cl-"));

    // The front page draws the supply map and the activity its JSON twin reports.
    let front = app.get("/explorer").await.text().await.unwrap();
    assert!(front.contains("data-testid=\"supply-map\" class=\"chart\"><svg"));
    let activity = app.get("/api/v1/explorer/activity").await;
    assert_eq!(
        activity.headers()[header::CACHE_CONTROL],
        "public, max-age=60"
    );
    let activity: Value = activity.json().await.unwrap();
    assert_eq!(
        activity["daily_compute_hours"].as_array().unwrap().len(),
        30
    );
    assert!(front.contains(&format!(
        "in {} blocks",
        activity["earnings"]["blocks"].as_i64().unwrap()
    )));

    // Search: an exact id goes straight to its page before anything renders; anything else
    // gets suggestions.
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let found = no_redirects
        .get(app.url(&format!("/explorer/search?q={}", device.to_uppercase())))
        .send()
        .await
        .unwrap();
    assert_eq!(found.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        found.headers()[header::LOCATION],
        format!("/explorer/devices/{device}").as_str()
    );
    let found = no_redirects
        .get(app.url(&format!("/explorer/search?q={provider}")))
        .send()
        .await
        .unwrap();
    assert_eq!(
        found.headers()[header::LOCATION],
        format!("/explorer/wallets/{provider}").as_str()
    );
    let nothing = app.get("/explorer/search?q=germany").await;
    assert_eq!(nothing.status(), StatusCode::OK);
    let html = nothing.text().await.unwrap();
    assert!(html.contains("Nothing found") && html.contains("/explorer/devices?country=DE"));
    app.server.stop().await;
}

async fn data_survives_a_restart(app: TestApp, url: String) {
    let before = app.get_json("/api/v1/network/summary").await;
    // Stopped whole, so its turn passes to the restarted server.
    let TestApp { server, _turn, .. } = app;
    server.stop().await;
    drop(_turn);
    let again = spawn(url, |_| {}).await;
    let after: Value = again
        .get("/api/v1/network/summary")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        before, after,
        "restart neither loses nor re-seeds the fleet"
    );
    again.server.stop().await;
}

#[tokio::test]
async fn each_explorer_api_client_is_limited_to_its_share() {
    let app = spawn(platform::testing::fresh_sqlite_url(), |config| {
        config.explorer_requests_per_sec = 3;
    })
    .await;
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(app.get("/api/v1/explorer/summary").await);
    }
    let limited = statuses
        .into_iter()
        .filter(|r| r.status() == StatusCode::TOO_MANY_REQUESTS)
        .collect::<Vec<_>>();
    assert!(limited.len() >= 2, "{} of 6 limited", limited.len());
    assert_eq!(limited[0].headers()[header::RETRY_AFTER], "1");
    // Pages and the rest of the API are not counted.
    assert_eq!(app.get("/explorer").await.status(), StatusCode::OK);
    assert_eq!(
        app.get("/api/v1/network/summary").await.status(),
        StatusCode::OK
    );
    app.server.stop().await;
}

/// Outside a demo network an agent that says its hardware is simulated is refused before its
/// token is used, so the same token still registers the real machine; nothing simulated is
/// ever hired or rewarded there.
#[tokio::test]
async fn a_network_that_is_not_a_demo_refuses_simulated_devices() {
    let app = spawn(platform::testing::fresh_sqlite_url(), |config| {
        config.demo_devices = 0;
        config.fleet.accept_simulated = false;
    })
    .await;
    let wallet = SigningKey::from_bytes(&[77; 32]);
    app.sign_in(&wallet).await;
    let ticket: Value = app
        .post(
            "/api/v1/worker/devices",
            json!({ "name": "fake", "os": "linux", "kind": "gpu", "country": "DE" }),
        )
        .await
        .json()
        .await
        .unwrap();
    let register = |simulated: bool| {
        registration(&ticket["token"], simulated, "NVIDIA H100 80GB HBM3", 81_559)
    };
    let refused = app.post("/api/agent/v1/register", register(true)).await;
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(error_message(refused)
        .await
        .contains("takes no simulated devices"));
    let real = app.post("/api/agent/v1/register", register(false)).await;
    assert_eq!(real.status(), StatusCode::CREATED, "the token still works");
    app.server.stop().await;
}

/// The operator's metrics: off the public site, on a listener of their own, in Prometheus's
/// text format, counting what the server did.
#[tokio::test]
async fn metrics_count_requests_jobs_devices_and_quotes_off_the_public_site() {
    let app = spawn(platform::testing::fresh_sqlite_url(), |config| {
        config.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let at = app.server.metrics_addr.expect("metrics are served");
    assert_eq!(
        app.get("/metrics").await.status(),
        StatusCode::NOT_FOUND,
        "never on the public site"
    );
    let wallet = SigningKey::from_bytes(&[78; 32]);
    app.sign_in(&wallet).await;
    let device = app
        .registered_device("metered", "NVIDIA H100 80GB HBM3")
        .await;
    assert!(!device.is_empty());
    let quote = app
        .post(
            "/api/v1/cloud/quote",
            json!({ "name": "q", "kind": "bare_metal", "hardware": "H200 141GB", "quantity": 1,
                    "duration_unit": "hourly", "duration_count": 1, "payment": "usdc",
                    "workload": { "command": "python serve.py" } }),
        )
        .await;
    assert_eq!(quote.status(), StatusCode::OK);
    let scraped = reqwest::get(format!("http://{at}/metrics")).await.unwrap();
    assert_eq!(scraped.status(), StatusCode::OK);
    assert!(scraped
        .headers()
        .get(header::CONTENT_TYPE)
        .unwrap()
        .to_str()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let text = scraped.text().await.unwrap();
    let has = |needle: &str| text.lines().any(|l| l.starts_with(needle));
    // Requests by route pattern (never the raw path), method and status, with latency.
    assert!(
        has(r#"gc_http_requests_total{route="/api/v1/worker/devices",method="POST",status="201"}"#)
            || has(
                r#"gc_http_requests_total{route="/api/v1/worker/devices",method="POST",status="200"}"#
            ),
        "{text}"
    );
    assert!(has("gc_http_request_duration_seconds_bucket{"), "{text}");
    assert!(
        has(r#"gc_devices{status="idle"}"#) || has(r#"gc_devices{status="pending"}"#),
        "{text}"
    );
    assert!(has(r#"gc_db_connections{state="idle"}"#), "{text}");
    assert!(has("gc_replica_leader 1"), "{text}");
    assert!(has("gc_job_runs_total{"), "{text}");
    assert!(has("gc_quotes_total{fillable="), "{text}");
    assert!(has("gc_quote_duration_seconds_count"), "{text}");
    assert!(
        text.contains("# HELP gc_quotes_total quotes answered"),
        "{text}"
    );
    app.server.stop().await;
}

#[tokio::test]
async fn a_taken_port_is_reported_clearly() {
    let first = spawn(platform::testing::fresh_sqlite_url(), |_| {}).await;
    let mut config = Config::for_database(&platform::testing::fresh_sqlite_url()).unwrap();
    config.listen = first.server.addr;
    let err = start(config)
        .await
        .err()
        .expect("second bind must fail")
        .to_string();
    assert!(err.contains("another program uses this port"), "{err}");
    first.server.stop().await;
}

#[tokio::test]
async fn an_unreachable_database_is_reported_clearly() {
    let config = Config::for_database("postgres://postgres@127.0.0.1:1/nothing").unwrap();
    let err = start(config).await.err().expect("must fail").to_string();
    assert!(
        err.contains("cannot reach the database at postgres://postgres@127.0.0.1:1/nothing"),
        "{err}"
    );
}

/// The browser's server functions answer bad input with 422 and the reason, whether the
/// services or the function itself found it (server_fn would answer every error with 500).
#[tokio::test]
async fn server_functions_answer_bad_input_with_422() {
    use leptos::server_fn::ServerFn;
    let app = spawn(platform::testing::fresh_sqlite_url(), short_sign_in).await;
    app.sign_in(&new_wallet()).await;
    let answer = app
        .client
        .post(app.url(app::functions::money::PrepareDeposit::PATH))
        .form(&[("asset", "usdc"), ("amount", "7,5")])
        .send()
        .await
        .unwrap();
    let status = answer.status();
    let body = answer.text().await.unwrap();
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body.contains("'7,5' is not an amount in dollars"), "{body}");
    app.server.stop().await;
}

/// `gpu-commons credit`: the operator's credit, once per key, to an account that exists.
#[tokio::test]
async fn operators_credit_renters_once_per_key() {
    use server::{run_command, Command};
    let url = platform::testing::fresh_sqlite_url();
    let app = spawn(url.clone(), short_sign_in).await;
    let wallet = new_wallet();
    app.sign_in(&wallet).await;
    let config = Config::for_database(&url).unwrap();
    let credit = |wallet: String, usd: &str| Command::Credit {
        wallet,
        usd: Some(usd.into()),
        tokens: None,
        key: "goodwill-7".into(),
        memo: "sorry for the outage".into(),
    };
    let done = run_command(&config, credit(address(&wallet), "12.50"))
        .await
        .unwrap();
    assert!(done.contains("credited $12.50"), "{done}");
    let again = run_command(&config, credit(address(&wallet), "12.50"))
        .await
        .unwrap();
    assert!(again.contains("recorded before"), "{again}");
    assert_eq!(
        app.get_json("/api/v1/cloud/balance").await["available"],
        112_500_000
    );
    let stranger = run_command(&config, credit(address(&new_wallet()), "1"))
        .await
        .unwrap_err();
    assert!(
        stranger.to_string().contains("has to sign in once first"),
        "{stranger}"
    );
    let bad = run_command(&config, credit(address(&wallet), "ten"))
        .await
        .unwrap_err();
    assert!(bad.to_string().contains("--usd 'ten'"), "{bad}");
    let tokens = Command::Credit {
        wallet: address(&wallet),
        usd: None,
        tokens: Some("2500.5".into()),
        key: "launch-tokens".into(),
        memo: "launch airdrop".into(),
    };
    let done = run_command(&config, tokens).await.unwrap();
    assert!(done.contains("credited 2500.5 GCT"), "{done}");
    assert_eq!(
        app.get_json("/api/v1/cloud/balance").await["available_tokens"],
        2_500_500_000i64
    );
    app.server.stop().await;
}

/// Workload fields an attacker would use against a provider's machine are refused on their
/// fields before anything is charged: a flag-shaped image, the platform's own variable names,
/// a multi-line value (an env file line of its own), a NUL in the command.
#[tokio::test]
async fn hostile_workloads_are_refused_on_their_fields() {
    let app = spawn(platform::testing::fresh_sqlite_url(), short_sign_in).await;
    app.sign_in(&new_wallet()).await;
    let order = |workload: Value| {
        json!({
            "name": "c", "kind": "container", "hardware": "H200 141GB", "quantity": 1,
            "duration_unit": "hourly", "duration_count": 1, "payment": "usdc",
            "workload": workload
        })
    };
    for (workload, field, says) in [
        (
            json!({ "image": "--privileged" }),
            "workload.image",
            "not an image reference",
        ),
        (
            json!({ "image": "ubuntu", "env": { "GC_ROLE": "head" } }),
            "workload.env",
            "set by the platform",
        ),
        (
            json!({ "image": "ubuntu", "env": { "TOKEN": "a\nGC_ROLE=head" } }),
            "workload.env",
            "one line",
        ),
        (
            json!({ "image": "ubuntu", "command": "echo \u{0}" }),
            "workload.command",
            "NUL",
        ),
    ] {
        for path in ["/api/v1/cloud/quote", "/api/v1/cloud/clusters"] {
            let refused = app.post(path, order(workload.clone())).await;
            assert_eq!(
                refused.status(),
                StatusCode::UNPROCESSABLE_ENTITY,
                "{path} {workload}"
            );
            let body: Value = refused.json().await.unwrap();
            let fields = body["error"]["fields"].as_array().unwrap();
            assert_eq!(fields.len(), 1, "{body}");
            assert_eq!(fields[0]["field"], field, "{body}");
            assert!(
                fields[0]["message"].as_str().unwrap().contains(says),
                "{body}"
            );
        }
    }
}

/// `gpu-commons unblock`: refused with what is wrong for an unknown or an unblocked device;
/// a blocked one goes back to pending, to be verified again.
#[tokio::test]
async fn operators_unblock_only_blocked_devices() {
    use server::{run_command, Command};
    let url = platform::testing::fresh_sqlite_url();
    let app = spawn(url.clone(), short_sign_in).await;
    app.sign_in(&new_wallet()).await;
    let device = app
        .registered_device("rack-1", "NVIDIA H100 80GB HBM3")
        .await;
    let config = Config::for_database(&url).unwrap();
    let unblock = |device: &str| Command::Unblock {
        device: device.into(),
    };
    let message = |result: Result<String, server::Error>| result.unwrap_err().to_string();
    let unknown = message(run_command(&config, unblock("dev-nope")).await);
    assert!(unknown.contains("no device 'dev-nope'"), "{unknown}");
    let not_blocked = message(run_command(&config, unblock(&device)).await);
    assert!(
        not_blocked.contains("only a blocked device can be unblocked"),
        "{not_blocked}"
    );
    let store = platform::store::Store::open(&url).await.unwrap();
    platform::testing::stored_number(
        &store,
        "UPDATE devices SET status = 'blocked', verified = FALSE WHERE id = $1 RETURNING 0",
        &device,
    )
    .await
    .unwrap();
    let done = run_command(&config, unblock(&device)).await.unwrap();
    assert!(done.contains("must pass verification again"), "{done}");
    let status =
        platform::testing::stored_text(&store, "SELECT status FROM devices WHERE id = $1", &device)
            .await
            .unwrap();
    assert_eq!(status, "pending");
    store.close().await;
}

/// `gpu-commons facility`, `attest`, `unattest` and `facilities`: the operator's list of
/// certified facilities, with specific errors, shown on the device's public page and JSON.
#[tokio::test]
async fn operators_attest_devices_in_certified_facilities() {
    use server::{run_command, Command};
    let url = platform::testing::fresh_sqlite_url();
    let app = spawn(url.clone(), short_sign_in).await;
    app.sign_in(&new_wallet()).await;
    let device = app
        .registered_device("rack-1", "NVIDIA H100 80GB HBM3")
        .await;
    let config = Config::for_database(&url).unwrap();
    let facility = |standards: &str, until: &str| Command::Facility {
        name: "Equinix FR5".into(),
        standards: standards.into(),
        until: until.into(),
    };
    let message = |result: Result<String, server::Error>| result.unwrap_err().to_string();
    let bad_date = message(run_command(&config, facility("soc2", "soon")).await);
    assert!(
        bad_date.contains("'soon' is not a date of the form"),
        "{bad_date}"
    );
    let bad_standard = message(run_command(&config, facility("iso27001", "2099-12-31")).await);
    assert!(
        bad_standard.contains("'iso27001' is not a standard"),
        "{bad_standard}"
    );
    let attest = |devices: Vec<String>| Command::Attest {
        facility: "Equinix FR5".into(),
        devices,
    };
    let early = message(run_command(&config, attest(vec![device.clone()])).await);
    assert!(early.contains("no facility 'Equinix FR5'"), "{early}");

    let done = run_command(&config, facility("soc2,hipaa", "2099-12-31"))
        .await
        .unwrap();
    assert!(
        done.contains("holds SOC 2, HIPAA through 2099-12-31"),
        "{done}"
    );
    let missing = message(run_command(&config, attest(vec!["dev-nope".into()])).await);
    assert!(
        missing.contains("no device 'dev-nope' in service"),
        "{missing}"
    );
    let done = run_command(&config, attest(vec![device.clone()]))
        .await
        .unwrap();
    assert!(
        done.contains("1 device(s) placed in 'Equinix FR5'"),
        "{done}"
    );
    let listed = run_command(&config, Command::Facilities).await.unwrap();
    assert_eq!(
        listed,
        "Equinix FR5: SOC 2, HIPAA (holds until 2100-01-01T00:00:00.000Z), 1 device(s)"
    );

    let page_path = format!("/explorer/devices/{device}");
    let page = app.get(&page_path).await.text().await.unwrap();
    assert!(
        page.contains("SOC 2, HIPAA — Equinix FR5 (certified through 2099-12-31)"),
        "{page}"
    );
    let json = app
        .get_json(&format!("/api/v1/explorer/devices/{device}"))
        .await;
    assert_eq!(json["facility"]["name"], "Equinix FR5");
    assert_eq!(json["attested"], json!({ "soc2": true, "hipaa": true }));

    let done = run_command(
        &config,
        Command::Unattest {
            devices: vec![device.clone()],
        },
    )
    .await
    .unwrap();
    assert!(done.contains("1 device(s) taken out"), "{done}");
    let page = app.get(&page_path).await.text().await.unwrap();
    assert!(page.contains("no attested facility"), "{page}");
    app.server.stop().await;
}

/// A server paying through a Solana JSON-RPC endpoint on loopback (litesvm with the real SPL
/// token program behind it): the HTTP client, the worker and the ledger end to end.
#[tokio::test]
async fn claims_are_paid_over_json_rpc_to_the_wallet() {
    use chain::litesvm::{serve_json_rpc, LiteSvmRpc};
    use chain::Signer;
    let chain_rpc = std::sync::Arc::new(LiteSvmRpc::default());
    let treasury = chain::Keypair::new();
    chain_rpc.airdrop(&treasury.pubkey(), 10_000_000_000);
    let (usdc, token) = (chain_rpc.create_mint(6), chain_rpc.create_mint(6));
    chain_rpc.mint_to(&treasury.pubkey(), &usdc, 1_000_000_000);
    let dir = std::env::temp_dir().join(format!("gc-treasury-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let key_path = dir.join("treasury.json");
    std::fs::write(
        &key_path,
        serde_json::to_string(&treasury.to_bytes().to_vec()).unwrap(),
    )
    .unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let rpc_url = format!("http://{}/", listener.local_addr().unwrap());
    tokio::spawn(serve_json_rpc(chain_rpc.clone(), listener));
    let app = spawn(platform::testing::fresh_sqlite_url(), |config| {
        short_sign_in(config);
        config.payouts = Some(server::PayoutSettings {
            rpc_url: rpc_url.parse().unwrap(),
            treasury_key: key_path.clone(),
            usdc_mint: usdc.address,
            token_mint: token.address,
            minimums: domain::payout::Minimums::default(),
        });
    })
    .await;
    let wallet = new_wallet();
    app.sign_in(&wallet).await;
    platform::testing::grant_claimable(
        &app.server.platform.store,
        &address(&wallet),
        domain::money::Asset::Usdc,
        10_000_000,
        "earned",
    )
    .await
    .unwrap();

    for (body, expected) in [
        (
            json!({ "asset": "usdc", "amount": "lots" }),
            "not an amount in dollars",
        ),
        (
            json!({ "asset": "sol", "amount": "1" }),
            "'sol' is not an asset",
        ),
        (
            json!({ "asset": "usdc", "amount": "0.5" }),
            "the smallest claim is $1.00",
        ),
        (
            json!({ "asset": "usdc", "amount": "11" }),
            "you can claim up to $10.00",
        ),
    ] {
        let refused = app.post("/api/v1/worker/payouts", body).await;
        assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert!(
            error_message(refused).await.contains(expected),
            "{expected}"
        );
    }
    let claim = |key: &'static str| {
        app.client
            .post(app.url("/api/v1/worker/payouts"))
            .header("Idempotency-Key", key)
            .json(&json!({ "asset": "usdc", "amount": "2.5" }))
            .send()
    };
    let made = claim("claim-1").await.unwrap();
    assert_eq!(made.status(), StatusCode::CREATED);
    let made: Value = made.json().await.unwrap();
    assert_eq!(made["status"], "requested");
    let again: Value = claim("claim-1").await.unwrap().json().await.unwrap();
    assert_eq!(again["id"], made["id"]);

    // The server's own monitor moves it on; wait for it to land.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let paid = loop {
        let listed = app.get_json("/api/v1/worker/payouts").await;
        if listed[0]["status"] == "confirmed" {
            break listed[0].clone();
        }
        assert!(std::time::Instant::now() < deadline, "never paid: {listed}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    assert!(paid["explorer_url"]
        .as_str()
        .unwrap()
        .contains(paid["signature"].as_str().unwrap()));
    let owner = chain::parse_address(&address(&wallet)).unwrap();
    assert_eq!(chain_rpc.token_balance(&owner, &usdc), 2_500_000);
    let earnings = app.get_json("/api/v1/worker/earnings").await;
    assert_eq!(earnings["claimable"], 7_500_000);

    // A deposit: built by the server, signed by the wallet, credited once it lands.
    let keypair = chain::Keypair::new_from_array(wallet.to_bytes());
    chain_rpc.airdrop(&keypair.pubkey(), 1_000_000_000);
    chain_rpc.mint_to(&keypair.pubkey(), &usdc, 5_000_000);
    let prepared = app
        .post(
            "/api/v1/cloud/deposits",
            json!({ "asset": "usdc", "amount": "3" }),
        )
        .await;
    assert_eq!(prepared.status(), StatusCode::CREATED);
    let prepared: Value = prepared.json().await.unwrap();
    let id = prepared["deposit"]["id"].as_str().unwrap().to_owned();
    let unsigned = base64_decode(prepared["transaction"].as_str().unwrap());
    let signed = base64_encode(&chain::wallet_sign(&unsigned, &keypair).unwrap());
    let sent = app
        .post(
            &format!("/api/v1/cloud/deposits/{id}/submit"),
            json!({ "signed_transaction": signed }),
        )
        .await;
    assert_eq!(sent.status(), StatusCode::OK);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while app.get_json("/api/v1/cloud/deposits").await[0]["status"] != "confirmed" {
        assert!(
            std::time::Instant::now() < deadline,
            "the deposit never landed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(
        app.get_json("/api/v1/cloud/balance").await["available"],
        103_000_000
    );
    // 2.5 paid out earlier + 5 minted - 3 deposited.
    assert_eq!(chain_rpc.token_balance(&keypair.pubkey(), &usdc), 4_500_000);
    assert_eq!(
        app.server.platform.ledger.audit().await.unwrap(),
        Vec::<String>::new()
    );
    app.server.stop().await;
}

macro_rules! on_both_backends {
    ($($case:ident),+ $(,)?) => {
        mod sqlite {
            $(#[tokio::test] async fn $case() {
                super::$case(super::spawn(platform::testing::fresh_sqlite_url(), super::short_sign_in).await).await
            })+
            #[tokio::test] async fn data_survives_a_restart() {
                let url = platform::testing::fresh_sqlite_url();
                super::data_survives_a_restart(super::spawn(url.clone(), |_| {}).await, url).await
            }
        }
        mod postgres {
            $(#[tokio::test] async fn $case() {
                let Some(url) = platform::testing::fresh_postgres_url().await else { return };
                super::$case(super::spawn(url, super::short_sign_in).await).await
            })+
            #[tokio::test] async fn data_survives_a_restart() {
                let Some(url) = platform::testing::fresh_postgres_url().await else { return };
                super::data_survives_a_restart(super::spawn(url.clone(), |_| {}).await, url).await
            }
        }
    };
}

on_both_backends!(
    health_and_readiness_answer,
    writes_from_another_origin_are_refused,
    each_section_renders_on_the_server_with_hydration_and_navigation,
    the_root_redirects_to_the_explorer,
    an_unknown_page_is_a_404_page,
    responses_carry_security_headers_and_compress,
    wallet_sign_in_starts_a_session_that_sign_out_ends,
    refused_sign_ins_say_why,
    an_expired_sign_in_message_is_refused,
    bad_api_input_gets_specific_errors,
    the_worker_api_filters_sorts_renames_and_charts,
    the_cloud_api_quotes_deploys_extends_and_terminates,
    api_keys_open_the_api_until_revoked,
    the_openapi_document_names_routes_that_answer,
    the_explorer_serves_pages_and_cached_json,
);
