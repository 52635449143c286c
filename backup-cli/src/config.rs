//! `dbbackup.toml`: its keys become defaults of the matching flags, so an explicit flag or
//! environment variable still wins. Its `[alerts]` table holds the alert settings (the
//! environment variables' names), under the environment as well.

use std::path::Path;

use anyhow::{Context as _, Result, bail};
use clap::Command;

/// The table of alert settings (`[alerts]`, keys as the environment variables' names).
const ALERTS: &str = "alerts";

/// The config file's `[alerts]` table as (name, value) pairs; names are checked by the caller.
pub fn alerts(path: Option<&Path>) -> Result<Vec<(String, String)>> {
    let Some(path) = path else { return Ok(Vec::new()) };
    let text =
        std::fs::read_to_string(path).with_context(|| format!("read config file {}", path.display()))?;
    let table: toml::Table = text.parse().with_context(|| format!("parse config file {}", path.display()))?;
    let Some(alerts) = table.get(ALERTS) else { return Ok(Vec::new()) };
    let Some(alerts) = alerts.as_table() else {
        bail!("config file {}: {ALERTS} must be a table ([alerts])", path.display())
    };
    let mut out = Vec::new();
    for (k, v) in alerts {
        let v = match v {
            toml::Value::String(s) => s.clone(),
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            toml::Value::Array(a) => a
                .iter()
                .map(|v| v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string()))
                .collect::<Vec<_>>()
                .join(","),
            other => bail!("config file [alerts] {k}: unsupported value {other}"),
        };
        out.push((k.clone(), v));
    }
    Ok(out)
}

/// Reads the config file (if any) and installs its values as defaults on every subcommand that
/// has a flag of that name. Unknown keys are an error (a typo must not be silently ignored).
pub fn apply(cmd: Command, path: Option<&Path>) -> Result<Command> {
    let Some(path) = path else { return Ok(cmd) };
    let text =
        std::fs::read_to_string(path).with_context(|| format!("read config file {}", path.display()))?;
    let table: toml::Table = text.parse().with_context(|| format!("parse config file {}", path.display()))?;
    let mut cmd = cmd;
    for (key, value) in table {
        if key == ALERTS {
            continue; // read by `alerts`
        }
        let id = key.replace('-', "_");
        let id = if id == "repo" || id == "repos" { "repos".to_string() } else { id };
        let values: Vec<String> = match value {
            toml::Value::String(s) => vec![s],
            toml::Value::Integer(i) => vec![i.to_string()],
            toml::Value::Boolean(b) => vec![b.to_string()],
            toml::Value::Array(a) => {
                a.iter().map(|v| v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())).collect()
            }
            other => bail!("config key {key}: unsupported value {other}"),
        };
        let mut found = false;
        let names: Vec<String> = cmd.get_subcommands().map(|s| s.get_name().to_string()).collect();
        for name in names {
            cmd = cmd.mut_subcommand(&name, |sub| {
                let candidates = [id.clone(), if id == "repos" { "repo".into() } else { id.clone() }];
                let arg_id = sub
                    .get_arguments()
                    .find(|a| candidates.iter().any(|c| a.get_id() == c.as_str()))
                    .map(|a| a.get_id().clone());
                match arg_id {
                    Some(arg_id) => {
                        found = true;
                        let vals = values.clone();
                        sub.mut_arg(arg_id, move |a| {
                            // A value that may carry a secret is not shown as a default in --help.
                            let hide = a.is_hide_env_values_set();
                            let a = a.required(false).hide_default_value(hide);
                            if vals.len() == 1 {
                                a.default_value(vals[0].clone())
                            } else {
                                a.default_values(vals)
                            }
                        })
                    }
                    None => sub,
                }
            });
        }
        if !found {
            bail!("config file {}: unknown key {key:?}", path.display());
        }
    }
    Ok(cmd)
}
