//! Pure types and rules of GPU Commons. No I/O and no async: the same code validates input in
//! the browser (compiled to WASM) and on the server.

pub mod agent_protocol;
pub mod agent_release;
pub mod allocator;
pub mod api_key;
pub mod catalog;
pub mod cluster;
pub mod compliance;
pub mod country;
pub mod device_status;
pub mod explorer;
pub mod fleet;
pub mod hardware;
pub mod id;
pub mod ledger;
pub mod money;
pub mod network;
pub mod output;
pub mod payout;
pub mod pricing;
pub mod promo;
pub mod proof_of_work;
pub mod rewards;
pub mod siws;
pub mod text;
pub mod time;
pub mod tunnel;
pub mod uptime;
pub mod wallet;
pub mod worker;
pub mod workload;
