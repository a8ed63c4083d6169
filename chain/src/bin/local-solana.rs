//! `local-solana`: a Solana JSON-RPC endpoint on this machine, over an in-process runtime
//! running the real SPL token programs, for browser tests and local demos of payouts.
//!
//! `local-solana --listen ADDR --treasury-key FILE --usdc-mint ADDRESS --token-mint ADDRESS`
//! creates both mints (6 decimals) and gives the treasury SOL and 1,000,000 of each; the key
//! file is made (mode 0600) when missing. Start the server with the same four values
//! (`--solana-rpc-url http://ADDR/`) and its payouts land here. `GET /health` says when ready.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chain::litesvm::{serve_json_rpc, Faults, LiteSvmRpc};
use chain::{parse_address, read_treasury_key, Keypair, Signer};

const USAGE: &str =
    "usage: local-solana --listen ADDR --treasury-key FILE --usdc-mint ADDRESS --token-mint ADDRESS";

#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("local-solana: {e}");
        std::process::exit(1);
    }
}

async fn run() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let (mut listen, mut key, mut usdc, mut token) = (None, None, None, None);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(USAGE)?;
        match flag.as_str() {
            "--listen" => listen = Some(value),
            "--treasury-key" => key = Some(PathBuf::from(value)),
            "--usdc-mint" => usdc = Some(parse_address(&value).map_err(|e| e.to_string())?),
            "--token-mint" => token = Some(parse_address(&value).map_err(|e| e.to_string())?),
            _ => return Err(USAGE.into()),
        }
    }
    let (Some(listen), Some(key), Some(usdc), Some(token)) = (listen, key, usdc, token) else {
        return Err(USAGE.into());
    };
    let treasury = treasury_at(&key)?;
    let rpc = Arc::new(LiteSvmRpc::new(0, Faults::default()));
    rpc.airdrop(&treasury.pubkey(), 1_000_000_000_000);
    for address in [usdc, token] {
        let mint = rpc.create_mint_at(address, 6);
        rpc.mint_to(&treasury.pubkey(), &mint, 1_000_000_000_000);
    }
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    println!(
        "local-solana: serving http://{}/ (treasury {})",
        listener.local_addr().map_err(|e| e.to_string())?,
        treasury.pubkey()
    );
    tokio::select! {
        served = serve_json_rpc(rpc, listener) => served.map_err(|e| e.to_string()),
        _ = tokio::signal::ctrl_c() => Ok(()),
    }
}

/// The key in `path`, made there (readable by its owner only) when the file is missing.
fn treasury_at(path: &Path) -> Result<Keypair, String> {
    if path.exists() {
        return read_treasury_key(path).map_err(|e| e.to_string());
    }
    use std::io::Write;
    let treasury = Keypair::new();
    let json = serde_json::to_string(&treasury.to_bytes().to_vec()).map_err(|e| e.to_string())?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
        .open(path)
        .and_then(|mut file| file.write_all(json.as_bytes()))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(treasury)
}
