//! Tunnels: renters reach their clusters' ports through this server, over connections the
//! devices' agents open outwards, so devices behind NAT work and no provider publishes a port.
//!
//! 1. A renter's request arrives at the tunnel origin (`proxy`, a listener of its own: what a
//!    workload answers is the provider's content and never runs as the console's pages).
//! 2. The caller is checked (the cluster's renter, by session cookie or API key) and the port
//!    against what the device serves (`platform::tunnels`); an order goes to the device's
//!    agent, which waits for orders with a long poll (`agent`).
//! 3. The agent connects the port on its loopback and opens a stream to the server for that
//!    order: an HTTP upgrade whose connection then carries the renter's bytes both ways.
//! 4. The request is sent over it (WebSocket upgrades included); the bytes are counted and
//!    added to the cluster when the connection closes.
//!
//! The hub pairs orders with the agents' streams. It is in memory: a replica answers the
//! tunnels of the agents that talk to it, and relays a renter's request for a device whose
//! agent polls another replica to that replica (`proxy`), which serves it as its own.

pub mod agent;
pub mod proxy;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use domain::tunnel::TunnelOrder;
use hyper::upgrade::Upgraded;
use tokio::sync::{oneshot, Notify};

/// Connections opening at once to one device; more wait for none and are refused.
const MAX_OPENING_PER_DEVICE: usize = 32;
/// How long a renter's connection waits for the agent's stream.
pub const OPEN_TIMEOUT: Duration = Duration::from_secs(10);
/// An agent whose long poll for orders ended this long ago still counts as polling here: it
/// asks again at once.
const BETWEEN_POLLS: Duration = Duration::from_secs(5);

/// What the agent answered an order with: its stream, or why it could not connect the port.
pub type Opened = Result<Upgraded, String>;

#[derive(Clone, Default)]
pub struct TunnelHub(Arc<Inner>);

#[derive(Default)]
struct Inner {
    devices: Mutex<HashMap<String, Orders>>,
    pending: Mutex<HashMap<String, Pending>>,
}

#[derive(Default)]
struct Orders {
    queued: Vec<TunnelOrder>,
    arrived: Arc<Notify>,
    /// Until when the device's agent polls this replica for orders: the end of its current
    /// long poll, and a moment for the next to begin.
    polling_until: Option<Instant>,
}

struct Pending {
    device_id: String,
    deliver: oneshot::Sender<Opened>,
}

/// Why a connection could not be asked for.
#[derive(Debug, PartialEq, Eq)]
pub struct Busy;

