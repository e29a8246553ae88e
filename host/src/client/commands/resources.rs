//! `rill status` and `rill plugin upload|list|describe|delete`: Rill's own resources, through the
//! HTTP admin API.

use std::path::PathBuf;

use bytes::Bytes;
use clap::Subcommand;
use hyper::Method;

use crate::client::admin::{AdminArgs, AdminClient, AdminError};
use crate::http::plugins::PluginArtifact;
use crate::http::status::{Status, bytes, thousands};

#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Upload a WebAssembly component, under the name and version it gives itself (checked
    /// against the contract by the broker), or under --name and --version.
    Upload {
        /// The component file (`cargo xtask plugins` builds them).
        file: PathBuf,
        #[arg(long, requires = "version")]
        name: Option<String>,
        #[arg(long, requires = "name")]
        version: Option<String>,
    },
    /// List stored plugin versions.
    List,
    /// Show one plugin version.
    Describe { name: String, version: String },
    /// Delete one plugin version.
    Delete { name: String, version: String },
}

pub async fn plugin(admin: &AdminArgs, command: PluginCommand) -> Result<(), AdminError> {
    let client = AdminClient::new(admin)?;
    match command {
        PluginCommand::Upload { file, name, version } => {
            let component =
                std::fs::read(&file).map_err(|e| AdminError::Local(format!("cannot read {}: {e}", file.display())))?;
            let path = match (name, version) {
                (Some(name), Some(version)) => format!("/v1/plugins/{name}/{version}"),
                _ => "/v1/plugins".to_owned(),
            };
            let body = client.send(Method::POST, &path, Some("application/wasm"), Bytes::from(component)).await?;
            let stored: PluginArtifact =
                serde_json::from_slice(&body).map_err(|e| AdminError::Protocol(e.to_string()))?;
            println!(
                "stored {} {} ({}, sha256 {})",
                stored.name,
                stored.version,
                bytes(stored.size_bytes as f64),
                stored.sha256
            );
        }
        PluginCommand::List => {
            let plugins: Vec<PluginArtifact> = client.get("/v1/plugins").await?;
            for p in plugins {
                println!("{}\t{}\t{}\t{}", p.name, p.version, p.size_bytes, p.sha256);
            }
        }
        PluginCommand::Describe { name, version } => {
            let p: PluginArtifact = client.get(&format!("/v1/plugins/{name}/{version}")).await?;
            println!("plugin {}  version {}", p.name, p.version);
            println!("size {} bytes  sha256 {}  uploaded {} ms", p.size_bytes, p.sha256, p.uploaded_ms);
        }
        PluginCommand::Delete { name, version } => {
            client.send(Method::DELETE, &format!("/v1/plugins/{name}/{version}"), None, Bytes::new()).await?;
            println!("deleted plugin {name} {version}");
        }
    }
    Ok(())
}

/// One screen: health, topics with rates, groups with lag, plugins.
pub async fn status(admin: &AdminArgs) -> Result<(), AdminError> {
    let status: Status = AdminClient::new(admin)?.get("/v1/status").await?;
    print!("{}", render(&status));
    Ok(())
}

