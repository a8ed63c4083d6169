//! The provider's commands: devices, adding one (with the agent's one-line install), owner
//! actions, earnings, and claims to the wallet.

use domain::payout::Payout;
use domain::rewards::ProviderEarnings;
use domain::worker::{RegistrationTicket, WorkerDevices};
use serde::{Deserialize, Serialize};

use crate::api::{CliError, Result};
use crate::table::{when, Table};
use crate::Context;

#[derive(Debug, clap::Subcommand)]
pub enum WorkerCommand {
    /// Your devices: status, uptime, earnings, and those whose agent has not called in yet.
    Devices,
    /// Add a device or act on one.
    Device {
        #[command(subcommand)]
        command: DeviceCommand,
    },
    /// What your devices earned: claimable, held until a proof, hires and rewards.
    Earnings,
    /// Claim an amount of claimable earnings to your wallet.
    Claim {
        /// usdc (hire earnings) or token (block rewards).
        #[arg(long)]
        asset: String,
        /// A decimal amount, e.g. 12.5.
        #[arg(long)]
        amount: String,
        /// A retry with the same key returns the same payout instead of claiming twice.
        #[arg(long, value_name = "KEY")]
        idempotency_key: Option<String>,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum DeviceCommand {
    /// Add a device; prints the command that installs and starts its agent.
    Add {
        #[arg(long)]
        name: String,
        /// linux, windows or macos.
        #[arg(long, default_value = "linux")]
        os: String,
        /// gpu or cpu.
        #[arg(long, default_value = "gpu")]
        kind: String,
        /// The ISO code of the country the machine is in.
        #[arg(long)]
        country: String,
    },
    /// Stop taking new clusters (its current one runs on).
    Pause { id: String },
    /// Take clusters again.
    Resume { id: String },
    /// Remove the device: its agent's credential stops working.
    Remove { id: String },
}

#[derive(Debug, Serialize, Deserialize)]
struct ActionOutcome {
    outcome: String,
}

impl WorkerCommand {
    pub async fn run(self, context: &Context) -> Result<()> {
        let api = &context.api;
        match self {
            WorkerCommand::Devices => {
                let devices: WorkerDevices = api.get("/worker/devices").await?;
                context.print(&devices, devices_text);
            }
            WorkerCommand::Device {
                command:
                    DeviceCommand::Add {
                        name,
                        os,
                        kind,
                        country,
                    },
            } => {
                let form =
                    serde_json::json!({ "name": name, "os": os, "kind": kind, "country": country });
                let ticket: RegistrationTicket = api.post("/worker/devices", &form, None).await?;
                context.print(&ticket, |t| {
                    format!(
                        "device {} added. On the machine, run (the token works once, until {}):\n\n  {}\n",
                        t.device_id,
                        when(Some(t.expires_at.0)),
                        t.command
                    )
                });
            }
            WorkerCommand::Device { command } => {
                let (id, action) = match &command {
                    DeviceCommand::Pause { id } => (id, "pause"),
                    DeviceCommand::Resume { id } => (id, "resume"),
                    DeviceCommand::Remove { id } => (id, "remove"),
                    DeviceCommand::Add { .. } => unreachable!("answered above"),
                };
                let outcome: ActionOutcome = api
                    .post(
                        &format!("/worker/devices/{id}/{action}"),
                        &serde_json::json!({}),
                        None,
                    )
                    .await?;
                context.print(&outcome, |o| format!("{id}: {}\n", o.outcome));
            }
            WorkerCommand::Earnings => {
                let earnings: ProviderEarnings = api.get("/worker/earnings").await?;
                context.print(&earnings, earnings_text);
            }
            WorkerCommand::Claim {
                asset,
                amount,
                idempotency_key,
            } => {
                if !matches!(asset.as_str(), "usdc" | "token") {
                    return Err(CliError::Usage(format!(
                        "--asset '{asset}': expected usdc or token"
                    )));
                }
                let claim = serde_json::json!({ "asset": asset, "amount": amount });
                let payout: Payout = api
                    .post("/worker/payouts", &claim, idempotency_key.as_deref())
                    .await?;
                context.print(&payout, |p| {
                    format!(
                        "payout {}: {} {} — {}\n",
                        p.id,
                        domain::ledger::decimal(p.amount),
                        p.asset.as_str(),
                        p.status.as_str()
                    )
                });
            }
        }
        Ok(())
    }
}

fn devices_text(devices: &WorkerDevices) -> String {
    let mut table = Table::new(&[
        "ID",
        "NAME",
        "GPUS",
        "COUNTRY",
        "STATUS",
        "UPTIME 30D",
        "EARNED",
        "LAST HEARD",
    ]);
    for d in &devices.devices {
        let gpus = match &d.gpu_model {
            Some(model) => format!("{} × {model}", d.gpu_count),
            None => d.kind.as_str().to_owned(),
        };
        let status = match d.readiness() {
            Ok(()) => d.status.as_str().to_owned(),
            Err(why) => format!("{} ({why})", d.status.as_str()),
        };
        table.row(vec![
            d.id.clone(),
            d.name.clone(),
            gpus,
            d.country.clone(),
            status,
            format!("{:.1} %", f64::from(d.uptime_30d_permille) / 10.0),
            d.earned.to_string(),
            when(d.last_heartbeat_at.map(|t| t.0)),
        ]);
    }
    let mut text = table.render("no devices yet: `gpuc device add`");
    if !devices.awaiting_agent.is_empty() {
        text.push_str("\nwaiting for their agent:\n");
        for d in &devices.awaiting_agent {
            text.push_str(&format!("  {} {}\n", d.device_id, d.name));
        }
    }
    text
}

fn earnings_text(e: &ProviderEarnings) -> String {
    let mut text = format!(
        "claimable: {} and {} GCT; held until the next proof: {} GCT\nhires: {} earned, {} forfeited\n",
        e.claimable, e.claimable_tokens, e.held_tokens, e.hired_earned, e.hired_forfeited
    );
    text.push('\n');
    text.push_str(&crate::table::statement(&e.payments, "no payments yet"));
    text
}
