//! The platform services against both real backends: every test here runs once on a fresh
//! SQLite file and once on a fresh PostgreSQL database.

use domain::agent_protocol::{Heartbeat, RegisterRequest, Utilisation, WorkloadState};
use domain::cluster::{
    ClusterKind, ClusterRole, ClusterStatus, DeployRequest, DurationUnit, ExtendRequest,
    PaymentMethod, Purpose, SecurityCompliance, Workload,
};
use domain::fleet::{DeviceKind, DeviceStatus, OperatingSystem};
use domain::hardware::{GpuReport, HardwareReport};
use domain::ledger::Account;
use domain::money::{Asset, MicroUsd, TokenPrice, Tokens};
use domain::siws::SignInMessage;
use domain::time::UnixMillis;
use domain::wallet::WalletAddress;
use domain::worker::NewDevice;
use ed25519_dalek::{Signer, SigningKey};
use platform::agents::{FleetConfig, Flush};
use platform::auth::{AuthConfig, SessionToken};
use platform::provisioning::ProvisioningConfig;
use platform::rewards::RewardsConfig;
use platform::store::Store;
use platform::testing::{stored_number, stored_text};
use platform::worker::WorkerConfig;
use platform::{AgentRefusal, Error, Platform, PlatformConfig, SignInRefusal};

#[path = "services/replicas.rs"]
mod replicas;
#[path = "services/rewards_and_promotions.rs"]
mod rewards_and_promotions;
use replicas::*;
use rewards_and_promotions::*;

const T0: UnixMillis = UnixMillis(1_795_600_000_000);

fn config() -> PlatformConfig {
    PlatformConfig {
        auth: AuthConfig {
            domain: "gpu.test:3000".into(),
            uri: "http://gpu.test:3000".into(),
            chain_id: "solana:mainnet".into(),
            nonce_ttl_secs: 300,
            session_idle_secs: 3600,
            session_max_secs: 86_400,
            welcome_credit: MicroUsd::ZERO,
        },
        worker: WorkerConfig {
            agent_server_url: "http://gpu.test:3000/".into(),
            registration_ttl_secs: 3600,
            offered_agent: None,
        },
        fleet: FleetConfig {
            // Small proofs: the arithmetic is the domain's, tested there at size.
            gpu_challenge_size: 24,
            cpu_challenge_size: 16,
            // The agents of these tests report simulated hardware, as a test bench's do.
            accept_simulated: true,
            ..FleetConfig::default()
        },
        provisioning: ProvisioningConfig {
            token_price: Some(TokenPrice::parse_decimal("0.25").unwrap()),
            ..ProvisioningConfig::default()
        },
        rewards: RewardsConfig::default(),
        solana_access: None,
    }
}

struct Wallet(SigningKey);

impl Wallet {
    fn new() -> Wallet {
        Wallet(SigningKey::generate(&mut rand::rngs::OsRng))
    }
    fn address(&self) -> String {
        WalletAddress::from_public_key(&self.0.verifying_key().to_bytes()).to_string()
    }
    fn sign(&self, message: &str) -> String {
        bs58::encode(self.0.sign(message.as_bytes()).to_bytes()).into_string()
    }
}

