//! Issue 23's money rules against both backends: block rewards held until the device's next
//! proof (released when it passes, forfeited when it fails), and promotional credit that never
//! pays the renter's own devices nor a new provider's.

use super::*;
use domain::rewards::RewardHold;

/// The token balance of `account`.
async fn tokens(p: &Platform, account: Account) -> i64 {
    p.ledger.tokens(&account).await.unwrap().units()
}

/// Rewards are time-locked: a closed block's rewards wait in the provider's held balance; the
/// device's next passed proof makes them claimable, a failed one returns every reward held
/// since the last proof to the pool (not only the failed hour's).
pub(crate) async fn held_rewards_wait_for_the_next_proof(p: Platform, _url: String) {
    hireable_fleet(&p).await;
    let ids = seeded_ids(9);
    // Seeded devices 0–7 share an owner; device 8 has another.
    let (faker, honest) = (&ids[0], &ids[8]);
    let owner_of = |device: &String| {
        let p = p.clone();
        let device = device.clone();
        async move {
            stored_text(
                &p.store,
                "SELECT owner_wallet FROM devices WHERE id = $1",
                &device,
            )
            .await
            .unwrap()
        }
    };
    let (faker_owner, honest_owner) = (owner_of(faker).await, owner_of(honest).await);
    // Two blocks after the seeded devices' last proof at T0.
    let first = domain::rewards::block_of(T0.0) + 1;
    for (block, hours) in [(first, 6), (first + 1, 1)] {
        for device in [faker, honest] {
            online_for(&p, device, block, hours).await;
        }
        let closing_at = UnixMillis((block + 1) * 3_600_000 + 15 * 60_000);
        assert_eq!(p.rewards.close_due(closing_at).await.unwrap(), vec![block]);
    }
    let held_faker = tokens(&p, Account::ProviderHeld(faker_owner.clone())).await;
    let held_honest = tokens(&p, Account::ProviderHeld(honest_owner.clone())).await;
    assert!(
        held_faker > 0 && held_honest > 0,
        "{held_faker} {held_honest}"
    );
    for owner in [&faker_owner, &honest_owner] {
        assert_eq!(
            tokens(&p, Account::ProviderClaimable(owner.clone())).await,
            0,
            "nothing is claimable before a proof"
        );
        let lines = p.rewards.rewards_of(owner, 50).await.unwrap();
        assert!(lines
            .iter()
            .filter(|l| l.reward.units() > 0)
            .all(|l| l.hold == RewardHold::Held));
    }
    // The honest device's held rewards are claimable once it passes; the faker's that it held
    // for both hours go back to the pool when it fails.
    let due = PROOF_DUE;
    let challenge = challenge_at(&p, honest, due).await.expect("a proof is due");
    assert!(answer_at(&p, honest, &challenge, true, due).await.passed);
    assert_eq!(
        tokens(&p, Account::ProviderClaimable(honest_owner.clone())).await,
        held_honest
    );
    assert_eq!(
        tokens(&p, Account::ProviderHeld(honest_owner.clone())).await,
        0
    );

    let pool_before = tokens(&p, Account::RewardsPool).await;
    let challenge = challenge_at(&p, faker, due).await.expect("a proof is due");
    assert!(!answer_at(&p, faker, &challenge, false, due).await.passed);
    // Device 0's siblings (1–7) had their rewards held too; only device 0's are forfeited.
    let faker_rewards: i64 = p
        .rewards
        .rewards_of(&faker_owner, 50)
        .await
        .unwrap()
        .iter()
        .filter(|l| &l.device_id == faker)
        .map(|l| {
            assert_eq!(l.hold, RewardHold::Forfeited, "{l:?}");
            l.reward.units()
        })
        .sum();
    assert!(faker_rewards > 0);
    assert_eq!(
        tokens(&p, Account::RewardsPool).await,
        pool_before + faker_rewards
    );
    assert_eq!(
        tokens(&p, Account::ProviderHeld(faker_owner.clone())).await,
        held_faker - faker_rewards
    );
    assert_eq!(
        tokens(&p, Account::ProviderClaimable(faker_owner.clone())).await,
        0
    );
    let honest_lines = p.rewards.rewards_of(&honest_owner, 50).await.unwrap();
    assert!(honest_lines
        .iter()
        .filter(|l| l.reward.units() > 0)
        .all(|l| l.hold == RewardHold::Released));
    assert_eq!(p.ledger.audit().await.unwrap(), Vec::<String>::new());
}

