//! `gpuc`: the GPU Commons command line. Renters quote, deploy, watch, extend and end clusters
//! and read their billing; providers add devices, watch them and claim earnings. Every command
//! calls the platform's JSON API with an API key (`gpuc login`, or `GC_API_KEY`), prints a
//! table by default and the API's JSON with `--json`, and exits with a code that says what
//! went wrong (see `api::CliError`).

mod api;
mod cloud;
mod credentials;
mod spec;
mod table;
mod worker;

use std::io::Write;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::api::{Api, CliError, Result};

#[derive(Debug, Parser)]
#[command(
    name = "gpuc",
    version,
    about = "The GPU Commons command line for renters and providers"
)]
struct Cli {
    /// The platform's address. [default: what `gpuc login` kept, else http://127.0.0.1:3000]
    #[arg(long, env = "GC_SERVER", global = true)]
    server: Option<String>,
    /// Print the API's JSON instead of a table (for scripts).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Keep an API key (made in the Cloud console) for the next commands: from --key, or read
    /// from standard input. Checked with the server first.
    Login {
        #[arg(long, value_name = "KEY")]
        key: Option<String>,
    },
    /// Forget the kept API key.
    Logout,
    /// Who the API key signs in as.
    Whoami,
    // Boxed: its deploy spec makes it far larger than the rest.
    #[command(flatten)]
    Cloud(Box<cloud::CloudCommand>),
    #[command(flatten)]
    Worker(worker::WorkerCommand),
}

/// What a command has to work with.
pub struct Context {
    pub api: Api,
    pub json: bool,
}

impl Context {
    /// Prints `value` as JSON with `--json`, else `human`'s text.
    pub fn print<T: serde::Serialize>(&self, value: &T, human: impl FnOnce(&T) -> String) {
        let text = if self.json {
            serde_json::to_string_pretty(value).unwrap_or_default() + "\n"
        } else {
            human(value)
        };
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(text.as_bytes());
    }
}

const DEFAULT_SERVER: &str = "http://127.0.0.1:3000";

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return fail(&CliError::Local(e.to_string())),
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

fn fail(error: &CliError) -> ExitCode {
    eprintln!("gpuc: {error}");
    ExitCode::from(error.exit_code())
}

async fn run(cli: Cli) -> Result<()> {
    let path = credentials::path()?;
    let kept = credentials::load(&path)?;
    let server = cli
        .server
        .clone()
        .or_else(|| kept.server.clone())
        .unwrap_or_else(|| DEFAULT_SERVER.to_owned());
    let key = std::env::var("GC_API_KEY")
        .ok()
        .filter(|k| !k.is_empty())
        .or(kept.api_key.clone());
    match cli.command {
        Command::Login { key: given } => {
            let key = match given {
                Some(key) => key,
                None => read_key()?,
            };
            let api = Api::new(&server, Some(key.clone()))?;
            let who: serde_json::Value = api.get("/auth/session").await?;
            credentials::save(
                &path,
                &credentials::Credentials {
                    server: Some(api.server().to_owned()),
                    api_key: Some(key),
                },
            )?;
            println!(
                "signed in to {} as {}; the key is kept in {}",
                api.server(),
                who["wallet"].as_str().unwrap_or("?"),
                path.display()
            );
            Ok(())
        }
        Command::Logout => {
            match std::fs::remove_file(&path) {
                Ok(()) => println!("the API key was forgotten ({})", path.display()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    println!("no API key was kept")
                }
                Err(e) => return Err(CliError::Local(format!("{}: {e}", path.display()))),
            }
            Ok(())
        }
        Command::Whoami => {
            let context = Context {
                api: Api::new(&server, key)?,
                json: cli.json,
            };
            let who: serde_json::Value = context.api.get("/auth/session").await?;
            context.print(&who, |who| {
                format!(
                    "{} on {}\n",
                    who["wallet"].as_str().unwrap_or("?"),
                    context.api.server()
                )
            });
            Ok(())
        }
        Command::Cloud(command) => {
            let context = Context {
                api: Api::new(&server, key)?,
                json: cli.json,
            };
            command.run(&context).await
        }
        Command::Worker(command) => {
            let context = Context {
                api: Api::new(&server, key)?,
                json: cli.json,
            };
            command.run(&context).await
        }
    }
}

/// The API key from standard input (a prompt when it is a terminal).
fn read_key() -> Result<String> {
    use std::io::IsTerminal;
    if std::io::stdin().is_terminal() {
        eprint!("API key (from the Cloud console): ");
        let _ = std::io::stderr().flush();
    }
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|e| CliError::Local(e.to_string()))?;
    let key = line.trim().to_owned();
    if key.is_empty() {
        return Err(CliError::Usage(
            "no API key given: pass --key or type it on standard input".into(),
        ));
    }
    Ok(key)
}