async fn refusal_of(
    result: Result<(SessionToken, domain::siws::SignedIn), Error>,
) -> SignInRefusal {
    match result {
        Err(Error::SignInRefused(refusal)) => refusal,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

async fn sign_in_creates_a_session_that_sign_out_ends(p: Platform) {
    let wallet = Wallet::new();
    let challenge = p.auth.challenge(&wallet.address(), T0).await.unwrap();
    let parsed = SignInMessage::parse(&challenge.message).unwrap();
    assert_eq!(parsed.domain, "gpu.test:3000");
    assert_eq!(challenge.expires_at, T0.plus_seconds(300));

    let (token, signed_in) = p
        .auth
        .sign_in(&challenge.message, &wallet.sign(&challenge.message), T0)
        .await
        .unwrap();
    assert_eq!(signed_in.wallet.to_string(), wallet.address());
    let session = p.auth.session(&token, T0.plus_seconds(10)).await.unwrap();
    assert_eq!(session.unwrap().wallet.to_string(), wallet.address());

    p.auth.end_session(&token).await.unwrap();
    assert_eq!(
        p.auth.session(&token, T0.plus_seconds(11)).await.unwrap(),
        None
    );
}

async fn a_reused_nonce_is_refused(p: Platform) {
    let wallet = Wallet::new();
    let challenge = p.auth.challenge(&wallet.address(), T0).await.unwrap();
    let signature = wallet.sign(&challenge.message);
    p.auth
        .sign_in(&challenge.message, &signature, T0)
        .await
        .unwrap();
    let again = p
        .auth
        .sign_in(&challenge.message, &signature, T0.plus_seconds(1))
        .await;
    assert_eq!(refusal_of(again).await, SignInRefusal::NonceUsed);
}

async fn an_expired_nonce_is_refused(p: Platform) {
    let wallet = Wallet::new();
    let challenge = p.auth.challenge(&wallet.address(), T0).await.unwrap();
    let late = p
        .auth
        .sign_in(
            &challenge.message,
            &wallet.sign(&challenge.message),
            T0.plus_seconds(301),
        )
        .await;
    assert_eq!(refusal_of(late).await, SignInRefusal::NonceExpired);
}

async fn a_nonce_not_issued_here_is_refused(p: Platform) {
    let wallet = Wallet::new();
    let challenge = p.auth.challenge(&wallet.address(), T0).await.unwrap();
    let forged = challenge.message.replace("Nonce: ", "Nonce: f0f0");
    let result = p.auth.sign_in(&forged, &wallet.sign(&forged), T0).await;
    assert_eq!(refusal_of(result).await, SignInRefusal::UnknownNonce);
}

async fn a_nonce_issued_to_another_wallet_is_refused(p: Platform) {
    let (victim, attacker) = (Wallet::new(), Wallet::new());
    let challenge = p.auth.challenge(&victim.address(), T0).await.unwrap();
    let swapped = challenge
        .message
        .replace(&victim.address(), &attacker.address());
    let result = p.auth.sign_in(&swapped, &attacker.sign(&swapped), T0).await;
    assert_eq!(refusal_of(result).await, SignInRefusal::WrongWallet);
}

/// A wallet that signs a copy of the message with a later expiry, an earlier issue time or
/// another URI has not signed what was asked: refused, and the nonce stays usable.
async fn an_altered_sign_in_message_is_refused(p: Platform) {
    let wallet = Wallet::new();
    let challenge = p.auth.challenge(&wallet.address(), T0).await.unwrap();
    let line = |name: &str| {
        challenge
            .message
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap()
            .to_owned()
    };
    let later = T0.plus_seconds(86_400 * 365);
    let altered = [
        (
            line("Expiration Time: "),
            format!("Expiration Time: {later}"),
            "expiration time",
        ),
        (
            line("Issued At: "),
            format!("Issued At: {}", T0.plus_seconds(-60)),
            "issued-at",
        ),
        (line("URI: "), "URI: https://evil.example".to_owned(), "URI"),
    ];
    for (from, to, what) in altered {
        let forged = challenge.message.replace(&from, &to);
        assert_ne!(forged, challenge.message);
        let result = p.auth.sign_in(&forged, &wallet.sign(&forged), T0).await;
        let refusal = refusal_of(result).await;
        assert!(
            matches!(refusal, SignInRefusal::Altered(changed) if changed.contains(what)),
            "{what}: {refusal:?}"
        );
    }
    p.auth
        .sign_in(&challenge.message, &wallet.sign(&challenge.message), T0)
        .await
        .unwrap();
}

/// Sign-in messages for one wallet are limited per minute (others are not held up).
async fn sign_in_requests_for_one_wallet_are_throttled(p: Platform) {
    let (flooded, other) = (Wallet::new(), Wallet::new());
    for n in 0..platform::auth::CHALLENGES_PER_WINDOW {
        p.auth
            .challenge(&flooded.address(), T0.plus_seconds(n))
            .await
            .unwrap();
    }
    let refused = p
        .auth
        .challenge(&flooded.address(), T0.plus_seconds(20))
        .await
        .unwrap_err();
    assert!(
        matches!(
            &refused,
            Error::TooMany {
                retry_after_secs: 41,
                ..
            }
        ),
        "{refused:?}"
    );
    p.auth
        .challenge(&other.address(), T0.plus_seconds(20))
        .await
        .unwrap();
    // A minute after the first, the wallet may ask again.
    p.auth
        .challenge(&flooded.address(), T0.plus_seconds(61))
        .await
        .unwrap();
}

async fn a_bad_signature_is_refused_and_leaves_the_nonce_usable(p: Platform) {
    let wallet = Wallet::new();
    let challenge = p.auth.challenge(&wallet.address(), T0).await.unwrap();
    let mut signature = bs58::decode(wallet.sign(&challenge.message))
        .into_vec()
        .unwrap();
    signature[0] ^= 1;
    let tampered = bs58::encode(signature).into_string();
    let result = p.auth.sign_in(&challenge.message, &tampered, T0).await;
    assert!(matches!(
        refusal_of(result).await,
        SignInRefusal::Message(domain::siws::SiwsError::BadSignature)
    ));
    // The real owner can still use the request the forger could not.
    p.auth
        .sign_in(&challenge.message, &wallet.sign(&challenge.message), T0)
        .await
        .unwrap();
}

async fn a_wrong_domain_is_refused(p: Platform) {
    let wallet = Wallet::new();
    let challenge = p.auth.challenge(&wallet.address(), T0).await.unwrap();
    let phished = challenge
        .message
        .replace("gpu.test:3000 wants", "gpu-test.evil wants");
    let result = p.auth.sign_in(&phished, &wallet.sign(&phished), T0).await;
    assert!(matches!(
        refusal_of(result).await,
        SignInRefusal::Message(domain::siws::SiwsError::WrongDomain { .. })
    ));
}

async fn sessions_end_when_idle_or_too_old(p: Platform) {
    let wallet = Wallet::new();
    let new_session = |at: UnixMillis| {
        let p = p.clone();
        let address = wallet.address();
        let wallet = &wallet;
        async move {
            let challenge = p.auth.challenge(&address, at).await.unwrap();
            p.auth
                .sign_in(&challenge.message, &wallet.sign(&challenge.message), at)
                .await
                .unwrap()
                .0
        }
    };
    let idle = new_session(T0).await;
    assert_eq!(
        p.auth.session(&idle, T0.plus_seconds(3600)).await.unwrap(),
        None
    );

    // Used every 50 minutes, it outlives the idle limit but not the absolute one.
    let busy = new_session(T0).await;
    let mut at = T0;
    while at.0 < T0.plus_seconds(86_000).0 {
        at = at.plus_seconds(3000);
        let alive = p.auth.session(&busy, at).await.unwrap();
        assert_eq!(alive.is_some(), at.0 < T0.plus_seconds(86_400).0, "at {at}");
    }
    assert_eq!(
        p.auth
            .session(&busy, T0.plus_seconds(86_400))
            .await
            .unwrap(),
        None
    );
}

async fn an_unknown_token_has_no_session(p: Platform) {
    let token = SessionToken::from_presented("0000");
    assert_eq!(p.auth.session(&token, T0).await.unwrap(), None);
}

async fn purge_removes_only_dead_nonces_and_sessions(p: Platform) {
    let wallet = Wallet::new();
    let stale = p.auth.challenge(&wallet.address(), T0).await.unwrap();
    let fresh = p
        .auth
        .challenge(&wallet.address(), T0.plus_seconds(200))
        .await
        .unwrap();
    assert_eq!(p.auth.purge_expired(T0.plus_seconds(400)).await.unwrap(), 1);
    let refused = p
        .auth
        .sign_in(
            &stale.message,
            &wallet.sign(&stale.message),
            T0.plus_seconds(400),
        )
        .await;
    assert_eq!(refusal_of(refused).await, SignInRefusal::UnknownNonce);
    p.auth
        .sign_in(
            &fresh.message,
            &wallet.sign(&fresh.message),
            T0.plus_seconds(400),
        )
        .await
        .unwrap();
}

async fn the_demo_fleet_seeds_once_and_adds_up(p: Platform) {
    assert_eq!(p.fleet.seed_demo_fleet(300, 7, T0).await.unwrap(), 300);
    assert_eq!(
        p.fleet.seed_demo_fleet(300, 7, T0).await.unwrap(),
        0,
        "seeding twice must not duplicate"
    );
    let summary = p.fleet.network_summary().await.unwrap();
    let t = &summary.totals;
    assert!(t.devices > 250 && t.devices <= 300, "{t:?}");
    assert!(
        t.gpus_idle > 0 && t.gpus_hired > 0 && t.cpu_devices > 0,
        "{t:?}"
    );
    assert!(t.gpus_idle + t.gpus_hired <= t.gpus_verified && t.gpus_verified <= t.gpus);
    let by_model_idle: i64 = summary.by_model.iter().map(|m| m.gpus_idle).sum();
    let by_model_hired: i64 = summary.by_model.iter().map(|m| m.gpus_hired).sum();
    assert_eq!(by_model_idle, t.gpus_idle);
    assert_eq!(by_model_hired, t.gpus_hired);
    assert_eq!(
        summary.by_country.iter().map(|c| c.gpus).sum::<i64>(),
        t.gpus
    );
    assert_eq!(summary.by_country.len() as i64, t.countries);
    assert!(summary.by_country.iter().any(|c| c.name == "United States"));

    // Its uptime history: a row per day and per recent hour for each device in service, enough
    // for the next block to reward them.
    let in_service = stored_number(
        &p.store,
        "SELECT COUNT(*) FROM devices WHERE simulated AND status IN ('idle', 'hired', 'paused', 'down') AND $1 = $1",
        "x",
    )
    .await
    .unwrap();
    let rows = p.fleet.seed_uptime_history(3, 6, T0).await.unwrap();
    assert_eq!(rows as i64, in_service * 9);
    assert_eq!(
        p.fleet.seed_uptime_history(3, 6, T0).await.unwrap(),
        0,
        "a second run adds nothing"
    );
    let block = domain::rewards::block_of(T0.0) - 1;
    assert!(p.rewards.close(block, T0).await.unwrap());
    let closed = &p.rewards.blocks(None, 1).await.unwrap()[0];
    let verified_in_service = stored_number(
        &p.store,
        "SELECT COUNT(*) FROM devices WHERE simulated AND verified \
         AND status IN ('idle', 'hired', 'paused', 'down') AND $1 = $1",
        "x",
    )
    .await
    .unwrap();
    assert_eq!(closed.devices_rewarded, verified_in_service, "{closed:?}");
}

async fn a_store_reopens_with_its_data(p: Platform, url: String) {
    p.fleet.seed_demo_fleet(20, 1, T0).await.unwrap();
    let (_, credential) = registered_device(&p, &owner(1), &["NVIDIA H100 80GB HBM3"]).await;
    // Changes after the start-up rebuild reach the index as they commit: the summary the
    // running index gives must equal the one a rebuild from the database gives.
    let (paused, _) = registered_device(&p, &owner(1), &["NVIDIA GeForce RTX 4090"]).await;
    p.worker.pause(&owner(1), &paused, T0).await.unwrap();
    let (removed, _) = registered_device(&p, &owner(1), &["NVIDIA GeForce RTX 4090"]).await;
    p.worker.remove(&owner(1), &removed, T0).await.unwrap();
    let before = p.fleet.network_summary().await.unwrap();
    p.store.close().await;
    let reopened = Platform::new(Store::open(&url).await.unwrap(), config());
    reopened.store.ping().await.unwrap();
    // The fleet index and the live fleet come back from the database: the same network, and
    // the agent's credential still works.
    assert_eq!(reopened.agents.rebuild(T0).await.unwrap(), 2);
    assert_eq!(reopened.fleet.network_summary().await.unwrap(), before);
    reopened.agents.authenticate(&credential, T0).await.unwrap();
}

fn owner(n: u8) -> WalletAddress {
    WalletAddress::from_public_key(&[n; 32])
}

fn hardware(gpus: &[&str]) -> HardwareReport {
    HardwareReport {
        os: OperatingSystem::Linux,
        cpu_model: "AMD EPYC 9654".into(),
        cpu_cores: 96,
        ram_gb: 512,
        disk_gb: 2000,
        gpus: gpus
            .iter()
            .map(|name| GpuReport {
                name: (*name).into(),
                memory_mb: 81_559,
            })
            .collect(),
    }
}

fn form(name: &str) -> NewDevice {
    NewDevice {
        name: name.into(),
        os: OperatingSystem::Linux,
        kind: DeviceKind::Gpu,
        country: "de".into(),
    }
}

fn register_request(token: &str, gpus: &[&str]) -> RegisterRequest {
    RegisterRequest {
        token: token.into(),
        agent_version: "0.1.0".into(),
        simulated: true,
        hardware: hardware(gpus),
    }
}

/// Adds a device for `owner` and registers its agent at T0; returns (device id, credential).
async fn registered_device(p: &Platform, owner: &WalletAddress, gpus: &[&str]) -> (String, String) {
    let ticket = p.worker.add_device(owner, form("node"), T0).await.unwrap();
    let registered = p
        .agents
        .register(register_request(&ticket.token, gpus), T0)
        .await
        .unwrap();
    assert_eq!(registered.device_id, ticket.device_id);
    (registered.device_id, registered.credential)
}

fn heartbeat_at(at: UnixMillis, utilisation: Utilisation) -> Heartbeat {
    Heartbeat {
        sent_at: at.0,
        agent_version: "0.1.0".into(),
        utilisation,
        workloads: Vec::new(),
    }
}

fn refusal(result: Result<impl std::fmt::Debug, Error>) -> AgentRefusal {
    match result {
        Err(Error::AgentRefused(refusal)) => refusal,
        other => panic!("expected an agent refusal, got {other:?}"),
    }
}

async fn registration_tokens_work_once_and_expire(p: Platform) {
    let me = owner(1);
    let ticket = p
        .worker
        .add_device(&me, form(" rack-1 "), T0)
        .await
        .unwrap();
    assert_eq!(
        ticket.command,
        format!(
            "gpu-commons-agent --server http://gpu.test:3000 --token {}",
            ticket.token
        )
    );
    let listed = p.worker.devices_of(&me, T0).await.unwrap();
    assert_eq!(listed.awaiting_agent.len(), 1);
    assert_eq!(listed.awaiting_agent[0].name, "rack-1");

    let request = register_request(&ticket.token, &["NVIDIA H100 80GB HBM3"; 2]);
    p.agents.register(request.clone(), T0).await.unwrap();
    assert_eq!(
        refusal(p.agents.register(request, T0).await),
        AgentRefusal::TokenUsed
    );
    assert_eq!(
        refusal(
            p.agents
                .register(register_request("gcr_nope", &[]), T0)
                .await
        ),
        AgentRefusal::TokenUnknown
    );
    let late = p.worker.add_device(&me, form("late"), T0).await.unwrap();
    assert_eq!(
        refusal(
            p.agents
                .register(register_request(&late.token, &[]), T0.plus_seconds(3601))
                .await
        ),
        AgentRefusal::TokenExpired
    );
    let listed = p.worker.devices_of(&me, T0).await.unwrap();
    assert_eq!(listed.devices.len(), 1);
    assert_eq!(
        listed.devices[0].gpu_model.as_deref(),
        Some("H100 80GB SXM")
    );
    assert_eq!(listed.devices[0].gpu_count, 2);
    assert_eq!(listed.devices[0].country, "DE");
    assert!(matches!(
        p.worker.add_device(&me, form(""), T0).await,
        Err(Error::Invalid(m)) if m.contains("give the device a name")
    ));
}

async fn a_device_is_verified_by_proof_of_work_and_goes_down_when_silent(p: Platform) {
    let me = owner(2);
    let (id, credential) = registered_device(&p, &me, &["NVIDIA H100 80GB HBM3"; 2]).await;
    assert_eq!(p.agents.authenticate(&credential, T0).await.unwrap(), id);
    let calm = Utilisation::default();

    let t1 = T0.plus_seconds(5);
    let reply = p
        .agents
        .heartbeat(&id, heartbeat_at(t1, calm), None, t1)
        .await
        .unwrap();
    assert_eq!(reply.status, DeviceStatus::Pending);
    assert!(reply.speed_test_due);
    let challenge = reply.challenge.expect("a new device is challenged at once");
    assert_eq!(challenge.products, 2, "one product per GPU");

    // A lazy answer (another seed's work) fails and the device stays pending.
    let wrong = domain::proof_of_work::solve(
        &domain::proof_of_work::Challenge {
            seed: 1,
            ..challenge.clone()
        },
        |_| {},
    );
    let outcome = p
        .agents
        .answer_challenge(&id, &challenge.id, wrong, t1)
        .await
        .unwrap();
    assert!(!outcome.passed);
    assert_eq!(outcome.status, DeviceStatus::Pending);
    assert!(outcome.reason.contains("1 of 3"), "{}", outcome.reason);
    assert_eq!(
        refusal(
            p.agents
                .answer_challenge(
                    &id,
                    &challenge.id,
                    domain::proof_of_work::solve(&challenge, |_| {}),
                    t1
                )
                .await
        ),
        AgentRefusal::NoSuchChallenge(challenge.id.clone())
    );

    // The next heartbeat carries a fresh challenge; the honest answer verifies the device.
    let t2 = T0.plus_seconds(10);
    let retry = p
        .agents
        .heartbeat(&id, heartbeat_at(t2, calm), None, t2)
        .await
        .unwrap()
        .challenge
        .unwrap();
    assert_ne!(retry.id, challenge.id);
    let outcome = p
        .agents
        .answer_challenge(
            &id,
            &retry.id,
            domain::proof_of_work::solve(&retry, |_| {}),
            t2,
        )
        .await
        .unwrap();
    assert!(outcome.passed, "{outcome:?}");
    assert_eq!(outcome.status, DeviceStatus::Idle);

    // Idle and busy with foreign work: a recorded violation.
    let busy = Utilisation {
        gpu_percent: 90,
        cpu_percent: 5,
        memory_percent: 10,
    };
    let t3 = T0.plus_seconds(20);
    let reply = p
        .agents
        .heartbeat(&id, heartbeat_at(t3, busy), None, t3)
        .await
        .unwrap();
    assert_eq!(reply.status, DeviceStatus::Idle);
    assert!(
        reply.challenge.is_none(),
        "verified devices are re-challenged only later"
    );

    // Skewed clocks are refused.
    assert!(matches!(
        refusal(
            p.agents
                .heartbeat(&id, heartbeat_at(T0, calm), None, T0.plus_seconds(3600))
                .await
        ),
        AgentRefusal::ClockSkew { .. }
    ));

    // Silence past the window: down; the next heartbeat brings it back.
    assert_eq!(p.agents.sweep(T0.plus_seconds(40)).await.unwrap(), 0);
    assert_eq!(p.agents.sweep(T0.plus_seconds(51)).await.unwrap(), 1);
    let detail = p
        .worker
        .device_detail(&me, &id, T0.plus_seconds(51))
        .await
        .unwrap();
    assert_eq!(detail.summary.status, DeviceStatus::Down);
    assert_eq!(detail.status_reason, "stopped sending heartbeats");
    let t4 = T0.plus_seconds(60);
    let reply = p
        .agents
        .heartbeat(&id, heartbeat_at(t4, calm), None, t4)
        .await
        .unwrap();
    assert_eq!(reply.status, DeviceStatus::Idle);
    assert_eq!(
        p.agents.flush(Flush::Due, t4).await.unwrap(),
        0,
        "an online device's heartbeats stay in memory for a while"
    );
    assert_eq!(p.agents.flush(Flush::Everything, t4).await.unwrap(), 1);

    let detail = p.worker.device_detail(&me, &id, t4).await.unwrap();
    assert!(detail.summary.verified);
    assert_eq!(detail.summary.last_heartbeat_at, Some(t4));
    // Online 5 + 5 + 10 s of the minute since it registered; the 40 s of silence do not count.
    assert_eq!(detail.summary.uptime_30d_permille, 333);
    assert_eq!(detail.uptime_days.len(), 30);
    assert_eq!(
        detail.uptime_days.iter().map(|d| d.online_ms).sum::<i64>(),
        20_000
    );
    assert_eq!(detail.utilisation_hours.len(), 48);
    let reported: Vec<u8> = detail
        .utilisation_hours
        .iter()
        .filter_map(|h| h.gpu_percent)
        .collect();
    assert!(
        !reported.is_empty() && reported.iter().all(|&gpu| gpu <= 90),
        "{reported:?}"
    );
    let outcomes: Vec<_> = detail
        .verifications
        .iter()
        .map(|v| v.outcome.unwrap())
        .collect();
    assert_eq!(outcomes, ["passed", "failed"]);
    let history: Vec<_> = detail
        .history
        .iter()
        .map(|h| (h.kind.as_str(), h.to_status))
        .collect();
    assert!(history.contains(&("violation", None)), "{history:?}");
    assert!(
        history.contains(&("status", Some(DeviceStatus::Down))),
        "{history:?}"
    );
    assert_eq!(
        history.last(),
        Some(&("status", Some(DeviceStatus::Pending)))
    );
}

/// The server times each round; the test sets when each upload "arrived" and "finished", so
/// the upload rates are exact and the download rates only bounded (the clock counts the test's
/// own hashing as download time).
async fn speed_tests_keep_each_directions_best_round(p: Platform) {
    use platform::agents::SpeedTestUpload;
    use std::time::{Duration, Instant};
    let me = owner(3);
    let (id, _) = registered_device(&p, &me, &["NVIDIA H100 80GB HBM3"]).await;
    let started = p.agents.start_speed_test(&id, T0).await.unwrap();
    assert_eq!(started.rounds, 3);
    let mut results = Vec::new();
    // (download held back, upload taking): round 1 downloads slowly and uploads fast.
    let rounds = [(1_000, 20), (0, 2_000), (500, 500)];
    for (download_held_ms, upload_ms) in rounds {
        let payload: Vec<u8> = p
            .agents
            .speed_test_payload(&id, &started.id)
            .unwrap()
            .flatten()
            .collect();
        let digest = sha256_hex(&payload);
        let arrived = Instant::now() + Duration::from_millis(download_held_ms);
        let upload = SpeedTestUpload {
            arrived,
            finished: arrived + Duration::from_millis(upload_ms),
            bytes: started.bytes,
        };
        let result = p
            .agents
            .finish_speed_test(&id, &started.id, &digest, upload, T0)
            .await
            .unwrap();
        if result.rounds_left > 0 {
            let detail = p.worker.device_detail(&me, &id, T0).await.unwrap();
            assert_eq!(
                detail.download_mb_per_s, None,
                "recorded after the last round"
            );
        }
        results.push(result);
    }
    let rounds_left: Vec<u32> = results.iter().map(|r| r.rounds_left).collect();
    assert_eq!(rounds_left, [2, 1, 0]);
    let upload_rate = |ms: u64| (started.bytes / (ms * 1000)) as i64;
    let [first, second, last] = &results[..] else {
        unreachable!()
    };
    assert_eq!(first.upload_mb_per_s, upload_rate(20));
    assert!(first.download_mb_per_s <= (started.bytes / 1_000_000) as i64);
    // Round 2's download (nothing held back) beats round 1's; round 1's upload stays the best.
    assert!(
        second.download_mb_per_s > first.download_mb_per_s,
        "{results:?}"
    );
    assert_eq!(second.upload_mb_per_s, upload_rate(20));
    assert_eq!(last.download_mb_per_s, second.download_mb_per_s);
    assert_eq!(last.upload_mb_per_s, upload_rate(20));
    let detail = p.worker.device_detail(&me, &id, T0).await.unwrap();
    assert_eq!(detail.download_mb_per_s, Some(last.download_mb_per_s));
    assert_eq!(detail.upload_mb_per_s, Some(last.upload_mb_per_s));
    assert_eq!(detail.latency_ms, Some(last.latency_ms));
    assert_eq!(detail.summary.tier, last.tier);
    assert!(
        matches!(
            p.agents.speed_test_payload(&id, &started.id),
            Err(Error::NotFound(_))
        ),
        "a finished test serves no more rounds"
    );
}

fn sha256_hex(bytes: &[u8]) -> String {
    <sha2::Sha256 as sha2::Digest>::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A speed test's download cannot be skipped: it comes in bounded chunks, no prefix of it
/// predicts the rest (two rounds differ from their first bytes on), an answer from a forged
/// remainder is refused, and so is one for a download that was never sent in full.
async fn a_speed_test_download_cannot_be_predicted_or_skipped(p: Platform) {
    use platform::agents::{SpeedTestUpload, PAYLOAD_CHUNK_BYTES};
    use std::time::Instant;
    let me = owner(4);
    let (id, _) = registered_device(&p, &me, &["NVIDIA H100 80GB HBM3"]).await;
    let started = p.agents.start_speed_test(&id, T0).await.unwrap();
    let upload = || {
        let now = Instant::now();
        SpeedTestUpload {
            arrived: now,
            finished: now,
            bytes: started.bytes,
        }
    };
    // Round 1: read only the first chunk, forge the rest as zeros.
    let mut payload = p.agents.speed_test_payload(&id, &started.id).unwrap();
    assert_eq!(payload.len(), started.bytes);
    let first = payload.next().unwrap();
    assert_eq!(first.len(), PAYLOAD_CHUNK_BYTES);
    let mut forged = first.clone();
    forged.resize(started.bytes as usize, 0);
    let refused = p
        .agents
        .finish_speed_test(&id, &started.id, &sha256_hex(&forged), upload(), T0)
        .await;
    assert!(
        matches!(&refused, Err(Error::Invalid(m)) if m.contains("not sent in full")),
        "{refused:?}"
    );
    // Round 2 of a new test: everything read, but a forged last chunk.
    let started = p
        .agents
        .start_speed_test(&id, T0.plus_seconds(61))
        .await
        .unwrap();
    let chunks: Vec<Vec<u8>> = p
        .agents
        .speed_test_payload(&id, &started.id)
        .unwrap()
        .collect();
    assert!(chunks.iter().all(|c| c.len() <= PAYLOAD_CHUNK_BYTES));
    assert_ne!(chunks[0], first, "every round's bytes are new");
    let mut received = chunks.concat();
    let last = received.len() - 1;
    received[last] ^= 1;
    let refused = p
        .agents
        .finish_speed_test(&id, &started.id, &sha256_hex(&received), upload(), T0)
        .await;
    assert!(
        matches!(&refused, Err(Error::Invalid(m)) if m.contains("does not match")),
        "{refused:?}"
    );
}

/// A speed test moves tens of MiB through the server: one provider's devices may have only
/// so many under way at once, other providers are not affected, and tests abandoned by an
/// agent stop counting once forgotten (issue 23).
async fn a_provider_has_a_bounded_number_of_speed_tests_under_way(p: Platform) {
    use platform::agents::SPEED_TESTS_PER_PROVIDER;
    let me = owner(5);
    let mut mine = Vec::new();
    for _ in 0..=SPEED_TESTS_PER_PROVIDER {
        mine.push(
            registered_device(&p, &me, &["NVIDIA H100 80GB HBM3"])
                .await
                .0,
        );
    }
    let (theirs, _) = registered_device(&p, &owner(6), &["NVIDIA H100 80GB HBM3"]).await;
    for id in &mine[..SPEED_TESTS_PER_PROVIDER] {
        p.agents.start_speed_test(id, T0).await.unwrap();
    }
    let one_more = &mine[SPEED_TESTS_PER_PROVIDER];
    let refused = refusal(p.agents.start_speed_test(one_more, T0).await);
    assert!(
        matches!(&refused, AgentRefusal::TooSoon(m) if m.contains("at most 4 at once")),
        "{refused:?}"
    );
    p.agents.start_speed_test(&theirs, T0).await.unwrap();
    // The refusal did not count as the device's own test of the minute.
    let forgotten = T0.plus_seconds(301);
    p.agents
        .start_speed_test(one_more, forgotten)
        .await
        .unwrap();
}

/// Enrolments cost nothing to make, so a wallet may have only so many devices waiting for
/// their agent, and add only so many an hour; an agent's registration or an expired token frees
/// a place, and other wallets are not affected.
async fn a_wallet_enrols_a_bounded_number_of_devices(p: Platform) {
    use domain::worker::{MAX_AWAITING_AGENT, MAX_ENROLMENTS_PER_HOUR};
    let me = owner(7);
    let mut tickets = Vec::new();
    for _ in 0..MAX_AWAITING_AGENT {
        tickets.push(p.worker.add_device(&me, form("node"), T0).await.unwrap());
    }
    let refused = p
        .worker
        .add_device(&me, form("node"), T0)
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, Error::Conflict(why) if why.contains("20 of your devices are waiting for their agent")),
        "{refused}"
    );
    p.worker
        .add_device(&owner(8), form("node"), T0)
        .await
        .unwrap();
    p.agents
        .register(
            register_request(&tickets[0].token, &["NVIDIA H100 80GB HBM3"]),
            T0,
        )
        .await
        .unwrap();
    p.worker.add_device(&me, form("node"), T0).await.unwrap();
    assert!(p.worker.add_device(&me, form("node"), T0).await.is_err());
    // An hour on, the waiting tokens have expired.
    let later = T0.plus_seconds(3_601);
    p.worker.add_device(&me, form("node"), later).await.unwrap();

    // However fast its agents register, a wallet adds at most so many an hour.
    let busy = owner(9);
    for n in 0..MAX_ENROLMENTS_PER_HOUR {
        let at = T0.plus_seconds(n);
        let ticket = p.worker.add_device(&busy, form("node"), at).await.unwrap();
        p.agents
            .register(
                register_request(&ticket.token, &["NVIDIA H100 80GB HBM3"]),
                at,
            )
            .await
            .unwrap();
    }
    let at = T0.plus_seconds(MAX_ENROLMENTS_PER_HOUR);
    let refused = p
        .worker
        .add_device(&busy, form("node"), at)
        .await
        .unwrap_err();
    assert!(
        refused
            .to_string()
            .contains("you added 60 devices in the last hour"),
        "{refused}"
    );
    p.worker
        .add_device(&busy, form("node"), T0.plus_seconds(3_601))
        .await
        .unwrap();
}

async fn owners_pause_resume_revoke_and_remove(p: Platform) {
    let me = owner(3);
    let (id, credential) = registered_device(&p, &me, &["NVIDIA GeForce RTX 4090"]).await;
    assert!(matches!(
        p.worker.pause(&owner(9), &id, T0).await,
        Err(Error::NotFound(_))
    ));
    assert_eq!(
        p.worker.pause(&me, &id, T0).await.unwrap().to.status,
        DeviceStatus::Paused
    );
    let reply = p
        .agents
        .heartbeat(&id, heartbeat_at(T0, Utilisation::default()), None, T0)
        .await
        .unwrap();
    assert_eq!(reply.status, DeviceStatus::Paused);
    assert!(
        reply.challenge.is_none(),
        "paused devices are not challenged"
    );
    assert!(matches!(
        p.worker.pause(&me, &id, T0).await,
        Err(Error::Conflict(_))
    ));
    assert_eq!(
        p.worker.resume(&me, &id, T0).await.unwrap().to.status,
        DeviceStatus::Pending
    );

    p.worker.revoke_credential(&me, &id, T0).await.unwrap();
    assert_eq!(
        refusal(p.agents.authenticate(&credential, T0).await),
        AgentRefusal::CredentialRejected
    );
    assert!(
        !p.worker
            .device_detail(&me, &id, T0)
            .await
            .unwrap()
            .credential_active
    );

    assert_eq!(
        p.worker.remove(&me, &id, T0).await.unwrap().to.status,
        DeviceStatus::Terminated
    );
    assert_eq!(
        refusal(p.agents.authenticate(&credential, T0).await),
        AgentRefusal::DeviceRemoved
    );
    assert!(p
        .worker
        .devices_of(&me, T0)
        .await
        .unwrap()
        .devices
        .is_empty());
}

async fn owners_rename_their_devices_with_checked_names(p: Platform) {
    let me = owner(5);
    let (id, _) = registered_device(&p, &me, &["NVIDIA GeForce RTX 4090"]).await;
    assert_eq!(
        p.worker
            .rename(&me, &id, "  rack 2 / gpu 1 ")
            .await
            .unwrap(),
        "rack 2 / gpu 1"
    );
    let listed = p.worker.devices_of(&me, T0).await.unwrap().devices;
    assert_eq!(listed[0].name, "rack 2 / gpu 1");
    assert!(matches!(
        p.worker.rename(&me, &id, "   ").await,
        Err(Error::Invalid(why)) if why.contains("give the device a name")
    ));
    assert!(matches!(
        p.worker.rename(&owner(6), &id, "mine now").await,
        Err(Error::NotFound(_))
    ));
    assert_eq!(
        p.worker.devices_of(&me, T0).await.unwrap().devices[0].name,
        "rack 2 / gpu 1",
        "a refused rename changes nothing"
    );
}

async fn unsupported_hardware_is_kept_with_what_was_reported(p: Platform) {
    let me = owner(4);
    let (id, _) = registered_device(&p, &me, &["Matrox G200"]).await;
    let detail = p.worker.device_detail(&me, &id, T0).await.unwrap();
    assert_eq!(detail.summary.status, DeviceStatus::Unsupported);
    assert_eq!(
        detail.status_reason,
        "hardware 'Matrox G200' is not in the GPU catalog"
    );
    assert_eq!(detail.reported_gpus, "1 × Matrox G200");
    let reply = p
        .agents
        .heartbeat(&id, heartbeat_at(T0, Utilisation::default()), None, T0)
        .await
        .unwrap();
    assert!(reply.challenge.is_none());
}

/// Signs `wallet` in and returns its account id.
async fn account_of(p: &Platform, wallet: &Wallet) -> i64 {
    let challenge = p.auth.challenge(&wallet.address(), T0).await.unwrap();
    let (_, signed_in) = p
        .auth
        .sign_in(&challenge.message, &wallet.sign(&challenge.message), T0)
        .await
        .unwrap();
    signed_in.user_id
}

/// A seeded, verified, measured agent-run fleet: every 23rd device is an H200, with 1, 8, 4
/// and 2 GPUs in turn (30 H200 GPUs on 8 devices in 184).
async fn hireable_fleet(p: &Platform) {
    platform::testing::seed_agent_fleet(&p.store, 184, T0)
        .await
        .unwrap();
    p.agents.rebuild(T0).await.unwrap();
}

fn h200_request(name: &str, quantity: u32) -> DeployRequest {
    DeployRequest {
        name: name.into(),
        kind: ClusterKind::BareMetal,
        purpose: Purpose::Train,
        hardware: "H200 141GB".into(),
        quantity,
        countries: Vec::new(),
        min_tier: None,
        compliance: SecurityCompliance::E2eEncrypted,
        duration_unit: DurationUnit::Hourly,
        duration_count: 2,
        payment: PaymentMethod::Usdc,
        workload: Workload {
            command: "python train.py".into(),
            ..Workload::default()
        },
    }
}

fn usd(dollars: i64) -> MicroUsd {
    MicroUsd::from_micros(dollars * 1_000_000)
}

async fn available(p: &Platform, user: i64) -> MicroUsd {
    p.ledger
        .balance(&Account::UserAvailable(user))
        .await
        .unwrap()
}

/// The ledger agrees with itself and sums to zero, and the active devices' budgets less what
/// they earned add up to their cluster's escrow.
async fn assert_books_balance(p: &Platform, cluster: &str) {
    assert_eq!(p.ledger.audit().await.unwrap(), Vec::<String>::new());
    let escrow = p
        .ledger
        .balance(&Account::ClusterEscrow(cluster.into()))
        .await
        .unwrap();
    let budgets = stored_number(
        &p.store,
        "SELECT CAST(COALESCE(SUM(budget - earned), 0) AS BIGINT) FROM cluster_devices \
         WHERE cluster_id = $1 AND left_at IS NULL",
        cluster,
    )
    .await
    .unwrap();
    assert_eq!(
        escrow.micros(),
        budgets,
        "escrow of {cluster} vs its devices' unearned budgets"
    );
}

/// The first device of `user`'s `cluster` at `at`.
async fn first_device(p: &Platform, user: i64, cluster: &str, at: UnixMillis) -> String {
    p.provisioning
        .cluster(user, cluster, at)
        .await
        .unwrap()
        .members[0]
        .device_id
        .clone()
}

/// The device of `user`'s one-device `cluster`, its agent having reported the workload running
/// at `at`.
async fn report_running(p: &Platform, user: i64, cluster: &str, at: UnixMillis) -> String {
    let device = first_device(p, user, cluster, at).await;
    p.provisioning
        .workload_reported(&device, cluster, WorkloadState::Running, "", None, at)
        .await
        .unwrap();
    device
}

/// On the hireable fleet, a renter credited `credit` runs a 1-GPU H200 cluster named `name`
/// from T0; returns the renter, the cluster and its device.
async fn running_h200(
    p: &Platform,
    credit: MicroUsd,
    name: &str,
) -> (i64, domain::cluster::ClusterSummary, String) {
    hireable_fleet(p).await;
    let me = account_of(p, &Wallet::new()).await;
    p.ledger
        .operator_credit(me, Asset::Usdc, credit.micros(), "promo", "promotion", T0)
        .await
        .unwrap();
    let cluster = p
        .provisioning
        .deploy(me, &h200_request(name, 1), Some(name), T0)
        .await
        .unwrap();
    let device = report_running(p, me, &cluster.id, T0).await;
    (me, cluster, device)
}

async fn device_status(p: &Platform, device: &str) -> String {
    stored_text(&p.store, "SELECT status FROM devices WHERE id = $1", device)
        .await
        .unwrap()
}

async fn clusters_are_paid_placed_extended_and_settled(p: Platform) {
    hireable_fleet(&p).await;
    let renter = Wallet::new();
    let me = account_of(&p, &renter).await;
    assert!(p
        .ledger
        .operator_credit(
            me,
            Asset::Usdc,
            usd(100).micros(),
            "promo-1",
            "promotion",
            T0
        )
        .await
        .unwrap());
    assert!(!p
        .ledger
        .operator_credit(
            me,
            Asset::Usdc,
            usd(100).micros(),
            "promo-1",
            "promotion",
            T0
        )
        .await
        .unwrap());
    assert_eq!(available(&p, me).await, usd(100));

    // The quote: 3 H200 × 2 h at the catalog price, fillable now from the free supply.
    let request = h200_request("trainer", 3);
    let answer = p.provisioning.quote(&request).unwrap();
    assert!(answer.fillability.fillable, "{:?}", answer.fillability);
    let expected =
        domain::pricing::quote(MicroUsd::from_micros(3_490_000), 3, 2, PaymentMethod::Usdc)
            .unwrap();
    assert_eq!(answer.quote, expected);
    let too_many = p.provisioning.quote(&h200_request("big", 31)).unwrap();
    assert!(!too_many.fillability.fillable);
    assert!(
        !too_many.fillability.alternatives.is_empty(),
        "{:?}",
        too_many.fillability
    );

    // Deploy charges the balance once; the same idempotency key returns the same cluster.
    let cluster = p
        .provisioning
        .deploy(me, &request, Some("click-1"), T0)
        .await
        .unwrap();
    assert_eq!(cluster.status, ClusterStatus::Deploying);
    assert_eq!(cluster.units, 3);
    let again = p
        .provisioning
        .deploy(me, &request, Some("click-1"), T0)
        .await
        .unwrap();
    assert_eq!(again.id, cluster.id);
    // The same key with another request is a mistake, refused rather than answered with the
    // first cluster.
    let reused = p
        .provisioning
        .deploy(me, &h200_request("trainer", 2), Some("click-1"), T0)
        .await
        .unwrap_err();
    assert!(
        matches!(&reused, Error::Invalid(m) if m.contains("'click-1' was already used for another request")),
        "{reused}"
    );
    let after_deploy = MicroUsd::from_micros(usd(100).micros() - expected.total.micros());
    assert_eq!(available(&p, me).await, after_deploy);
    assert!(matches!(
        p.provisioning.deploy(me, &request, Some("click-2"), T0).await,
        Err(Error::Conflict(m)) if m.contains("already have a cluster named 'trainer'")
    ));
    assert!(!p
        .provisioning
        .name_available(me, " trainer ")
        .await
        .unwrap());
    assert_books_balance(&p, &cluster.id).await;

    // Another renter neither sees it nor can act on it.
    let other = account_of(&p, &Wallet::new()).await;
    assert!(matches!(
        p.provisioning.cluster(other, &cluster.id, T0).await,
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        p.provisioning.terminate(other, &cluster.id, T0).await,
        Err(Error::NotFound(_))
    ));
    assert!(p
        .provisioning
        .clusters_of(other, None, "")
        .await
        .unwrap()
        .is_empty());

    // The devices are hired (2 + 1 GPUs); it runs once every agent reports running.
    let detail = p.provisioning.cluster(me, &cluster.id, T0).await.unwrap();
    let mut members: Vec<(String, u32)> = detail
        .members
        .iter()
        .map(|m| (m.device_id.clone(), m.units))
        .collect();
    members.sort_by_key(|(_, units)| *units);
    assert_eq!(members.iter().map(|(_, u)| *u).collect::<Vec<_>>(), [1, 2]);
    for (device, _) in &members {
        assert_eq!(device_status(&p, device).await, "hired");
    }
    let t1 = T0.plus_seconds(10);
    p.provisioning
        .workload_reported(
            &members[0].0,
            &cluster.id,
            WorkloadState::Running,
            "",
            None,
            t1,
        )
        .await
        .unwrap();
    let half = p.provisioning.cluster(me, &cluster.id, t1).await.unwrap();
    assert_eq!(half.summary.status, ClusterStatus::Deploying);
    p.provisioning
        .workload_reported(
            &members[1].0,
            &cluster.id,
            WorkloadState::Running,
            "",
            None,
            t1,
        )
        .await
        .unwrap();
    let running = p.provisioning.cluster(me, &cluster.id, t1).await.unwrap();
    assert_eq!(running.summary.status, ClusterStatus::Running);
    assert_eq!(running.summary.running_at, Some(t1.0));
    assert_eq!(running.summary.ends_at, Some(t1.0 + 2 * 3_600_000));
    assert_eq!(running.remaining, expected.escrow());

    // Extend by an hour: charged like a new order, once per key.
    let t2 = t1.plus_seconds(1_800);
    let hour = ExtendRequest {
        duration_unit: DurationUnit::Hourly,
        duration_count: 1,
    };
    let extended = p
        .provisioning
        .extend(me, &cluster.id, &hour, Some("more-1"), t2)
        .await
        .unwrap();
    p.provisioning
        .extend(me, &cluster.id, &hour, Some("more-1"), t2)
        .await
        .unwrap();
    let two_hours = ExtendRequest {
        duration_count: 2,
        ..hour.clone()
    };
    assert!(matches!(
        p.provisioning
            .extend(me, &cluster.id, &two_hours, Some("more-1"), t2)
            .await,
        Err(Error::Invalid(m)) if m.contains("already used for another request")
    ));
    let extra = domain::pricing::quote(MicroUsd::from_micros(3_490_000), 3, 1, PaymentMethod::Usdc)
        .unwrap();
    assert_eq!(extended.hours, 3);
    assert_eq!(
        extended.charged.micros(),
        expected.total.micros() + extra.total.micros()
    );
    assert_eq!(extended.ends_at, Some(t1.0 + 3 * 3_600_000));
    assert_books_balance(&p, &cluster.id).await;

    // The 1-GPU device fails an hour in: its provider is paid for that hour, and the other
    // free 1-GPU H200 takes its place with the rest of its budget.
    let t3 = t1.plus_seconds(3_600);
    let lost = &members[0].0;
    p.provisioning
        .workload_reported(
            lost,
            &cluster.id,
            WorkloadState::Failed,
            "out of memory",
            None,
            t3,
        )
        .await
        .unwrap();
    let after_loss = p.provisioning.cluster(me, &cluster.id, t3).await.unwrap();
    assert_eq!(after_loss.summary.status, ClusterStatus::Running);
    let active: Vec<_> = after_loss
        .members
        .iter()
        .filter(|m| m.left_at.is_none())
        .collect();
    assert_eq!(active.len(), 2);
    assert!(active.iter().all(|m| &m.device_id != lost));
    assert!(
        after_loss
            .events
            .iter()
            .any(|e| e.detail.contains(&format!("device {lost} lost"))
                && e.detail.contains("replaced by")),
        "{:?}",
        after_loss.events
    );
    assert_eq!(device_status(&p, lost).await, "idle");
    assert_books_balance(&p, &cluster.id).await;
    let lost_owner = stored_text(
        &p.store,
        "SELECT owner_wallet FROM devices WHERE id = $1",
        lost,
    )
    .await
    .unwrap();
    let earned = p
        .ledger
        .balance(&Account::ProviderClaimable(lost_owner.clone()))
        .await
        .unwrap();
    // One third of the escrow is the 1-GPU device's; it served 1 of its 3 hours, less 0.25%.
    let its_budget = (expected.escrow().micros() + extra.escrow().micros()) / 3;
    let served = its_budget / 3;
    assert!(
        (earned.micros() - (served - (served * 25 + 5_000) / 10_000)).abs() <= 2,
        "{earned}"
    );
    // The two hours it did not serve are forfeited, shown beside what it earned.
    let hires = p
        .provisioning
        .hires_of(&lost_owner, Some(lost), 10)
        .await
        .unwrap();
    assert_eq!(hires.len(), 1);
    assert!(
        (hires[0].earned.micros() - served).abs() <= 2,
        "{:?}",
        hires[0]
    );
    assert!(
        (hires[0].forfeited.micros() - (its_budget - served)).abs() <= 3,
        "{:?}",
        hires[0]
    );
    let (all_earned, all_forfeited) = p.provisioning.hire_totals(&lost_owner).await.unwrap();
    assert_eq!(
        (all_earned, all_forfeited),
        (hires[0].earned, hires[0].forfeited)
    );

    // Terminated half-way through the rest: the unused half comes back.
    let t4 = t3.plus_seconds(3_600);
    let ended = p.provisioning.terminate(me, &cluster.id, t4).await.unwrap();
    assert_eq!(ended.status, ClusterStatus::Terminated);
    assert!(matches!(
        p.provisioning.terminate(me, &cluster.id, t4).await,
        Err(Error::Conflict(_))
    ));
    let done = p.provisioning.cluster(me, &cluster.id, t4).await.unwrap();
    assert_eq!(done.remaining, MicroUsd::ZERO);
    assert_books_balance(&p, &cluster.id).await;
    let escrow_total = expected.escrow().micros() + extra.escrow().micros();
    let refunded = available(&p, me).await.micros()
        - (usd(100).micros() - expected.total.micros() - extra.total.micros());
    assert!(
        (refunded - escrow_total / 3).abs() <= 3,
        "refunded {refunded} of {escrow_total}"
    );
    for m in &done.members {
        assert!(m.left_at.is_some());
        assert_eq!(device_status(&p, &m.device_id).await, "idle");
    }
    let listed = p
        .provisioning
        .clusters_of(me, Some(ClusterStatus::Terminated), "TRAIN")
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert!(p
        .provisioning
        .clusters_of(me, Some(ClusterStatus::Running), "")
        .await
        .unwrap()
        .is_empty());

    // A cluster whose agents never start fails at its deadline, every cent returned.
    let before = available(&p, me).await;
    let stuck = p
        .provisioning
        .deploy(me, &h200_request("stuck", 2), None, t4)
        .await
        .unwrap();
    assert!(available(&p, me).await < before);
    p.provisioning.sweep(t4.plus_seconds(181)).await.unwrap();
    let failed = p.provisioning.cluster(me, &stuck.id, t4).await.unwrap();
    assert_eq!(failed.summary.status, ClusterStatus::Failed);
    assert!(
        failed.summary.status_reason.contains("fully refunded"),
        "{}",
        failed.summary.status_reason
    );
    assert_eq!(available(&p, me).await, before);
    assert_books_balance(&p, &stuck.id).await;

    // A cluster that runs its whole paid time completes: its provider earns all of its escrow
    // (less the provider fee), nothing comes back, and its device is free again.
    let short = p
        .provisioning
        .deploy(me, &h200_request("short", 1), None, t4)
        .await
        .unwrap();
    let before_expiry = available(&p, me).await;
    let device = report_running(&p, me, &short.id, t4).await;
    let ends = t4.plus_seconds(2 * 3_600);
    // A second before its end it is still running (its first hour settled meanwhile).
    p.provisioning.sweep(ends.plus_seconds(-1)).await.unwrap();
    let last_second = p.provisioning.cluster(me, &short.id, ends).await.unwrap();
    assert_eq!(last_second.summary.status, ClusterStatus::Running);
    assert_eq!(p.provisioning.sweep(ends).await.unwrap(), 1);
    let completed = p.provisioning.cluster(me, &short.id, ends).await.unwrap();
    assert_eq!(completed.summary.status, ClusterStatus::Completed);
    assert_eq!(completed.remaining, MicroUsd::ZERO);
    assert_eq!(
        available(&p, me).await,
        before_expiry,
        "nothing comes back from a full run"
    );
    assert_eq!(device_status(&p, &device).await, "idle");
    assert!(completed.utilisation_hours.len() == 48);
    assert_books_balance(&p, &short.id).await;

    // Too little money: refused with both figures, nothing charged or hired.
    let poor = account_of(&p, &Wallet::new()).await;
    assert!(matches!(
        p.provisioning.deploy(poor, &h200_request("cheap", 1), None, t4).await,
        Err(Error::Conflict(m)) if m.contains("your balance is $0.00")
    ));
    assert!(p
        .provisioning
        .clusters_of(poor, None, "")
        .await
        .unwrap()
        .is_empty());
    // Bad fields are named one by one.
    let mut bad = h200_request("", 0);
    bad.hardware = "Voodoo 2".into();
    match p.provisioning.quote(&bad) {
        Err(Error::InvalidFields(fields)) => {
            let names: Vec<_> = fields.iter().map(|f| f.field.as_str()).collect();
            assert_eq!(names, ["name", "hardware", "quantity"]);
        }
        other => panic!("expected field errors, got {other:?}"),
    }
}

/// Two server processes (two platforms, each with its own fleet index) race for the same
/// devices: the conditional claims let exactly one order have each device.
async fn tokens(p: &Platform, user: i64) -> Tokens {
    p.ledger
        .tokens(&Account::UserAvailable(user))
        .await
        .unwrap()
}

/// What a renter can spend, in dollars and in tokens.
async fn holdings(p: &Platform, user: i64) -> (MicroUsd, Tokens) {
    (available(p, user).await, tokens(p, user).await)
}

/// A hired device that falls silent served until its last heartbeat, not until the silence
/// was noticed: its provider is paid to that heartbeat and the renter gets back the rest,
/// down-after window included. The reason names the device's status.
/// A Ray cluster that loses its head with no device free to replace it makes a surviving
/// device its head, so the others have one to join; the tunnels follow the new head.
async fn a_lost_head_with_no_replacement_is_followed_by_a_survivor(p: Platform) {
    hireable_fleet(&p).await;
    let me = account_of(&p, &Wallet::new()).await;
    p.ledger
        .operator_credit(
            me,
            Asset::Usdc,
            usd(100_000).micros(),
            "promo",
            "promotion",
            T0,
        )
        .await
        .unwrap();
    // Every free H200: none is left to replace a lost one.
    let request = DeployRequest {
        kind: ClusterKind::MegaRay,
        workload: Workload::default(),
        ..h200_request("every-h200", 1)
    };
    let cluster = p
        .provisioning
        .deploy(me, &request, Some("every-h200"), T0)
        .await
        .unwrap();
    let members = p
        .provisioning
        .cluster(me, &cluster.id, T0)
        .await
        .unwrap()
        .members;
    assert!(members.len() >= 3, "{members:?}");
    for m in &members {
        p.provisioning
            .workload_reported(
                &m.device_id,
                &cluster.id,
                WorkloadState::Running,
                "",
                None,
                T0,
            )
            .await
            .unwrap();
    }
    let head = members
        .iter()
        .find(|m| m.role == ClusterRole::Head)
        .unwrap();
    let at = T0.plus_seconds(60);
    p.provisioning
        .workload_reported(
            &head.device_id,
            &cluster.id,
            WorkloadState::Failed,
            "the GPU fell off the bus",
            Some(domain::agent_protocol::FailureCause::Device),
            at,
        )
        .await
        .unwrap();
    let detail = p.provisioning.cluster(me, &cluster.id, at).await.unwrap();
    let current: Vec<_> = detail
        .members
        .iter()
        .filter(|m| m.left_at.is_none())
        .collect();
    assert_eq!(current.len(), members.len() - 1, "no replacement was free");
    let heads: Vec<&str> = current
        .iter()
        .filter(|m| m.role == ClusterRole::Head)
        .map(|m| m.device_id.as_str())
        .collect();
    let expected = current.iter().map(|m| m.device_id.as_str()).min().unwrap();
    assert_eq!(heads, [expected], "one head: the first survivor");
    assert!(
        detail.events.iter().any(|e| e
            .detail
            .contains(&format!("{expected} is the cluster's head now"))),
        "{:?}",
        detail.events
    );
    assert_books_balance(&p, &cluster.id).await;
}

async fn a_device_lost_to_silence_is_paid_to_its_last_heartbeat(p: Platform) {
    let (me, cluster, device) = running_h200(&p, usd(100), "silent").await;
    let heard = T0.plus_seconds(600);
    p.agents
        .heartbeat(
            &device,
            heartbeat_at(heard, Utilisation::default()),
            None,
            heard,
        )
        .await
        .unwrap();
    // Noticed a minute later; the cluster sweep runs later still.
    let noticed = heard.plus_seconds(60);
    assert!(p.agents.sweep(noticed).await.unwrap() >= 1);
    assert_eq!(device_status(&p, &device).await, "down");
    p.provisioning.sweep(noticed.plus_seconds(5)).await.unwrap();

    let owner = stored_text(
        &p.store,
        "SELECT owner_wallet FROM devices WHERE id = $1",
        &device,
    )
    .await
    .unwrap();
    let hire = p
        .provisioning
        .hires_of(&owner, Some(&device), 10)
        .await
        .unwrap()
        .remove(0);
    let budget = MicroUsd::from_micros(hire.earned.micros() + hire.forfeited.micros());
    let ends = T0.0 + 2 * 3_600_000;
    assert_eq!(
        hire.earned,
        domain::pricing::accrued(budget, T0.0, heard.0, ends),
        "paid to the last heartbeat"
    );
    assert!(hire.earned < domain::pricing::accrued(budget, T0.0, noticed.0, ends));
    let detail = p
        .provisioning
        .cluster(me, &cluster.id, noticed.plus_seconds(5))
        .await
        .unwrap();
    assert!(
        detail.events.iter().any(|e| e.detail.contains(&format!(
            "device {device} lost (device {device} is down: stopped sending heartbeats)"
        ))),
        "{:?}",
        detail.events
    );
    assert_books_balance(&p, &cluster.id).await;
}

/// Paid in the token, a cluster takes the renter's tokens at the configured price ($0.25 per
/// GCT here) and runs on dollars like any other; its refunds come back as tokens at the price
/// it was paid at, and the renter's dollars are never touched.
async fn clusters_paid_in_the_token_refund_in_the_token(p: Platform) {
    hireable_fleet(&p).await;
    let me = account_of(&p, &Wallet::new()).await;
    let gct = |units: i64| Tokens::from_units(units * 1_000_000);
    p.ledger
        .operator_credit(
            me,
            Asset::Token,
            gct(10).units(),
            "airdrop-1",
            "airdrop",
            T0,
        )
        .await
        .unwrap();
    let request = DeployRequest {
        payment: PaymentMethod::Token,
        ..h200_request("token-paid", 1)
    };
    let answer = p.provisioning.quote(&request).unwrap();
    let dollars =
        domain::pricing::quote(MicroUsd::from_micros(3_490_000), 1, 2, PaymentMethod::Token)
            .unwrap();
    assert_eq!(answer.quote.total, dollars.total, "no payment fee");
    let paid = answer.quote.in_tokens.expect("priced in tokens").tokens;
    // $6.98 plus the 0.25% reservation fee, at 4 GCT to the dollar.
    assert_eq!(paid, Tokens::from_units(dollars.total.micros() * 4));

    // 10 GCT do not pay 27.9898 GCT: refused with both figures, nothing taken.
    let short = p.provisioning.deploy(me, &request, Some("t-1"), T0).await;
    assert!(
        matches!(&short, Err(Error::Conflict(m)) if m.contains("your token balance is 10 GCT")
            && m.contains("27.9898 GCT ($7.00 at $0.25 per GCT)")),
        "{short:?}"
    );
    assert_eq!(tokens(&p, me).await, gct(10));
    p.ledger
        .operator_credit(
            me,
            Asset::Token,
            gct(90).units(),
            "airdrop-2",
            "airdrop",
            T0,
        )
        .await
        .unwrap();

    // Never ran: all of it back, the fees too, to the last base unit.
    let first = p
        .provisioning
        .deploy(me, &request, Some("t-2"), T0)
        .await
        .unwrap();
    assert_eq!(
        tokens(&p, me).await.units(),
        gct(100).units() - paid.units()
    );
    assert_eq!(available(&p, me).await, MicroUsd::ZERO);
    let detail = p.provisioning.cluster(me, &first.id, T0).await.unwrap();
    assert_eq!(
        detail.token_price,
        Some(TokenPrice::parse_decimal("0.25").unwrap())
    );
    assert_books_balance(&p, &first.id).await;
    p.provisioning.terminate(me, &first.id, T0).await.unwrap();
    assert_eq!(tokens(&p, me).await, gct(100));
    assert_books_balance(&p, &first.id).await;

    // Runs, is extended by an hour at the same price, and ends half way: its provider is paid
    // in dollars for the time served, the renter gets the rest back in tokens.
    let second = p
        .provisioning
        .deploy(
            me,
            &DeployRequest {
                name: "second".into(),
                ..request.clone()
            },
            Some("t-3"),
            T0,
        )
        .await
        .unwrap();
    let device = first_device(&p, me, &second.id, T0).await;
    let t1 = T0.plus_seconds(10);
    p.provisioning
        .workload_reported(&device, &second.id, WorkloadState::Running, "", None, t1)
        .await
        .unwrap();
    let hour = ExtendRequest {
        duration_unit: DurationUnit::Hourly,
        duration_count: 1,
    };
    p.provisioning
        .extend(me, &second.id, &hour, Some("more"), t1)
        .await
        .unwrap();
    let extra =
        domain::pricing::quote(MicroUsd::from_micros(3_490_000), 1, 1, PaymentMethod::Token)
            .unwrap();
    let spent = paid.units() + extra.total.micros() * 4;
    assert_eq!(tokens(&p, me).await.units(), gct(100).units() - spent);
    let half_way = t1.plus_seconds(3 * 1_800);
    let remaining = p
        .provisioning
        .cluster(me, &second.id, half_way)
        .await
        .unwrap()
        .remaining;
    assert!(remaining > MicroUsd::ZERO);
    p.provisioning
        .terminate(me, &second.id, half_way)
        .await
        .unwrap();
    let price = TokenPrice::parse_decimal("0.25").unwrap();
    assert_eq!(
        tokens(&p, me).await.units(),
        gct(100).units() - spent + price.tokens_returned(remaining).units()
    );
    assert_eq!(available(&p, me).await, MicroUsd::ZERO, "dollars untouched");
    let owner = stored_text(
        &p.store,
        "SELECT owner_wallet FROM devices WHERE id = $1",
        &device,
    )
    .await
    .unwrap();
    let earned = p
        .ledger
        .balance(&Account::ProviderClaimable(owner))
        .await
        .unwrap();
    assert!(earned > MicroUsd::ZERO, "the provider is paid in dollars");
    assert_books_balance(&p, &second.id).await;
}

async fn hire_earnings_settle_hourly_and_statements_show_every_movement(p: Platform) {
    use domain::ledger::{statement_csv, MovementKind};
    use domain::pricing::{basis_points, PROVIDER_FEE_BPS};
    let (me, cluster, device) = running_h200(&p, usd(50), "hourly").await;
    let owner = stored_text(
        &p.store,
        "SELECT owner_wallet FROM devices WHERE id = $1",
        &device,
    )
    .await
    .unwrap();
    let provider = Account::ProviderClaimable(owner);
    let claimable = || async { p.ledger.balance(&provider).await.unwrap() };
    let quote = domain::pricing::quote(MicroUsd::from_micros(3_490_000), 1, 2, PaymentMethod::Usdc)
        .unwrap();
    let escrow = quote.escrow().micros();
    let less_fee =
        |gross: i64| gross - basis_points(MicroUsd::from_micros(gross), PROVIDER_FEE_BPS).micros();

    // Half an hour in nothing is due; an hour in, the first hour is paid, once.
    p.provisioning.sweep(T0.plus_seconds(1_800)).await.unwrap();
    assert_eq!(claimable().await, MicroUsd::ZERO);
    let t1 = T0.plus_seconds(3_600);
    p.provisioning.sweep(t1).await.unwrap();
    p.provisioning.sweep(t1).await.unwrap();
    let first_hour = escrow / 2;
    assert_eq!(claimable().await.micros(), less_fee(first_hour));
    assert_books_balance(&p, &cluster.id).await;
    let page = p.provisioning.cluster(me, &cluster.id, t1).await.unwrap();
    assert_eq!(page.remaining.micros(), escrow - first_hour);

    // At the end the rest is paid and the escrow is empty.
    let t2 = T0.plus_seconds(7_200);
    p.provisioning.sweep(t2).await.unwrap();
    let done = p.provisioning.cluster(me, &cluster.id, t2).await.unwrap();
    assert_eq!(done.summary.status, ClusterStatus::Completed);
    assert_eq!(
        claimable().await.micros(),
        less_fee(first_hour) + less_fee(escrow - first_hour)
    );
    assert_eq!(
        p.ledger
            .balance(&Account::ClusterEscrow(cluster.id.clone()))
            .await
            .unwrap(),
        MicroUsd::ZERO
    );
    assert_books_balance(&p, &cluster.id).await;

    // The renter's statement: the charge (with its fees) and the credit, newest first.
    let renter = p
        .ledger
        .statement(&Account::UserAvailable(me), 50)
        .await
        .unwrap();
    let kinds: Vec<MovementKind> = renter.iter().map(|l| l.kind).collect();
    assert_eq!(kinds, [MovementKind::Charge, MovementKind::Credit]);
    assert_eq!(renter[0].amount, -quote.total.micros());
    assert_eq!(renter[0].fees, -quote.fees().micros());
    assert_eq!(renter[0].cluster_id.as_deref(), Some(cluster.id.as_str()));
    assert_eq!(renter[1].amount, usd(50).micros());
    // The provider's: two settlements of this cluster that add up to the balance.
    let earned = p.ledger.statement(&provider, 50).await.unwrap();
    assert_eq!(earned.len(), 2);
    assert!(earned
        .iter()
        .all(|l| l.kind == MovementKind::Earning && l.cluster_id.as_deref() == Some(&*cluster.id)));
    assert_eq!(
        earned.iter().map(|l| l.amount).sum::<i64>(),
        claimable().await.micros()
    );
    assert!(statement_csv(&renter).contains(&format!("charge,\"{}\"", cluster.id)));
}

/// Writes `hours` hours of full uptime ending with `block`'s hour for `device`.
/// The ids of the first `count` devices `seed_agent_fleet` made.
/// A week booked for its discount and ended after a day costs the day's rate: the devices are
/// paid the difference, the rest comes back, and the books balance.
async fn a_week_ended_after_a_day_costs_the_days_rate(p: Platform) {
    use domain::pricing::{early_end_cost, quote};
    hireable_fleet(&p).await;
    let me = account_of(&p, &Wallet::new()).await;
    p.ledger
        .operator_credit(
            me,
            Asset::Usdc,
            usd(2_000).micros(),
            "promo",
            "promotion",
            T0,
        )
        .await
        .unwrap();
    let before = p.ledger.balance(&Account::UserAvailable(me)).await.unwrap();
    let week = DeployRequest {
        duration_unit: DurationUnit::Weekly,
        duration_count: 1,
        ..h200_request("a-week", 1)
    };
    let cluster = p
        .provisioning
        .deploy(me, &week, Some("a-week"), T0)
        .await
        .unwrap();
    report_running(&p, me, &cluster.id, T0).await;
    let day_later = T0.plus_seconds(24 * 3_600);
    p.provisioning
        .terminate(me, &cluster.id, day_later)
        .await
        .unwrap();
    let after = p.ledger.balance(&Account::UserAvailable(me)).await.unwrap();
    let spent = before.micros() - after.micros();
    let detail = p
        .provisioning
        .cluster(me, &cluster.id, day_later)
        .await
        .unwrap();
    let rate = detail.rate_per_unit_hour;
    let booked = quote(rate, 1, 168, PaymentMethod::Usdc).unwrap();
    let day = quote(rate, 1, 24, PaymentMethod::Usdc).unwrap();
    assert_eq!(booked.total, cluster.charged);
    // The week's fees, and the day at the day's 5% rather than the week's 10%.
    let expected =
        booked.fees().micros() + early_end_cost(rate, 1, 24 * 3_600_000, booked.escrow()).micros();
    assert_eq!(spent, expected);
    assert_eq!(
        early_end_cost(rate, 1, 24 * 3_600_000, booked.escrow()),
        day.escrow()
    );
    assert!(
        detail.events.iter().any(|e| e
            .detail
            .contains("re-priced at the rate of a booking that long")),
        "{:#?}",
        detail.events
    );
    assert_eq!(p.ledger.audit().await.unwrap(), Vec::<String>::new());
}

/// Whose failure it is decides who pays: the renter's workload failing as it starts pays the
/// devices for the time they were held and keeps the fees; the device failing refunds all; the
/// renter's workload ending while running leaves the device hired, with no refund and no
/// replacement.
async fn a_renters_failing_workload_is_the_renters_and_a_devices_is_refunded(p: Platform) {
    use domain::cluster::FailureCause;
    hireable_fleet(&p).await;
    let me = account_of(&p, &Wallet::new()).await;
    p.ledger
        .operator_credit(me, Asset::Usdc, usd(100).micros(), "promo", "promotion", T0)
        .await
        .unwrap();
    let balance = || async {
        p.ledger
            .balance(&Account::UserAvailable(me))
            .await
            .unwrap()
            .micros()
    };
    let deployed = |name: &'static str| {
        let p = p.clone();
        async move {
            let cluster = p
                .provisioning
                .deploy(me, &h200_request(name, 1), Some(name), T0)
                .await
                .unwrap();
            let device = first_device(&p, me, &cluster.id, T0).await;
            (cluster, device)
        }
    };
    let held = T0.plus_seconds(600);
    // The device's agent reports the workload failed, ten minutes after the deploy.
    let failed = |device: &str, cluster: &str, detail: &'static str, cause: FailureCause| {
        let (p, device, cluster) = (p.clone(), device.to_owned(), cluster.to_owned());
        async move {
            p.provisioning
                .workload_reported(
                    &device,
                    &cluster,
                    WorkloadState::Failed,
                    detail,
                    Some(cause),
                    held,
                )
                .await
                .unwrap();
        }
    };

    // The renter's command exits 1 as it starts, ten minutes after the deploy.
    let before = balance().await;
    let (cluster, device) = deployed("crashes").await;
    failed(
        &device,
        &cluster.id,
        "the command ended with exit status: 1",
        FailureCause::Workload,
    )
    .await;
    let ended = p.provisioning.cluster(me, &cluster.id, held).await.unwrap();
    assert_eq!(ended.summary.status, ClusterStatus::Failed);
    assert!(
        ended
            .summary
            .status_reason
            .contains("the renter's workload failed"),
        "{}",
        ended.summary.status_reason
    );
    let spent = before - balance().await;
    let charged = cluster.charged.micros();
    // The fees (0.25% + 2%) kept, and ten minutes of the paid hours' escrow paid out.
    let escrow = charged * 10_000 / 10_225;
    let fees = charged - escrow;
    let expected = fees + escrow * 600 / (i64::from(ended.summary.hours) * 3_600);
    assert!(
        (spent - expected).abs() <= 2,
        "spent {spent} of {charged}, expected {expected}"
    );

    // The device's sandbox cannot start: all of it comes back, the fees too.
    let before = balance().await;
    let (cluster, device) = deployed("no-sandbox").await;
    failed(
        &device,
        &cluster.id,
        "this device could not build the workload's sandbox",
        FailureCause::Device,
    )
    .await;
    assert_eq!(balance().await, before, "refunded in full");

    // Running, the renter's command ends badly: the device stays the renter's.
    let (cluster, device) = deployed("ends-badly").await;
    p.provisioning
        .workload_reported(&device, &cluster.id, WorkloadState::Running, "", None, T0)
        .await
        .unwrap();
    failed(
        &device,
        &cluster.id,
        "the command ended with exit status: 2",
        FailureCause::Workload,
    )
    .await;
    let still = p.provisioning.cluster(me, &cluster.id, held).await.unwrap();
    assert_eq!(still.summary.status, ClusterStatus::Running);
    assert!(still.members.iter().all(|m| m.left_at.is_none()));
    assert!(
        still
            .events
            .iter()
            .any(|e| e.detail.contains("the device stays hired")),
        "{:#?}",
        still.events
    );
    assert_eq!(p.ledger.audit().await.unwrap(), Vec::<String>::new());
}

