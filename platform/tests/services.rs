//! The platform services against both real backends: every test here runs once on a fresh
//! SQLite file and once on a fresh PostgreSQL database.

use domain::siws::SignInMessage;
use domain::time::UnixMillis;
use domain::wallet::WalletAddress;
use ed25519_dalek::{Signer, SigningKey};
use platform::auth::{AuthConfig, SessionToken};
use platform::store::Store;
use platform::{Error, Platform, SignInRefusal};

const T0: UnixMillis = UnixMillis(1_795_600_000_000);

fn config() -> AuthConfig {
    AuthConfig {
        domain: "gpu.test:3000".into(),
        uri: "http://gpu.test:3000".into(),
        chain_id: "solana:mainnet".into(),
        nonce_ttl_secs: 300,
        session_idle_secs: 3600,
        session_max_secs: 86_400,
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
}

async fn a_store_reopens_with_its_data(p: Platform, url: String) {
    p.fleet.seed_demo_fleet(20, 1, T0).await.unwrap();
    let before = p.fleet.network_summary().await.unwrap();
    p.store.close().await;
    let reopened = Platform::new(Store::open(&url).await.unwrap(), config());
    assert_eq!(reopened.fleet.network_summary().await.unwrap(), before);
    reopened.store.ping().await.unwrap();
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
    ($($case:ident),+ $(,)?) => {
        mod sqlite {
            $(#[tokio::test] async fn $case() {
                let (p, _url) = super::sqlite_platform().await.unwrap();
                super::$case(p).await
            })+
            #[tokio::test] async fn a_store_reopens_with_its_data() {
                let (p, url) = super::sqlite_platform().await.unwrap();
                super::a_store_reopens_with_its_data(p, url).await
            }
        }
        mod postgres {
            $(#[tokio::test] async fn $case() {
                let Some((p, _url)) = super::postgres_platform().await else { return };
                super::$case(p).await
            })+
            #[tokio::test] async fn a_store_reopens_with_its_data() {
                let Some((p, url)) = super::postgres_platform().await else { return };
                super::a_store_reopens_with_its_data(p, url).await
            }
        }
    };
}

on_both_backends!(
    sign_in_creates_a_session_that_sign_out_ends,
    a_reused_nonce_is_refused,
    an_expired_nonce_is_refused,
    a_nonce_not_issued_here_is_refused,
    a_nonce_issued_to_another_wallet_is_refused,
    a_bad_signature_is_refused_and_leaves_the_nonce_usable,
    a_wrong_domain_is_refused,
    sessions_end_when_idle_or_too_old,
    an_unknown_token_has_no_session,
    purge_removes_only_dead_nonces_and_sessions,
    the_demo_fleet_seeds_once_and_adds_up,
);
