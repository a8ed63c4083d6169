//! Operator metrics (issue 17): Prometheus's text format at `GET /metrics` on a listener of its
//! own (`--metrics-listen`, off by default), never on the public site. The services record
//! through the `metrics` facade (`platform::metrics` names theirs); this module installs the
//! recorder, counts HTTP requests and background jobs, and reads the gauges (devices by
//! status, database connections, leadership) when scraped. docs/METRICS.md lists every metric.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use metrics::Unit;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use platform::Platform;

use crate::replication::Leadership;

pub const HTTP_REQUESTS: &str = "gc_http_requests_total";
pub const HTTP_SECONDS: &str = "gc_http_request_duration_seconds";
pub const HEARTBEATS: &str = "gc_heartbeats_total";
pub const JOB_RUNS: &str = "gc_job_runs_total";
pub const JOB_SECONDS: &str = "gc_job_duration_seconds";
pub const DEVICES: &str = "gc_devices";
pub const DB_CONNECTIONS: &str = "gc_db_connections";
pub const LEADER: &str = "gc_replica_leader";

/// Latency buckets, in seconds: a heartbeat's tenth of a millisecond up to a slow page.
const SECONDS_BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];
/// deploy → running and block closes take seconds to minutes.
const SLOW_BUCKETS: [f64; 10] = [0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0];
/// How often histograms' recent samples are folded in when nobody scrapes, so their memory
/// stays bounded.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

static RECORDER: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process's Prometheus recorder, installed at the first call (one per process: several
/// servers in one test process share it).
pub fn install() -> PrometheusHandle {
    RECORDER
        .get_or_init(|| {
            let slow = [
                platform::metrics::DEPLOY_TO_RUNNING_SECONDS,
                platform::metrics::BLOCK_CLOSE_SECONDS,
            ];
            let mut builder = PrometheusBuilder::new()
                .set_buckets(&SECONDS_BUCKETS)
                .expect("bucket bounds are not empty");
            for name in slow {
                builder = builder
                    .set_buckets_for_metric(Matcher::Full(name.to_owned()), &SLOW_BUCKETS)
                    .expect("bucket bounds are not empty");
            }
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!(
                    "another metrics recorder was installed first; /metrics stays empty"
                );
            }
            describe();
            let upkeep = handle.clone();
            std::thread::spawn(move || loop {
                std::thread::sleep(UPKEEP_EVERY);
                upkeep.run_upkeep();
            });
            handle
        })
        .clone()
}

fn describe() {
    use platform::metrics as p;
    metrics::describe_counter!(
        HTTP_REQUESTS,
        "HTTP requests answered, by route pattern, method and status"
    );
    metrics::describe_histogram!(
        HTTP_SECONDS,
        Unit::Seconds,
        "HTTP request latency, by route pattern and method"
    );
    metrics::describe_counter!(HEARTBEATS, "agent heartbeats received, by outcome");
    metrics::describe_counter!(JOB_RUNS, "background job passes, by job and outcome");
    metrics::describe_histogram!(
        JOB_SECONDS,
        Unit::Seconds,
        "background job pass duration, by job"
    );
    metrics::describe_gauge!(DEVICES, "devices in the fleet index, by status");
    metrics::describe_gauge!(
        DB_CONNECTIONS,
        "database pool connections, by state (idle, in_use)"
    );
    metrics::describe_gauge!(LEADER, "1 while this replica holds the leader lease");
    metrics::describe_counter!(
        p::QUOTES,
        "quotes answered, by whether the cluster can be placed now"
    );
    metrics::describe_histogram!(
        p::QUOTE_SECONDS,
        Unit::Seconds,
        "time to price and check a quote"
    );
    metrics::describe_counter!(
        p::DEPLOYS,
        "deploys, by outcome (placed, refused, invalid, failed)"
    );
    metrics::describe_histogram!(
        p::DEPLOY_TO_RUNNING_SECONDS,
        Unit::Seconds,
        "from a deploy to its cluster running on every device"
    );
    metrics::describe_counter!(
        p::PAYOUTS,
        "payouts that ended, by status (confirmed, failed)"
    );
    metrics::describe_counter!(
        p::DEPOSITS,
        "deposits that ended, by status (confirmed, failed, expired)"
    );
    metrics::describe_counter!(p::BLOCK_CLOSES, "hourly reward blocks closed");
    metrics::describe_histogram!(
        p::BLOCK_CLOSE_SECONDS,
        Unit::Seconds,
        "time to score and write a reward block"
    );
}

/// Counts each request by the route pattern it matched (never its raw path: ids and probes
/// would make a series each), its method and status, with its latency.
pub async fn track(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = method_label(request.method());
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!(HTTP_REQUESTS, "route" => route.clone(), "method" => method, "status" => status)
        .increment(1);
    metrics::histogram!(HTTP_SECONDS, "route" => route, "method" => method)
        .record(started.elapsed().as_secs_f64());
    response
}

/// A method's label: the standard ones by name, any other as one label.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// A background job's pass: its outcome and how long it took.
pub fn job_ran(job: &'static str, took: Duration, failed: bool) {
    let outcome = if failed { "failed" } else { "ok" };
    metrics::counter!(JOB_RUNS, "job" => job, "outcome" => outcome).increment(1);
    metrics::histogram!(JOB_SECONDS, "job" => job).record(took.as_secs_f64());
}

#[derive(Clone)]
struct Scraped {
    handle: PrometheusHandle,
    platform: Platform,
    leadership: Leadership,
}

/// The metrics listener's whole surface: `GET /metrics`.
pub fn router(handle: PrometheusHandle, platform: Platform, leadership: Leadership) -> Router {
    Router::new()
        .route("/metrics", get(scrape))
        .with_state(Scraped {
            handle,
            platform,
            leadership,
        })
}

async fn scrape(State(scraped): State<Scraped>) -> Response {
    let counted = scraped.platform.fleet.devices_by_status();
    // Every status, so one that emptied reads 0 rather than its last count.
    for &status in domain::fleet::DeviceStatus::ALL {
        let devices = counted
            .iter()
            .find(|(s, _)| *s == status)
            .map_or(0, |(_, n)| *n);
        metrics::gauge!(DEVICES, "status" => status.as_str()).set(devices as f64);
    }
    let (size, idle) = scraped.platform.store.connections();
    let idle = u32::try_from(idle).unwrap_or(u32::MAX);
    metrics::gauge!(DB_CONNECTIONS, "state" => "idle").set(f64::from(idle));
    metrics::gauge!(DB_CONNECTIONS, "state" => "in_use").set(f64::from(size.saturating_sub(idle)));
    metrics::gauge!(LEADER).set(if scraped.leadership.leads() { 1.0 } else { 0.0 });
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        scraped.handle.render(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_methods_share_one_label() {
        assert_eq!(method_label(&Method::POST), "POST");
        let odd = Method::from_bytes(b"PROPFIND").unwrap();
        assert_eq!(method_label(&odd), "other");
    }
}
