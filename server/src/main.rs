use clap::Parser;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use server::{start, Settings};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let mut settings = Settings::parse();
    let command = settings.command.take();
    let config = match settings.resolve() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("gpu-commons: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::new(&config.log))
        .init();
    if let Some(command) = command {
        return match server::run_command(&config, command).await {
            Ok(done) => {
                println!("{done}");
                std::process::ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("gpu-commons: {e}");
                std::process::ExitCode::FAILURE
            }
        };
    }
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
