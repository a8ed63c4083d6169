//! A fuzz harness over the real server (issue 19): property-based requests to every operation
//! of the JSON API (read from its own OpenAPI document, so a new route is fuzzed the day it is
//! added) and of the agent API, with hostile path ids, query values, bodies and credentials —
//! NUL, control and bidirectional-override characters, huge numbers and lengths, wrong types,
//! missing and unknown fields. Every answer must be below 500, and an API error must be the
//! API's JSON error shape; afterwards the server must still be ready and its ledger balance.
//! Runs on SQLite and PostgreSQL.
//!
//! CI runs `GC_FUZZ_CASES` cases per backend (default 256). For a longer local run:
//! `GC_FUZZ_CASES=20000 cargo test -p server --test fuzz -- --nocapture`.

mod support;

use proptest::prelude::*;
use proptest::test_runner::{Config as RunnerConfig, TestCaseError, TestRunner};
use reqwest::{header, Method};
use serde_json::{json, Value};
use support::*;

/// One operation: its method, its path with `{name}` placeholders, and a valid body to mutate.
#[derive(Debug, Clone)]
struct Operation {
    method: Method,
    path: String,
    body: Option<Value>,
    query: Vec<String>,
}

/// The agent API's operations (it has no OpenAPI document of its own).
fn agent_operations(credential_sample: &Value) -> Vec<Operation> {
    let op = |method: Method, path: &str, body: Option<Value>| Operation {
        method,
        path: format!("/api/agent/v1{path}"),
        body,
        query: Vec::new(),
    };
    vec![
        op(Method::POST, "/register", Some(credential_sample.clone())),
        op(
            Method::POST,
            "/heartbeat",
            Some(json!({
                "sent_at": 0, "agent_version": "0.1.0",
                "utilisation": { "gpu_percent": 1, "cpu_percent": 2, "memory_percent": 3 },
                "workloads": [{ "cluster_id": "c", "state": "running", "detail": "" }],
            })),
        ),
        op(
            Method::POST,
            "/assignments/wait",
            Some(json!({ "known": ["c"], "wait_secs": 0 })),
        ),
        op(
            Method::POST,
            "/output",
            Some(json!({ "cluster_id": "c", "lines": [{ "id": 1, "text": "hello" }] })),
        ),
        op(Method::POST, "/speed-tests", None),
        op(Method::GET, "/speed-tests/{id}/download", None),
        op(Method::POST, "/speed-tests/{id}/upload", None),
        op(
            Method::POST,
            "/challenges/{id}",
            Some(
                json!({ "challenge_id": "x", "products": [{ "row_hashes": ["00"], "opened": [[1, 2]] }] }),
            ),
        ),
        op(
            Method::POST,
            "/tunnel/orders",
            Some(json!({ "wait_secs": 0 })),
        ),
        op(Method::GET, "/tunnel/streams/{stream}", None),
        op(
            Method::POST,
            "/tunnel/streams/{stream}/refused",
            Some(json!({ "reason": "no" })),
        ),
    ]
}

/// Valid bodies of the JSON API's operations, by `(method, path)`, to start mutations from.
fn api_body(method: &str, path: &str) -> Option<Value> {
    let order = json!({
        "name": "fuzz", "kind": "bare_metal", "hardware": "H200 141GB", "quantity": 1,
        "duration_unit": "hourly", "duration_count": 1, "payment": "usdc",
        "workload": { "command": "true", "env": { "A": "b" }, "port": 8080 }
    });
    Some(match (method, path) {
        ("post", "/api/v1/auth/challenge") => {
            json!({ "address": "11111111111111111111111111111111" })
        }
        ("post", "/api/v1/auth/sign-in") => json!({ "message": "m", "signature": "s" }),
        ("post", "/api/v1/worker/devices") => {
            json!({ "name": "n", "os": "linux", "kind": "gpu", "country": "DE" })
        }
        ("post", "/api/v1/worker/devices/{id}/rename") | ("post", "/api/v1/keys") => {
            json!({ "name": "n" })
        }
        ("post", "/api/v1/cloud/quote") | ("post", "/api/v1/cloud/clusters") => order,
        ("post", "/api/v1/cloud/clusters/{id}/extend") => {
            json!({ "duration_unit": "hourly", "duration_count": 1 })
        }
        ("post", "/api/v1/cloud/deposits") | ("post", "/api/v1/worker/payouts") => {
            json!({ "asset": "usdc", "amount": "1.5" })
        }
        ("post", "/api/v1/cloud/deposits/{id}/submit") => json!({ "signed_transaction": "AA==" }),
        _ => return None,
    })
}

