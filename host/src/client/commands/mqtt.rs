//! `rill mqtt add|list|describe|remove`: MQTT bridges, through the admin API.

use bytes::Bytes;
use clap::{Args, Subcommand};
use hyper::Method;

use super::pipeline::{call, parse_setting, stage};
use crate::client::admin::{AdminArgs, AdminClient, AdminError};
use crate::limits::{
    MQTT_BATCH_BYTES_DEFAULT, MQTT_BATCH_MESSAGES_DEFAULT, MQTT_BATCH_WINDOW_MS_DEFAULT, MQTT_DEDUP_WINDOW_DEFAULT,
    MQTT_KEEP_ALIVE_S_DEFAULT, MQTT_MESSAGE_BYTES_DEFAULT,
};
use crate::mqtt::{BridgeSpec, BridgeView, DedupSpec, Subscription, TlsSpec};

#[derive(Debug, Subcommand)]
pub enum MqttCommand {
    /// Add a bridge: subscribe to an MQTT broker and append what arrives, through an ingest
    /// plugin, to a topic.
    Add(Box<AddArgs>),
    /// List bridges with their state and counters.
    List,
    /// Show one bridge.
    Describe { name: String },
    /// Stop and remove a bridge (its session stays at the MQTT broker).
    Remove { name: String },
}

#[derive(Debug, Args)]
pub struct AddArgs {
    name: String,
    /// The MQTT broker, mqtt://host:port.
    #[arg(long)]
    url: String,
    /// A topic filter to subscribe to, FILTER or FILTER@QOS (QoS 1 when not given); repeat.
    #[arg(long = "subscribe", required = true, value_name = "FILTER[@QOS]")]
    subscriptions: Vec<String>,
    /// The Rill topic, or a template over MQTT topic levels (`sensors.{1}`).
    #[arg(long)]
    target: String,
    /// The ingest plugin: NAME, NAME@VERSION or a FILE.wasm to upload first.
    #[arg(long)]
    ingest: String,
    /// Ingest plugin configuration, KEY=VALUE; repeatable.
    #[arg(long = "config", value_name = "KEY=VALUE")]
    config: Vec<String>,
    /// A partitioner plugin (default: murmur2 of the record key, else of the MQTT topic).
    #[arg(long)]
    partitioner: Option<String>,
    /// Partitioner configuration, KEY=VALUE; repeatable.
    #[arg(long = "partitioner-config", value_name = "KEY=VALUE")]
    partitioner_config: Vec<String>,
    /// Partitions of target topics the bridge creates.
    #[arg(long, default_value_t = 1)]
    partitions: u32,
    /// Names the persistent session at the MQTT broker (default rill-NAME).
    #[arg(long)]
    client_id: Option<String>,
    #[arg(long)]
    username: Option<String>,
    /// The password (also RILL_MQTT_PASSWORD).
    #[arg(long, env = "RILL_MQTT_PASSWORD", hide_env_values = true)]
    password: Option<String>,
    /// Where rejected messages go (default mqtt.dlq).
    #[arg(long)]
    dead_letter_topic: Option<String>,
    /// The MQTT protocol version: 3.1.1 or 5.
    #[arg(long = "mqtt-version", default_value = "3.1.1")]
    version: String,
    /// MQTT 5: seconds the MQTT broker keeps the session while the bridge is away (default a week).
    #[arg(long)]
    session_expiry_s: Option<u32>,
    /// MQTT 5: the user property carrying each message's id; redeliveries are stored once.
    #[arg(long, value_name = "NAME", conflicts_with = "dedup_header")]
    dedup_property: Option<String>,
    /// The record header the ingest plugin sets to each record's id; redeliveries are stored once.
    #[arg(long, value_name = "NAME")]
    dedup_header: Option<String>,
    /// mqtts://: CA certificates (PEM) signing the broker's certificate (default: the system's).
    /// Paths are read by the broker (made absolute here).
    #[arg(long, value_name = "FILE")]
    tls_ca_file: Option<std::path::PathBuf>,
    /// mqtts:// with client certificates: the bridge's certificate chain (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_key_file")]
    tls_cert_file: Option<std::path::PathBuf>,
    /// The private key (PEM) of --tls-cert-file.
    #[arg(long, value_name = "FILE", requires = "tls_cert_file")]
    tls_key_file: Option<std::path::PathBuf>,
    /// The largest MQTT message taken (MQTT 3.1.1 stops at a larger one and says so).
    #[arg(long, default_value_t = MQTT_MESSAGE_BYTES_DEFAULT)]
    max_message_bytes: usize,
    /// Ids remembered for deduplication.
    #[arg(long, default_value_t = MQTT_DEDUP_WINDOW_DEFAULT)]
    dedup_window: usize,
}

