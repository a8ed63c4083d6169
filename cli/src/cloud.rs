//! The renter's commands: quote, deploy (and wait for it to run), clusters, a cluster's detail
//! and logs, extend, terminate, balance, billing, and the account's API keys.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use domain::api_key::ApiKey;
use domain::cluster::{
    ClusterDetail, ClusterStatus, ClusterSummary, DurationUnit, ExtendRequest, QuoteAnswer,
};
use domain::ledger::Billing;
use domain::money::MicroUsd;
use domain::output::ClusterOutput;
use serde::{Deserialize, Serialize};

use crate::api::{CliError, Result};
use crate::spec::SpecArgs;
use crate::table::{when, Table};
use crate::Context;

#[derive(Debug, clap::Subcommand)]
pub enum CloudCommand {
    /// The price of a cluster and whether it can be placed now.
    Quote(SpecArgs),
    /// Pay from the balance and hire the devices; with --wait, until it runs (or fails).
    Deploy {
        #[command(flatten)]
        spec: SpecArgs,
        /// Wait until the cluster runs on every device, or ends.
        #[arg(long)]
        wait: bool,
        /// A retry with the same key (and the same spec) returns the same cluster instead of
        /// paying twice. [default: a new key each time]
        #[arg(long, value_name = "KEY")]
        idempotency_key: Option<String>,
    },
    /// Your clusters, newest first.
    Clusters {
        /// Only those in this status (deploying, running, completed, terminated, failed).
        #[arg(long)]
        status: Option<String>,
    },
    /// One cluster: its devices, endpoints and history.
    Cluster {
        #[command(subcommand)]
        command: ClusterCommand,
    },
    /// A cluster's workload output; with -f, follow it until the cluster ends.
    Logs {
        id: String,
        #[arg(short = 'f', long)]
        follow: bool,
        /// Only this device's lines.
        #[arg(long)]
        device: Option<String>,
    },
    /// More time on the same devices, charged like a new order.
    Extend {
        id: String,
        /// How much longer, in --unit.
        #[arg(long, value_name = "N")]
        duration: u32,
        /// hourly, daily or weekly. [default: hourly]
        #[arg(long, default_value = "hourly")]
        unit: String,
        #[arg(long, value_name = "KEY")]
        idempotency_key: Option<String>,
    },
    /// End a cluster now; unused time is refunded.
    Terminate { id: String },
    /// What the account can spend.
    Balance,
    /// Every movement of the account's money, newest first; --csv for a spreadsheet.
    Billing {
        #[arg(long)]
        csv: bool,
    },
    /// The account's API keys (made and revoked in the Cloud console).
    Keys,
}

#[derive(Debug, clap::Subcommand)]
pub enum ClusterCommand {
    /// Its status, devices, endpoints and history.
    Show { id: String },
}

#[derive(Debug, Serialize, Deserialize)]
struct Balance {
    available: MicroUsd,
    available_tokens: domain::money::Tokens,
}

/// How often `--wait` and `logs -f` ask again.
const POLL_EVERY: Duration = Duration::from_secs(1);