/// Every `/api/v1` operation the server's OpenAPI document names.
fn api_operations(document: &Value) -> Vec<Operation> {
    let mut operations = Vec::new();
    for (path, methods) in document["paths"].as_object().unwrap() {
        for (method, operation) in methods.as_object().unwrap() {
            let query = operation["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["in"] == "query")
                .map(|p| p["name"].as_str().unwrap().to_owned())
                .collect();
            operations.push(Operation {
                method: method.to_uppercase().parse().unwrap(),
                path: path.clone(),
                body: api_body(method, path),
                query,
            });
        }
    }
    operations
}

/// Text a fuzzer would try: printable text, any characters at all, the known troublemakers,
/// and long text, up to `longest` characters (URLs are kept short enough for HTTP's own
/// limits, which answer before the server does).
fn hostile_text(longest: usize) -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9-]{0,12}",
        any::<String>(),
        "[\\x00-\\x1f\\x7f\\u{80}-\\u{9f}\\u{202a}-\\u{202e}\\u{2066}-\\u{2069}a]{1,8}",
        Just("\0".to_owned()),
        Just("../../etc/passwd".to_owned()),
        Just("' OR 1=1 --".to_owned()),
        Just("9".repeat(40)),
        (1..longest).prop_map(|n| "x".repeat(n)),
    ]
}

/// A JSON value of any type a field could wrongly get.
fn hostile_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        hostile_text(70_000).prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        Just(json!(i64::MIN)),
        Just(json!(u64::MAX)),
        Just(json!(-1)),
        Just(json!(1e308)),
        Just(json!(-0.5)),
        any::<bool>().prop_map(Value::from),
        Just(Value::Null),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            prop::collection::btree_map("[a-z_]{1,10}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// How a case changes the operation's valid body.
#[derive(Debug, Clone)]
enum Mutation {
    None,
    /// Replaces the `n`th value (in a walk of the document) with the value.
    Replace(usize, Value),
    /// Drops the `n`th object's first key.
    Drop(usize),
    /// Adds an unknown key to the top-level object.
    Unknown(Value),
    /// Replaces the whole body.
    Whole(Value),
    /// Sends bytes that are not JSON, or JSON cut short.
    Raw(Vec<u8>),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        1 => Just(Mutation::None),
        6 => (any::<usize>(), hostile_value()).prop_map(|(n, v)| Mutation::Replace(n, v)),
        1 => any::<usize>().prop_map(Mutation::Drop),
        1 => hostile_value().prop_map(Mutation::Unknown),
        1 => hostile_value().prop_map(Mutation::Whole),
        1 => prop::collection::vec(any::<u8>(), 0..64).prop_map(Mutation::Raw),
    ]
}

/// Pointers to every value of `value`, the root first.
fn pointers(value: &Value, at: String, into: &mut Vec<String>) {
    into.push(at.clone());
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                pointers(child, format!("{at}/{key}"), into);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                pointers(child, format!("{at}/{i}"), into);
            }
        }
        _ => {}
    }
}

/// The body to send, as bytes, after the mutation.
fn mutated(body: &Option<Value>, mutation: &Mutation) -> Option<Vec<u8>> {
    let mut body = match (body, mutation) {
        (_, Mutation::Raw(bytes)) => return Some(bytes.clone()),
        (_, Mutation::Whole(value)) => value.clone(),
        (None, _) => return None,
        (Some(body), _) => body.clone(),
    };
    let mut all = Vec::new();
    pointers(&body, String::new(), &mut all);
    match mutation {
        Mutation::Replace(n, value) => {
            if let Some(slot) = body.pointer_mut(&all[n % all.len()]) {
                *slot = value.clone();
            }
        }
        Mutation::Drop(n) => {
            let objects: Vec<&String> = all
                .iter()
                .filter(|p| body.pointer(p).is_some_and(Value::is_object))
                .collect();
            let at = objects[n % objects.len()].clone();
            if let Some(Value::Object(map)) = body.pointer_mut(&at) {
                if let Some(first) = map.keys().next().cloned() {
                    map.remove(&first);
                }
            }
        }
        Mutation::Unknown(value) => {
            if let Value::Object(map) = &mut body {
                map.insert("unexpected".into(), value.clone());
            }
        }
        Mutation::None | Mutation::Whole(_) | Mutation::Raw(_) => {}
    }
    // Long polls stay short, so the run stays fast; their other fields are still fuzzed.
    if let Some(wait) = body.get_mut("wait_secs").filter(|w| w.is_u64()) {
        *wait = json!(0);
    }
    Some(serde_json::to_vec(&body).unwrap())
}