/// Workload output: only a device the cluster hired writes it, a retried shipment is stored
/// once, the renter alone reads it after a cursor, and each device keeps only its newest lines.
async fn workload_output_is_the_hired_devices_and_the_renters_alone(p: Platform) {
    use domain::output::{OutputShipment, ShippedLine};
    use platform::output::KEPT_LINES;
    let (me, cluster, device) = running_h200(&p, usd(100), "printing").await;
    let shipment = |lines: Vec<(i64, &str)>| OutputShipment {
        cluster_id: cluster.id.clone(),
        lines: lines
            .into_iter()
            .map(|(id, text)| ShippedLine {
                id,
                text: text.into(),
            })
            .collect(),
    };
    p.output
        .ship(
            &device,
            &shipment(vec![(10, "epoch 1"), (11, "loss\0 0.5")]),
            T0,
        )
        .await
        .unwrap();
    // A retry of the last shipment with a new line: each line once.
    p.output
        .ship(
            &device,
            &shipment(vec![(11, "loss\0 0.5"), (12, "epoch 2")]),
            T0,
        )
        .await
        .unwrap();
    let texts = |lines: &[domain::output::OutputLine]| -> Vec<String> {
        lines.iter().map(|l| l.text.clone()).collect()
    };
    let all = p.output.read(me, &cluster.id, None, 0, 500).await.unwrap();
    assert_eq!(
        texts(&all.lines),
        ["epoch 1", "loss\u{FFFD} 0.5", "epoch 2"]
    );
    assert!(!all.more);
    assert!(all
        .lines
        .iter()
        .all(|l| l.device_id == device && l.at == T0.0));
    let after = p
        .output
        .read(me, &cluster.id, Some(&device), 11, 500)
        .await
        .unwrap();
    assert_eq!(texts(&after.lines), ["epoch 2"]);
    let first_two = p.output.read(me, &cluster.id, None, 0, 2).await.unwrap();
    assert_eq!(first_two.lines.len(), 2);
    assert!(first_two.more);

    // Another device cannot write into the cluster; another renter cannot read it.
    let stranger_device = seeded_ids(2).into_iter().find(|d| *d != device).unwrap();
    assert!(matches!(
        p.output
            .ship(&stranger_device, &shipment(vec![(1, "injected")]), T0)
            .await,
        Err(Error::NotFound(_))
    ));
    let stranger = account_of(&p, &Wallet::new()).await;
    assert!(matches!(
        p.output.read(stranger, &cluster.id, None, 0, 500).await,
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        p.output
            .ship(
                &device,
                &shipment((0..=1_000).map(|n| (100 + n, "x")).collect()),
                T0
            )
            .await,
        Err(Error::Invalid(_))
    ));

    // A chatty workload keeps only its newest lines.
    let mut next = 1_000;
    for _ in 0..3 {
        let lines: Vec<(i64, &str)> = (next..next + 1_000).map(|n| (n, "spam")).collect();
        next += 1_000;
        p.output.ship(&device, &shipment(lines), T0).await.unwrap();
    }
    let kept = stored_number(
        &p.store,
        "SELECT CAST(COUNT(*) AS BIGINT) FROM workload_output WHERE cluster_id = $1",
        &cluster.id,
    )
    .await
    .unwrap();
    assert_eq!(kept, KEPT_LINES);
    let tail = p.output.tail(me, &cluster.id, 3).await.unwrap();
    assert_eq!(
        tail.iter().map(|l| l.line).collect::<Vec<_>>(),
        [next - 3, next - 2, next - 1]
    );
}

