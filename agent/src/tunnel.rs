//! Tunnels, the agent's side: it waits for the server's orders and, for each, connects the
//! ordered port on this machine's loopback and opens a stream to the server that carries the
//! renter's bytes both ways. Only ports the device's running workloads serve are connected
//! (the server checks the same), so a tunnel never reaches the provider's other services.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use domain::tunnel::TunnelOrder;
use tokio::net::TcpStream;

use crate::client::ApiClient;

/// How long connecting a workload's port may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The ports each running cluster's workload serves, kept by the workloads as they start and
/// stop, read by the order loop.
#[derive(Clone, Default)]
pub struct Served(Arc<Mutex<HashMap<String, Vec<u16>>>>);

impl Served {
    pub fn set(&self, cluster_id: &str, ports: Vec<u16>) {
        if let Ok(mut served) = self.0.lock() {
            served.insert(cluster_id.to_owned(), ports);
        }
    }

    pub fn remove(&self, cluster_id: &str) {
        if let Ok(mut served) = self.0.lock() {
            served.remove(cluster_id);
        }
    }

    fn serves(&self, cluster_id: &str, port: u16) -> bool {
        self.0
            .lock()
            .is_ok_and(|s| s.get(cluster_id).is_some_and(|ports| ports.contains(&port)))
    }
}

/// Waits for orders and opens their streams, forever; failures only slow it down.
pub async fn serve(client: ApiClient, served: Served) {
    let mut failures = 0u32;
    loop {
        match client.wait_for_tunnel_orders().await {
            Ok(orders) => {
                failures = 0;
                for order in orders {
                    tokio::spawn(open(client.clone(), served.clone(), order));
                }
            }
            Err(e) => {
                failures += 1;
                if failures == 1 {
                    eprintln!("tunnel orders: {e}; retrying");
                }
                tokio::time::sleep(crate::backoff(failures)).await;
            }
        }
    }
}

/// Connects the order's port and carries its stream until either side closes.
async fn open(client: ApiClient, served: Served, order: TunnelOrder) {
    if !served.serves(&order.cluster_id, order.port) {
        refuse(
            &client,
            &order,
            format!(
                "this device runs no workload of cluster {} that serves port {}",
                order.cluster_id, order.port
            ),
        )
        .await;
        return;
    }
    let local = match tokio::time::timeout(
        CONNECT_TIMEOUT,
        TcpStream::connect(("127.0.0.1", order.port)),
    )
    .await
    {
        Ok(Ok(local)) => local,
        Ok(Err(e)) => {
            let why = format!("nothing answers on port {} yet ({e})", order.port);
            refuse(&client, &order, why).await;
            return;
        }
        Err(_) => {
            let why = format!(
                "port {} did not accept within {} s",
                order.port,
                CONNECT_TIMEOUT.as_secs()
            );
            refuse(&client, &order, why).await;
            return;
        }
    };
    let _ = local.set_nodelay(true);
    match client.open_tunnel_stream(&order.stream).await {
        Ok(mut stream) => {
            let mut local = local;
            let _ = tokio::io::copy_bidirectional(&mut stream, &mut local).await;
        }
        Err(e) => eprintln!("tunnel stream for cluster {}: {e}", order.cluster_id),
    }
}

async fn refuse(client: &ApiClient, order: &TunnelOrder, why: String) {
    if let Err(e) = client.refuse_tunnel_stream(&order.stream, &why).await {
        eprintln!("could not tell the server why a tunnel was refused: {e}");
    }
}