/// Who the request claims to be.
#[derive(Debug, Clone)]
enum Caller {
    Nobody,
    Session,
    /// The API key, with the scheme spelled this way.
    Key(&'static str),
    Device,
    /// A bearer credential that is not one.
    Forged(String),
}

fn caller() -> impl Strategy<Value = Caller> {
    prop_oneof![
        Just(Caller::Nobody),
        Just(Caller::Session),
        prop_oneof![Just("Bearer"), Just("bearer"), Just("BEARER")].prop_map(Caller::Key),
        Just(Caller::Device),
        "[ -~]{0,80}".prop_map(Caller::Forged),
    ]
}

#[derive(Debug, Clone)]
struct Case {
    operation: usize,
    /// For each path placeholder: a real id of the fuzzer's (index into them), or hostile text.
    ids: Vec<Result<usize, String>>,
    query: Vec<(usize, String)>,
    mutation: Mutation,
    caller: Caller,
    json_content_type: bool,
}

fn case(operations: usize) -> impl Strategy<Value = Case> {
    (
        0..operations,
        prop::collection::vec(
            prop_oneof![any::<usize>().prop_map(Ok), hostile_text(300).prop_map(Err)],
            2,
        ),
        prop::collection::vec((any::<usize>(), hostile_text(300)), 0..3),
        mutation(),
        caller(),
        prop::bool::weighted(0.9),
    )
        .prop_map(
            |(operation, ids, query, mutation, caller, json_content_type)| Case {
                operation,
                ids,
                query,
                mutation,
                caller,
                json_content_type,
            },
        )
}

/// What the fuzzer holds: a signed-in client, an API key, a device credential, and real ids
/// to put in paths (so cases reach past "not found").
struct Holdings {
    session: reqwest::Client,
    plain: reqwest::Client,
    key: String,
    credential: String,
    ids: Vec<String>,
}

async fn prepare(app: &TestApp) -> (Holdings, Vec<Operation>) {
    let platform = &app.server.platform;
    platform::testing::seed_agent_fleet(&platform.store, 40, platform::now())
        .await
        .unwrap();
    platform.agents.rebuild(platform::now()).await.unwrap();
    let wallet = new_wallet();
    app.sign_in(&wallet).await;
    let key = app.post("/api/v1/keys", json!({ "name": "fuzz" })).await;
    let key = key.json::<Value>().await.unwrap()["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let client = &app.client;
    let device = json!({ "name": "fuzzed", "os": "linux", "kind": "gpu", "country": "DE" });
    let ticket = app
        .post_json_as(client, "/api/v1/worker/devices", device)
        .await;
    let sample = registration(&ticket["token"], true, "NVIDIA GeForce RTX 4090", 24_564);
    let registered = app
        .post_json_as(client, "/api/agent/v1/register", sample.clone())
        .await;
    let order = api_body("post", "/api/v1/cloud/clusters").unwrap();
    let deployed = app
        .post_json_as(client, "/api/v1/cloud/clusters", order)
        .await;
    let document = app.get_json("/api/v1/openapi.json").await;
    let mut operations = api_operations(&document);
    operations.extend(agent_operations(&sample));
    let ids = vec![
        ticket["device_id"].as_str().unwrap().to_owned(),
        deployed["id"].as_str().unwrap_or("c-none").to_owned(),
        address(&wallet),
        "1".to_owned(),
        "pause".to_owned(),
        "rename".to_owned(),
    ];
    // A connection per request: the server may close one after refusing a body it did not
    // read, and a reused one would then fail for the next case, which did nothing wrong.
    let fresh = || reqwest::Client::builder().pool_max_idle_per_host(0);
    let session = fresh().cookie_store(true).build().unwrap();
    app.sign_in_as(&session, &wallet).await;
    let holdings = Holdings {
        session,
        plain: fresh().build().unwrap(),
        key,
        credential: registered["credential"].as_str().unwrap().to_owned(),
        ids,
    };
    (holdings, operations)
}

/// Sends one case and checks its answer.
async fn run_case(
    app: &TestApp,
    holdings: &Holdings,
    operation: &Operation,
    case: &Case,
) -> Result<(), TestCaseError> {
    let mut ids = case.ids.iter();
    let path: Vec<String> = operation
        .path
        .split('/')
        .map(|part| {
            if !part.starts_with('{') {
                return part.to_owned();
            }
            let text = match ids.next().unwrap() {
                Ok(n) => holdings.ids[n % holdings.ids.len()].clone(),
                Err(text) => text.clone(),
            };
            percent_encoding::utf8_percent_encode(&text, percent_encoding::NON_ALPHANUMERIC)
                .to_string()
        })
        .collect();
    let mut url = reqwest::Url::parse(&app.url(&path.join("/"))).unwrap();
    if !operation.query.is_empty() {
        let mut pairs = url.query_pairs_mut();
        for (n, value) in &case.query {
            pairs.append_pair(&operation.query[n % operation.query.len()], value);
        }
    }
    let client = match case.caller {
        Caller::Session => &holdings.session,
        _ => &holdings.plain,
    };
    let mut request = client
        .request(operation.method.clone(), url.clone())
        .timeout(std::time::Duration::from_secs(20));
    request = match &case.caller {
        Caller::Key(scheme) => {
            request.header(header::AUTHORIZATION, format!("{scheme} {}", holdings.key))
        }
        Caller::Device => request.bearer_auth(&holdings.credential),
        Caller::Forged(text) => request.header(header::AUTHORIZATION, format!("Bearer {text}")),
        Caller::Nobody | Caller::Session => request,
    };
    if let Some(body) = mutated(&operation.body, &case.mutation) {
        let content_type = if case.json_content_type {
            "application/json"
        } else {
            "text/plain"
        };
        request = request
            .header(header::CONTENT_TYPE, content_type)
            .body(body);
    }
    let answer = request
        .send()
        .await
        .map_err(|e| TestCaseError::fail(format!("{} {url}: no answer: {e}", operation.method)))?;
    let status = answer.status();
    let content_type = answer
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let text = if operation.path.ends_with("/download") && status.is_success() {
        String::new()
    } else {
        answer.text().await.unwrap_or_default()
    };
    prop_assert!(
        !status.is_server_error(),
        "{} {url} answered {status}: {text}",
        operation.method
    );
    if status.is_client_error() {
        prop_assert!(
            content_type.starts_with("application/json"),
            "{} {url} answered {status} as {content_type}: {text}",
            operation.method
        );
        let error: Value = serde_json::from_str(&text).unwrap_or_default();
        prop_assert!(
            error["error"]["code"].is_string() && error["error"]["message"].is_string(),
            "{} {url} answered {status} without the error shape: {text}",
            operation.method
        );
    }
    Ok(())
}

fn fuzz_the_api(database_url: Option<String>) {
    let Some(database_url) = database_url else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let app = runtime.block_on(spawn(database_url, |config| {
        config.welcome_credit = domain::money::MicroUsd::from_micros(100_000_000);
    }));
    let (holdings, operations) = runtime.block_on(prepare(&app));
    let cases = std::env::var("GC_FUZZ_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(256);
    let mut runner = TestRunner::new(RunnerConfig {
        cases,
        failure_persistence: None,
        ..RunnerConfig::default()
    });
    let result = runner.run(&case(operations.len()), |case| {
        runtime.block_on(run_case(
            &app,
            &holdings,
            &operations[case.operation],
            &case,
        ))
    });
    if let Err(failure) = result {
        panic!("{failure}");
    }
    runtime.block_on(async {
        assert_eq!(app.get("/readyz").await.status(), reqwest::StatusCode::OK);
        assert_eq!(
            app.server.platform.ledger.audit().await.unwrap(),
            Vec::<String>::new()
        );
        app.server.stop().await;
    });
}

#[test]
fn sqlite_every_operation_survives_hostile_requests() {
    fuzz_the_api(Some(platform::testing::fresh_sqlite_url()));
}

#[test]
fn postgres_every_operation_survives_hostile_requests() {
    let url = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(platform::testing::fresh_postgres_url());
    fuzz_the_api(url);
}
