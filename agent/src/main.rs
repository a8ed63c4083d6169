//! The GPU Commons provider agent. Registration, hardware detection, heartbeats and verification
//! arrive with the worker issue; until then the binary only identifies itself.

fn main() -> std::process::ExitCode {
    match std::env::args().nth(1).as_deref() {
        Some("--version") | Some("-V") => {
            println!("gpu-commons-agent {}", env!("CARGO_PKG_VERSION"));
            std::process::ExitCode::SUCCESS
        }
        _ => {
            eprintln!(
                "gpu-commons-agent {}: device registration is not available in this build yet",
                env!("CARGO_PKG_VERSION")
            );
            std::process::ExitCode::from(2)
        }
    }
}
