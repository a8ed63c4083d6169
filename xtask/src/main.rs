//! `cargo xtask run` and `cargo xtask test`: the two commands of the README. Each installs what it
//! needs on a fresh machine with only the Rust toolchain (the wasm target, the wasm-bindgen CLI of
//! the version pinned in Cargo.lock, Debian's Chromium and the npm test packages, bubblewrap and
//! Podman for the agent's confined workloads), then builds and runs the platform, or runs every
//! test. Nothing is skipped silently: a missing prerequisite
//! that cannot be installed stops the command with what to do.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

mod replicas;

const WASM_TARGET: &str = "wasm32-unknown-unknown";
const BUNDLE_NAME: &str = "gpu_commons";
/// npm `binaryen` (Debian's wasm-opt is too old for today's rustc output).
const BINARYEN_VERSION: &str = "132.0.0";
/// The WebAssembly features rustc enables for wasm32-unknown-unknown, which wasm-opt must accept.
const WASM_FEATURES: &[&str] = &[
    "--enable-bulk-memory",
    "--enable-sign-ext",
    "--enable-mutable-globals",
    "--enable-nontrapping-float-to-int",
    "--enable-reference-types",
    "--enable-multivalue",
];
const USAGE: &str = "usage:
  cargo xtask run [SERVER FLAGS…]   build (release) and start the platform on SQLite with a demo fleet
  cargo xtask test                  run every test: lints, unit, integration (SQLite + PostgreSQL), browser
  cargo xtask build                 build the release server binary and site without starting it
  cargo xtask replicas [N] [FLAGS…] N replicas (default 3) on PostgreSQL behind HAProxy at 127.0.0.1:8080
Server flags go to the gpu-commons binary; see `cargo xtask run --help`.";

type Result<T = ()> = std::result::Result<T, String>;

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("run") => run_platform(&args[1..]),
        Some("test") => test_everything(),
        Some("build") => build_release().map(|_| ()),
        Some("replicas") => replicas::run_replicas(&args[1..]),
        _ => Err(USAGE.to_owned()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn step(title: &str) {
    println!("\n==> {title}");
}

/// Runs a command to completion in the workspace root, failing with the command line if it fails.
fn run(command: &mut Command) -> Result {
    let shown = format!("{command:?}").replace('"', "");
    println!("    $ {shown}");
    let status = command
        .current_dir(
            command
                .get_current_dir()
                .map(Path::to_path_buf)
                .unwrap_or_else(workspace_root),
        )
        .status()
        .map_err(|e| format!("could not start `{shown}`: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{shown}` failed ({status})"))
    }
}

