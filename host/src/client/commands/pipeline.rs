//! `rill pipeline create|list|describe|pause|resume|upgrade|delete`, through the admin API.

use std::collections::BTreeMap;
use std::path::Path;

use bytes::Bytes;
use clap::{Args, Subcommand, ValueEnum};
use hyper::Method;
use serde::Serialize;

use crate::client::admin::{AdminArgs, AdminClient, AdminError};
use crate::http::pipelines::Upgrade;
use crate::pipelines::{LimitsSpec, PipelineSpec, PipelineView, StartAt};
use crate::plugins::PluginArtifact;
use crate::plugins::StageSpec;

#[derive(Debug, Subcommand)]
pub enum PipelineCommand {
    /// Create a pipeline: records from one topic, through plugins, into another.
    Create {
        name: String,
        /// The topic to read.
        #[arg(long)]
        from: String,
        /// The topic to write (created with the source's partition count when missing).
        #[arg(long)]
        to: String,
        #[command(flatten)]
        chain: ChainArgs,
        /// Where to start reading the source.
        #[arg(long, value_enum, default_value_t = Start::Earliest)]
        start: Start,
        /// Where failed batches go (default `<from>.dlq`).
        #[arg(long)]
        dead_letter_topic: Option<String>,
        /// Failed batches in a row after which the pipeline pauses itself.
        #[arg(long)]
        pause_after_failures: Option<u32>,
        /// Fuel (about one unit per WebAssembly instruction) each plugin call may burn.
        #[arg(long)]
        fuel_per_call: Option<u64>,
        /// Memory each plugin instance may grow to, in bytes.
        #[arg(long)]
        memory_bytes: Option<usize>,
    },
    /// List pipelines with their state and lag.
    List,
    /// Show a pipeline: plugins, progress per partition, failures, upgrade history.
    Describe { name: String },
    /// Stop processing after the current batch (progress is kept).
    Pause { name: String },
    /// Carry on from where the pipeline stopped.
    Resume { name: String },
    /// Replace the plugins between two batches (new versions or configuration).
    Upgrade {
        name: String,
        #[command(flatten)]
        chain: ChainArgs,
    },
    /// Delete a pipeline (its topics stay).
    Delete { name: String },
}

