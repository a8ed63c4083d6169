//! Issue 19's attacks, replayed over HTTP against the real server on SQLite and PostgreSQL:
//! hostile bytes in ids, queries and bodies, overflowing numbers, and the HTTP edges every
//! client meets (unknown paths, wrong methods and types, oversize bodies, header spellings).
//! Each must be a specific 4xx in the API's one JSON error shape, and none may reach a query.

mod support;

use reqwest::{header, Method, StatusCode};
use serde_json::{json, Value};
use support::*;

/// The error's code, after checking the response is the API's JSON error shape.
async fn json_error(response: reqwest::Response) -> (StatusCode, String) {
    let status = response.status();
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let text = response.text().await.unwrap();
    assert!(
        content_type.starts_with("application/json"),
        "{status}: {content_type}: {text}"
    );
    let body: Value = serde_json::from_str(&text).unwrap();
    let code = body["error"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(!code.is_empty(), "{status}: {text}");
    assert!(
        !body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .is_empty(),
        "{status}: {text}"
    );
    (status, code)
}

async fn every_api_error_is_json(app: TestApp) {
    let send = |method: Method, path: &str| app.client.request(method, app.url(path));
    // Unknown paths, under the API and under the server functions' prefix.
    for path in [
        "/api/v1/nothing-here",
        "/api/nothing-here",
        "/api/agent/v1/nope",
    ] {
        let answer = send(Method::GET, path).send().await.unwrap();
        assert_eq!(
            json_error(answer).await,
            (StatusCode::NOT_FOUND, "not_found".into()),
            "{path}"
        );
    }
    // A wrong method: 405, with the methods that are allowed.
    let answer = send(Method::DELETE, "/api/v1/cloud/clusters")
        .send()
        .await
        .unwrap();
    let allow = answer.headers()[header::ALLOW].to_str().unwrap().to_owned();
    assert!(allow.contains("GET") && allow.contains("POST"), "{allow}");
    assert_eq!(
        json_error(answer).await,
        (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed".into())
    );
    // Not JSON: 415. Too large: 413, for the API and for the server functions alike.
    let answer = send(Method::POST, "/api/v1/auth/challenge")
        .header(header::CONTENT_TYPE, "text/plain")
        .body("address=x")
        .send()
        .await
        .unwrap();
    assert_eq!(
        json_error(answer).await,
        (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type".into()
        )
    );
    let huge = json!({ "address": "x".repeat(200_000) });
    let answer = send(Method::POST, "/api/v1/auth/challenge")
        .json(&huge)
        .send()
        .await
        .unwrap();
    assert_eq!(
        json_error(answer).await,
        (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large".into())
    );
    use leptos::server_fn::ServerFn;
    let server_function = app::functions::money::PrepareDeposit::PATH;
    let answer = send(Method::POST, server_function)
        .form(&[("asset", "usdc"), ("amount", &"9".repeat(200_000))])
        .send()
        .await
        .unwrap();
    assert_eq!(
        json_error(answer).await,
        (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large".into())
    );
    // A chunked body (no length declared) is bounded as it is read.
    let chunks =
        futures_util::stream::iter((0..40).map(|_| Ok::<_, std::io::Error>(vec![b'a'; 4096])));
    let answer = send(Method::POST, server_function)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::PAYLOAD_TOO_LARGE);
    app.server.stop().await;
}

async fn headers_are_read_as_http_says(app: TestApp) {
    app.sign_in(&new_wallet()).await;
    let created: Value = app
        .post("/api/v1/keys", json!({ "name": "ci" }))
        .await
        .json()
        .await
        .unwrap();
    let secret = created["secret"].as_str().unwrap().to_owned();
    // A fresh client holds no session: only the key speaks for it, however its scheme is spelled.
    let keyed = reqwest::Client::new();
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let answer = keyed
            .get(app.url("/api/v1/cloud/balance"))
            .header(header::AUTHORIZATION, format!("{scheme} {secret}"))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), StatusCode::OK, "{scheme}");
    }
    // `If-None-Match: *` matches whatever version is current.
    let answer = keyed
        .get(app.url("/api/v1/explorer/summary"))
        .header(header::IF_NONE_MATCH, "*")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::NOT_MODIFIED);
    app.server.stop().await;
}

