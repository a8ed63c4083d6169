//! Operator commands (`gpu-commons seed`, `facility`, `attest`, `unattest`, `facilities`,
//! `unblock`, `credit`): each runs against the configured database in its own process and says what it did.

use platform::store::Store;

use crate::config::{Command, Config};
use crate::startup::{open_platform_for_task, seed_network};
use crate::Error;

/// Runs an operator task against the configured database; returns what it did, in words.
pub async fn run_command(config: &Config, command: Command) -> Result<String, Error> {
    match command {
        Command::Seed {
            devices,
            history_days,
            blocks,
        } => {
            let platform = open_platform_for_task(config).await?;
            let done = seed_network(&platform, devices, history_days, blocks).await;
            platform.store.close().await;
            done
        }
        Command::Facility {
            name,
            standards,
            until,
        } => set_facility(config, &name, &standards, &until).await,
        Command::Attest { facility, devices } => {
            let platform = open_platform_for_task(config).await?;
            let done = platform
                .compliance
                .attest(&facility, &devices, platform::now())
                .await;
            platform.store.close().await;
            done?;
            Ok(format!(
                "{} device(s) placed in '{facility}'; running servers apply it within a minute",
                devices.len()
            ))
        }
        Command::Unattest { devices } => {
            let platform = open_platform_for_task(config).await?;
            let done = platform
                .compliance
                .unattest(&devices, platform::now())
                .await;
            platform.store.close().await;
            Ok(format!(
                "{} device(s) taken out of their facility; running servers apply it within a minute",
                done?
            ))
        }
        Command::Facilities => list_facilities(config).await,
        Command::Unblock { device } => {
            let platform = open_platform_for_task(config).await?;
            let done = platform.agents.unblock(&device, platform::now()).await;
            platform.store.close().await;
            Ok(format!(
                "device {device}: {}; running servers apply it within a minute",
                done?
            ))
        }
        Command::Credit {
            wallet,
            usd,
            tokens,
            key,
            memo,
        } => credit(config, &wallet, usd, tokens, &key, &memo).await,
    }
}

/// `gpu-commons facility`: records (or updates) a certified facility.
async fn set_facility(
    config: &Config,
    name: &str,
    standards: &str,
    until: &str,
) -> Result<String, Error> {
    let now = platform::now();
    let facility =
        domain::compliance::Facility::new(name, standards, until, now).map_err(Error::Config)?;
    let platform = open_platform_for_task(config).await?;
    let done = platform.compliance.set_facility(&facility, now).await;
    platform.store.close().await;
    done?;
    Ok(format!(
        "facility '{}' holds {} through {until}; running servers apply it within a minute",
        facility.name,
        facility.standards.names()
    ))
}

/// `gpu-commons facilities`: every facility, whether its certification holds, and its devices.
async fn list_facilities(config: &Config) -> Result<String, Error> {
    let platform = open_platform_for_task(config).await?;
    let listed = platform.compliance.facilities().await;
    platform.store.close().await;
    let now = platform::now();
    let lines: Vec<String> = listed?
        .iter()
        .map(|f| {
            let until = f.facility.certified_until.to_rfc3339();
            let state = if f.facility.attestations_at(now).is_none() {
                "lapsed"
            } else {
                "holds"
            };
            format!(
                "{}: {} ({state} until {until}), {} device(s)",
                f.facility.name,
                f.facility.standards.names(),
                f.devices
            )
        })
        .collect();
    Ok(if lines.is_empty() {
        "no facilities recorded".into()
    } else {
        lines.join("\n")
    })
}

/// `gpu-commons credit`: credits a wallet's balance once per key, in dollars or tokens.
async fn credit(
    config: &Config,
    wallet: &str,
    usd: Option<String>,
    tokens: Option<String>,
    key: &str,
    memo: &str,
) -> Result<String, Error> {
    use domain::money::Asset;
    let invalid = |e: String| Error::Config(e);
    let wallet = domain::wallet::WalletAddress::parse(wallet)
        .map_err(|e| invalid(format!("--wallet '{wallet}': {e}")))?;
    let (asset, flag, text) = match (usd, tokens) {
        (Some(usd), None) => (Asset::Usdc, "usd", usd),
        (None, Some(tokens)) => (Asset::Token, "tokens", tokens),
        _ => return Err(invalid("give exactly one of --usd and --tokens".into())),
    };
    let units = asset
        .parse_amount(&text)
        .map_err(|e| invalid(format!("--{flag} '{text}': {e}")))?;
    let ledger = platform::ledger::LedgerService::new(Store::open(&config.database_url).await?);
    let recorded = ledger
        .operator_credit_wallet(&wallet, asset, units, key, memo, platform::now())
        .await?;
    Ok(if recorded {
        format!("credited {} to {wallet}", asset.show(units))
    } else {
        format!("a credit with key '{key}' was recorded before; nothing changed")
    })
}
