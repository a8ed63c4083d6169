//! Issue 16: two replicas (two platforms over one database, as two server processes would be)
//! agree on which devices are alive and what they run: the replica a device's agent talks to
//! decides its silence, the other mirrors the change feed, and a dead replica's devices are
//! taken over.

use super::*;
use platform::replicas::FeedPosition;

/// A second replica over the same database, rebuilt at `at`.
async fn replica(url: &str, at: UnixMillis) -> Platform {
    let p = Platform::new(Store::open(url).await.unwrap(), config());
    p.replicas.renew(at).await.unwrap();
    p.agents.rebuild(at).await.unwrap();
    p
}

async fn heartbeat(
    p: &Platform,
    device: &str,
    at: UnixMillis,
) -> domain::agent_protocol::HeartbeatReply {
    p.agents
        .heartbeat(device, heartbeat_at(at, Utilisation::default()), None, at)
        .await
        .unwrap()
}

pub(crate) async fn replicas_agree_on_liveness_and_what_devices_run(p: Platform, url: String) {
    hireable_fleet(&p).await;
    p.replicas.renew(T0).await.unwrap();
    let a = p;
    let b = replica(&url, T0).await;
    let mut b_feed = FeedPosition::starting_at(0);
    let mut a_feed = FeedPosition::starting_at(0);
    let ids = seeded_ids(4);
    let (moved, stays, silent, orphan) = (&ids[0], &ids[1], &ids[2], &ids[3]);
    // `moved` talks to A, then to B (the load balancer moved it); `stays` only to B; `silent`
    // to A once, then never again.
    for device in [moved, silent] {
        heartbeat(&a, device, T0.plus_seconds(1)).await;
    }
    a.agents.write_claims().await.unwrap();
    for s in (11..=51).step_by(10) {
        for device in [moved, stays] {
            heartbeat(&b, device, T0.plus_seconds(s)).await;
        }
        b.agents.write_claims().await.unwrap();
    }
    // A has not heard `moved` for 50 s (past the 30 s window) but does not mark it down: B
    // serves it. It does mark its own silent device down.
    let later = T0.plus_seconds(52);
    a.agents.sweep(later).await.unwrap();
    b.agents.sweep(later).await.unwrap();
    assert_eq!(device_status(&a, moved).await, "idle");
    assert_eq!(device_status(&a, stays).await, "idle");
    assert_eq!(device_status(&a, silent).await, "down");
    // B mirrors what A changed: both replicas count the same network.
    b.agents.follow_changes(&mut b_feed, later).await.unwrap();
    a.agents.follow_changes(&mut a_feed, later).await.unwrap();
    assert_eq!(
        a.fleet.network_summary().await.unwrap(),
        b.fleet.network_summary().await.unwrap()
    );

    // A deploy through A reaches the device's agent on B, which long-polls there.
    let me = account_of(&a, &Wallet::new()).await;
    a.ledger
        .operator_credit(
            me,
            Asset::Usdc,
            usd(100).micros(),
            "promo",
            "promotion",
            later,
        )
        .await
        .unwrap();
    let cluster = a
        .provisioning
        .deploy(me, &h200_request("across", 1), Some("across"), later)
        .await
        .unwrap();
    let hired = first_device(&a, me, &cluster.id, later).await;
    heartbeat(&b, &hired, later).await;
    b.agents.write_claims().await.unwrap();
    let waiting = {
        let b = b.clone();
        let hired = hired.clone();
        tokio::spawn(async move {
            b.agents
                .wait_for_assignment(
                    &hired,
                    &domain::agent_protocol::AssignmentWait {
                        known: Vec::new(),
                        wait_secs: 10,
                    },
                )
                .await
                .unwrap()
        })
    };
    b.agents.follow_changes(&mut b_feed, later).await.unwrap();
    assert!(
        tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
            .await
            .expect("the long poll on B is woken by A's deploy")
            .unwrap()
    );
    let reply = heartbeat(&b, &hired, later.plus_seconds(1)).await;
    assert_eq!(reply.workloads.len(), 1);
    assert_eq!(reply.workloads[0].cluster_id, cluster.id);

    // A replica that dies (stops renewing): once the down window has passed since its last
    // renewal, the devices it served and nobody claimed again go down; B's do not.
    let c = replica(&url, later).await;
    heartbeat(&c, orphan, later).await;
    c.agents.write_claims().await.unwrap();
    let after_death = later.plus_seconds(40);
    a.replicas.renew(after_death).await.unwrap();
    b.replicas.renew(after_death).await.unwrap();
    a.agents.take_over_orphans(after_death).await.unwrap();
    assert_eq!(device_status(&a, orphan).await, "down");
    assert_eq!(device_status(&a, stays).await, "idle");
    assert_eq!(a.ledger.audit().await.unwrap(), Vec::<String>::new());

    // An agent that reaches both replicas in turn (around the balancer) is credited by each
    // for the gaps between its heartbeats there; the hour still holds at most an hour.
    let twice = &seeded_ids(5)[4];
    let hour = (domain::rewards::block_of(after_death.0) + 2) * 3_600_000;
    for s in (1..3_600).step_by(10) {
        let replica = if (s / 10) % 2 == 0 { &a } else { &b };
        heartbeat(replica, twice, UnixMillis(hour + s * 1_000)).await;
    }
    let end = UnixMillis(hour + 3_600_000);
    a.agents.flush(Flush::Everything, end).await.unwrap();
    b.agents.flush(Flush::Everything, end).await.unwrap();
    let online = stored_number(
        &a.store,
        &format!("SELECT online_ms FROM device_uptime WHERE device_id = $1 AND hour = {hour}"),
        twice,
    )
    .await
    .unwrap();
    assert_eq!(online, 3_600_000, "capped at the hour");
}