impl CloudCommand {
    pub async fn run(self, context: &Context) -> Result<()> {
        let api = &context.api;
        match self {
            CloudCommand::Quote(spec) => {
                let answer: QuoteAnswer = api.post("/cloud/quote", &spec.request()?, None).await?;
                context.print(&answer, quote_text);
            }
            CloudCommand::Deploy {
                spec,
                wait,
                idempotency_key,
            } => {
                let request = spec.request()?;
                let cluster: ClusterSummary = api
                    .post("/cloud/clusters", &request, idempotency_key.as_deref())
                    .await?;
                let cluster = if wait {
                    wait_until_running(context, cluster).await?
                } else {
                    cluster
                };
                context.print(&cluster, |c| {
                    format!(
                        "{} {} — {} ({}), charged {}\n",
                        c.id,
                        c.name,
                        c.status.as_str(),
                        c.status_reason,
                        c.charged
                    )
                });
                if wait && cluster.status != ClusterStatus::Running {
                    return Err(CliError::Refused {
                        status: reqwest::StatusCode::CONFLICT,
                        message: format!(
                            "cluster {} ended {}: {}",
                            cluster.id,
                            cluster.status.as_str(),
                            cluster.status_reason
                        ),
                    });
                }
            }
            CloudCommand::Clusters { status } => {
                let path = match status {
                    Some(status) => format!("/cloud/clusters?status={status}"),
                    None => "/cloud/clusters".to_owned(),
                };
                let clusters: Vec<ClusterSummary> = api.get(&path).await?;
                context.print(&clusters, clusters_table);
            }
            CloudCommand::Cluster {
                command: ClusterCommand::Show { id },
            } => {
                let detail: ClusterDetail = api.get(&format!("/cloud/clusters/{id}")).await?;
                context.print(&detail, detail_text);
            }
            CloudCommand::Logs { id, follow, device } => logs(context, &id, follow, device).await?,
            CloudCommand::Extend {
                id,
                duration,
                unit,
                idempotency_key,
            } => {
                let unit =
                    DurationUnit::parse(&unit).map_err(|e| CliError::Usage(e.to_string()))?;
                let request = ExtendRequest {
                    duration_unit: unit,
                    duration_count: duration,
                };
                let cluster: ClusterSummary = api
                    .post(
                        &format!("/cloud/clusters/{id}/extend"),
                        &request,
                        idempotency_key.as_deref(),
                    )
                    .await?;
                context.print(&cluster, |c| {
                    format!(
                        "{} now runs until {}; charged {} in all\n",
                        c.id,
                        when(c.ends_at),
                        c.charged
                    )
                });
            }
            CloudCommand::Terminate { id } => {
                let cluster: ClusterSummary = api
                    .post(
                        &format!("/cloud/clusters/{id}/terminate"),
                        &serde_json::json!({}),
                        None,
                    )
                    .await?;
                context.print(&cluster, |c| {
                    format!("{} {}: {}\n", c.id, c.status.as_str(), c.status_reason)
                });
            }
            CloudCommand::Balance => {
                let balance: Balance = api.get("/cloud/balance").await?;
                context.print(&balance, |b| {
                    format!("{} available; {} GCT\n", b.available, b.available_tokens)
                });
            }
            CloudCommand::Billing { csv: true } => {
                print!("{}", api.get_text("/cloud/billing.csv").await?);
            }
            CloudCommand::Billing { csv: false } => {
                let billing: Billing = api.get("/cloud/billing").await?;
                context.print(&billing, billing_table);
            }
            CloudCommand::Keys => {
                let keys: Vec<ApiKey> = api.get("/keys").await?;
                context.print(&keys, keys_table);
            }
        }
        Ok(())
    }
}

/// Polls the cluster until it runs or ends, with a spinner on a terminal.
async fn wait_until_running(context: &Context, cluster: ClusterSummary) -> Result<ClusterSummary> {
    let spinner = std::io::stderr().is_terminal() && !context.json;
    let frames = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
    let mut cluster = cluster;
    let mut tick = 0usize;
    while cluster.status == ClusterStatus::Deploying
        || cluster.status == ClusterStatus::PendingPayment
    {
        if spinner {
            eprint!(
                "\r{} {} {}: {}\x1b[K",
                frames[tick % frames.len()],
                cluster.id,
                cluster.status.as_str(),
                cluster.status_reason
            );
            let _ = std::io::stderr().flush();
        } else if tick == 0 {
            eprintln!("waiting for {} to run…", cluster.id);
        }
        tick += 1;
        tokio::time::sleep(POLL_EVERY).await;
        let detail: ClusterDetail = context
            .api
            .get(&format!("/cloud/clusters/{}", cluster.id))
            .await?;
        cluster = detail.summary;
    }
    if spinner {
        eprint!("\r\x1b[K");
    }
    Ok(cluster)
}