fn seeded_ids(count: usize) -> Vec<String> {
    (0..count)
        .map(|n| {
            platform::testing::seeded_credential(n)
                .split_once('.')
                .unwrap()
                .0
                .to_owned()
        })
        .collect()
}

async fn online_for(p: &Platform, device: &str, block: i64, hours: i64) {
    for back in 0..hours {
        platform::testing::record_uptime(&p.store, device, (block - back) * 3_600_000, 3_600_000)
            .await
            .unwrap();
    }
}

async fn blocks_close_once_and_reward_eligible_devices_by_score(p: Platform, url: String) {
    use domain::money::Tokens;
    hireable_fleet(&p).await;
    let block = domain::rewards::block_of(T0.0) - 1;
    // Seeded devices 0 and 1 are an A100 (1 GPU) and an H100 (2 GPUs) at tiers ultra and high;
    // device 2 has been online only 3 hours; device 3 is not verified.
    let ids = seeded_ids(4);
    online_for(&p, &ids[0], block, 6).await;
    online_for(&p, &ids[1], block, 5).await;
    online_for(&p, &ids[2], block, 3).await;
    online_for(&p, &ids[3], block, 5).await;
    stored_number(
        &p.store,
        "UPDATE devices SET verified = FALSE WHERE id = $1 RETURNING 0",
        &ids[3],
    )
    .await
    .unwrap();

    // Two servers run the scheduler at once: the block closes exactly once.
    let replica = Platform::new(Store::open(&url).await.unwrap(), config());
    let closing_at = UnixMillis((block + 1) * 3_600_000 + 15 * 60_000);
    let (a, b) = tokio::join!(
        p.rewards.close_due(closing_at),
        replica.rewards.close_due(closing_at)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.len() + b.len(), 1, "{a:?} {b:?}");
    assert!(p.rewards.close_due(closing_at).await.unwrap().is_empty());
    assert!(!p.rewards.close(block, closing_at).await.unwrap());

    let blocks = p.rewards.blocks(None, 10).await.unwrap();
    assert_eq!(blocks.len(), 1);
    let closed = &blocks[0];
    assert_eq!(closed.number, block);
    assert_eq!((closed.devices_scored, closed.devices_rewarded), (4, 2));
    // No CPU device was online: their 5% stays in the pool, with the GPU pool's rounding dust.
    let gpu_pool = closed.emission.units() / 100 * 95;
    assert!(
        (gpu_pool - 2..=gpu_pool).contains(&closed.paid.units()),
        "{closed:?}"
    );

    let catalog = domain::catalog::GpuCatalog::builtin();
    let weight = |n: usize, count: u64, tier_percent: u64| {
        let price = catalog.models()[n % catalog.models().len()].default_price_per_hour;
        (price.micros() as u64 / 10_000) * count * tier_percent
    };
    let (w0, w1) = (weight(0, 1, 100), weight(1, 2, 90));
    let pool = closed.emission.units() as u128 / 100 * 95;
    let owner = stored_text(
        &p.store,
        "SELECT owner_wallet FROM devices WHERE id = $1",
        &ids[0],
    )
    .await
    .unwrap();
    let lines = p.rewards.rewards_of(&owner, 10).await.unwrap();
    let reward = |id: &str| lines.iter().find(|l| l.device_id == id).unwrap().clone();
    assert_eq!(
        reward(&ids[0]).reward.units() as u128,
        pool * u128::from(w0) / u128::from(w0 + w1)
    );
    assert_eq!(
        reward(&ids[2]).ineligible.as_deref(),
        Some("online 3 h in a row; rewards start after 5 h")
    );
    assert_eq!(reward(&ids[3]).ineligible.as_deref(), Some("not verified"));
    // The seeded owners hold 8 devices each: all four are this owner's.
    let tokens = p
        .ledger
        .tokens(&Account::ProviderHeld(owner.clone()))
        .await
        .unwrap();
    assert_eq!(tokens, closed.paid, "held until each device's next proof");
    assert_eq!(
        p.ledger
            .tokens(&Account::ProviderClaimable(owner))
            .await
            .unwrap(),
        Tokens::ZERO
    );
    assert_eq!(
        p.ledger.tokens(&Account::RewardsPool).await.unwrap(),
        Tokens::from_units(closed.emission.units() - closed.paid.units())
    );
    assert_eq!(p.ledger.audit().await.unwrap(), Vec::<String>::new());
}

