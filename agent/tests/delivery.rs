//! Agent delivery against the real server: the Worker tab's one-line command (`curl … |
//! sh`) installs the served agent on this machine (no systemd here: the script says how to
//! start it), and agents of other builds replace themselves with the server's, except that an
//! agent of a later release is never rolled back.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use domain::agent_release::{version_mark, AgentReleases};
use support::{machine_file, Fleet, AGENT};
use tokio::process::{Child, Command};

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// This build of the agent, copied to `dir` with its release mark changed to `core`: in every
/// way the server and the agent can see, a build of release `core`.
fn agent_of_release(dir: &Path, core: &str) -> PathBuf {
    let mut bytes = std::fs::read(AGENT).unwrap();
    let mark = version_mark(env!("CARGO_PKG_VERSION"));
    let at = bytes
        .windows(mark.len())
        .position(|w| w == mark)
        .expect("the agent carries its release mark");
    bytes[at..at + mark.len()].copy_from_slice(&version_mark(core));
    let bin = dir.join(format!("agent-{core}"));
    std::fs::create_dir_all(&bin).unwrap();
    let exe = bin.join("gpu-commons-agent");
    std::fs::write(&exe, bytes).unwrap();
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    exe
}

fn spawn(fleet: &Fleet, exe: &Path, name: &str, args: &[String], extra: &[&str]) -> Child {
    let log = std::fs::File::create(fleet.dir.join(format!("{name}.log"))).unwrap();
    Command::new(exe)
        .args(args)
        .args(extra)
        .arg("--credentials")
        .arg(fleet.dir.join(format!("{name}.json")))
        .arg("--simulate")
        .arg(machine_file(
            &fleet.dir,
            name,
            "NVIDIA H100 80GB HBM3",
            1,
            0,
        ))
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

async fn offered(fleet: &Fleet) -> AgentReleases {
    reqwest::get(format!("{}agent/releases.json", fleet.server.public_url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn serving_the_agent() -> Fleet {
    Fleet::start_with(platform::testing::fresh_sqlite_url(), |config| {
        config.agent_binary = PathBuf::from(AGENT)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_one_line_command_installs_the_served_agent() {
    let fleet = serving_the_agent().await;
    let releases = offered(&fleet).await.releases;
    assert_eq!(releases.len(), 1, "{releases:?}");
    let release = &releases[0];
    let agent_bytes = std::fs::read(AGENT).unwrap();
    assert_eq!(release.sha256, sha256_hex(&agent_bytes));
    assert_eq!(release.size, agent_bytes.len() as u64);

    let ticket = support::ticket(&fleet.server.platform, &fleet.owner, "installed").await;
    let server = fleet.server.public_url.as_str().trim_end_matches('/');
    assert_eq!(
        ticket.command,
        format!(
            "curl -fsSL {server}/install.sh | sh -s -- --token {}",
            ticket.token
        )
    );
    let prefix = fleet.dir.join("prefix");
    let config_dir = fleet.dir.join("etc");
    let install = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{} --prefix '{}' --config-dir '{}'",
            ticket.command,
            prefix.display(),
            config_dir.display()
        ))
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&install.stdout).into_owned()
        + &String::from_utf8_lossy(&install.stderr);
    assert!(install.status.success(), "{said}");
    let bin = prefix.join("bin/gpu-commons-agent");
    assert_eq!(
        std::fs::read(&bin).unwrap(),
        agent_bytes,
        "the served build"
    );
    assert_eq!(bin.metadata().unwrap().permissions().mode() & 0o777, 0o755);
    let token = config_dir.join("token");
    assert_eq!(
        std::fs::read_to_string(&token).unwrap().trim(),
        ticket.token
    );
    assert_eq!(
        token.metadata().unwrap().permissions().mode() & 0o777,
        0o600
    );
    // No systemd here: the script says so and how to start the agent.
    assert!(
        said.contains("no systemd on this machine") || said.contains("not root"),
        "{said}"
    );
    let start = said
        .lines()
        .find_map(|l| l.trim().strip_prefix(&format!("{} ", bin.display())))
        .unwrap_or_else(|| panic!("no start command in:\n{said}"));
    let args: Vec<String> = start.split_whitespace().map(str::to_owned).collect();
    assert_eq!(
        args,
        [
            "--server".to_owned(),
            server.to_owned(),
            "--token-file".into(),
            token.display().to_string(),
            "--credentials".into(),
            config_dir.join("agent.json").display().to_string(),
        ]
    );

    // Started as the script said (its hardware described from a file), it registers and runs
    // the offered build, which is current.
    let log = std::fs::File::create(fleet.dir.join("installed.log")).unwrap();
    let _agent = Command::new(&bin)
        .args(&args)
        .env(
            "GC_AGENT_SIMULATE",
            machine_file(&fleet.dir, "installed", "NVIDIA H100 80GB HBM3", 1, 0),
        )
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let id = fleet.wait_registered("installed", 30).await;
    let detail = fleet
        .wait_for("installed", &id, 30, "running the offered build", |d| {
            d.agent_version.as_deref() == Some(release.version.as_str())
        })
        .await;
    assert!(!detail.summary.agent_outdated);
    let devices = fleet
        .server
        .platform
        .worker
        .devices_of(&fleet.owner, platform::now())
        .await
        .unwrap();
    assert_eq!(
        devices.offered_agent.as_deref(),
        Some(release.version.as_str())
    );

    // What a wrong or mistyped command gets: a clear refusal, nothing changed.
    for (args, says) in [
        ("", "give the registration token"),
        ("--token gcr_zz", "holds characters no token has"),
        ("--token abc", "is not a registration token"),
        (
            "--token gcr_ab --frobnicate",
            "unknown option '--frobnicate'",
        ),
    ] {
        let refused = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("curl -fsSL {server}/install.sh | sh -s -- {args}"))
            .stdout(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(refused.status.code(), Some(1), "{args}");
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(stderr.contains(says), "{args}: {stderr}");
    }
    // Someone between the machine and the server hands out other bytes for the download: the
    // script (fetched from the real server, so it names the real SHA-256) installs nothing.
    let forged_root = fleet.dir.join("forged");
    let forged = forged_root.join("agent/download/linux-x86_64");
    std::fs::create_dir_all(forged.parent().unwrap()).unwrap();
    let mut bytes = agent_bytes.clone();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&forged, bytes).unwrap();
    let port = support::free_port();
    let mut impostor = Command::new("python3")
        .args([
            "-m",
            "http.server",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
        ])
        .current_dir(&forged_root)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let script = reqwest::get(format!("{server}/install.sh"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
        .replacen(
            &format!("SERVER='{server}'"),
            &format!("SERVER='http://127.0.0.1:{port}'"),
            1,
        );
    let script_file = fleet.dir.join("install-via-impostor.sh");
    std::fs::write(&script_file, script).unwrap();
    let victim = fleet.dir.join("victim");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the impostor did not start"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let refused = std::process::Command::new("sh")
        .arg(&script_file)
        .args(["--token", &format!("gcr_{}", "ab".repeat(24))])
        .arg("--prefix")
        .arg(victim.join("prefix"))
        .arg("--config-dir")
        .arg(victim.join("etc"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("nothing installed"), "{stderr}");
    assert!(!victim.join("prefix/bin/gpu-commons-agent").exists());
    assert_eq!(
        std::fs::read_dir(victim.join("prefix/bin"))
            .unwrap()
            .count(),
        0,
        "no staged download left"
    );
    let _ = impostor.kill().await;

    let unknown = reqwest::get(format!("{server}/agent/download/windows-x86_64"))
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    assert!(unknown
        .text()
        .await
        .unwrap()
        .contains("unknown agent platform 'windows-x86_64'"));
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_of_other_builds_update_themselves_but_never_roll_back() {
    let fleet = serving_the_agent().await;
    let offered = offered(&fleet).await.releases.remove(0);
    let agent_bytes = std::fs::read(AGENT).unwrap();

    // An agent of an earlier release: it registers as what it is, then installs the server's
    // build over its own file and restarts into it, in the same process.
    let old = agent_of_release(&fleet.dir, "0.0.1");
    let args = fleet.add_device("old").await;
    let mut old_agent = spawn(&fleet, &old, "old", &args, &[]);
    let old_pid = old_agent.id();
    let id = fleet.wait_registered("old", 30).await;
    let updated = fleet
        .wait_for("old", &id, 60, "updated to the offered build", |d| {
            d.agent_version.as_deref() == Some(offered.version.as_str())
        })
        .await;
    assert!(!updated.summary.agent_outdated);
    assert_eq!(std::fs::read(&old).unwrap(), agent_bytes);
    assert!(old_agent.try_wait().unwrap().is_none(), "still running");
    assert_eq!(old_agent.id(), old_pid);
    let log = fleet.log("old");
    assert!(log.contains("(agent 0.0.1+"), "{log}");
    assert!(
        log.contains(&format!("agent {} installed", offered.version)),
        "{log}"
    );
    assert!(
        log.contains(&format!("(agent {})", offered.version)),
        "{log}"
    );
    // Only the binary: nothing staged is left beside it.
    assert_eq!(std::fs::read_dir(old.parent().unwrap()).unwrap().count(), 1);

    // One whose provider turned updates off keeps its build, and the Worker tab flags it.
    let pinned = agent_of_release(&fleet.dir, "0.0.2");
    let args = fleet.add_device("pinned").await;
    let _pinned = spawn(&fleet, &pinned, "pinned", &args, &["--no-auto-update"]);
    let id = fleet.wait_registered("pinned", 30).await;
    let flagged = fleet
        .wait_for("pinned", &id, 30, "flagged as outdated", |d| {
            d.summary.agent_outdated
        })
        .await;
    assert!(flagged.agent_version.unwrap().starts_with("0.0.2+"));

    // An agent of a later release than the server's is not rolled back.
    let newer = agent_of_release(&fleet.dir, "99.0.0");
    let newer_bytes = std::fs::read(&newer).unwrap();
    let args = fleet.add_device("newer").await;
    let _newer = spawn(&fleet, &newer, "newer", &args, &[]);
    let id = fleet.wait_registered("newer", 30).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !fleet
        .log("newer")
        .contains("an earlier release than this one")
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{}",
            fleet.log("newer")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let kept = fleet.detail(&id).await;
    assert!(kept.agent_version.unwrap().starts_with("99.0.0+"));
    assert!(!kept.summary.agent_outdated);
    assert_eq!(std::fs::read(&newer).unwrap(), newer_bytes);
    fleet.stop().await;
}
