use clap::Parser;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use server::{start, Settings};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let config = match Settings::parse().resolve() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("gpu-commons: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::new(&config.log))
        .init();
    let mut running = match start(config).await {
        Ok(running) => running,
        Err(e) => {
            eprintln!("gpu-commons: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    println!("GPU Commons is running at {}", running.public_url);
    tokio::select! {
        result = running.wait() => {
            if let Err(e) = result {
                eprintln!("gpu-commons: {e}");
                return std::process::ExitCode::FAILURE;
            }
        }
        _ = shutdown_signal() => {
            tracing::info!("shutting down");
            running.stop().await;
        }
    }
    std::process::ExitCode::SUCCESS
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => return std::future::pending().await,
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