fn locked<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere while holding it leaves plain maps, still consistent.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl TunnelHub {
    pub fn new() -> TunnelHub {
        TunnelHub::default()
    }

    /// Orders device `device_id`'s agent to connect `port` of cluster `cluster_id`; the
    /// receiver gets its stream.
    pub fn order(
        &self,
        device_id: &str,
        cluster_id: &str,
        port: u16,
    ) -> Result<(String, oneshot::Receiver<Opened>), Busy> {
        let stream: String = rand::random::<[u8; 16]>()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let (deliver, opened) = oneshot::channel();
        {
            let mut pending = locked(&self.0.pending);
            let opening = pending
                .values()
                .filter(|p| p.device_id == device_id)
                .count();
            if opening >= MAX_OPENING_PER_DEVICE {
                return Err(Busy);
            }
            pending.insert(
                stream.clone(),
                Pending {
                    device_id: device_id.to_owned(),
                    deliver,
                },
            );
        }
        let mut devices = locked(&self.0.devices);
        let orders = devices.entry(device_id.to_owned()).or_default();
        orders.queued.push(TunnelOrder {
            stream: stream.clone(),
            cluster_id: cluster_id.to_owned(),
            port,
        });
        orders.arrived.notify_one();
        Ok((stream, opened))
    }

    /// Forgets an order nobody answered in time.
    pub fn abandon(&self, device_id: &str, stream: &str) {
        locked(&self.0.pending).remove(stream);
        if let Some(orders) = locked(&self.0.devices).get_mut(device_id) {
            orders.queued.retain(|o| o.stream != stream);
        }
    }

    /// The device's orders, waiting up to `wait` for one.
    pub async fn wait_for_orders(&self, device_id: &str, wait: Duration) -> Vec<TunnelOrder> {
        let arrived = {
            let mut devices = locked(&self.0.devices);
            let orders = devices.entry(device_id.to_owned()).or_default();
            orders.polling_until = Some(Instant::now() + wait + BETWEEN_POLLS);
            if !orders.queued.is_empty() {
                orders.polling_until = Some(Instant::now() + BETWEEN_POLLS);
                return std::mem::take(&mut orders.queued);
            }
            orders.arrived.clone()
        };
        let _ = tokio::time::timeout(wait, arrived.notified()).await;
        let mut devices = locked(&self.0.devices);
        match devices.get_mut(device_id) {
            Some(orders) => {
                orders.polling_until = Some(Instant::now() + BETWEEN_POLLS);
                std::mem::take(&mut orders.queued)
            }
            None => Vec::new(),
        }
    }

    /// Whether the device's agent polls this replica for orders now (or did a moment ago):
    /// its tunnels are served here, not relayed to another replica.
    pub fn polls_here(&self, device_id: &str) -> bool {
        self.polls_here_at(device_id, Instant::now())
    }

    fn polls_here_at(&self, device_id: &str, now: Instant) -> bool {
        locked(&self.0.devices)
            .get(device_id)
            .and_then(|orders| orders.polling_until)
            .is_some_and(|until| until > now)
    }

    /// Hands the agent's answer to the renter's connection waiting on `stream`; false when no
    /// order of this device's has that name (never ordered, another device's, or given up).
    pub fn answer(&self, device_id: &str, stream: &str, opened: Opened) -> bool {
        let mut pending = locked(&self.0.pending);
        match pending.get(stream) {
            Some(p) if p.device_id == device_id => {}
            _ => return false,
        }
        let waiting = pending.remove(stream).expect("present above");
        waiting.deliver.send(opened).is_ok()
    }

    /// Whether `stream` names an order of `device_id`'s still waiting for its stream.
    pub fn is_waiting(&self, device_id: &str, stream: &str) -> bool {
        locked(&self.0.pending)
            .get(stream)
            .is_some_and(|p| p.device_id == device_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn orders_reach_their_device_alone_and_are_answered_once() {
        let hub = TunnelHub::new();
        let (stream, opened) = hub.order("dev-a", "cl-1", 8000).unwrap();
        assert!(hub
            .wait_for_orders("dev-b", Duration::from_millis(10))
            .await
            .is_empty());
        let orders = hub.wait_for_orders("dev-a", Duration::from_secs(5)).await;
        assert_eq!(orders.len(), 1);
        assert_eq!(
            (orders[0].cluster_id.as_str(), orders[0].port),
            ("cl-1", 8000)
        );
        // Another device cannot answer it, nor can a name never given.
        assert!(!hub.answer("dev-b", &stream, Err("x".into())));
        assert!(!hub.answer("dev-a", "feed", Err("x".into())));
        assert!(hub.answer("dev-a", &stream, Err("nothing listens".into())));
        assert!(!hub.answer("dev-a", &stream, Err("again".into())));
        assert_eq!(opened.await.unwrap().unwrap_err(), "nothing listens");
    }

    #[tokio::test]
    async fn an_agent_polls_here_while_it_waits_and_a_moment_after() {
        let hub = TunnelHub::new();
        assert!(!hub.polls_here("dev-a"));
        let wait = Duration::from_millis(300);
        let waiter = tokio::spawn({
            let hub = hub.clone();
            async move { hub.wait_for_orders("dev-a", wait).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(hub.polls_here("dev-a"));
        assert!(hub.polls_here_at("dev-a", Instant::now() + BETWEEN_POLLS));
        assert!(!hub.polls_here("dev-b"));
        waiter.await.unwrap();
        assert!(hub.polls_here("dev-a"), "between two polls");
        let later = Instant::now() + BETWEEN_POLLS + Duration::from_millis(10);
        assert!(
            !hub.polls_here_at("dev-a", later),
            "its agent went elsewhere"
        );
    }

    #[tokio::test]
    async fn a_waiting_agent_wakes_for_a_new_order() {
        let hub = TunnelHub::new();
        let waiter = tokio::spawn({
            let hub = hub.clone();
            async move { hub.wait_for_orders("dev-a", Duration::from_secs(10)).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (stream, _opened) = hub.order("dev-a", "cl-1", 80).unwrap();
        let orders = tokio::time::timeout(Duration::from_secs(2), waiter)
            .await
            .expect("woken")
            .unwrap();
        assert_eq!(orders[0].stream, stream);
    }

    #[tokio::test]
    async fn a_device_has_a_bounded_number_of_connections_opening() {
        let hub = TunnelHub::new();
        let mut held = Vec::new();
        for _ in 0..MAX_OPENING_PER_DEVICE {
            held.push(hub.order("dev-a", "cl-1", 80).unwrap());
        }
        assert_eq!(hub.order("dev-a", "cl-1", 80).unwrap_err(), Busy);
        assert!(hub.order("dev-b", "cl-1", 80).is_ok());
        let (stream, _) = &held[0];
        hub.abandon("dev-a", stream);
        assert!(!hub.is_waiting("dev-a", stream));
        assert!(hub.order("dev-a", "cl-1", 80).is_ok());
    }
}