/// An answer to another seed's challenge: well formed, and wrong.
fn forged_answer(challenge: &domain::proof_of_work::Challenge) -> domain::proof_of_work::Answer {
    domain::proof_of_work::solve(
        &domain::proof_of_work::Challenge {
            seed: challenge.seed ^ 1,
            ..challenge.clone()
        },
        |_| {},
    )
}

/// Seeded devices passed a proof at T0: their next is due at most six hours later.
const PROOF_DUE: UnixMillis = UnixMillis(T0.0 + 6 * 3_600_000 + 60_000);

/// The challenge `device`'s heartbeat at `at` brings, if a proof is due.
async fn challenge_at(
    p: &Platform,
    device: &str,
    at: UnixMillis,
) -> Option<domain::proof_of_work::Challenge> {
    p.agents
        .heartbeat(device, heartbeat_at(at, Utilisation::default()), None, at)
        .await
        .unwrap()
        .challenge
}

/// `device`'s answer to `challenge` at `at`: solved when `honest`, else forged.
async fn answer_at(
    p: &Platform,
    device: &str,
    challenge: &domain::proof_of_work::Challenge,
    honest: bool,
    at: UnixMillis,
) -> domain::agent_protocol::VerificationOutcome {
    let answer = if honest {
        domain::proof_of_work::solve(challenge, |_| {})
    } else {
        forged_answer(challenge)
    };
    p.agents
        .answer_challenge(device, &challenge.id, answer, at)
        .await
        .unwrap()
}

/// Issue 23: a device whose proof of hardware, due in an hour, fails earns nothing that hour,
/// even though it passes the next one before the block closes and is verified again; the
/// honest device beside it is paid. Proofs come at random times, never later than the
/// longest gap after the last pass.
async fn a_failed_proof_forfeits_the_hours_reward(p: Platform, _url: String) {
    hireable_fleet(&p).await;
    let ids = seeded_ids(2);
    let (faker, honest) = (&ids[0], &ids[1]);
    let due = PROOF_DUE;
    let block = domain::rewards::block_of(due.0);
    let challenge = challenge_at(&p, faker, due)
        .await
        .expect("a proof is due within the longest gap");
    assert!(!answer_at(&p, faker, &challenge, false, due).await.passed);
    // The honest answer to the next challenge verifies it again within the same hour.
    let later = UnixMillis(due.0 + 60_000);
    let retry = challenge_at(&p, faker, later).await.unwrap();
    let passed = answer_at(&p, faker, &retry, true, later).await;
    assert!(passed.passed && passed.status == DeviceStatus::Idle);

    online_for(&p, faker, block, 6).await;
    online_for(&p, honest, block, 6).await;
    let closing_at = UnixMillis((block + 1) * 3_600_000 + 15 * 60_000);
    p.rewards.close_due(closing_at).await.unwrap();
    let owner = stored_text(
        &p.store,
        "SELECT owner_wallet FROM devices WHERE id = $1",
        faker,
    )
    .await
    .unwrap();
    let lines = p.rewards.rewards_of(&owner, 10).await.unwrap();
    let line = |id: &str| lines.iter().find(|l| l.device_id == *id).unwrap().clone();
    assert_eq!(
        line(faker).ineligible.as_deref(),
        Some("failed or missed a proof of its hardware this hour: its reward is forfeited")
    );
    assert_eq!(line(faker).reward.units(), 0);
    assert!(line(honest).reward.units() > 0, "{:?}", line(honest));
    assert_eq!(p.ledger.audit().await.unwrap(), Vec::<String>::new());
}

/// A provider caught failing one device's proof has every other device of theirs prove its
/// hardware at its next heartbeat, not hours later at its drawn time; other providers' devices
/// keep theirs (issue 23).
async fn a_failed_proof_brings_the_providers_other_devices_to_proof(p: Platform, _url: String) {
    hireable_fleet(&p).await;
    let ids = seeded_ids(9);
    // Seeded devices 0–7 share an owner; device 8 has another.
    let (faker, sibling, stranger) = (&ids[0], &ids[1], &ids[8]);
    let due = PROOF_DUE;
    // The sibling and the stranger pass: their next proofs are drawn 1.5–6 h away.
    for honest in [sibling, stranger] {
        let challenge = challenge_at(&p, honest, due).await.expect("a proof is due");
        assert!(answer_at(&p, honest, &challenge, true, due).await.passed);
    }
    let soon = UnixMillis(due.0 + 60_000);
    assert!(
        challenge_at(&p, sibling, soon).await.is_none(),
        "not due yet"
    );
    // The faker's forged answer fails.
    let challenge = challenge_at(&p, faker, soon).await.expect("a proof is due");
    assert!(!answer_at(&p, faker, &challenge, false, soon).await.passed);
    let next = UnixMillis(soon.0 + 1_000);
    assert!(
        challenge_at(&p, sibling, next).await.is_some(),
        "the same provider's device proves its hardware again at once"
    );
    assert!(
        challenge_at(&p, stranger, next).await.is_none(),
        "another provider's device keeps its drawn time"
    );
}

/// DESIGN.md §3's idle caps with consequences: a device busy with other work while idle forfeits
/// that hour's block reward; the third violation within a day blocks it for abuse until an
/// operator lifts the block (then it is verified again); paused devices earn no uptime.
async fn idle_cap_violations_forfeit_rewards_and_repeated_ones_block(p: Platform, url: String) {
    hireable_fleet(&p).await;
    let ids = seeded_ids(2);
    let (cheat, honest) = (&ids[0], &ids[1]);
    let block = domain::rewards::block_of(T0.0) - 1;
    let hour = block * 3_600_000;
    let busy = Utilisation {
        gpu_percent: 95,
        cpu_percent: 5,
        memory_percent: 10,
    };
    let calm = Utilisation::default();

    // Busy with other work while idle, inside the block's hour: recorded, nothing else yet.
    let t1 = UnixMillis(hour + 10 * 60_000);
    let reply = p
        .agents
        .heartbeat(cheat, heartbeat_at(t1, busy), None, t1)
        .await
        .unwrap();
    assert_eq!(reply.status, DeviceStatus::Idle);
    online_for(&p, cheat, block, 6).await;
    online_for(&p, honest, block, 6).await;
    let closing_at = UnixMillis((block + 1) * 3_600_000 + 15 * 60_000);
    p.rewards.close_due(closing_at).await.unwrap();
    let cheat_owner = stored_text(
        &p.store,
        "SELECT owner_wallet FROM devices WHERE id = $1",
        cheat,
    )
    .await
    .unwrap();
    let lines = p.rewards.rewards_of(&cheat_owner, 10).await.unwrap();
    let line = |id: &str| lines.iter().find(|l| l.device_id == id).unwrap().clone();
    assert_eq!(
        line(cheat).ineligible.as_deref(),
        Some("busy with other work while idle this hour: its reward is forfeited")
    );
    assert_eq!(line(cheat).reward.units(), 0);
    assert!(line(honest).reward.units() > 0, "{:?}", line(honest));

    // Violations are counted at most hourly; the third within a day blocks for abuse.
    for n in 1..=2 {
        let t = UnixMillis(t1.0 + n * 3_600_000);
        p.agents
            .heartbeat(cheat, heartbeat_at(t, busy), None, t)
            .await
            .unwrap();
    }
    assert_eq!(device_status(&p, cheat).await, "blocked");
    let t3 = UnixMillis(t1.0 + 2 * 3_600_000 + 1_000);
    let reply = p
        .agents
        .heartbeat(cheat, heartbeat_at(t3, calm), None, t3)
        .await
        .unwrap();
    assert_eq!(reply.status, DeviceStatus::Blocked);
    assert!(
        reply.reason.contains("3 idle-cap violations within a day"),
        "{}",
        reply.reason
    );
    assert!(
        reply.challenge.is_none(),
        "a blocked device is not verified"
    );

    // Only a blocked device can be unblocked. The operator's command runs in its own process
    // (here a second platform on the same database); the serving one learns of it from the
    // device's heartbeats, and the device must pass verification again.
    let operator = Platform::new(Store::open(&url).await.unwrap(), config());
    let refused = operator.agents.unblock(honest, t3).await.unwrap_err();
    assert!(
        refused.to_string().contains("only a blocked device"),
        "{refused}"
    );
    let lifted = operator.agents.unblock(cheat, t3).await.unwrap();
    assert!(lifted.contains("verification again"), "{lifted}");
    assert_eq!(device_status(&p, cheat).await, "pending");
    let t4 = UnixMillis(t3.0 + 61_000);
    let reply = p
        .agents
        .heartbeat(cheat, heartbeat_at(t4, calm), None, t4)
        .await
        .unwrap();
    assert_eq!(reply.status, DeviceStatus::Pending);
    let t4 = UnixMillis(t4.0 + 5_000);
    let reply = p
        .agents
        .heartbeat(cheat, heartbeat_at(t4, calm), None, t4)
        .await
        .unwrap();
    assert!(reply.challenge.is_some(), "challenged again");

    // A paused device heartbeats on but earns no uptime.
    let me = owner(5);
    let (paused, _) = registered_device(&p, &me, &["NVIDIA H100 80GB HBM3"]).await;
    p.worker.pause(&me, &paused, t4).await.unwrap();
    for n in 0..3 {
        let t = UnixMillis(t4.0 + n * 5_000);
        let reply = p
            .agents
            .heartbeat(&paused, heartbeat_at(t, calm), None, t)
            .await
            .unwrap();
        assert_eq!(reply.status, DeviceStatus::Paused);
    }
    p.agents
        .flush(Flush::Everything, UnixMillis(t4.0 + 10_000))
        .await
        .unwrap();
    let since = t4.0.div_euclid(3_600_000) * 3_600_000;
    let earned = stored_number(
        &p.store,
        &format!(
            "SELECT CAST(COALESCE(SUM(online_ms), 0) AS BIGINT) FROM device_uptime \
             WHERE device_id = $1 AND hour >= {since}"
        ),
        &paused,
    )
    .await
    .unwrap();
    assert_eq!(earned, 0, "a paused device is credited no uptime");
}

/// Every id of a device-list walk with `filter`, page after page from the first.
fn walk_device_list(p: &Platform, filter: &domain::explorer::FleetFilter) -> Vec<String> {
    use domain::explorer::PageAt;
    let mut ids = Vec::new();
    let mut at = PageAt::First;
    loop {
        let page = p.explorer.devices(filter, &at);
        ids.extend(page.rows.iter().map(|r| r.id.clone()));
        match page.next {
            Some(next) => at = PageAt::After(next),
            None => return ids,
        }
    }
}

async fn ids_of(p: &Platform, sql: &str, arg: &str) -> Vec<String> {
    let mut ids = platform::testing::stored_texts(&p.store, sql, arg)
        .await
        .unwrap();
    ids.sort();
    ids
}