/// `rill mqtt …`: one arm per subcommand. Long because `add` turns its many flags into a
/// bridge spec field by field; split, the arms would only pass the flags on.
pub async fn mqtt(admin: &AdminArgs, command: MqttCommand) -> Result<(), AdminError> {
    let client = AdminClient::new(admin)?;
    match command {
        MqttCommand::Add(args) => {
            let AddArgs {
                name,
                url,
                subscriptions,
                target,
                ingest,
                config,
                partitioner,
                partitioner_config,
                partitions,
                client_id,
                username,
                password,
                dead_letter_topic,
                version,
                session_expiry_s,
                dedup_property,
                dedup_header,
                dedup_window,
                max_message_bytes,
                tls_ca_file,
                tls_cert_file,
                tls_key_file,
            } = *args;
            // The broker reads the files: give it paths that do not depend on this directory.
            let absolute = |path: Option<std::path::PathBuf>| {
                path.map(|p| std::fs::canonicalize(&p).unwrap_or(p).to_string_lossy().into_owned())
            };
            let tls = TlsSpec {
                ca_file: absolute(tls_ca_file),
                cert_file: absolute(tls_cert_file),
                key_file: absolute(tls_key_file),
            };
            let tls = (tls != TlsSpec::default()).then_some(tls);
            let dedup = (dedup_property.is_some() || dedup_header.is_some()).then_some(DedupSpec {
                user_property: dedup_property,
                record_header: dedup_header,
                window: dedup_window,
            });
            let mut ingest = stage(&client, &ingest).await?;
            for setting in &config {
                let (_, key, value) = parse_setting(setting)?;
                ingest.config.insert(key, value);
            }
            let partitioner = match partitioner {
                Some(plugin) => {
                    let mut partitioner = stage(&client, &plugin).await?;
                    for setting in &partitioner_config {
                        let (_, key, value) = parse_setting(setting)?;
                        partitioner.config.insert(key, value);
                    }
                    Some(partitioner)
                }
                None => None,
            };
            let subscriptions = subscriptions.iter().map(|s| subscription(s)).collect::<Result<_, _>>()?;
            let spec = BridgeSpec {
                name,
                url,
                version,
                session_expiry_s,
                tls,
                client_id,
                username,
                password,
                keep_alive_s: MQTT_KEEP_ALIVE_S_DEFAULT,
                subscriptions,
                target,
                partitions,
                ingest,
                partitioner,
                dead_letter_topic,
                batch_messages: MQTT_BATCH_MESSAGES_DEFAULT,
                batch_bytes: MQTT_BATCH_BYTES_DEFAULT,
                max_message_bytes,
                batch_window_ms: MQTT_BATCH_WINDOW_MS_DEFAULT,
                dedup,
            };
            let view: BridgeView = call(&client, Method::POST, "/v1/mqtt", &spec).await?;
            println!("added MQTT bridge {}: {} -> {}", view.spec.name, view.spec.url, view.spec.target);
        }
        MqttCommand::List => {
            let views: Vec<BridgeView> = client.get("/v1/mqtt").await?;
            println!(
                "{:<20} {:<13} {:<28} {:<24} {:>12} {:>12} {:>8}",
                "BRIDGE", "STATE", "URL", "TARGET", "MESSAGES IN", "RECORDS OUT", "DLQ"
            );
            if views.is_empty() {
                println!("(no bridges)");
            }
            for v in views {
                println!(
                    "{:<20} {:<13} {:<28} {:<24} {:>12} {:>12} {:>8}",
                    v.spec.name,
                    if v.status.connected { "connected" } else { "disconnected" },
                    v.spec.url,
                    v.spec.target,
                    v.status.messages_in,
                    v.status.records_out,
                    v.status.messages_dead_lettered
                );
            }
        }
        MqttCommand::Describe { name } => {
            let view: BridgeView = client.get(&format!("/v1/mqtt/{name}")).await?;
            let text = serde_json::to_string_pretty(&view).map_err(|e| AdminError::Protocol(e.to_string()))?;
            println!("{text}");
        }
        MqttCommand::Remove { name } => {
            client.send(Method::DELETE, &format!("/v1/mqtt/{name}"), None, Bytes::new()).await?;
            println!("removed MQTT bridge {name}");
        }
    }
    Ok(())
}

/// `FILTER` or `FILTER@QOS`.
fn subscription(text: &str) -> Result<Subscription, AdminError> {
    match text.rsplit_once('@') {
        Some((filter, qos)) => {
            let qos = qos
                .parse::<u8>()
                .ok()
                .filter(|q| *q <= 1)
                .ok_or_else(|| AdminError::Local(format!("--subscribe {text:?}: the QoS is 0 or 1")))?;
            Ok(Subscription { filter: filter.to_owned(), qos })
        }
        None => Ok(Subscription { filter: text.to_owned(), qos: 1 }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscriptions_parse_with_an_optional_qos() {
        assert_eq!(subscription("a/+/b").unwrap(), Subscription { filter: "a/+/b".into(), qos: 1 });
        assert_eq!(subscription("a/#@0").unwrap(), Subscription { filter: "a/#".into(), qos: 0 });
        assert!(subscription("a@2").is_err(), "QoS 2 is refused (see BridgeSpec::check)");
    }
}
