//! The JSON API against its own OpenAPI document, checked by schemathesis (PyPI), an
//! independent tool: it generates requests from the document (valid and invalid), sends them
//! with an API key, and fails on any server error, any answer the document does not describe
//! (status, content type, headers, body schema), valid data refused or invalid data accepted.
//! Its settings are in `tests/schemathesis.toml`: the key's scheme, and the few operations
//! that may refuse schema-valid data with 422, each with the rule no schema states.
//! `cargo xtask test` installs it and names it in `SCHEMATHESIS_BIN`; with `CI=true` its absence
//! fails the test, elsewhere the test says why it skips.

mod support;

use serde_json::{json, Value};
use support::{new_wallet, spawn};

/// How many generated cases each operation gets per phase: enough to cover every parameter's
/// and field's kinds of values, few enough to keep the suite's time.
const EXAMPLES_PER_OPERATION: &str = "25";

fn schemathesis() -> Option<String> {
    let named = std::env::var("SCHEMATHESIS_BIN").ok();
    let found = named.or_else(|| {
        let beside = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../target/tools/schemathesis/bin/st"
        );
        std::path::Path::new(beside)
            .is_file()
            .then(|| beside.to_owned())
    });
    if found.is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "schemathesis is required with CI=true: run `cargo xtask test`, which installs it, or set SCHEMATHESIS_BIN to its `st`"
        );
        eprintln!(
            "SKIPPED: schemathesis is not installed (cargo xtask test installs it in target/tools/schemathesis; or set SCHEMATHESIS_BIN)"
        );
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_answers_as_its_openapi_document_says() {
    let Some(st) = schemathesis() else {
        return;
    };
    let app = spawn(platform::testing::fresh_sqlite_url(), |config| {
        // Thousands of requests from one address in seconds: the explorer's per-client limit
        // would answer most of them 429 and test nothing.
        config.explorer_requests_per_sec = 1_000_000;
    })
    .await;
    let wallet = new_wallet();
    app.sign_in(&wallet).await;
    let key: Value = app
        .post("/api/v1/keys", json!({ "name": "schemathesis" }))
        .await
        .json()
        .await
        .unwrap();
    let key = key["secret"].as_str().unwrap().to_owned();
    let scratch = std::env::temp_dir().join(format!("gc-schemathesis-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).unwrap();
    let run = tokio::process::Command::new(&st)
        .arg("--config-file")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/schemathesis.toml"
        ))
        .args(["run", &app.url("/api/v1/openapi.json")])
        .args(["--max-examples", EXAMPLES_PER_OPERATION])
        // One worker: Hypothesis, under it, is not safe to drive from two threads at once.
        .args(["--workers", "1", "--request-timeout", "30"])
        .args(["--suppress-health-check", "all"])
        .env("SCHEMATHESIS_API_KEY", &key)
        .env("NO_COLOR", "1")
        // Whatever it keeps between runs (Hypothesis's examples) stays out of the checkout.
        .current_dir(&scratch)
        .output()
        .await
        .expect("schemathesis runs");
    let said =
        String::from_utf8_lossy(&run.stdout).into_owned() + &String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "schemathesis found problems:\n{said}");
    println!("{said}");
    let _ = std::fs::remove_dir_all(&scratch);
    app.server.stop().await;
}