#[derive(Debug, Args)]
pub struct ChainArgs {
    /// A plugin: NAME, NAME@VERSION (default: the newest stored), or a FILE.wasm to upload
    /// first. Repeat for a chain; records pass through them in order.
    #[arg(long = "plugin", required = true, value_name = "PLUGIN")]
    plugins: Vec<String>,
    /// A partitioner plugin choosing each output record's partition (same forms as --plugin).
    #[arg(long, value_name = "PLUGIN")]
    partitioner: Option<String>,
    /// Plugin configuration, KEY=VALUE; with more than one plugin, PLUGIN:KEY=VALUE.
    #[arg(long = "config", value_name = "[PLUGIN:]KEY=VALUE")]
    config: Vec<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Start {
    Earliest,
    Latest,
}

/// `rill pipeline …`: one short arm per subcommand (over 70 lines only because there are many).
pub async fn pipeline(admin: &AdminArgs, command: PipelineCommand) -> Result<(), AdminError> {
    let client = AdminClient::new(admin)?;
    match command {
        PipelineCommand::Create {
            name,
            from,
            to,
            chain,
            start,
            dead_letter_topic,
            pause_after_failures,
            fuel_per_call,
            memory_bytes,
        } => {
            let (plugins, partitioner) = stages(&client, chain).await?;
            let limits = (fuel_per_call.is_some() || memory_bytes.is_some())
                .then_some(LimitsSpec { fuel_per_call, memory_bytes });
            let spec = PipelineSpec {
                name,
                from,
                to,
                plugins,
                partitioner,
                start: match start {
                    Start::Earliest => StartAt::Earliest,
                    Start::Latest => StartAt::Latest,
                },
                dead_letter_topic,
                pause_after_failures: pause_after_failures
                    .unwrap_or(crate::limits::PIPELINE_FAILURES_BEFORE_PAUSE_DEFAULT),
                limits,
                paused: false,
            };
            let view: PipelineView = call(&client, Method::POST, "/v1/pipelines", &spec).await?;
            println!(
                "created pipeline {}: {} -> {} through {}",
                view.spec.name,
                view.spec.from,
                view.spec.to,
                view.status.plugins.join(", ")
            );
        }
        PipelineCommand::List => {
            let views: Vec<PipelineView> = client.get("/v1/pipelines").await?;
            print!("{}", render_list(&views));
        }
        PipelineCommand::Describe { name } => {
            let view: PipelineView = client.get(&format!("/v1/pipelines/{name}")).await?;
            print!("{}", render_one(&view));
        }
        PipelineCommand::Pause { name } => {
            let view: PipelineView = call(&client, Method::POST, &format!("/v1/pipelines/{name}/pause"), &()).await?;
            println!("pipeline {} {}", view.spec.name, view.status.state);
        }
        PipelineCommand::Resume { name } => {
            let view: PipelineView = call(&client, Method::POST, &format!("/v1/pipelines/{name}/resume"), &()).await?;
            println!("pipeline {} {}", view.spec.name, view.status.state);
        }
        PipelineCommand::Upgrade { name, chain } => {
            let (plugins, partitioner) = stages(&client, chain).await?;
            let path = format!("/v1/pipelines/{name}/upgrade");
            let view: PipelineView = call(&client, Method::POST, &path, &Upgrade { plugins, partitioner }).await?;
            println!("pipeline {} now runs {}", view.spec.name, view.status.plugins.join(", "));
        }
        PipelineCommand::Delete { name } => {
            client.send(Method::DELETE, &format!("/v1/pipelines/{name}"), None, Bytes::new()).await?;
            println!("deleted pipeline {name}");
        }
    }
    Ok(())
}

pub(super) async fn call<T: serde::de::DeserializeOwned>(
    client: &AdminClient,
    method: Method,
    path: &str,
    body: &impl Serialize,
) -> Result<T, AdminError> {
    let body = serde_json::to_vec(body).map_err(|e| AdminError::Local(e.to_string()))?;
    let answer = client.send(method, path, Some("application/json"), Bytes::from(body)).await?;
    serde_json::from_slice(&answer).map_err(|e| AdminError::Protocol(format!("{path}: {e}")))
}

/// The stages the arguments name, local component files uploaded first, configuration assigned.
async fn stages(client: &AdminClient, chain: ChainArgs) -> Result<(Vec<StageSpec>, Option<StageSpec>), AdminError> {
    let mut plugins = Vec::with_capacity(chain.plugins.len());
    for plugin in &chain.plugins {
        plugins.push(stage(client, plugin).await?);
    }
    let mut partitioner = match &chain.partitioner {
        Some(plugin) => Some(stage(client, plugin).await?),
        None => None,
    };
    let mut all: Vec<&mut StageSpec> = plugins.iter_mut().chain(&mut partitioner).collect();
    for setting in &chain.config {
        let (target, key, value) = parse_setting(setting)?;
        let stage = match target {
            Some(target) => {
                let mut matching = all.iter_mut().filter(|s| s.plugin == target);
                matching.next().ok_or_else(|| {
                    AdminError::Local(format!("--config {setting}: no plugin {target:?} in this pipeline"))
                })?
            }
            None if all.len() == 1 => &mut all[0],
            None => {
                return Err(AdminError::Local(format!(
                    "--config {setting}: the pipeline has several plugins; say which as PLUGIN:{setting}"
                )));
            }
        };
        stage.config.insert(key, value);
    }
    Ok((plugins, partitioner))
}

/// `[PLUGIN:]KEY=VALUE`.
pub(super) fn parse_setting(setting: &str) -> Result<(Option<String>, String, String), AdminError> {
    let (left, value) = setting
        .split_once('=')
        .ok_or_else(|| AdminError::Local(format!("--config {setting:?}: expected KEY=VALUE or PLUGIN:KEY=VALUE")))?;
    let (target, key) = match left.split_once(':') {
        Some((plugin, key)) => (Some(plugin.to_owned()), key),
        None => (None, left),
    };
    if key.is_empty() {
        return Err(AdminError::Local(format!("--config {setting:?}: the key is empty")));
    }
    Ok((target, key.to_owned(), value.to_owned()))
}

/// `NAME`, `NAME@VERSION`, or a component file, uploaded under the name it gives itself.
pub(super) async fn stage(client: &AdminClient, plugin: &str) -> Result<StageSpec, AdminError> {
    if plugin.ends_with(".wasm") || Path::new(plugin).is_file() {
        let component = std::fs::read(plugin).map_err(|e| AdminError::Local(format!("cannot read {plugin}: {e}")))?;
        let body = client.send(Method::POST, "/v1/plugins", Some("application/wasm"), Bytes::from(component)).await?;
        let stored: PluginArtifact = serde_json::from_slice(&body).map_err(|e| AdminError::Protocol(e.to_string()))?;
        eprintln!("uploaded {plugin} as {}", stored.label());
        return Ok(StageSpec { plugin: stored.name, version: Some(stored.version), config: BTreeMap::new() });
    }
    let (name, version) = match plugin.split_once('@') {
        Some((name, version)) => (name, Some(version.to_owned())),
        None => (plugin, None),
    };
    Ok(StageSpec { plugin: name.to_owned(), version, config: BTreeMap::new() })
}

fn render_list(views: &[PipelineView]) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<24} {:<8} {:<20} {:<20} {:>10} {:>12} {:>12} {:>8}  PLUGINS",
        "PIPELINE", "STATE", "FROM", "TO", "LAG", "IN", "OUT", "FAILED"
    );
    if views.is_empty() {
        let _ = writeln!(out, "(no pipelines)");
    }
    for view in views {
        let (spec, status) = (&view.spec, &view.status);
        let _ = writeln!(
            out,
            "{:<24} {:<8} {:<20} {:<20} {:>10} {:>12} {:>12} {:>8}  {}",
            spec.name,
            status.state,
            spec.from,
            spec.to,
            status.lag,
            status.counts.records_in,
            status.counts.records_out,
            status.counts.batches_failed,
            status.plugins.join(" -> ")
        );
    }
    out
}

