//! `gpuc` end to end: the real binary against the real server (in this process, on a fresh
//! SQLite database), as a renter and as a provider would use it, mistakes included: no key,
//! a wrong spec, a reused idempotency key, an unknown cluster. Each failure exits with its
//! own code.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ed25519_dalek::{Signer, SigningKey};
use server::{start, Config, RunningServer};

const GPUC: &str = env!("CARGO_BIN_EXE_gpuc");

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs `gpuc` with `args` against `server`, its credentials kept in `home`.
async fn gpuc(server: &RunningServer, home: &Path, key: Option<&str>, args: &[&str]) -> Run {
    let mut command = tokio::process::Command::new(GPUC);
    command
        .args(args)
        .env("GC_SERVER", server.public_url.as_str())
        .env("GPUC_CONFIG_DIR", home)
        .env_remove("GC_API_KEY");
    if let Some(key) = key {
        command.env("GC_API_KEY", key);
    }
    let output = tokio::time::timeout(Duration::from_secs(60), command.output())
        .await
        .expect("gpuc answered within a minute")
        .unwrap();
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Signs a wallet in on the platform and makes it an API key; its account holds $100.
async fn renter_key(server: &RunningServer, seed: u8) -> String {
    let platform = &server.platform;
    let key = SigningKey::from_bytes(&[seed; 32]);
    let address =
        domain::wallet::WalletAddress::from_public_key(&key.verifying_key().to_bytes()).to_string();
    let challenge = platform
        .auth
        .challenge(&address, platform::now())
        .await
        .unwrap();
    let signature = bs58::encode(key.sign(challenge.message.as_bytes()).to_bytes()).into_string();
    let (_, signed_in) = platform
        .auth
        .sign_in(&challenge.message, &signature, platform::now())
        .await
        .unwrap();
    platform
        .ledger
        .operator_credit(
            signed_in.user_id,
            domain::money::Asset::Usdc,
            100_000_000,
            &format!("cli-{seed}"),
            "test grant",
            platform::now(),
        )
        .await
        .unwrap();
    platform
        .api_keys
        .create(signed_in.user_id, "cli test", platform::now())
        .await
        .unwrap()
        .secret
}

fn home(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gpuc-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renter_and_a_provider_work_from_the_command_line() {
    let mut config = Config::for_database(&platform::testing::fresh_sqlite_url()).unwrap();
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.tunnel_listen = None;
    config.demo_devices = 60;
    config.fleet.accept_simulated = true;
    config.welcome_credit = domain::money::MicroUsd::ZERO;
    // The seeded devices below have no agents: a cluster on them never starts, and fails at
    // this deadline.
    config.provisioning.start_deadline_secs = 8;
    let server = start(config).await.unwrap();
    // Devices run by agents (seeded: none really runs), which clusters can hire.
    platform::testing::seed_agent_fleet(&server.platform.store, 92, platform::now())
        .await
        .unwrap();
    server
        .platform
        .agents
        .rebuild(platform::now())
        .await
        .unwrap();
    let home = home("renter");
    let secret = renter_key(&server, 90).await;

    // No key yet: told how to get one, exit 3.
    let none = gpuc(&server, &home, None, &["balance"]).await;
    assert_eq!(none.code, 3, "{}", none.stderr);
    assert!(none.stderr.contains("gpuc login"), "{}", none.stderr);
    // A wrong key is refused before it is kept.
    let wrong = gpuc(&server, &home, None, &["login", "--key", "gck_0000"]).await;
    assert_eq!(wrong.code, 3, "{}", wrong.stderr);
    assert!(!home.join("credentials.toml").exists());
    let login = gpuc(&server, &home, None, &["login", "--key", &secret]).await;
    assert_eq!(login.code, 0, "{}", login.stderr);
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(home.join("credentials.toml"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let balance = gpuc(&server, &home, None, &["balance"]).await;
    assert_eq!(balance.code, 0, "{}", balance.stderr);
    assert!(
        balance.stdout.contains("$100.00 available"),
        "{}",
        balance.stdout
    );

    // A quote from flags; a deploy from a spec file, retried with the same key.
    let quote = gpuc(
        &server,
        &home,
        None,
        &[
            "quote",
            "--name",
            "q",
            "--kind",
            "bare_metal",
            "--hardware",
            "H200 141GB",
            "--quantity",
            "1",
            "--command",
            "python serve.py",
        ],
    )
    .await;
    assert_eq!(quote.code, 0, "{}", quote.stderr);
    assert!(
        quote.stdout.contains("can be placed now"),
        "{}",
        quote.stdout
    );
    let spec = home.join("cluster.toml");
    std::fs::write(
        &spec,
        "name = \"from-a-file\"\nkind = \"bare_metal\"\nhardware = \"H200 141GB\"\nquantity = 1\n\
         duration_unit = \"hourly\"\nduration_count = 2\n\n[workload]\ncommand = \"python serve.py\"\n",
    )
    .unwrap();
    let spec = spec.display().to_string();
    let deploy = |extra: &'static [&'static str]| {
        let mut args = vec![
            "deploy",
            "-f",
            spec.as_str(),
            "--idempotency-key",
            "first",
            "--json",
        ];
        args.extend_from_slice(extra);
        args
    };
    let first = gpuc(&server, &home, None, &deploy(&[])).await;
    assert_eq!(first.code, 0, "{}", first.stderr);
    let cluster: serde_json::Value = serde_json::from_str(&first.stdout).unwrap();
    let id = cluster["id"].as_str().unwrap().to_owned();
    let again = gpuc(&server, &home, None, &deploy(&[])).await;
    let again: serde_json::Value = serde_json::from_str(&again.stdout).unwrap();
    assert_eq!(
        again["id"], cluster["id"],
        "the same key is the same cluster"
    );
    let changed = gpuc(&server, &home, None, &deploy(&["--quantity", "2"])).await;
    assert_eq!(changed.code, 4, "{}", changed.stderr);
    assert!(
        changed.stderr.contains("already used for another request"),
        "{}",
        changed.stderr
    );
    let bad = gpuc(&server, &home, None, &["deploy", "--kind", "bare_metal"]).await;
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    assert!(
        bad.stderr.contains("missing field `name`"),
        "{}",
        bad.stderr
    );
    let refused = gpuc(
        &server,
        &home,
        None,
        &[
            "deploy",
            "--name",
            "toomany",
            "--kind",
            "bare_metal",
            "--hardware",
            "H200 141GB",
            "--quantity",
            "900",
            "--command",
            "x",
        ],
    )
    .await;
    assert_eq!(refused.code, 4, "{}", refused.stderr);
    assert!(
        refused.stderr.contains("cannot be placed now"),
        "{}",
        refused.stderr
    );

    let listed = gpuc(&server, &home, None, &["clusters"]).await;
    assert!(listed.stdout.starts_with("ID"), "{}", listed.stdout);
    assert!(listed.stdout.contains(&id) && listed.stdout.contains("from-a-file"));
    let shown = gpuc(&server, &home, None, &["cluster", "show", &id]).await;
    assert_eq!(shown.code, 0, "{}", shown.stderr);
    assert!(shown.stdout.contains("history:"), "{}", shown.stdout);
    let unknown = gpuc(&server, &home, None, &["cluster", "show", "cl-nothere"]).await;
    assert_eq!(unknown.code, 5, "{}", unknown.stderr);
    let logs = gpuc(&server, &home, None, &["logs", &id]).await;
    assert_eq!(logs.code, 0, "{}", logs.stderr);
    let ended = gpuc(&server, &home, None, &["terminate", &id]).await;
    assert_eq!(ended.code, 0, "{}", ended.stderr);
    assert!(ended.stdout.contains("terminated"), "{}", ended.stdout);

    // --wait follows a deploy to its end: on agentless demo devices it never starts.
    let waited = gpuc(
        &server,
        &home,
        None,
        &[
            "deploy",
            "--name",
            "waits",
            "--kind",
            "bare_metal",
            "--hardware",
            "H200 141GB",
            "--quantity",
            "1",
            "--command",
            "x",
            "--wait",
        ],
    )
    .await;
    assert_eq!(waited.code, 4, "{}\n{}", waited.stdout, waited.stderr);
    assert!(waited.stderr.contains("ended failed"), "{}", waited.stderr);

    let billing = gpuc(&server, &home, None, &["billing", "--csv"]).await;
    assert_eq!(billing.code, 0, "{}", billing.stderr);
    assert!(billing.stdout.lines().count() > 3, "{}", billing.stdout);
    let billing = gpuc(&server, &home, None, &["billing"]).await;
    assert!(billing.stdout.contains("refund"), "{}", billing.stdout);
    let keys = gpuc(&server, &home, None, &["keys"]).await;
    assert!(
        keys.stdout.contains("cli test") && keys.stdout.contains("active"),
        "{}",
        keys.stdout
    );

    // The same account as a provider: a device added prints its agent's one-liner.
    let added = gpuc(
        &server,
        &home,
        None,
        &["device", "add", "--name", "rig-1", "--country", "DE"],
    )
    .await;
    assert_eq!(added.code, 0, "{}", added.stderr);
    assert!(
        added.stdout.contains("gpu-commons-agent"),
        "{}",
        added.stdout
    );
    let devices = gpuc(&server, &home, None, &["devices"]).await;
    assert!(devices.stdout.contains("waiting for their agent") && devices.stdout.contains("rig-1"));
    let earnings = gpuc(&server, &home, None, &["earnings", "--json"]).await;
    assert_eq!(earnings.code, 0, "{}", earnings.stderr);
    let earnings: serde_json::Value = serde_json::from_str(&earnings.stdout).unwrap();
    assert_eq!(earnings["claimable"], 0);
    let claim = gpuc(
        &server,
        &home,
        None,
        &["claim", "--asset", "usdc", "--amount", "5"],
    )
    .await;
    assert_eq!(claim.code, 4, "nothing to claim: {}", claim.stderr);
    let asset = gpuc(
        &server,
        &home,
        None,
        &["claim", "--asset", "btc", "--amount", "5"],
    )
    .await;
    assert_eq!(asset.code, 2, "{}", asset.stderr);

    // GC_API_KEY wins over the kept key; logout forgets it.
    let other = renter_key(&server, 91).await;
    let whoami = gpuc(&server, &home, Some(&other), &["whoami", "--json"]).await;
    let whoami: serde_json::Value = serde_json::from_str(&whoami.stdout).unwrap();
    let kept = gpuc(&server, &home, None, &["whoami", "--json"]).await;
    let kept: serde_json::Value = serde_json::from_str(&kept.stdout).unwrap();
    assert_ne!(whoami["wallet"], kept["wallet"]);
    assert_eq!(gpuc(&server, &home, None, &["logout"]).await.code, 0);
    assert_eq!(gpuc(&server, &home, None, &["balance"]).await.code, 3);

    server.stop().await;
    let _ = std::fs::remove_dir_all(&home);
}