fn output_of(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn cargo() -> Command {
    Command::new(env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

fn is_root() -> bool {
    output_of("id", &["-u"]).is_some_and(|uid| uid.trim() == "0")
}

fn ensure_rust_parts() -> Result {
    step("Rust: wasm target, clippy, rustfmt");
    let installed = output_of("rustup", &["target", "list", "--installed"]).unwrap_or_default();
    if !installed.lines().any(|t| t.trim() == WASM_TARGET) {
        run(Command::new("rustup").args(["target", "add", WASM_TARGET]))?;
    }
    if output_of("cargo", &["clippy", "--version"]).is_none()
        || output_of("cargo", &["fmt", "--version"]).is_none()
    {
        run(Command::new("rustup").args(["component", "add", "clippy", "rustfmt"]))?;
    }
    Ok(())
}

/// The wasm-bindgen version Cargo.lock pins; the CLI must be exactly this version.
fn pinned_wasm_bindgen() -> Result<String> {
    let lock = fs::read_to_string(workspace_root().join("Cargo.lock"))
        .map_err(|e| format!("reading Cargo.lock: {e}"))?;
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line == "name = \"wasm-bindgen\"" {
            if let Some(version) = lines.next().and_then(|l| l.strip_prefix("version = \"")) {
                return Ok(version.trim_end_matches('"').to_owned());
            }
        }
    }
    Err("Cargo.lock has no wasm-bindgen package".into())
}

/// Installs the wasm-bindgen CLI of the pinned version under target/tools (kept per checkout).
fn ensure_wasm_bindgen() -> Result<PathBuf> {
    let version = pinned_wasm_bindgen()?;
    let root = workspace_root().join("target").join("tools");
    let binary = root.join("bin").join("wasm-bindgen");
    let current = output_of(&binary.to_string_lossy(), &["--version"]).unwrap_or_default();
    if current.trim() != format!("wasm-bindgen {version}") {
        step(&format!(
            "wasm-bindgen CLI {version} (once per checkout, about 3 minutes)"
        ));
        run(cargo()
            .args([
                "install",
                "wasm-bindgen-cli",
                "--version",
                &format!("={version}"),
                "--force",
                "--root",
            ])
            .arg(&root))?;
    }
    Ok(binary)
}

/// Installs wasm-opt of the pinned binaryen version under target/tools/node (kept per checkout).
fn ensure_wasm_opt() -> Result<PathBuf> {
    let prefix = workspace_root().join("target").join("tools").join("node");
    let binary = prefix.join("node_modules").join(".bin").join("wasm-opt");
    let wanted = format!(
        "version {}",
        BINARYEN_VERSION.split('.').next().unwrap_or_default()
    );
    if !output_of(&binary.to_string_lossy(), &["--version"]).is_some_and(|v| v.contains(&wanted)) {
        step(&format!("wasm-opt (npm binaryen {BINARYEN_VERSION})"));
        ensure_node()?;
        run(Command::new("npm")
            .args([
                "install",
                "--no-audit",
                "--no-fund",
                "--no-save",
                "--prefix",
            ])
            .arg(&prefix)
            .arg(format!("binaryen@{BINARYEN_VERSION}")))?;
    }
    Ok(binary)
}

/// Node.js and npm, from Debian, for the browser tests and wasm-opt.
fn ensure_node() -> Result {
    if output_of("node", &["--version"]).is_none() || output_of("npm", &["--version"]).is_none() {
        apt_install(&["nodejs", "npm"])?;
    }
    Ok(())
}

fn apt_install(packages: &[&str]) -> Result {
    if !is_root() {
        return Err(format!(
            "{} missing; install it with: sudo apt-get install -y {}",
            packages.join(", "),
            packages.join(" ")
        ));
    }
    run(Command::new("apt-get").args(["update", "-qq"]))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-qq"])
        .args(packages)
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

/// HAProxy, from Debian: the replicas test (and `cargo xtask replicas`) puts several servers
/// behind it.
fn ensure_load_balancer() -> Result {
    step("Load balancer: HAProxy");
    if Path::new("/usr/sbin/haproxy").exists() {
        return Ok(());
    }
    apt_install(&["haproxy"])
}

/// What confines workloads on a device (bubblewrap for bare-metal and Ray clusters, with
/// slirp4netns for a one-device cluster's own network; Podman on runc for container clusters;
/// Debian's crun refuses hybrid cgroups, so runc is named), from Debian. `for_tests` adds the
/// static busybox the container tests build their image from.
fn ensure_confinement_tools(for_tests: bool) -> Result {
    step("Workload confinement: bubblewrap, slirp4netns, Podman on runc");
    let mut wanted = vec![
        ("/usr/bin/bwrap", "bubblewrap"),
        ("/usr/bin/slirp4netns", "slirp4netns"),
        ("/usr/bin/podman", "podman"),
        ("/usr/sbin/runc", "runc"),
    ];
    if for_tests {
        wanted.push(("/usr/bin/busybox", "busybox-static"));
        // The tunnel test's workload serves HTTP with Python's standard library.
        wanted.push(("/usr/bin/python3", "python3"));
    }
    let missing: Vec<&str> = wanted
        .iter()
        .filter(|(path, _)| !Path::new(path).exists())
        .map(|(_, package)| *package)
        .collect();
    if missing.is_empty() {
        println!("    installed");
        return Ok(());
    }
    apt_install(&missing)
}

fn ensure_browser_test_tools() -> Result {
    step("Browser tests: Debian Chromium, Node.js, Playwright (no browser downloads)");
    if !Path::new("/usr/bin/chromium").exists() {
        apt_install(&["chromium"])?;
    }
    ensure_node()?;
    run(Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(workspace_root().join("end2end"))
        .env("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1"))
}

/// The version of schemathesis (PyPI) the API conformance test runs; pinned so that a new
/// release's new checks arrive as a change here, not as a surprise in CI.
const SCHEMATHESIS_VERSION: &str = "4.32.5";

/// Schemathesis in a virtual environment of its own under target/tools; returns its `st`.
fn ensure_schemathesis() -> Result<PathBuf> {
    step(&format!(
        "API conformance: schemathesis {SCHEMATHESIS_VERSION} (PyPI)"
    ));
    let venv = workspace_root()
        .join("target")
        .join("tools")
        .join("schemathesis");
    let st = venv.join("bin").join("st");
    let installed = output_of(&st.to_string_lossy(), &["--version"])
        .is_some_and(|v| v.contains(SCHEMATHESIS_VERSION));
    if installed {
        return Ok(st);
    }
    if !Path::new("/usr/bin/python3").exists() {
        apt_install(&["python3"])?;
    }
    if output_of("python3", &["-c", "import venv, ensurepip"]).is_none() {
        apt_install(&["python3-venv"])?;
    }
    run(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
    run(Command::new(venv.join("bin").join("pip")).args([
        "install",
        "--quiet",
        "--disable-pip-version-check",
        &format!("schemathesis=={SCHEMATHESIS_VERSION}"),
    ]))?;
    Ok(st)
}

/// Builds the hydrate bundle and lays out target/site: pkg/ (JS, WASM, CSS) and public files.
fn build_site(release: bool) -> Result<PathBuf> {
    let wasm_bindgen = ensure_wasm_bindgen()?;
    let root = workspace_root();
    let profile = if release { "wasm-release" } else { "dev" };
    step(&format!("Hydrate bundle (WASM, profile {profile})"));
    run(cargo().args([
        "build",
        "--package",
        "frontend",
        "--target",
        WASM_TARGET,
        "--profile",
        profile,
    ]))?;
    let wasm_dir = if release { "wasm-release" } else { "debug" };
    let wasm = root
        .join("target")
        .join(WASM_TARGET)
        .join(wasm_dir)
        .join("frontend.wasm");
    let site = root.join("target").join("site");
    let pkg = site.join("pkg");
    fs::create_dir_all(&pkg).map_err(|e| format!("creating {}: {e}", pkg.display()))?;
    run(Command::new(&wasm_bindgen)
        .args([
            "--target",
            "web",
            "--no-typescript",
            "--out-name",
            BUNDLE_NAME,
            "--out-dir",
        ])
        .arg(&pkg)
        .arg(&wasm))?;
    let copy = |from: PathBuf, to: PathBuf| {
        fs::copy(&from, &to)
            .map(|_| ())
            .map_err(|e| format!("copying {}: {e}", from.display()))
    };
    copy(
        root.join("style").join("main.css"),
        pkg.join(format!("{BUNDLE_NAME}.css")),
    )?;
    for entry in fs::read_dir(root.join("public")).map_err(|e| format!("reading public/: {e}"))? {
        let entry = entry.map_err(|e| e.to_string())?;
        copy(entry.path(), site.join(entry.file_name()))?;
    }
    let bundle = pkg.join(format!("{BUNDLE_NAME}_bg.wasm"));
    if release {
        // Halves the release bundle (see docs/BENCHMARKS.md); debug builds skip it to stay fast.
        let wasm_opt = ensure_wasm_opt()?;
        step("Optimising the hydrate bundle (wasm-opt -Oz)");
        run(Command::new(wasm_opt)
            .arg("-Oz")
            .args(WASM_FEATURES)
            .arg(&bundle)
            .arg("-o")
            .arg(&bundle))?;
    }
    let size = fs::metadata(&bundle).map(|m| m.len()).unwrap_or(0);
    println!("    site at {} (WASM {} KiB)", site.display(), size / 1024);
    if release {
        report_compressed_size(&bundle)?;
    }
    Ok(site)
}

/// The explorer issue's budget for the release hydrate bundle, brotli-compressed.
const BUNDLE_BUDGET_BROTLI: u64 = 250_000;

/// Prints the release bundle's brotli size (quality 11, as a server would send it) against the
/// budget; node (already needed for wasm-opt) compresses it.
fn report_compressed_size(bundle: &Path) -> Result {
    const SCRIPT: &str = "const z=require('zlib');const b=require('fs').readFileSync(process.argv[1]);\
        console.log(z.brotliCompressSync(b,{params:{[z.constants.BROTLI_PARAM_QUALITY]:11}}).length)";
    let bundle = bundle.to_string_lossy();
    let brotli: u64 = output_of("node", &["-e", SCRIPT, &bundle])
        .and_then(|out| out.trim().parse().ok())
        .ok_or("could not compress the bundle with node to measure it")?;
    let verdict = if brotli <= BUNDLE_BUDGET_BROTLI {
        "within"
    } else {
        "OVER"
    };
    println!(
        "    hydrate bundle: {brotli} B brotli, {verdict} the {BUNDLE_BUDGET_BROTLI} B budget"
    );
    Ok(())
}

fn build_release() -> Result<PathBuf> {
    ensure_rust_parts()?;
    let site = build_site(true)?;
    // The agent too: a demo network runs it as its demo agents, beside the server binary.
    step("Server and agent (release)");
    run(cargo().args([
        "build",
        "--release",
        "--package",
        "server",
        "--package",
        "agent",
    ]))?;
    Ok(site)
}

fn run_platform(server_args: &[String]) -> Result {
    let site = build_release()?;
    ensure_confinement_tools(false)?;
    step("Starting GPU Commons (Ctrl-C to stop)");
    let mut command = Command::new(
        workspace_root()
            .join("target")
            .join("release")
            .join("gpu-commons"),
    );
    command.arg("--site-root").arg(&site);
    // A demo fleet by default, so every page has a network to show; `--demo false` turns it off.
    if !server_args.iter().any(|a| a.starts_with("--demo")) {
        command.arg("--demo");
    }
    run(command.args(server_args))
}

/// The binaries the browser tests start, built by `cargo test`.
const E2E_BINARIES: [&str; 3] = ["gpu-commons", "gpu-commons-agent", "local-solana"];

fn test_everything() -> Result {
    let ci = env::var("CI").is_ok_and(|v| v == "true");
    println!(
        "GPU Commons test suite{}",
        if ci {
            " (CI=true: every part is required)"
        } else {
            ""
        }
    );
    ensure_rust_parts()?;
    ensure_confinement_tools(true)?;
    ensure_load_balancer()?;
    ensure_browser_test_tools()?;
    let schemathesis = ensure_schemathesis()?;

    step("Formatting and lints");
    run(cargo().args(["fmt", "--all", "--check"]))?;
    run(cargo().args([
        "clippy",
        "--workspace",
        "--exclude",
        "frontend",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    run(cargo().args([
        "clippy",
        "--package",
        "frontend",
        "--target",
        WASM_TARGET,
        "--",
        "-D",
        "warnings",
    ]))?;

    step("Unit and integration tests (SQLite and PostgreSQL)");
    run(cargo()
        .args([
            "test",
            "--workspace",
            "--exclude",
            "frontend",
            "--exclude",
            "xtask",
        ])
        // The API conformance test runs it against a running server (server/tests/schemathesis.rs).
        .env("SCHEMATHESIS_BIN", &schemathesis))?;

    build_site(false)?;
    step("Browser end-to-end tests (Chromium)");
    let root = workspace_root();
    let binaries = root.join("target").join("debug");
    // The test run just built them, with its own features, for the integration tests that run
    // them (the server's, the agent's, chain's of local-solana): building them again with
    // another feature set would rebuild most of the workspace (minutes on two cores).
    for binary in E2E_BINARIES {
        if !binaries.join(binary).is_file() {
            return Err(format!(
                "the test run did not build target/debug/{binary}, which the browser tests run"
            ));
        }
    }
    run(Command::new("npx")
        .args(["playwright", "test"])
        .current_dir(root.join("end2end"))
        .env("E2E_SERVER_BIN", binaries.join("gpu-commons"))
        .env("E2E_AGENT_BIN", binaries.join("gpu-commons-agent"))
        .env("E2E_SOLANA_BIN", binaries.join("local-solana")))?;
    println!("\nAll tests passed.");
    Ok(())
}