/// SOC 2 and HIPAA clusters hire only devices an operator placed in a facility certified for
/// that standard, checked again when hiring (another process may have changed the list) and
/// when replacing a lost device; a lapsed certification attests nothing.
async fn attested_orders_hire_only_attested_devices(p: Platform, url: String) {
    use domain::compliance::Facility;
    hireable_fleet(&p).await;
    let me = account_of(&p, &Wallet::new()).await;
    p.ledger
        .operator_credit(me, Asset::Usdc, usd(1_000).micros(), "grant", "grant", T0)
        .await
        .unwrap();
    let h200s_of = |gpus: &'static str| {
        let p = &p;
        async move {
            ids_of(
                p,
                "SELECT id FROM devices WHERE gpu_model = 'H200 141GB' \
                 AND CAST(gpu_count AS TEXT) = $1",
                gpus,
            )
            .await
        }
    };
    let (ones, eights, fours) = (
        h200s_of("1").await,
        h200s_of("8").await,
        h200s_of("4").await,
    );
    assert_eq!((ones.len(), eights.len(), fours.len()), (2, 2, 2));
    let asking = |compliance, quantity| DeployRequest {
        compliance,
        ..h200_request(&format!("{compliance}-{quantity}"), quantity)
    };
    let hipaa = |quantity| asking(SecurityCompliance::Hipaa, quantity);
    let soc2 = |quantity| asking(SecurityCompliance::Soc2, quantity);

    // Nothing attested: refused with why, and what the order finds without the attestation.
    let none = p.provisioning.quote(&hipaa(1)).unwrap().fillability;
    assert!(!none.fillable);
    assert!(
        none.reasons[0].contains("0 HIPAA-attested H200 141GB GPUs free"),
        "{none:?}"
    );
    assert!(
        none.reasons
            .iter()
            .any(|r| r.contains("without HIPAA attestation it can be placed now")),
        "{none:?}"
    );
    let refused = p.provisioning.deploy(me, &hipaa(1), Some("h-0"), T0).await;
    assert!(matches!(refused, Err(Error::Conflict(_))), "{refused:?}");

    // The operator's list: one facility with both standards, one with SOC 2 only.
    let both = Facility::new("Equinix FR5", "soc2,hipaa", "2099-12-31", T0).unwrap();
    let soc2_only = Facility::new("Colo North", "soc2", "2099-12-31", T0).unwrap();
    p.compliance.set_facility(&both, T0).await.unwrap();
    p.compliance.set_facility(&soc2_only, T0).await.unwrap();
    let unknown = p.compliance.attest("Nowhere", &ones[..1], T0).await;
    assert!(matches!(unknown, Err(Error::NotFound(_))), "{unknown:?}");
    let partly = p
        .compliance
        .attest("Equinix FR5", &[ones[0].clone(), "dev-missing".into()], T0)
        .await;
    assert!(matches!(partly, Err(Error::NotFound(_))), "{partly:?}");
    assert_eq!(
        p.provisioning
            .quote(&hipaa(1))
            .unwrap()
            .fillability
            .placeable,
        0,
        "all or none: the known device was not attested either"
    );
    p.compliance
        .attest("Equinix FR5", &[ones[0].clone(), eights[0].clone()], T0)
        .await
        .unwrap();
    p.compliance
        .attest("Colo North", &fours[..1], T0)
        .await
        .unwrap();
    let listed = p.compliance.facilities().await.unwrap();
    assert_eq!(
        listed
            .iter()
            .map(|f| (f.facility.name.as_str(), f.devices))
            .collect::<Vec<_>>(),
        [("Colo North", 1), ("Equinix FR5", 2)]
    );
    assert!(
        p.provisioning
            .quote(&hipaa(9))
            .unwrap()
            .fillability
            .fillable
    );
    let ten = p.provisioning.quote(&hipaa(10)).unwrap().fillability;
    assert!(!ten.fillable);
    assert!(
        ten.reasons[0].contains("9 HIPAA-attested H200 141GB GPUs free"),
        "{ten:?}"
    );
    assert!(
        p.provisioning
            .quote(&soc2(13))
            .unwrap()
            .fillability
            .fillable
    );
    assert!(
        !p.provisioning
            .quote(&soc2(14))
            .unwrap()
            .fillability
            .fillable
    );
    let device_page = p.explorer.device(&eights[0], T0).await.unwrap();
    assert_eq!(device_page.facility, Some(both.clone()));
    assert!(device_page.attested.meets(SecurityCompliance::Hipaa));

    // A HIPAA cluster lands on exactly the attested devices; when one fails, the free
    // unattested 1-GPU H200 does not replace it.
    let cluster = p
        .provisioning
        .deploy(me, &hipaa(9), Some("h-1"), T0)
        .await
        .unwrap();
    let detail = p.provisioning.cluster(me, &cluster.id, T0).await.unwrap();
    let mut hired: Vec<String> = detail.members.iter().map(|m| m.device_id.clone()).collect();
    hired.sort();
    let mut attested = vec![ones[0].clone(), eights[0].clone()];
    attested.sort();
    assert_eq!(hired, attested);
    for device in &hired {
        p.provisioning
            .workload_reported(device, &cluster.id, WorkloadState::Running, "", None, T0)
            .await
            .unwrap();
    }
    let t1 = T0.plus_seconds(600);
    p.provisioning
        .workload_reported(
            &ones[0],
            &cluster.id,
            WorkloadState::Failed,
            "gone",
            None,
            t1,
        )
        .await
        .unwrap();
    let after = p.provisioning.cluster(me, &cluster.id, t1).await.unwrap();
    assert!(
        after.events.iter().any(|e| e.detail.contains("lost"))
            && !after
                .events
                .iter()
                .any(|e| e.detail.contains("replaced by")),
        "{:?}",
        after.events
    );
    assert_eq!(device_status(&p, &ones[1]).await, "idle");
    assert_books_balance(&p, &cluster.id).await;

    // Another process takes the SOC 2 device out; this one's index has not heard yet, so the
    // hiring transaction's own check refuses it and the money stays with the renter.
    let other_process = Platform::new(Store::open(&url).await.unwrap(), config());
    assert_eq!(
        other_process
            .compliance
            .unattest(&fours[..1], t1)
            .await
            .unwrap(),
        1
    );
    let before = available(&p, me).await;
    let stale = p.provisioning.deploy(me, &soc2(4), Some("s-1"), t1).await;
    assert!(matches!(stale, Err(Error::Conflict(_))), "{stale:?}");
    assert_eq!(available(&p, me).await, before);
    assert_eq!(device_status(&p, &fours[0]).await, "idle");
    p.compliance.refresh(t1).await.unwrap();
    let left = p.provisioning.quote(&soc2(4)).unwrap().fillability;
    assert!(!left.fillable);
    assert_eq!(
        left.placeable, 1,
        "only the idle 1-GPU device is left: {left:?}"
    );

    // A certification that lapses attests nothing, in orders and on the explorer.
    let short = Facility::new("Equinix FR5", "soc2,hipaa", "2026-12-31", T0).unwrap();
    p.compliance.set_facility(&short, t1).await.unwrap();
    assert!(
        p.provisioning
            .quote(&hipaa(1))
            .unwrap()
            .fillability
            .placeable
            > 0
    );
    let later = UnixMillis(short.certified_until.0 + 1);
    p.compliance.refresh(later).await.unwrap();
    assert_eq!(
        p.provisioning
            .quote(&hipaa(1))
            .unwrap()
            .fillability
            .placeable,
        0
    );
    let lapsed = p.explorer.device(&eights[0], later).await.unwrap();
    assert!(lapsed.facility.is_some() && lapsed.attested.is_none());
    assert_eq!(p.ledger.audit().await.unwrap(), Vec::<String>::new());
}

/// The explorer shows what the database holds after registering, hiring, pausing, ending a
/// cluster and closing a block; and nothing private.
async fn the_explorer_shows_what_the_database_holds(p: Platform) {
    use domain::explorer::{FleetFilter, PageAt, SearchOutcome};
    hireable_fleet(&p).await;
    let provider = owner(7);
    let (new_device, credential) =
        registered_device(&p, &provider, &["NVIDIA H100 80GB HBM3"]).await;
    let renter = Wallet::new();
    let me = account_of(&p, &renter).await;
    p.ledger
        .operator_credit(
            me,
            Asset::Usdc,
            usd(100).micros(),
            "promo-x",
            "promotion",
            T0,
        )
        .await
        .unwrap();
    let cluster = p
        .provisioning
        .deploy(me, &h200_request("secret-trainer", 3), Some("x-1"), T0)
        .await
        .unwrap();
    let paused = platform::testing::seeded_credential(5)
        .split_once('.')
        .unwrap()
        .0
        .to_owned();
    p.worker.pause(&provider, &new_device, T0).await.unwrap();
    let block = domain::rewards::block_of(T0.0) - 1;
    online_for(&p, &paused, block, 6).await;
    p.rewards
        .close(block, UnixMillis((block + 1) * 3_600_000 + 60_000))
        .await
        .unwrap();
    let t1 = T0.plus_seconds(2 * 3600 + 60);

    // The device list: counts and every page agree with the table, for several filters.
    let everyone = FleetFilter::default();
    let listed = walk_device_list(&p, &everyone);
    assert_eq!(
        listed,
        ids_of(
            &p,
            "SELECT id FROM devices WHERE status <> $1",
            "terminated"
        )
        .await
    );
    assert_eq!(p.explorer.devices(&everyone, &PageAt::First).matching, 185);
    let hired = p.explorer.filter("", "", "", "hired").unwrap();
    assert_eq!(
        walk_device_list(&p, &hired),
        ids_of(&p, "SELECT id FROM devices WHERE status = $1", "hired").await
    );
    let h200_in_us = p.explorer.filter("H200 141GB", "us", "", "").unwrap();
    assert_eq!(
        walk_device_list(&p, &h200_in_us),
        ids_of(
            &p,
            "SELECT id FROM devices WHERE gpu_model = 'H200 141GB' AND country = $1",
            "US"
        )
        .await
    );
    let last = p.explorer.devices(&everyone, &PageAt::Last);
    assert_eq!(
        last.rows.last().map(|r| r.id.clone()),
        listed.last().cloned()
    );
    assert!(matches!(
        p.explorer.filter("", "", "warp", ""),
        Err(Error::Invalid(m)) if m.contains("connectivity tier 'warp'")
    ));

    // The paused device's page: its status and history as stored, its provider.
    let page = p.explorer.device(&new_device, t1).await.unwrap();
    assert_eq!(page.status, DeviceStatus::Paused);
    assert_eq!(page.provider, provider.as_str());
    assert_eq!(page.gpu_model.as_deref(), Some("H100 80GB SXM"));
    assert!(page
        .history
        .iter()
        .any(|h| h.to_status == Some(DeviceStatus::Paused)));
    assert!(page.history.iter().all(|h| h.kind != "credential"));

    // The cluster: its devices are the hired ones; it ends, and its compute hours show.
    let public = p.explorer.cluster(&cluster.id, T0).await.unwrap();
    let mut members: Vec<String> = public.devices.iter().map(|d| d.device_id.clone()).collect();
    members.sort();
    assert_eq!(
        members,
        ids_of(
            &p,
            "SELECT device_id AS id FROM cluster_devices WHERE cluster_id = $1",
            &cluster.id
        )
        .await
    );
    p.provisioning
        .terminate(me, &cluster.id, T0.plus_seconds(3600))
        .await
        .unwrap();
    let ended = p.explorer.cluster(&cluster.id, t1).await.unwrap();
    assert_eq!(ended.cluster.status, ClusterStatus::Terminated);
    let list = p.explorer.clusters("", "", t1).await.unwrap();
    assert_eq!(list.matching, 1);
    assert_eq!(list.rows[0].id, cluster.id);
    assert_eq!(
        list.rows[0].compute_hours,
        stored_number(
            &p.store,
            "SELECT CAST(SUM(units * (left_at - joined_at)) / 3600000 AS BIGINT) \
             FROM cluster_devices WHERE cluster_id = $1",
            &cluster.id
        )
        .await
        .unwrap()
    );
    assert!(p
        .explorer
        .clusters("running", "", t1)
        .await
        .unwrap()
        .rows
        .is_empty());
    let hired_device = &members[0];
    let served = p.explorer.device(hired_device, t1).await.unwrap();
    assert_eq!(served.clusters_served[0].cluster_id, cluster.id);

    // The block: its lines are the stored ones, its CSV has one row each.
    let detail = p.explorer.block(&block.to_string(), "").await.unwrap();
    let stored_lines = stored_number(
        &p.store,
        "SELECT COUNT(*) FROM block_rewards WHERE block_number = CAST($1 AS BIGINT)",
        &block.to_string(),
    )
    .await
    .unwrap();
    assert_eq!(detail.lines.rows.len() as i64, stored_lines);
    assert_eq!(detail.lines.matching, stored_lines);
    let csv = p.explorer.block_csv(&block.to_string()).await.unwrap();
    assert_eq!(csv.lines().count() as i64, stored_lines + 1);
    let rewarded = p.explorer.device(&paused, t1).await.unwrap();
    assert_eq!(rewarded.rewards[0].block, block);
    assert!(rewarded.rewards[0].reward.units() > 0);
    assert_eq!(p.explorer.blocks("").await.unwrap().rows[0].number, block);
    assert!(matches!(
        p.explorer.block(&(block + 1).to_string(), "").await,
        Err(Error::NotFound(_))
    ));

    // The front page's activity: the cluster, the block's best device, what was paid.
    let activity = p.explorer.activity(t1).await.unwrap();
    assert_eq!(activity.recent_clusters[0].id, cluster.id);
    assert_eq!(activity.trending[0].device_id, paused);
    assert_eq!(
        activity.earnings.rewards_paid.units(),
        stored_number(
            &p.store,
            "SELECT CAST(SUM(paid) AS BIGINT) FROM reward_blocks",
            ""
        )
        .await
        .unwrap()
    );
    assert_eq!(
        activity
            .daily_compute_hours
            .iter()
            .map(|d| d.units)
            .sum::<i64>(),
        list.rows[0].compute_hours,
        "one terminated cluster: the chart's hours are its hours"
    );
    assert_eq!(activity.daily_compute_hours.len(), 30);

    // The provider page of the new device's owner.
    let wallet = p.explorer.wallet(provider.as_str()).await.unwrap();
    assert_eq!(wallet.devices.matching, 1);
    assert_eq!(wallet.devices.rows[0].id, new_device);

    // Search goes straight to what exists and suggests otherwise.
    let found = |path: &str| SearchOutcome::Found(path.to_owned());
    assert_eq!(
        p.explorer.search(&new_device.to_uppercase()).await.unwrap(),
        found(&format!("/explorer/devices/{new_device}"))
    );
    assert_eq!(
        p.explorer.search(&cluster.id).await.unwrap(),
        found(&format!("/explorer/clusters/{}", cluster.id))
    );
    assert_eq!(
        p.explorer.search(&format!("#{block}")).await.unwrap(),
        found(&format!("/explorer/blocks/{block}"))
    );
    assert_eq!(
        p.explorer.search(provider.as_str()).await.unwrap(),
        found(&format!("/explorer/wallets/{}", provider.as_str()))
    );
    let prefix = &new_device[..8];
    match p.explorer.search(prefix).await.unwrap() {
        SearchOutcome::NotFound { suggestions, .. } => assert!(
            suggestions.iter().any(|s| s.label == new_device),
            "{suggestions:?}"
        ),
        other => panic!("{other:?}"),
    }
    match p.explorer.search("H200").await.unwrap() {
        SearchOutcome::NotFound { suggestions, .. } => {
            assert!(
                suggestions[0].path.contains("hardware=H200"),
                "{suggestions:?}"
            )
        }
        other => panic!("{other:?}"),
    }

    // Nothing private in any of it: no renter, cluster name, workload, device name or secret.
    let everything = serde_json::to_string(&(
        p.explorer.devices(&everyone, &PageAt::First),
        p.explorer.device(&new_device, t1).await.unwrap(),
        p.explorer.device(hired_device, t1).await.unwrap(),
        p.explorer.cluster(&cluster.id, t1).await.unwrap(),
        p.explorer.clusters("", "", t1).await.unwrap(),
        p.explorer.block(&block.to_string(), "").await.unwrap(),
        p.explorer.wallet(provider.as_str()).await.unwrap(),
    ))
    .unwrap();
    for private in [
        renter.address(),
        "secret-trainer".to_owned(),
        "python train.py".to_owned(),
        "\"node\"".to_owned(),
        "seeded-5\"".to_owned(),
        credential.clone(),
        credential.split_once('.').unwrap().1.to_owned(),
    ] {
        assert!(!everything.contains(&private), "{private} is shown");
    }
}

async fn concurrent_deploys_never_share_a_device(p: Platform, url: String) {
    hireable_fleet(&p).await;
    let replica = Platform::new(Store::open(&url).await.unwrap(), config());
    replica.agents.rebuild(T0).await.unwrap();
    let (alice, bob) = (
        account_of(&p, &Wallet::new()).await,
        account_of(&p, &Wallet::new()).await,
    );
    for user in [alice, bob] {
        p.ledger
            .operator_credit(
                user,
                Asset::Usdc,
                usd(1_000).micros(),
                &format!("grant-{user}"),
                "grant",
                T0,
            )
            .await
            .unwrap();
    }
    // 20 of the 30 H200 GPUs each: both fit alone, not together.
    let (for_alice, for_bob) = (h200_request("alice", 20), h200_request("bob", 20));
    let (a, b) = tokio::join!(
        p.provisioning.deploy(alice, &for_alice, None, T0),
        replica.provisioning.deploy(bob, &for_bob, None, T0),
    );
    let (won, lost, loser) = match (a, b) {
        (Ok(won), Err(lost)) => (won, lost, bob),
        (Err(lost), Ok(won)) => (won, lost, alice),
        other => panic!("exactly one deploy should win: {other:?}"),
    };
    assert!(matches!(lost, Error::Conflict(_)), "{lost:?}");
    assert_eq!(
        available(&p, loser).await,
        usd(1_000),
        "the loser pays nothing"
    );
    let count = |sql: &'static str| stored_number(&p.store, sql, "");
    let hired = count("SELECT CAST(COUNT(*) AS BIGINT) FROM devices WHERE status = 'hired'")
        .await
        .unwrap();
    let members = count("SELECT CAST(COUNT(DISTINCT device_id) AS BIGINT) FROM cluster_devices")
        .await
        .unwrap();
    assert_eq!(hired, members);
    assert_eq!(won.units, 20);
    assert_books_balance(&p, &won.id).await;
}

