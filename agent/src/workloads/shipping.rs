//! Workload output on its way to the server: each log's lines wait here (at most
//! [`MAX_WAITING_LINES`] per cluster, the oldest dropped first while the server is out of
//! reach) until a shipment carrying them is acknowledged.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use domain::output::{OutputShipment, ShippedLine};

/// Lines of one cluster waiting to be shipped, at most.
pub const MAX_WAITING_LINES: usize = 5_000;

/// One log's lines not yet acknowledged by the server.
#[derive(Default)]
pub struct Waiting {
    lines: VecDeque<ShippedLine>,
}

impl Waiting {
    pub fn push(&mut self, line: ShippedLine) {
        if self.lines.len() == MAX_WAITING_LINES {
            self.lines.pop_front();
        }
        self.lines.push_back(line);
    }
}

/// Every log whose lines still go to the server, shared by the workloads (which add lines)
/// and the shipping task (which sends them).
#[derive(Clone, Default)]
pub struct Shipping(Arc<Mutex<Vec<Log>>>);

/// A cluster's log as shipping sees it: its id and its waiting lines.
type Log = (String, Arc<Mutex<Waiting>>);

impl Shipping {
    /// A new log of cluster `cluster_id` whose lines are to be shipped.
    pub fn register(&self, cluster_id: &str) -> Arc<Mutex<Waiting>> {
        let waiting = Arc::new(Mutex::new(Waiting::default()));
        if let Ok(mut logs) = self.0.lock() {
            logs.push((cluster_id.to_owned(), waiting.clone()));
        }
        waiting
    }

    /// Shipments of what waits, up to `max_lines` per cluster; logs whose workload is gone
    /// (their log dropped) and that have nothing left are forgotten.
    pub fn take(&self, max_lines: usize) -> Vec<OutputShipment> {
        let Ok(mut logs) = self.0.lock() else {
            return Vec::new();
        };
        logs.retain(|(_, waiting)| {
            Arc::strong_count(waiting) > 1 || waiting.lock().is_ok_and(|w| !w.lines.is_empty())
        });
        logs.iter()
            .filter_map(|(cluster_id, waiting)| {
                let waiting = waiting.lock().ok()?;
                let lines: Vec<ShippedLine> =
                    waiting.lines.iter().take(max_lines).cloned().collect();
                (!lines.is_empty()).then(|| OutputShipment {
                    cluster_id: cluster_id.clone(),
                    lines,
                })
            })
            .collect()
    }

    /// The server has (or will never take) cluster `cluster_id`'s lines up to `last_id`.
    pub fn acknowledge(&self, cluster_id: &str, last_id: i64) {
        let Ok(logs) = self.0.lock() else {
            return;
        };
        for (_, waiting) in logs.iter().filter(|(id, _)| id == cluster_id) {
            if let Ok(mut waiting) = waiting.lock() {
                while waiting.lines.front().is_some_and(|l| l.id <= last_id) {
                    waiting.lines.pop_front();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(id: i64) -> ShippedLine {
        ShippedLine {
            id,
            text: format!("line {id}"),
        }
    }

    #[test]
    fn lines_wait_until_acknowledged_and_gone_logs_are_forgotten() {
        let shipping = Shipping::default();
        let log = shipping.register("cl-1");
        for id in 1..=5 {
            log.lock().unwrap().push(line(id));
        }
        let sent = shipping.take(3);
        assert_eq!(sent.len(), 1);
        assert_eq!(
            sent[0].lines.iter().map(|l| l.id).collect::<Vec<_>>(),
            [1, 2, 3]
        );
        assert_eq!(
            shipping.take(3)[0].lines[0].id,
            1,
            "not acknowledged: sent again"
        );
        shipping.acknowledge("cl-1", 3);
        assert_eq!(shipping.take(10)[0].lines.len(), 2);
        drop(log);
        shipping.acknowledge("cl-1", 5);
        assert!(shipping.take(10).is_empty());
        assert!(shipping.0.lock().unwrap().is_empty(), "forgotten");
    }

    #[test]
    fn a_log_waits_with_at_most_its_newest_lines() {
        let mut waiting = Waiting::default();
        for id in 0..(MAX_WAITING_LINES as i64 + 10) {
            waiting.push(line(id));
        }
        assert_eq!(waiting.lines.len(), MAX_WAITING_LINES);
        assert_eq!(waiting.lines.front().unwrap().id, 10);
    }
}
