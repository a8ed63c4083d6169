//! A cluster spec: the deploy request the API takes (`domain::cluster::DeployRequest`), from a
//! TOML or JSON file (`-f cluster.toml`), from flags, or both (flags win). The domain's own
//! types read it, so a spec the CLI accepts is one the server reads the same way.

use std::collections::BTreeMap;
use std::path::PathBuf;

use domain::cluster::DeployRequest;
use serde_json::{json, Map, Value};

use crate::api::{CliError, Result};

#[derive(Debug, Default, clap::Args)]
pub struct SpecArgs {
    /// A cluster spec file, TOML or JSON (by its extension), with the deploy request's fields:
    /// name, kind, hardware, quantity, duration_unit, duration_count, payment, countries,
    /// min_tier, compliance, purpose, and [workload] image, command, port, env.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// The cluster's name.
    #[arg(long)]
    pub name: Option<String>,
    /// ray, mega_ray, kubernetes, bare_metal or container.
    #[arg(long)]
    pub kind: Option<String>,
    /// A GPU model as the catalog names it (e.g. "H100 80GB SXM"), or cpu.
    #[arg(long)]
    pub hardware: Option<String>,
    /// GPUs (or CPU devices) wanted.
    #[arg(long)]
    pub quantity: Option<u32>,
    /// How long, in --unit.
    #[arg(long, value_name = "N")]
    pub duration: Option<u32>,
    /// hourly, daily or weekly. [default: hourly]
    #[arg(long)]
    pub unit: Option<String>,
    /// usdc or token. [default: usdc]
    #[arg(long)]
    pub payment: Option<String>,
    /// A country (ISO code) the devices may be in; repeat for several. [default: anywhere]
    #[arg(long = "country", value_name = "CODE")]
    pub countries: Vec<String>,
    /// The lowest connectivity tier: ultra, high, medium or low.
    #[arg(long)]
    pub min_tier: Option<String>,
    /// e2e_encrypted, soc2 or hipaa.
    #[arg(long)]
    pub compliance: Option<String>,
    /// general, inference or train.
    #[arg(long)]
    pub purpose: Option<String>,
    /// The container image (container and Ray clusters).
    #[arg(long)]
    pub image: Option<String>,
    /// The command the workload runs.
    #[arg(long)]
    pub command: Option<String>,
    /// The port the workload serves (reached through the platform's tunnel).
    #[arg(long)]
    pub port: Option<u16>,
    /// An environment variable for the workload, NAME=VALUE; repeat for several.
    #[arg(long = "env", value_name = "NAME=VALUE")]
    pub env: Vec<String>,
}

/// How a spec file is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Toml,
    Json,
}

impl SpecArgs {
    /// The deploy request: the file's fields (when given), then the flags over them.
    pub fn request(&self) -> Result<DeployRequest> {
        let file = match &self.file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| CliError::Usage(format!("{}: {e}", path.display())))?;
                let format = match path.extension().and_then(|e| e.to_str()) {
                    Some("json") => Format::Json,
                    _ => Format::Toml,
                };
                Some((text, format))
            }
            None => None,
        };
        self.merged(file.as_ref().map(|(text, format)| (text.as_str(), *format)))
    }

    /// [`SpecArgs::request`] over a file's text already read.
    pub fn merged(&self, file: Option<(&str, Format)>) -> Result<DeployRequest> {
        let mut spec = match file {
            None => Map::new(),
            Some((text, format)) => parse_file(text, format)?,
        };
        let mut set = |field: &str, value: Option<Value>| {
            if let Some(value) = value {
                spec.insert(field.to_owned(), value);
            }
        };
        set("name", self.name.clone().map(Value::from));
        set("kind", self.kind.clone().map(Value::from));
        set("hardware", self.hardware.clone().map(Value::from));
        set("quantity", self.quantity.map(Value::from));
        set("duration_count", self.duration.map(Value::from));
        set("duration_unit", self.unit.clone().map(Value::from));
        set("payment", self.payment.clone().map(Value::from));
        set("min_tier", self.min_tier.clone().map(Value::from));
        set("compliance", self.compliance.clone().map(Value::from));
        set("purpose", self.purpose.clone().map(Value::from));
        if !self.countries.is_empty() {
            set("countries", Some(json!(self.countries)));
        }
        let mut workload = match spec.remove("workload") {
            Some(Value::Object(workload)) => workload,
            Some(_) => return Err(spec_error("workload must be a table of fields")),
            None => Map::new(),
        };
        let mut set_work = |field: &str, value: Option<Value>| {
            if let Some(value) = value {
                workload.insert(field.to_owned(), value);
            }
        };
        set_work("image", self.image.clone().map(Value::from));
        set_work("command", self.command.clone().map(Value::from));
        set_work("port", self.port.map(Value::from));
        if !self.env.is_empty() {
            let mut env: BTreeMap<String, Value> = match workload.remove("env") {
                Some(Value::Object(env)) => env.into_iter().collect(),
                _ => BTreeMap::new(),
            };
            for pair in &self.env {
                let (name, value) = pair.split_once('=').ok_or_else(|| {
                    CliError::Usage(format!("--env '{pair}': expected NAME=VALUE"))
                })?;
                env.insert(name.to_owned(), Value::from(value));
            }
            workload.insert("env".into(), json!(env));
        }
        // The API's defaults, for what neither the file nor the flags say.
        for (field, value) in [
            ("duration_unit", json!("hourly")),
            ("duration_count", json!(1)),
            ("payment", json!("usdc")),
        ] {
            spec.entry(field).or_insert(value);
        }
        spec.insert("workload".into(), Value::Object(workload));
        serde_json::from_value(Value::Object(spec)).map_err(|e| spec_error(&e.to_string()))
    }
}