async fn logs(context: &Context, id: &str, follow: bool, device: Option<String>) -> Result<()> {
    let mut since = 0i64;
    loop {
        let mut path = format!("/cloud/clusters/{id}/logs?since={since}&limit=500");
        if let Some(device) = &device {
            path.push_str(&format!("&device={device}"));
        }
        let output: ClusterOutput = context.api.get(&path).await?;
        if let Some(last) = output.lines.last() {
            since = last.line;
        }
        let mut out = std::io::stdout().lock();
        for line in &output.lines {
            let text = if context.json {
                serde_json::to_string(line).unwrap_or_default()
            } else {
                format!("[{}] {}", line.device_id, line.text)
            };
            let _ = writeln!(out, "{text}");
        }
        drop(out);
        if output.more {
            continue;
        }
        if !follow {
            return Ok(());
        }
        let detail: ClusterDetail = context.api.get(&format!("/cloud/clusters/{id}")).await?;
        let ended = !matches!(
            detail.summary.status,
            ClusterStatus::Deploying | ClusterStatus::Running | ClusterStatus::PendingPayment
        );
        if ended {
            // One last read: what arrived before it ended.
            let rest: ClusterOutput = context
                .api
                .get(&format!(
                    "/cloud/clusters/{id}/logs?since={since}&limit=500"
                ))
                .await?;
            for line in rest.lines {
                println!("[{}] {}", line.device_id, line.text);
            }
            return Ok(());
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

fn quote_text(answer: &QuoteAnswer) -> String {
    let fill = &answer.fillability;
    let mut text = format!(
        "{} for {} unit-hours — {}\n",
        answer.quote.shown_total(),
        answer.quote.unit_hours,
        if fill.fillable {
            "can be placed now"
        } else {
            "cannot be placed now"
        }
    );
    for reason in &fill.reasons {
        text.push_str(&format!("  {reason}\n"));
    }
    text
}

fn clusters_table(clusters: &Vec<ClusterSummary>) -> String {
    let mut table = Table::new(&[
        "ID", "NAME", "KIND", "HARDWARE", "UNITS", "STATUS", "ENDS", "CHARGED",
    ]);
    for c in clusters {
        table.row(vec![
            c.id.clone(),
            c.name.clone(),
            c.kind.as_str().to_owned(),
            c.hardware.clone(),
            c.units.to_string(),
            c.status.as_str().to_owned(),
            when(c.ends_at),
            c.charged.to_string(),
        ]);
    }
    table.render("no clusters")
}

fn detail_text(detail: &ClusterDetail) -> String {
    let c = &detail.summary;
    let mut text = format!(
        "{} {} — {} ({})\n{} × {} {}, {} h, charged {}, ends {}\n",
        c.id,
        c.name,
        c.status.as_str(),
        c.status_reason,
        c.units,
        c.hardware,
        c.kind.as_str(),
        c.hours,
        c.charged,
        when(c.ends_at)
    );
    let mut members = Table::new(&["DEVICE", "ROLE", "UNITS", "COUNTRY", "STATUS"]);
    for m in &detail.members {
        members.row(vec![
            m.device_id.clone(),
            m.role.as_str().to_owned(),
            m.units.to_string(),
            m.country.clone(),
            m.device_status.as_str().to_owned(),
        ]);
    }
    text.push('\n');
    text.push_str(&members.render("no devices"));
    if !detail.tunnels.is_empty() {
        text.push_str("\nendpoints (open with your API key or the cluster's access token):\n");
        for tunnel in &detail.tunnels {
            text.push_str(&format!("  {}\n", tunnel.url));
        }
    }
    text.push_str("\nhistory:\n");
    for event in &detail.events {
        text.push_str(&format!("  {}  {}\n", when(Some(event.at)), event.detail));
    }
    text
}

fn billing_table(billing: &Billing) -> String {
    let mut text = format!(
        "{} available; {} GCT\n\n",
        billing.available, billing.available_tokens
    );
    text.push_str(&crate::table::statement(&billing.lines, "no movements yet"));
    text
}

fn keys_table(keys: &Vec<ApiKey>) -> String {
    let mut table = Table::new(&["ID", "NAME", "PREFIX", "CREATED", "EXPIRES", "STATE"]);
    for key in keys {
        table.row(vec![
            key.id.clone(),
            key.name.clone(),
            key.prefix.clone(),
            when(Some(key.created_at.0)),
            when(Some(key.expires_at.0)),
            if key.revoked_at.is_some() {
                "revoked".into()
            } else {
                "active".into()
            },
        ]);
    }
    table.render("no API keys")
}