/// Seeded sequences of money operations (credits, deploys, running reports, extensions,
/// terminations, failed devices and their replacement, sweeps that settle, expire and fail) keep
/// every invariant after every step: the ledger audits clean, each cluster's escrow equals its
/// active devices' unearned budgets (so a finished cluster's is empty), no balance goes negative
/// (a database check), and replaying an operation with its key moves nothing.
async fn money_operations_keep_the_books(p: Platform) {
    hireable_fleet(&p).await;
    let mut random = Seeded(11);
    let mut renters = Vec::new();
    for n in 0..3 {
        let user = account_of(&p, &Wallet::new()).await;
        p.ledger
            .operator_credit(
                user,
                Asset::Usdc,
                usd(2_000).micros(),
                &format!("seed-{n}"),
                "seed",
                T0,
            )
            .await
            .unwrap();
        p.ledger
            .operator_credit(
                user,
                Asset::Token,
                8_000_000_000,
                &format!("gct-{n}"),
                "seed",
                T0,
            )
            .await
            .unwrap();
        renters.push(user);
    }
    let mut clusters: Vec<(i64, String)> = Vec::new();
    let mut paid_in_tokens = 0;
    let mut now = T0;
    for step in 0..120 {
        now = now.plus_seconds(1 + random.next(1_800) as i64);
        let user = renters[random.next(3) as usize];
        let before = available(&p, user).await;
        let picked = (!clusters.is_empty())
            .then(|| clusters[random.next(clusters.len() as u64) as usize].clone());
        match random.next(7) {
            0 => {
                let key = format!("credit-{step}");
                assert!(p
                    .ledger
                    .operator_credit(user, Asset::Usdc, usd(5).micros(), &key, "promo", now)
                    .await
                    .unwrap());
                assert!(!p
                    .ledger
                    .operator_credit(user, Asset::Usdc, usd(5).micros(), &key, "promo", now)
                    .await
                    .unwrap());
                assert_eq!(
                    available(&p, user).await,
                    MicroUsd::from_micros(before.micros() + usd(5).micros())
                );
            }
            1 => {
                let request = DeployRequest {
                    // A third of the orders are paid in the token.
                    payment: if random.next(3) == 0 {
                        PaymentMethod::Token
                    } else {
                        PaymentMethod::Usdc
                    },
                    ..h200_request(&format!("c{step}"), 1 + random.next(3) as u32)
                };
                let key = format!("deploy-{step}");
                let held = holdings(&p, user).await;
                match p.provisioning.deploy(user, &request, Some(&key), now).await {
                    Ok(made) => {
                        let after = holdings(&p, user).await;
                        assert_ne!(after, held, "step {step}: a deploy is paid");
                        let again = p
                            .provisioning
                            .deploy(user, &request, Some(&key), now)
                            .await
                            .unwrap();
                        assert_eq!(
                            (again.id.clone(), holdings(&p, user).await),
                            (made.id.clone(), after)
                        );
                        paid_in_tokens += usize::from(request.payment == PaymentMethod::Token);
                        clusters.push((user, made.id));
                    }
                    // No supply left for it: nothing moved.
                    Err(Error::Conflict(_)) => assert_eq!(holdings(&p, user).await, held),
                    Err(e) => panic!("step {step}: {e}"),
                }
            }
            2 => {
                if let Some((owner, id)) = &picked {
                    for m in p
                        .provisioning
                        .cluster(*owner, id, now)
                        .await
                        .unwrap()
                        .members
                    {
                        if m.left_at.is_none() {
                            p.provisioning
                                .workload_reported(
                                    &m.device_id,
                                    id,
                                    WorkloadState::Running,
                                    "",
                                    None,
                                    now,
                                )
                                .await
                                .unwrap();
                        }
                    }
                }
            }
            3 => {
                if let Some((owner, id)) = &picked {
                    let hour = ExtendRequest {
                        duration_unit: DurationUnit::Hourly,
                        duration_count: 1,
                    };
                    let key = format!("extend-{step}");
                    let owner_before = holdings(&p, *owner).await;
                    if p.provisioning
                        .extend(*owner, id, &hour, Some(&key), now)
                        .await
                        .is_ok()
                    {
                        let charged = holdings(&p, *owner).await;
                        assert!(charged.0 < owner_before.0 || charged.1 < owner_before.1);
                        p.provisioning
                            .extend(*owner, id, &hour, Some(&key), now)
                            .await
                            .unwrap();
                        assert_eq!(
                            holdings(&p, *owner).await,
                            charged,
                            "step {step}: replayed extension"
                        );
                    }
                }
            }
            4 => {
                if let Some((owner, id)) = &picked {
                    // Refused (409) once it has finished; otherwise it ends now.
                    let _ = p.provisioning.terminate(*owner, id, now).await;
                }
            }
            5 => {
                if let Some((owner, id)) = &picked {
                    let detail = p.provisioning.cluster(*owner, id, now).await.unwrap();
                    if let Some(m) = detail.members.iter().find(|m| m.left_at.is_none()) {
                        p.provisioning
                            .workload_reported(
                                &m.device_id,
                                id,
                                WorkloadState::Failed,
                                "crashed",
                                None,
                                now,
                            )
                            .await
                            .unwrap();
                    }
                }
            }
            _ => {
                p.provisioning.sweep(now).await.unwrap();
            }
        }
        for (_, id) in &clusters {
            assert_books_balance(&p, id).await;
        }
    }
    // In the end every cluster finishes and leaves nothing in escrow.
    p.provisioning
        .sweep(now.plus_seconds(30 * 86_400))
        .await
        .unwrap();
    for (owner, id) in &clusters {
        let done = p.provisioning.cluster(*owner, id, now).await.unwrap();
        assert!(
            !done.summary.status.is_active(),
            "{id}: {:?}",
            done.summary.status
        );
        assert_books_balance(&p, id).await;
    }
    assert!(
        clusters.len() >= 5 && paid_in_tokens >= 1,
        "the sequence deployed {} clusters, {paid_in_tokens} paid in tokens",
        clusters.len()
    );
}

/// A platform at `url` paying through an in-process Solana runtime (real SPL token program):
/// a treasury with SOL for fees and 1,000,000 of each asset.
struct Paying {
    p: Platform,
    rpc: std::sync::Arc<chain::litesvm::LiteSvmRpc>,
    usdc: chain::TokenMint,
    token: chain::TokenMint,
    solana_access: std::sync::Arc<platform::payouts::SolanaAccess>,
}

async fn paying_platform(url: &str, rpc: std::sync::Arc<chain::litesvm::LiteSvmRpc>) -> Paying {
    use chain::Signer;
    let treasury = chain::Keypair::new();
    rpc.airdrop(&treasury.pubkey(), 100_000_000_000);
    let (usdc, token) = (rpc.create_mint(6), rpc.create_mint(6));
    rpc.mint_to(&treasury.pubkey(), &usdc, 1_000_000_000_000);
    rpc.mint_to(&treasury.pubkey(), &token, 1_000_000_000_000);
    let solana_access = std::sync::Arc::new(platform::payouts::SolanaAccess {
        minimums: domain::payout::Minimums::default(),
        cluster: "devnet".into(),
        rpc: rpc.clone(),
        treasury,
        usdc,
        token,
    });
    Paying {
        p: replica_paying(url, &solana_access).await,
        rpc,
        usdc,
        token,
        solana_access,
    }
}

/// Another server process on the same database and chain.
async fn replica_paying(
    url: &str,
    chain: &std::sync::Arc<platform::payouts::SolanaAccess>,
) -> Platform {
    Platform::new(
        Store::open(url).await.unwrap(),
        PlatformConfig {
            solana_access: Some(chain.clone()),
            ..config()
        },
    )
}

fn recipient(wallet: &WalletAddress) -> chain::Pubkey {
    chain::parse_address(wallet.as_str()).unwrap()
}

async fn payouts_pay_real_tokens_once_and_return_what_cannot_land(url: String) {
    use chain::litesvm::{Faults, LiteSvmRpc};
    use domain::money::Asset;
    use domain::payout::PayoutStatus;
    let rpc = std::sync::Arc::new(LiteSvmRpc::default());
    let Paying {
        p,
        rpc,
        usdc,
        token,
        ..
    } = paying_platform(&url, rpc).await;
    let owner = WalletAddress::parse(&Wallet::new().address()).unwrap();
    let claimable = Account::ProviderClaimable(owner.as_str().to_owned());
    platform::testing::grant_claimable(
        &p.store,
        owner.as_str(),
        Asset::Usdc,
        usd(50).micros(),
        "u",
    )
    .await
    .unwrap();
    platform::testing::grant_claimable(&p.store, owner.as_str(), Asset::Token, 20_000_000, "t")
        .await
        .unwrap();

    // Claims below the minimum or above the balance are refused with the figures.
    let refused = p
        .payouts
        .request(&owner, Asset::Usdc, 500_000, None, T0)
        .await
        .unwrap_err();
    assert!(
        refused.to_string().contains("smallest claim is $1.00"),
        "{refused}"
    );
    let refused = p
        .payouts
        .request(&owner, Asset::Usdc, usd(51).micros(), None, T0)
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("up to $50.00"), "{refused}");

    // A claim holds the funds once per key, and the worker pays it on chain.
    let claim = p
        .payouts
        .request(&owner, Asset::Usdc, usd(10).micros(), Some("c1"), T0)
        .await
        .unwrap();
    let again = p
        .payouts
        .request(&owner, Asset::Usdc, usd(10).micros(), Some("c1"), T0)
        .await
        .unwrap();
    assert_eq!(
        (claim.id.clone(), claim.status),
        (again.id, PayoutStatus::Requested)
    );
    assert!(matches!(
        p.payouts
            .request(&owner, Asset::Usdc, usd(11).micros(), Some("c1"), T0)
            .await,
        Err(Error::Invalid(m)) if m.contains("'c1' was already used for a claim of another amount")
    ));
    assert_eq!(p.ledger.balance(&claimable).await.unwrap(), usd(40));
    p.payouts.work(T0).await.unwrap();
    p.payouts.work(T0).await.unwrap();
    let paid = &p.payouts.payouts_of(&owner, 10).await.unwrap()[0];
    assert_eq!(paid.status, PayoutStatus::Confirmed, "{paid:?}");
    assert!(paid
        .explorer_url
        .as_deref()
        .unwrap()
        .contains(paid.signature.as_deref().unwrap()));
    assert_eq!(rpc.token_balance(&recipient(&owner), &usdc), 10_000_000);

    // The answer to the send is lost: the transfer landed anyway and is found, not repeated.
    rpc.set_faults(Faults {
        lost_answer_permille: 1000,
        ..Faults::default()
    });
    p.payouts
        .request(&owner, Asset::Token, 5_000_000, None, T0)
        .await
        .unwrap();
    p.payouts.work(T0).await.unwrap();
    rpc.set_faults(Faults::default());
    p.payouts.work(T0).await.unwrap();
    assert_eq!(rpc.token_balance(&recipient(&owner), &token), 5_000_000);

    // The send never arrives and the blockhash expires: signed anew, landed once.
    let landed_before = rpc.landed();
    rpc.set_faults(Faults {
        lost_send_permille: 1000,
        ..Faults::default()
    });
    let expired = p
        .payouts
        .request(&owner, Asset::Usdc, usd(3).micros(), None, T0)
        .await
        .unwrap();
    p.payouts.work(T0).await.unwrap();
    p.payouts.work(T0).await.unwrap();
    rpc.set_faults(Faults::default());
    rpc.advance_blocks(200);
    p.payouts.work(T0).await.unwrap();
    p.payouts.work(T0).await.unwrap();
    assert_eq!(rpc.token_balance(&recipient(&owner), &usdc), 13_000_000);
    assert_eq!(rpc.landed() - landed_before, 1);
    let signed = stored_number(
        &p.store,
        "SELECT CAST(COUNT(*) AS BIGINT) FROM payout_signatures WHERE payout_id = $1",
        &expired.id,
    )
    .await
    .unwrap();
    assert_eq!(
        signed, 2,
        "signed once, and once more after the first expired"
    );

    // More than the treasury holds fails on chain: the funds come back to the claimable balance.
    let whale = WalletAddress::parse(&Wallet::new().address()).unwrap();
    platform::testing::grant_claimable(
        &p.store,
        whale.as_str(),
        Asset::Token,
        2_000_000_000_000,
        "w",
    )
    .await
    .unwrap();
    let too_big = p
        .payouts
        .request(&whale, Asset::Token, 2_000_000_000_000, None, T0)
        .await
        .unwrap();
    p.payouts.work(T0).await.unwrap();
    p.payouts.work(T0).await.unwrap();
    let failed = p.payouts.payouts_of(&whale, 1).await.unwrap().remove(0);
    assert_eq!(
        (failed.id, failed.status),
        (too_big.id, PayoutStatus::Failed)
    );
    assert!(
        failed.status_reason.contains("claimable again"),
        "{}",
        failed.status_reason
    );
    assert_eq!(
        p.ledger
            .tokens(&Account::ProviderClaimable(whale.as_str().to_owned()))
            .await
            .unwrap()
            .units(),
        2_000_000_000_000
    );
    assert_eq!(rpc.token_balance(&recipient(&whale), &token), 0);

    // The same claim sent twice at once (a retry racing the first) is one payout holding the
    // funds once, never an error, on either backend.
    let race = || {
        p.payouts
            .request(&whale, Asset::Token, 1_000_000, Some("race"), T0)
    };
    let (first, second) = tokio::join!(race(), race());
    assert_eq!(first.unwrap().id, second.unwrap().id);
    assert_eq!(
        p.ledger
            .tokens(&Account::ProviderClaimable(whale.as_str().to_owned()))
            .await
            .unwrap()
            .units(),
        2_000_000_000_000 - 1_000_000
    );

    // Settled and balanced: everything claimed either left for the chain or is claimable.
    assert_eq!(p.ledger.balance(&claimable).await.unwrap(), usd(37));
    assert_eq!(
        p.ledger.tokens(&claimable).await.unwrap().units(),
        15_000_000
    );
    assert_eq!(p.ledger.audit().await.unwrap(), Vec::<String>::new());

    // A server without a treasury refuses claims and says why.
    let unpaid = Platform::new(Store::open(&url).await.unwrap(), config());
    let off = unpaid
        .payouts
        .request(&owner, Asset::Usdc, usd(1).micros(), None, T0)
        .await
        .unwrap_err();
    assert!(off.to_string().contains("not enabled"), "{off}");
}

async fn deposits_credit_once_confirmed_on_chain(url: String) {
    use base64::Engine;
    use chain::Signer;
    use domain::ledger::MovementKind;
    use domain::money::Asset;
    use domain::payout::DepositStatus;
    let rpc = std::sync::Arc::new(chain::litesvm::LiteSvmRpc::default());
    let Paying {
        p,
        rpc,
        usdc,
        solana_access: solana,
        ..
    } = paying_platform(&url, rpc).await;
    let wallet = Wallet::new();
    let user = account_of(&p, &wallet).await;
    let address = WalletAddress::parse(&wallet.address()).unwrap();
    let keypair = chain::Keypair::new_from_array(wallet.0.to_bytes());
    rpc.airdrop(&keypair.pubkey(), 1_000_000_000);
    rpc.mint_to(&keypair.pubkey(), &usdc, 50_000_000);
    let b64 = base64::engine::general_purpose::STANDARD;
    let sign = |transaction: &str, signer: &chain::Keypair| {
        b64.encode(chain::wallet_sign(&b64.decode(transaction).unwrap(), signer).unwrap())
    };

    let small = p
        .deposits
        .prepare(user, &address, Asset::Usdc, 500_000, T0)
        .await
        .unwrap_err();
    assert!(
        small.to_string().contains("smallest deposit is $1.00"),
        "{small}"
    );

    // Built by the server, signed by the wallet, credited once confirmed, once.
    let to_sign = p
        .deposits
        .prepare(user, &address, Asset::Usdc, 20_000_000, T0)
        .await
        .unwrap();
    let forged = p
        .deposits
        .submit(
            user,
            &to_sign.deposit.id,
            &sign(&to_sign.transaction, &chain::Keypair::new()),
        )
        .await;
    assert!(forged
        .unwrap_err()
        .to_string()
        .contains("not signed by your wallet"));
    let signed = sign(&to_sign.transaction, &keypair);
    let sent = p
        .deposits
        .submit(user, &to_sign.deposit.id, &signed)
        .await
        .unwrap();
    assert_eq!(sent.status, DepositStatus::Submitted);
    assert_eq!(
        available(&p, user).await,
        MicroUsd::ZERO,
        "nothing before it is confirmed"
    );
    p.deposits.work(T0).await.unwrap();
    p.deposits
        .submit(user, &to_sign.deposit.id, &signed)
        .await
        .unwrap();
    p.deposits.work(T0).await.unwrap();
    assert_eq!(available(&p, user).await, usd(20));
    assert_eq!(rpc.token_balance(&keypair.pubkey(), &usdc), 30_000_000);
    assert_eq!(
        rpc.token_balance(&solana.treasury.pubkey(), &usdc),
        1_000_020_000_000
    );
    let listed = p.deposits.deposits_of(user, 10).await.unwrap();
    assert_eq!(listed[0].status, DepositStatus::Confirmed);
    // Another user cannot see or submit it.
    let stranger = account_of(&p, &Wallet::new()).await;
    assert!(matches!(
        p.deposits
            .submit(stranger, &to_sign.deposit.id, &signed)
            .await,
        Err(Error::NotFound(_))
    ));

    // More than the wallet holds fails on chain; an unsigned one expires. Nothing moves.
    let too_much = p
        .deposits
        .prepare(user, &address, Asset::Usdc, 40_000_000, T0)
        .await
        .unwrap();
    let _ = p
        .deposits
        .submit(
            user,
            &too_much.deposit.id,
            &sign(&too_much.transaction, &keypair),
        )
        .await
        .unwrap();
    let never_signed = p
        .deposits
        .prepare(user, &address, Asset::Usdc, 2_000_000, T0)
        .await
        .unwrap();
    rpc.advance_blocks(200);
    p.deposits.work(T0).await.unwrap();
    let listed = p.deposits.deposits_of(user, 10).await.unwrap();
    let status_of = |id: &str| listed.iter().find(|d| d.id == id).unwrap().status;
    assert_eq!(status_of(&too_much.deposit.id), DepositStatus::Failed);
    assert_eq!(status_of(&never_signed.deposit.id), DepositStatus::Expired);
    assert_eq!(available(&p, user).await, usd(20));
    let late = p
        .deposits
        .submit(
            user,
            &never_signed.deposit.id,
            &sign(&never_signed.transaction, &keypair),
        )
        .await;
    assert!(matches!(late, Err(Error::Conflict(_))), "{late:?}");
    let lines = p
        .ledger
        .statement(&Account::UserAvailable(user), 10)
        .await
        .unwrap();
    assert_eq!(
        lines.iter().map(|l| l.kind).collect::<Vec<_>>(),
        [MovementKind::Deposit]
    );
    assert_eq!(p.ledger.audit().await.unwrap(), Vec::<String>::new());

    // Crediting reads the chain's record of the landed transaction, not only its status:
    // the same chain seen through a node that lags behind, then one that misreports.
    let node = std::sync::Arc::new(ChainNode {
        chain: rpc.clone(),
        view: std::sync::Mutex::new(NodeView::Behind),
    });
    let through_node = std::sync::Arc::new(platform::payouts::SolanaAccess {
        rpc: node.clone(),
        treasury: solana.treasury.insecure_clone(),
        cluster: solana.cluster.clone(),
        minimums: solana.minimums,
        usdc: solana.usdc,
        token: solana.token,
    });
    let p = replica_paying(&url, &through_node).await;
    let deposit_landed = |amount: i64| {
        let p = &p;
        let address = &address;
        let sign = &sign;
        let keypair = &keypair;
        async move {
            let to_sign = p
                .deposits
                .prepare(user, address, Asset::Usdc, amount, T0)
                .await
                .unwrap();
            p.deposits
                .submit(
                    user,
                    &to_sign.deposit.id,
                    &sign(&to_sign.transaction, keypair),
                )
                .await
                .unwrap();
            p.deposits.work(T0).await.unwrap();
            to_sign.deposit.id
        }
    };
    let status_of = |id: String| {
        let p = &p;
        async move {
            let listed = p.deposits.deposits_of(user, 10).await.unwrap();
            listed.into_iter().find(|d| d.id == id).unwrap()
        }
    };
    let lagging = deposit_landed(3_000_000).await;
    assert_eq!(rpc.token_balance(&keypair.pubkey(), &usdc), 27_000_000);
    assert_eq!(
        status_of(lagging.clone()).await.status,
        DepositStatus::Submitted
    );
    assert_eq!(
        available(&p, user).await,
        usd(20),
        "not before the node has it"
    );
    *node.view.lock().unwrap() = NodeView::Honest;
    p.deposits.work(T0).await.unwrap();
    assert_eq!(status_of(lagging).await.status, DepositStatus::Confirmed);
    assert_eq!(available(&p, user).await, usd(23));

    *node.view.lock().unwrap() = NodeView::Short;
    let short = status_of(deposit_landed(2_000_000).await).await;
    assert_eq!(short.status, DepositStatus::Failed);
    assert!(
        short.status_reason.contains(
            "1999999 base units of usdc reached the treasury, not the 2000000 signed for ($2.00)"
        ),
        "{}",
        short.status_reason
    );
    assert_eq!(available(&p, user).await, usd(23), "nothing credited");
    assert_eq!(p.ledger.audit().await.unwrap(), Vec::<String>::new());
}