/// `rill status` as text: one section after another, in the page's order. Long because it is a
/// template read top to bottom; each section is a few `writeln!`s that make sense only in place.
fn render(status: &Status) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let ready = if status.ready { "ready" } else { "NOT READY" };
    let _ = writeln!(
        out,
        "rill {}  {ready}  up {} s  {} Kafka connection(s)\n",
        status.version, status.uptime_s, status.kafka_connections
    );
    let _ = writeln!(
        out,
        "{:<32} {:>10} {:>14} {:>11} {:>10} {:>11}",
        "TOPIC", "PARTITIONS", "RECORDS", "SIZE", "RECORDS/S", "BYTES/S"
    );
    if status.topics.is_empty() {
        let _ = writeln!(out, "(no topics)");
    }
    for t in &status.topics {
        let _ = writeln!(
            out,
            "{:<32} {:>10} {:>14} {:>11} {:>10.1} {:>11}",
            t.name,
            t.partitions,
            thousands(t.records),
            bytes(t.size_bytes as f64),
            t.records_per_s,
            format!("{}/s", bytes(t.bytes_per_s))
        );
    }
    let _ = writeln!(out, "\n{:<32} {:<20} {:>8} {:>14}", "GROUP", "STATE", "MEMBERS", "LAG");
    if status.groups.is_empty() {
        let _ = writeln!(out, "(no consumer groups)");
    }
    for g in &status.groups {
        let _ = writeln!(out, "{:<32} {:<20} {:>8} {:>14}", g.group, g.state, g.members, thousands(g.lag));
    }
    let _ = writeln!(out, "\nPLUGINS");
    if status.plugins.is_empty() {
        let _ = writeln!(out, "(none uploaded)");
    }
    for p in &status.plugins {
        let _ = writeln!(
            out,
            "{} {}  {}  sha256 {}",
            p.name,
            p.version,
            bytes(p.size_bytes as f64),
            p.sha256.get(..12).unwrap_or(&p.sha256)
        );
    }
    let _ = writeln!(
        out,
        "\n{:<24} {:<13} {:>12} {:>12} {:>8}  TARGET",
        "MQTT BRIDGE", "STATE", "MESSAGES IN", "RECORDS OUT", "DLQ"
    );
    if status.mqtt.is_empty() {
        let _ = writeln!(out, "(no MQTT bridges)");
    }
    for b in &status.mqtt {
        let state = if b.status.connected { "connected" } else { "disconnected" };
        let _ = writeln!(
            out,
            "{:<24} {state:<13} {:>12} {:>12} {:>8}  {}",
            b.spec.name,
            thousands(b.status.messages_in),
            thousands(b.status.records_out),
            b.status.messages_dead_lettered,
            b.spec.target
        );
        if let (false, Some(error)) = (b.status.connected, &b.status.last_error) {
            let _ = writeln!(out, "  {error}");
        }
    }
    let _ = writeln!(
        out,
        "\n{:<24} {:<8} {:>10} {:>12} {:>8}  PLUGINS",
        "PIPELINE", "STATE", "LAG", "RECORDS IN", "FAILED"
    );
    if status.pipelines.is_empty() {
        let _ = writeln!(out, "(no pipelines)");
    }
    for p in &status.pipelines {
        let _ = writeln!(
            out,
            "{:<24} {:<8} {:>10} {:>12} {:>8}  {}",
            p.spec.name,
            p.status.state,
            thousands(p.status.lag),
            thousands(p.status.counts.records_in),
            p.status.counts.batches_failed,
            p.status.plugins.join(" -> ")
        );
        if let Some(reason) = &p.status.reason {
            let _ = writeln!(out, "  {reason}");
        }
    }
    // Devices only where the device listener heard from some: most nodes have none.
    if !status.devices.is_empty() {
        let _ = writeln!(
            out,
            "\n{:<24} {:<10} {:>12} {:>8} {:>6} {:>6} {:>10}  BOOT / LAST SEQUENCE",
            "DEVICE", "LINK", "RECORDS", "REPEATS", "GAPS", "DLQ", "DROPPED"
        );
    }
    for d in &status.devices {
        let link = if d.connections > 0 { "connected" } else { "away" };
        let _ = writeln!(
            out,
            "{:<24} {link:<10} {:>12} {:>8} {:>6} {:>6} {:>10}  {:#x} / {}",
            d.device,
            thousands(d.records),
            d.duplicates,
            d.gaps,
            d.refused,
            thousands(d.dropped_by_device),
            d.boot,
            d.last_seq
        );
    }
    if !status.serial_ports.is_empty() {
        let _ = writeln!(out, "\n{:<24} {:>9} {:<8} LAST ERROR", "SERIAL PORT", "BAUD", "STATE");
    }
    for p in &status.serial_ports {
        let state = if p.open { "open" } else { "closed" };
        let _ = writeln!(out, "{:<24} {:>9} {state:<8} {}", p.path, p.baud, p.last_error.as_deref().unwrap_or("-"));
    }
    out
}