/// Issue 23's sybil rule (`domain::promo`): promotional credit pays neither the renter's own
/// devices nor those of a provider whose account is less than a week old, at deploy and in a
/// replacement; once it is spent on other providers, the renter's own money may pay anyone,
/// and a refund of promotional spending binds the renter again (extensions included).
pub(crate) async fn promotional_credit_pays_only_other_established_providers(
    p: Platform,
    _url: String,
) {
    hireable_fleet(&p).await;
    let renter = Wallet::new();
    let me = account_of(&p, &renter).await;
    // The fleet's two 1-GPU H200s: one made the renter's, the other's provider new yesterday.
    let pool = platform::testing::pool_of(&p.store);
    let singles: Vec<(String, String)> = sqlx::query_as(
        "SELECT id, owner_wallet FROM devices WHERE gpu_model = 'H200 141GB' AND gpu_count = 1 \
         ORDER BY id",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    assert_eq!(singles.len(), 2, "{singles:?}");
    let (own, theirs) = (&singles[0].0, &singles[1].0);
    let provider = &singles[1].1;
    sqlx::query("UPDATE devices SET owner_wallet = $1 WHERE id = $2")
        .bind(renter.address())
        .bind(own)
        .execute(pool)
        .await
        .unwrap();
    sqlx::query("INSERT INTO users (wallet, created_at) VALUES ($1, $2)")
        .bind(provider)
        .bind(T0.0 - 86_400_000)
        .execute(pool)
        .await
        .unwrap();
    let request = |name: &str| h200_request(name, 1);
    let price = p.provisioning.quote(&request("a")).unwrap().quote.total;
    p.ledger
        .operator_credit(me, Asset::Usdc, price.micros(), "promo", "promotion", T0)
        .await
        .unwrap();

    let refused = p
        .provisioning
        .deploy(me, &request("a"), Some("a"), T0)
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, Error::Conflict(why) if why.contains("promotional credit") && why.contains("7 days")),
        "{refused:?}"
    );
    assert_eq!(available(&p, me).await, price, "a refusal moves no money");

    // A week on, the provider is established: the credit may pay them.
    sqlx::query("UPDATE users SET created_at = $1 WHERE wallet = $2")
        .bind(T0.0 - 8 * 86_400_000)
        .bind(provider)
        .execute(pool)
        .await
        .unwrap();
    let first = p
        .provisioning
        .deploy(me, &request("a"), Some("a"), T0)
        .await
        .unwrap();
    assert_eq!(&first_device(&p, me, &first.id, T0).await, theirs);
    report_running(&p, me, &first.id, T0).await;

    // Its device fails: the renter's own device is free, but promotional money does not
    // hire it as the replacement; the unused time comes back instead.
    let t1 = T0.plus_seconds(600);
    p.provisioning
        .workload_reported(
            theirs,
            &first.id,
            WorkloadState::Failed,
            "crashed",
            None,
            t1,
        )
        .await
        .unwrap();
    let after = p.provisioning.cluster(me, &first.id, t1).await.unwrap();
    assert!(
        after.members.iter().all(|m| &m.device_id != own),
        "{:?}",
        after.members
    );
    assert!(
        after
            .events
            .iter()
            .any(|e| e.detail.contains("no replacement")),
        "{:?}",
        after.events
    );

    // The refund is promotional credit again: with money of the renter's own beside it, the
    // next cluster still goes to the other provider.
    platform::testing::grant_deposit(&p.store, me, Asset::Usdc, usd(100).micros(), "own")
        .await
        .unwrap();
    let second = p
        .provisioning
        .deploy(me, &request("b"), Some("b"), t1)
        .await
        .unwrap();
    assert_eq!(&first_device(&p, me, &second.id, t1).await, theirs);
    // Now more than the credit went to other providers: the renter's own money may pay its
    // own device.
    let third = p
        .provisioning
        .deploy(me, &request("c"), Some("c"), t1)
        .await
        .unwrap();
    assert_eq!(&first_device(&p, me, &third.id, t1).await, own);
    report_running(&p, me, &third.id, t1).await;
    let hour = ExtendRequest {
        duration_unit: DurationUnit::Hourly,
        duration_count: 1,
    };
    p.provisioning
        .extend(me, &third.id, &hour, Some("c-1"), t1)
        .await
        .unwrap();
    // Ending the second cluster at once refunds promotional spending: bound again, the
    // renter cannot extend the cluster on their own device.
    p.provisioning.terminate(me, &second.id, t1).await.unwrap();
    let refused = p
        .provisioning
        .extend(me, &third.id, &hour, Some("c-2"), t1)
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, Error::Conflict(why) if why.contains("promotional credit") && why.contains(own.as_str())),
        "{refused:?}"
    );
    assert_eq!(p.ledger.audit().await.unwrap(), Vec::<String>::new());
}

/// A hired device proves its hardware too, with a spot check small enough to run beside the
/// workload; one that fails leaves its cluster (replaced, or its time refunded) with the
/// reason in the cluster's history, and forfeits what it held.
pub(crate) async fn a_hired_device_that_fails_a_spot_check_leaves_its_cluster(
    p: Platform,
    _url: String,
) {
    hireable_fleet(&p).await;
    let me = account_of(&p, &Wallet::new()).await;
    p.ledger
        .operator_credit(me, Asset::Usdc, usd(100).micros(), "promo", "promotion", T0)
        .await
        .unwrap();
    let request = DeployRequest {
        duration_count: 12,
        ..h200_request("spot", 1)
    };
    let cluster = p
        .provisioning
        .deploy(me, &request, Some("spot"), T0)
        .await
        .unwrap();
    let device = report_running(&p, me, &cluster.id, T0).await;
    // The next proof is due as it would be idle.
    let due = PROOF_DUE;
    let challenge = challenge_at(&p, &device, due)
        .await
        .expect("a hired device is spot-checked");
    // One product, at most half the side (never fewer rows than it opens), whatever the GPUs.
    let fleet = config().fleet;
    assert_eq!(challenge.products, 1);
    assert_eq!(
        challenge.size,
        (fleet.gpu_challenge_size / 2).max(fleet.challenge_openings)
    );
    let verdict = answer_at(&p, &device, &challenge, false, due).await;
    assert!(!verdict.passed);
    assert_eq!(verdict.status, DeviceStatus::Pending);
    assert!(verdict.reason.contains("spot check"), "{}", verdict.reason);
    p.provisioning.sweep(due).await.unwrap();
    let after = p.provisioning.cluster(me, &cluster.id, due).await.unwrap();
    let lost = after
        .members
        .iter()
        .find(|m| m.device_id == device)
        .unwrap();
    assert!(lost.left_at.is_some(), "{:?}", after.members);
    assert!(
        after
            .events
            .iter()
            .any(|e| e.detail.contains(&format!("device {device} lost"))
                && e.detail.contains("failed a spot check")),
        "{:?}",
        after.events
    );
    assert_books_balance(&p, &cluster.id).await;
}