/// How [`ChainNode`] answers `getTransaction`.
enum NodeView {
    /// It has the statuses but not the transactions yet.
    Behind,
    Honest,
    /// Every token account gained a micro-unit less than it did.
    Short,
}

/// A real chain seen through an RPC node that is behind or misreports transactions.
struct ChainNode {
    chain: std::sync::Arc<chain::litesvm::LiteSvmRpc>,
    view: std::sync::Mutex<NodeView>,
}

impl chain::SolanaRpc for ChainNode {
    fn latest_blockhash(&self) -> chain::ChainFuture<'_, chain::Blockhash> {
        self.chain.latest_blockhash()
    }

    fn send_transaction<'a>(&'a self, wire: &'a [u8]) -> chain::ChainFuture<'a, chain::Signature> {
        self.chain.send_transaction(wire)
    }

    fn signature_statuses<'a>(
        &'a self,
        signatures: &'a [chain::Signature],
    ) -> chain::ChainFuture<'a, Vec<Option<chain::SignatureStatus>>> {
        self.chain.signature_statuses(signatures)
    }

    fn block_height(&self) -> chain::ChainFuture<'_, u64> {
        self.chain.block_height()
    }

    fn transaction<'a>(
        &'a self,
        signature: &'a chain::Signature,
    ) -> chain::ChainFuture<'a, Option<chain::LandedTransaction>> {
        Box::pin(async move {
            let landed = self.chain.transaction(signature).await?;
            Ok(match *self.view.lock().unwrap() {
                NodeView::Behind => None,
                NodeView::Honest => landed,
                NodeView::Short => landed.map(|mut landed| {
                    for change in &mut landed.token_balances {
                        if change.after > change.before {
                            change.after -= 1;
                        }
                    }
                    landed
                }),
            })
        })
    }
}

#[tokio::test]
async fn sqlite_deposits_credit_once_confirmed_on_chain() {
    deposits_credit_once_confirmed_on_chain(platform::testing::fresh_sqlite_url()).await;
}

#[tokio::test]
async fn postgres_deposits_credit_once_confirmed_on_chain() {
    if let Some(url) = platform::testing::fresh_postgres_url().await {
        deposits_credit_once_confirmed_on_chain(url).await;
    }
}

#[tokio::test]
async fn sqlite_payouts_pay_real_tokens_once_and_return_what_cannot_land() {
    payouts_pay_real_tokens_once_and_return_what_cannot_land(platform::testing::fresh_sqlite_url())
        .await;
}

#[tokio::test]
async fn postgres_payouts_pay_real_tokens_once_and_return_what_cannot_land() {
    if let Some(url) = platform::testing::fresh_postgres_url().await {
        payouts_pay_real_tokens_once_and_return_what_cannot_land(url).await;
    }
}

/// A small seeded sequence (splitmix64) for the fault runs: a failing seed replays exactly.
struct Seeded(u64);

impl Seeded {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) % below.max(1)
    }
}

/// `runs` seeded runs against one database and one chain. Each run claims a few payouts for a
/// new wallet and runs two workers (two server processes) against a chain that loses requests,
/// sends and answers, delays transactions to a later block, lets blockhashes expire, and crashes
/// the worker before or after a send or a status check; then, with the faults gone, the workers finish every payout. After each run:
/// every payout confirmed or failed, the wallet holds on chain exactly what was confirmed, the
/// rest is claimable again, one transfer landed per confirmed payout, and the ledger balances.
async fn payout_fault_runs(runs: u64) {
    use chain::litesvm::{Faults, LiteSvmRpc};
    use domain::money::Asset;
    use domain::payout::PayoutStatus;
    let url = platform::testing::fresh_sqlite_url();
    let rpc = std::sync::Arc::new(LiteSvmRpc::default());
    let Paying {
        p,
        rpc,
        usdc,
        token,
        solana_access,
    } = paying_platform(&url, rpc).await;
    let workers = [p.clone(), replica_paying(&url, &solana_access).await];
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !info.to_string().contains("injected crash") {
            default_hook(info);
        }
    }));
    let mut now = T0;
    let mut crashes = 0;
    for seed in 0..runs {
        let mut random = Seeded(seed);
        let owner = WalletAddress::parse(&Wallet::new().address()).unwrap();
        for asset in [Asset::Usdc, Asset::Token] {
            platform::testing::grant_claimable(
                &p.store,
                owner.as_str(),
                asset,
                100_000_000,
                &format!("{seed}-{asset:?}"),
            )
            .await
            .unwrap();
        }
        let landed_before = rpc.landed();
        let mut claims = Vec::new();
        for n in 0..1 + random.next(3) {
            let asset = if random.next(2) == 0 {
                Asset::Usdc
            } else {
                Asset::Token
            };
            let amount = 1_000_000 * (1 + random.next(30) as i64);
            let via = &workers[random.next(2) as usize];
            let claim = via
                .payouts
                .request(&owner, asset, amount, Some(&format!("k{n}")), now)
                .await
                .unwrap();
            claims.push(claim.id);
        }
        rpc.set_faults(Faults {
            lost_request_permille: random.next(300) as u32,
            lost_send_permille: random.next(500) as u32,
            lost_answer_permille: random.next(300) as u32,
            crash_permille: random.next(200) as u32,
            delayed_permille: random.next(500) as u32,
        });
        for _ in 0..12 {
            let worker = workers[random.next(2) as usize].clone();
            if tokio::spawn(async move { worker.payouts.work(now).await })
                .await
                .is_err()
            {
                crashes += 1;
            }
            if random.next(4) == 0 {
                rpc.advance_blocks(random.next(200));
            }
            // Past the lease of a crashed worker.
            now = now.plus_seconds(61);
        }
        rpc.set_faults(Faults::default());
        for pass in 0..40 {
            let open = stored_number(
                &p.store,
                "SELECT CAST(COUNT(*) AS BIGINT) FROM payouts WHERE owner_wallet = $1 AND status IN ('requested', 'submitted')",
                owner.as_str(),
            )
            .await
            .unwrap();
            if open == 0 {
                break;
            }
            assert!(
                pass < 39,
                "seed {seed}: payouts still open after the faults stopped"
            );
            workers[pass % 2].payouts.work(now).await.unwrap();
            rpc.advance_blocks(if pass % 3 == 2 { 200 } else { 1 });
            now = now.plus_seconds(61);
        }
        let payouts = p.payouts.payouts_of(&owner, 10).await.unwrap();
        assert_eq!(payouts.len(), claims.len(), "seed {seed}");
        let mut confirmed = 0;
        for (asset, mint) in [(Asset::Usdc, &usdc), (Asset::Token, &token)] {
            let paid: i64 = payouts
                .iter()
                .filter(|x| x.asset == asset && x.status == PayoutStatus::Confirmed)
                .map(|x| x.amount)
                .sum();
            assert!(payouts
                .iter()
                .all(|x| matches!(x.status, PayoutStatus::Confirmed | PayoutStatus::Failed)));
            confirmed += payouts
                .iter()
                .filter(|x| x.asset == asset && x.status == PayoutStatus::Confirmed)
                .count();
            assert_eq!(
                rpc.token_balance(&recipient(&owner), mint) as i64,
                paid,
                "seed {seed}: paid on chain"
            );
            let claimable = Account::ProviderClaimable(owner.as_str().to_owned());
            let left = match asset {
                Asset::Usdc => p.ledger.balance(&claimable).await.unwrap().micros(),
                Asset::Token => p.ledger.tokens(&claimable).await.unwrap().units(),
            };
            assert_eq!(
                left,
                100_000_000 - paid,
                "seed {seed}: claimable after the run"
            );
        }
        assert_eq!(
            rpc.landed() - landed_before,
            confirmed,
            "seed {seed}: one transfer per payout"
        );
    }
    assert_eq!(p.ledger.audit().await.unwrap(), Vec::<String>::new());
    eprintln!("{runs} seeded payout fault runs, {crashes} worker crashes injected");
}

/// Runs in CI; `PAYOUT_FAULT_RUNS` sets how many (docs/BENCHMARKS.md has a long run).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payouts_survive_seeded_faults() {
    let runs = std::env::var("PAYOUT_FAULT_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    payout_fault_runs(runs).await;
}

/// A database at `url` with only the migrations before the ledger's second step, holding
/// ledger rows in the first step's form (net entries per account), then opened by the store.
async fn ledger_of_the_first_step_migrates(url: String, backend: &str) {
    let dir = std::env::temp_dir()
        .join(format!("gc_first_step_{}", std::process::id()))
        .join(backend);
    std::fs::create_dir_all(&dir).unwrap();
    let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../migrations")
        .join(backend);
    for entry in std::fs::read_dir(&source).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.as_str() < "20261126" {
            std::fs::copy(&path, dir.join(name)).unwrap();
        }
    }
    sqlx::any::install_default_drivers();
    let raw_url = if backend == "sqlite" {
        format!("{url}?mode=rwc")
    } else {
        url.clone()
    };
    let pool = sqlx::AnyPool::connect(&raw_url).await.unwrap();
    sqlx::migrate::Migrator::new(dir.as_path())
        .await
        .unwrap()
        .run(&pool)
        .await
        .unwrap();
    // A credit, a charge into escrow with a fee, and a settlement paying a provider, the fee
    // and a refund out of that escrow.
    type OldEntries<'a> = &'a [(&'a str, i64)];
    let rows: [(i64, &str, OldEntries); 3] = [
        (
            1,
            "credit:a",
            &[
                ("external:operator", -100_000_000),
                ("user:1:available", 100_000_000),
            ],
        ),
        (
            2,
            "deploy:cl-x",
            &[
                ("user:1:available", -50_000_000),
                ("cluster:cl-x:escrow", 49_000_000),
                ("platform:fees", 1_000_000),
            ],
        ),
        (
            3,
            "finish:cl-x",
            &[
                ("cluster:cl-x:escrow", -49_000_000),
                ("provider:W1:earned", 30_000_000),
                ("platform:fees", 75_000),
                ("user:1:available", 18_925_000),
            ],
        ),
    ];
    let mut balances = std::collections::BTreeMap::<&str, i64>::new();
    for (n, key, entries) in rows {
        let id: i64 = sqlx::query_scalar("INSERT INTO ledger_transactions (idempotency_key, at, memo) VALUES ($1, $2, 'old') RETURNING id")
            .bind(key).bind(T0.0 + n).fetch_one(&pool).await.unwrap();
        for (account, amount) in entries {
            sqlx::query(
                "INSERT INTO ledger_entries (transaction_id, account, amount) VALUES ($1, $2, $3)",
            )
            .bind(id)
            .bind(*account)
            .bind(*amount)
            .execute(&pool)
            .await
            .unwrap();
            *balances.entry(account).or_default() += amount;
        }
    }
    for (account, balance) in &balances {
        sqlx::query("INSERT INTO account_balances (account, balance) VALUES ($1, $2)")
            .bind(*account)
            .bind(*balance)
            .execute(&pool)
            .await
            .unwrap();
    }
    pool.close().await;

    let p = Platform::new(Store::open(&url).await.unwrap(), config());
    assert_eq!(p.ledger.audit().await.unwrap(), Vec::<String>::new());
    assert_eq!(available(&p, 1).await.micros(), 68_925_000);
    assert_eq!(
        p.ledger
            .balance(&Account::ProviderClaimable("W1".into()))
            .await
            .unwrap()
            .micros(),
        30_000_000
    );
    assert_eq!(
        p.ledger
            .balance(&Account::PlatformFees)
            .await
            .unwrap()
            .micros(),
        1_075_000
    );
    let statement = p
        .ledger
        .statement(&Account::UserAvailable(1), 10)
        .await
        .unwrap();
    let amounts: Vec<(i64, i64)> = statement.iter().map(|l| (l.amount, l.fees)).collect();
    assert_eq!(
        amounts,
        [(18_925_000, 0), (-50_000_000, -1_000_000), (100_000_000, 0)]
    );
    // The transfers are append-only.
    let tampering = stored_number(
        &p.store,
        "UPDATE ledger_transfers SET amount = amount + $1 RETURNING 0",
        "1",
    )
    .await;
    assert!(tampering.is_err(), "{tampering:?}");
}

#[tokio::test]
async fn sqlite_ledger_of_the_first_step_migrates() {
    ledger_of_the_first_step_migrates(platform::testing::fresh_sqlite_url(), "sqlite").await;
}

#[tokio::test]
async fn postgres_ledger_of_the_first_step_migrates() {
    if let Some(url) = platform::testing::fresh_postgres_url().await {
        ledger_of_the_first_step_migrates(url, "postgres").await;
    }
}

async fn sqlite_platform() -> Option<(Platform, String)> {
    let url = platform::testing::fresh_sqlite_url();
    Some((
        Platform::new(Store::open(&url).await.unwrap(), config()),
        url,
    ))
}

async fn postgres_platform() -> Option<(Platform, String)> {
    let url = platform::testing::fresh_postgres_url().await?;
    Some((
        Platform::new(Store::open(&url).await.unwrap(), config()),
        url,
    ))
}

macro_rules! on_both_backends {
    ($($case:ident),+ ; with_url: $($url_case:ident),+ $(,)?) => {
        mod sqlite {
            $(#[tokio::test] async fn $case() {
                let (p, _url) = super::sqlite_platform().await.unwrap();
                super::$case(p).await
            })+
            $(#[tokio::test] async fn $url_case() {
                let (p, url) = super::sqlite_platform().await.unwrap();
                super::$url_case(p, url).await
            })+
        }
        mod postgres {
            $(#[tokio::test] async fn $case() {
                let Some((p, _url)) = super::postgres_platform().await else { return };
                super::$case(p).await
            })+
            $(#[tokio::test] async fn $url_case() {
                let Some((p, url)) = super::postgres_platform().await else { return };
                super::$url_case(p, url).await
            })+
        }
    };
}

on_both_backends!(
    a_lost_head_with_no_replacement_is_followed_by_a_survivor,
    workload_output_is_the_hired_devices_and_the_renters_alone,
    a_speed_test_download_cannot_be_predicted_or_skipped,
    a_provider_has_a_bounded_number_of_speed_tests_under_way,
    a_renters_failing_workload_is_the_renters_and_a_devices_is_refunded,
    a_week_ended_after_a_day_costs_the_days_rate,
    sign_in_creates_a_session_that_sign_out_ends,
    a_reused_nonce_is_refused,
    an_expired_nonce_is_refused,
    a_nonce_not_issued_here_is_refused,
    a_nonce_issued_to_another_wallet_is_refused,
    an_altered_sign_in_message_is_refused,
    sign_in_requests_for_one_wallet_are_throttled,
    a_bad_signature_is_refused_and_leaves_the_nonce_usable,
    a_wrong_domain_is_refused,
    sessions_end_when_idle_or_too_old,
    an_unknown_token_has_no_session,
    purge_removes_only_dead_nonces_and_sessions,
    the_demo_fleet_seeds_once_and_adds_up,
    registration_tokens_work_once_and_expire,
    a_device_is_verified_by_proof_of_work_and_goes_down_when_silent,
    speed_tests_keep_each_directions_best_round,
    owners_pause_resume_revoke_and_remove,
    a_wallet_enrols_a_bounded_number_of_devices,
    owners_rename_their_devices_with_checked_names,
    unsupported_hardware_is_kept_with_what_was_reported,
    clusters_are_paid_placed_extended_and_settled,
    clusters_paid_in_the_token_refund_in_the_token,
    a_device_lost_to_silence_is_paid_to_its_last_heartbeat,
    hire_earnings_settle_hourly_and_statements_show_every_movement,
    money_operations_keep_the_books,
    the_explorer_shows_what_the_database_holds;
    with_url: a_store_reopens_with_its_data,
    concurrent_deploys_never_share_a_device,
    attested_orders_hire_only_attested_devices,
    blocks_close_once_and_reward_eligible_devices_by_score,
    idle_cap_violations_forfeit_rewards_and_repeated_ones_block,
    a_failed_proof_forfeits_the_hours_reward,
    a_failed_proof_brings_the_providers_other_devices_to_proof,
    held_rewards_wait_for_the_next_proof,
    promotional_credit_pays_only_other_established_providers,
    a_hired_device_that_fails_a_spot_check_leaves_its_cluster,
    replicas_agree_on_liveness_and_what_devices_run,
);