/// NUL, control and bidirectional-override characters in ids, queries, names and agent fields:
/// each a 404 or a 422 naming the character, on PostgreSQL (which cannot store NUL) as on
/// SQLite, and nothing of them is stored.
async fn hostile_text_is_refused_before_any_query(app: TestApp) {
    for path in [
        "/api/v1/explorer/devices/dev-%00",
        "/api/v1/explorer/clusters/%E2%80%AE",
        "/api/v1/explorer/wallets/%1B%5B31m",
        "/api/v1/explorer/blocks/1%00",
        // Clean text that cannot be an id is not looked up either.
        "/api/v1/explorer/devices/1%20OR%201=1",
        "/api/v1/explorer/clusters/dev-00ff",
        // The pages take ids too.
        "/explorer/devices/dev-%00",
    ] {
        assert_eq!(
            json_error(app.get(path).await).await,
            (StatusCode::NOT_FOUND, "not_found".into()),
            "{path}"
        );
    }
    for path in [
        "/api/v1/explorer/search?q=%00",
        "/api/v1/explorer/devices?after=%E2%81%A6x",
        "/api/v1/explorer/clusters?status=%07",
        "/explorer/devices?after=%00",
        "/explorer/search?q=%E2%80%AE",
    ] {
        assert_eq!(
            json_error(app.get(path).await).await,
            (StatusCode::UNPROCESSABLE_ENTITY, "invalid".into()),
            "{path}"
        );
    }

    app.sign_in(&new_wallet()).await;
    let ticket: Value = app
        .post(
            "/api/v1/worker/devices",
            json!({ "name": "edge", "os": "linux", "kind": "gpu", "country": "DE" }),
        )
        .await
        .json()
        .await
        .unwrap();
    let device_id = ticket["device_id"].as_str().unwrap().to_owned();
    // A name with a bidirectional override would read backwards on every page that shows it.
    let renamed = app
        .post(
            &format!("/api/v1/worker/devices/{device_id}/rename"),
            json!({ "name": "gpu\u{202E}cod.exe" }),
        )
        .await;
    assert_eq!(
        json_error(renamed).await,
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid".into())
    );
    // Agent fields: a bidi override in the CPU's name, a NUL in a GPU's.
    for (field, value) in [("cpu_model", "AMD\u{202E}"), ("gpu", "H100\u{0}")] {
        let mut request = registration(&ticket["token"], true, "NVIDIA H100 80GB HBM3", 81_559);
        match field {
            "cpu_model" => request["hardware"]["cpu_model"] = json!(value),
            _ => request["hardware"]["gpus"][0]["name"] = json!(value),
        }
        let answer = app.post("/api/agent/v1/register", request).await;
        assert_eq!(
            json_error(answer).await,
            (StatusCode::UNPROCESSABLE_ENTITY, "invalid".into()),
            "{field}"
        );
    }
    // The token was not spent by the refusals: the honest registration goes through.
    let registered = app
        .post(
            "/api/agent/v1/register",
            registration(&ticket["token"], true, "NVIDIA H100 80GB HBM3", 81_559),
        )
        .await;
    assert_eq!(registered.status(), StatusCode::CREATED);
    let credential = registered.json::<Value>().await.unwrap()["credential"]
        .as_str()
        .unwrap()
        .to_owned();
    let heartbeat = |sent_at: i64, version: &str| {
        app.client
            .post(app.url("/api/agent/v1/heartbeat"))
            .bearer_auth(&credential)
            .json(&json!({
                "sent_at": sent_at,
                "agent_version": version,
                "utilisation": { "gpu_percent": 0, "cpu_percent": 1, "memory_percent": 2 },
                "workloads": [],
            }))
            .send()
    };
    let now = platform::now().0;
    assert_eq!(
        heartbeat(now, "0.1.0").await.unwrap().status(),
        StatusCode::OK
    );
    let nul_version = heartbeat(now, "0.1\u{0}").await.unwrap();
    assert_eq!(
        json_error(nul_version).await,
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid".into())
    );
    // Clocks at the ends of i64 are far off, not a wrapped-around "near".
    for sent_at in [i64::MIN, i64::MIN + 1, i64::MAX] {
        let answer = heartbeat(sent_at, "0.1.0").await.unwrap();
        assert_eq!(
            json_error(answer).await,
            (StatusCode::BAD_REQUEST, "clock_skew".into()),
            "{sent_at}"
        );
    }
    let detail = app
        .get_json(&format!("/api/v1/worker/devices/{device_id}"))
        .await;
    assert_eq!(detail["summary"]["name"], "edge");
    assert_eq!(detail["cpu_model"], "AMD EPYC 9654");
    app.server.stop().await;
}

/// One address spraying registrations (guessing tokens, or enrolling a farm of fakes) is held
/// to its share a minute; a 429 says when to retry, and heartbeats are not counted.
#[tokio::test]
async fn registrations_are_limited_per_address() {
    let app = spawn(platform::testing::fresh_sqlite_url(), |config| {
        config.registrations_per_minute = 5;
    })
    .await;
    let mut statuses = Vec::new();
    for n in 0..8 {
        let guess = json!(format!("gcr_{n:048}"));
        let attempt = app
            .post(
                "/api/agent/v1/register",
                registration(&guess, false, "NVIDIA H100 80GB HBM3", 81_559),
            )
            .await;
        statuses.push(attempt);
    }
    let (refused, limited): (Vec<_>, Vec<_>) = statuses
        .into_iter()
        .partition(|r| r.status() == StatusCode::UNAUTHORIZED);
    assert_eq!((refused.len(), limited.len()), (5, 3));
    let limited = limited.into_iter().next().unwrap();
    assert_eq!(limited.headers()[header::RETRY_AFTER], "60");
    assert_eq!(
        json_error(limited).await,
        (StatusCode::TOO_MANY_REQUESTS, "rate_limited".into())
    );
    // Heartbeats and the rest of the agent API are not counted.
    let heartbeat = app.post("/api/agent/v1/heartbeat", json!({})).await;
    assert_eq!(heartbeat.status(), StatusCode::UNAUTHORIZED);
    app.server.stop().await;
}

macro_rules! on_both_backends {
    ($($case:ident),+ $(,)?) => {
        mod sqlite {
            $(#[tokio::test] async fn $case() {
                super::$case(super::spawn(platform::testing::fresh_sqlite_url(), |_| {}).await).await
            })+
        }
        mod postgres {
            $(#[tokio::test] async fn $case() {
                let Some(url) = platform::testing::fresh_postgres_url().await else { return };
                super::$case(super::spawn(url, |_| {}).await).await
            })+
        }
    };
}

on_both_backends!(
    every_api_error_is_json,
    headers_are_read_as_http_says,
    hostile_text_is_refused_before_any_query,
);