fn render_one(view: &PipelineView) -> String {
    use std::fmt::Write as _;
    let (spec, status) = (&view.spec, &view.status);
    let mut out = String::new();
    let _ = writeln!(out, "pipeline {}  {}", spec.name, status.state);
    if let Some(reason) = &status.reason {
        let _ = writeln!(out, "  why: {reason}");
    }
    let _ = writeln!(out, "{} -> {}  dead letters to {}", spec.from, spec.to, spec.dead_letter_topic());
    for stage in spec.stages() {
        let config: Vec<String> = stage.config.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let _ = writeln!(out, "  plugin {}  {}", stage.label(), config.join(" "));
    }
    let c = &status.counts;
    let _ = writeln!(
        out,
        "records in {}  out {}  dead-lettered {} ({} batches)  skipped by retention {}  failures in a row {}",
        c.records_in,
        c.records_out,
        c.records_dead_lettered,
        c.batches_failed,
        c.records_skipped,
        status.consecutive_failures
    );
    if let Some(error) = &status.last_error {
        let _ = writeln!(out, "last error: {error}");
    }
    let _ = writeln!(out, "{:>9} {:>14} {:>14} {:>10}", "PARTITION", "NEXT OFFSET", "HIGH WATERMARK", "LAG");
    for p in &status.partitions {
        let _ = writeln!(out, "{:>9} {:>14} {:>14} {:>10}", p.partition, p.next_offset, p.high_watermark, p.lag);
    }
    let _ = writeln!(out, "history (plugin versions and the output offsets they wrote):");
    for segment in &status.history {
        let ranges: Vec<String> =
            segment.outputs.iter().map(|(p, (first, last))| format!("p{p}:{first}..={last}")).collect();
        let _ = writeln!(
            out,
            "  {}  {}",
            segment.plugins.join(" -> "),
            if ranges.is_empty() { "(no output yet)".to_owned() } else { ranges.join(" ") }
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_name_their_plugin_when_needed() {
        assert_eq!(parse_setting("field=temp").unwrap(), (None, "field".into(), "temp".into()));
        assert_eq!(parse_setting("redact:fields=a,b").unwrap(), (Some("redact".into()), "fields".into(), "a,b".into()));
        assert_eq!(parse_setting("k=a=b").unwrap().2, "a=b", "the value may hold '='");
        assert!(parse_setting("novalue").is_err());
        assert!(parse_setting("=x").is_err());
    }
}