fn spec_error(why: &str) -> CliError {
    CliError::Usage(format!(
        "the cluster spec: {why} (see `gpuc deploy --help` for the fields)"
    ))
}

fn parse_file(text: &str, format: Format) -> Result<Map<String, Value>> {
    let value: Value = match format {
        Format::Json => serde_json::from_str(text).map_err(|e| spec_error(&e.to_string()))?,
        Format::Toml => {
            let table: toml::Table =
                toml::from_str(text).map_err(|e| spec_error(&e.to_string()))?;
            serde_json::to_value(table).map_err(|e| spec_error(&e.to_string()))?
        }
    };
    match value {
        Value::Object(map) => Ok(map),
        _ => Err(spec_error("expected a table of fields")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::cluster::{ClusterKind, DurationUnit};

    #[test]
    fn a_toml_spec_is_read_and_flags_win_over_it() {
        let file = r#"
            name = "trainer"
            kind = "container"
            hardware = "H100 80GB SXM"
            quantity = 4
            duration_unit = "daily"
            duration_count = 2
            countries = ["DE", "FR"]

            [workload]
            image = "pytorch/pytorch:2.3.0"
            command = "python train.py"
            env = { EPOCHS = "3" }
        "#;
        let flags = SpecArgs {
            quantity: Some(8),
            env: vec!["LR=0.1".into()],
            ..SpecArgs::default()
        };
        let request = flags.merged(Some((file, Format::Toml))).unwrap();
        assert_eq!(request.name, "trainer");
        assert_eq!(request.kind, ClusterKind::Container);
        assert_eq!(request.quantity, 8, "the flag wins");
        assert_eq!(request.duration_unit, DurationUnit::Daily);
        assert_eq!(request.countries, ["DE", "FR"]);
        assert_eq!(request.workload.env["EPOCHS"], "3");
        assert_eq!(request.workload.env["LR"], "0.1");
        assert_eq!(request.payment.as_str(), "usdc", "the API's default");
    }

    #[test]
    fn flags_alone_make_a_request_and_mistakes_say_which_field() {
        let flags = SpecArgs {
            name: Some("quick".into()),
            kind: Some("bare_metal".into()),
            hardware: Some("cpu".into()),
            quantity: Some(1),
            command: Some("nvidia-smi".into()),
            ..SpecArgs::default()
        };
        let request = flags.merged(None).unwrap();
        assert_eq!(
            (request.duration_unit, request.duration_count),
            (DurationUnit::Hourly, 1)
        );
        let missing = SpecArgs::default().merged(None).unwrap_err().to_string();
        assert!(missing.contains("missing field `name`"), "{missing}");
        let wrong = SpecArgs {
            kind: Some("cluster".into()),
            ..flags
        };
        let wrong = wrong.merged(None).unwrap_err().to_string();
        assert!(wrong.contains("cluster"), "{wrong}");
        let unknown = SpecArgs::default()
            .merged(Some((r#"{"name":"x","gpus":3}"#, Format::Json)))
            .unwrap_err()
            .to_string();
        assert!(unknown.contains("gpus"), "{unknown}");
        let env = SpecArgs {
            env: vec!["NOEQUALS".into()],
            ..SpecArgs::default()
        };
        assert!(env
            .merged(None)
            .unwrap_err()
            .to_string()
            .contains("NAME=VALUE"));
    }
}
