//! What the services count for the operator's metrics (issue 17). Recording goes through the
//! `metrics` facade: nothing is kept unless the server installed its Prometheus recorder
//! (`--metrics-listen`). docs/METRICS.md describes each metric; the names are here, once.

use std::time::Duration;

pub const QUOTES: &str = "gc_quotes_total";
pub const QUOTE_SECONDS: &str = "gc_quote_duration_seconds";
pub const DEPLOYS: &str = "gc_deploys_total";
pub const DEPLOY_TO_RUNNING_SECONDS: &str = "gc_deploy_to_running_seconds";
pub const PAYOUTS: &str = "gc_payouts_finished_total";
pub const DEPOSITS: &str = "gc_deposits_finished_total";
pub const BLOCK_CLOSES: &str = "gc_reward_blocks_closed_total";
pub const BLOCK_CLOSE_SECONDS: &str = "gc_reward_block_close_duration_seconds";

/// A quote answered in `took`, fillable now or not.
pub(crate) fn quoted(took: Duration, fillable: bool) {
    let fillable = if fillable { "yes" } else { "no" };
    metrics::counter!(QUOTES, "fillable" => fillable).increment(1);
    metrics::histogram!(QUOTE_SECONDS).record(took.as_secs_f64());
}

/// How a deploy ended: `placed`, `refused` (nothing can be placed now, or a conflict such as a
/// taken name or too small a balance), `invalid` (the request), or `failed` (our side).
pub(crate) fn deployed(outcome: &'static str) {
    metrics::counter!(DEPLOYS, "outcome" => outcome).increment(1);
}

/// A cluster ran on every device `ms` after it was deployed.
pub(crate) fn running_after(ms: i64) {
    metrics::histogram!(DEPLOY_TO_RUNNING_SECONDS).record(ms.max(0) as f64 / 1000.0);
}

/// A payout ended (`confirmed` or `failed`).
pub(crate) fn payout_finished(status: &'static str) {
    metrics::counter!(PAYOUTS, "status" => status).increment(1);
}

/// A deposit ended (`confirmed`, `failed` or `expired`).
pub(crate) fn deposit_finished(status: &'static str) {
    metrics::counter!(DEPOSITS, "status" => status).increment(1);
}

/// A reward block was closed, in `took`.
pub(crate) fn block_closed(took: Duration) {
    metrics::counter!(BLOCK_CLOSES).increment(1);
    metrics::histogram!(BLOCK_CLOSE_SECONDS).record(took.as_secs_f64());
}
