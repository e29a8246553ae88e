//! An MQTT bridge as the config file (`[[mqtt]]`) and the admin API (`/v1/mqtt`) give it:
//! which broker, which subscriptions, which plugins, which Rill topic.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::tls::{InvalidTls, TlsSpec, client_config};
use crate::limits::{
    MQTT_BATCH_BYTES_DEFAULT, MQTT_BATCH_MESSAGES_DEFAULT, MQTT_BATCH_WINDOW_MS_DEFAULT, MQTT_DEDUP_WINDOW_DEFAULT,
    MQTT_DEDUP_WINDOW_MAX, MQTT_DEDUP_WINDOW_MIN, MQTT_KEEP_ALIVE_S_DEFAULT, MQTT_MESSAGE_BYTES_DEFAULT,
    MQTT_MESSAGE_BYTES_MAX, MQTT_SESSION_EXPIRY_S_DEFAULT, PARTITIONS_PER_TOPIC_MAX,
};
use crate::plugins::StageSpec;

/// The storage kind of bridge documents.
pub const KIND: &str = "mqtt";

/// Where a bridge's rejected messages go unless it names another topic.
pub const DEAD_LETTER_TOPIC_DEFAULT: &str = "mqtt.dlq";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct BridgeSpec {
    pub name: String,
    /// `mqtt://host:port` (port 1883 when not given) or `mqtts://host:port` (TLS, port 8883).
    pub url: String,
    /// `mqtts://`: whom to trust and who the bridge is (PEM files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSpec>,
    /// The MQTT protocol version: `3.1.1` or `5`.
    #[serde(default = "default_version")]
    pub version: String,
    /// MQTT 5: how long the MQTT broker keeps the session, queueing for it, while the bridge is
    /// away (default 7 days). MQTT 3.1.1 sessions last until the broker drops them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_expiry_s: Option<u32>,
    /// The client id, which names the persistent session at the MQTT broker (default
    /// `rill-<name>`). Two bridges must not share one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Never shown back by the admin API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    #[serde(default = "default_keep_alive")]
    pub keep_alive_s: u64,
    pub subscriptions: Vec<Subscription>,
    /// The Rill topic, or a template over the MQTT topic's levels: `sensors.{1}` takes level 1
    /// (counted from 0) of `site/dev7/telemetry`, making `sensors.dev7`.
    pub target: String,
    /// Partitions of target topics the bridge creates.
    #[serde(default = "default_partitions")]
    pub partitions: u32,
    /// The ingest plugin turning messages into records.
    pub ingest: StageSpec,
    /// Chooses each record's partition; default: murmur2 of the record's key (the MQTT topic
    /// when the plugin gives none), as Kafka's producers do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partitioner: Option<StageSpec>,
    /// Where messages the ingest plugin rejects go; `mqtt.dlq` when not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter_topic: Option<String>,
    /// Messages gathered into one plugin call and one commit, at most.
    #[serde(default = "default_batch_messages")]
    pub batch_messages: usize,
    #[serde(default = "default_batch_bytes")]
    pub batch_bytes: usize,
    /// The largest message taken from the MQTT broker. MQTT 5 brokers do not send larger ones
    /// (they drop them); MQTT 3.1.1 cannot refuse one, so the bridge stops at it and says so.
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: usize,
    /// How long the first message of a batch waits for others (default 0: a batch is what
    /// arrived while the previous one was being committed).
    #[serde(default = "default_batch_window_ms")]
    pub batch_window_ms: u64,
    /// Recognise redelivered messages by an id they carry, and store them once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dedup: Option<DedupSpec>,
}

/// Where a message's id is found. Ids are scoped by MQTT topic; the bridge remembers the last
/// `window` ids it stored, committed with the records.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DedupSpec {
    /// MQTT 5: the user property holding the message's id (a redelivered message is dropped
    /// before the ingest plugin sees it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_property: Option<String>,
    /// A header the ingest plugin sets on each record, holding the record's id (a record whose
    /// id was stored is dropped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record_header: Option<String>,
    /// How many ids are remembered: messages' ids, or records' with `record_header`. It should
    /// cover what a crash can leave unacknowledged: the in-flight window (3,304 messages) times
    /// the records a message makes, with `record_header`.
    #[serde(default = "default_dedup_window")]
    pub window: usize,
}

/// Where a bridge finds ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdSource {
    UserProperty(String),
    RecordHeader(String),
}

impl DedupSpec {
    pub fn source(&self) -> Result<IdSource, InvalidBridge> {
        match (&self.user_property, &self.record_header) {
            (Some(name), None) if !name.is_empty() => Ok(IdSource::UserProperty(name.clone())),
            (None, Some(name)) if !name.is_empty() => Ok(IdSource::RecordHeader(name.clone())),
            _ => Err(invalid("dedup", "exactly one of user_property and record_header, not empty")),
        }
    }
}

/// The protocol versions spoken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MqttVersion {
    V311,
    V5,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Subscription {
    /// An MQTT topic filter (`+` and `#` wildcards).
    pub filter: String,
    /// The QoS asked: 0 or 1 (default).
    #[serde(default = "default_qos")]
    pub qos: u8,
}

fn default_version() -> String {
    "3.1.1".into()
}
fn default_max_message_bytes() -> usize {
    MQTT_MESSAGE_BYTES_DEFAULT
}
fn default_dedup_window() -> usize {
    MQTT_DEDUP_WINDOW_DEFAULT
}
fn default_keep_alive() -> u64 {
    MQTT_KEEP_ALIVE_S_DEFAULT
}
fn default_partitions() -> u32 {
    1
}
fn default_qos() -> u8 {
    1
}
fn default_batch_messages() -> usize {
    MQTT_BATCH_MESSAGES_DEFAULT
}
fn default_batch_bytes() -> usize {
    MQTT_BATCH_BYTES_DEFAULT
}
fn default_batch_window_ms() -> u64 {
    MQTT_BATCH_WINDOW_MS_DEFAULT
}

/// A bad bridge: the offending key and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct InvalidBridge {
    pub field: String,
    pub message: String,
}

impl From<InvalidTls> for InvalidBridge {
    fn from(e: InvalidTls) -> Self {
        InvalidBridge { field: format!("tls.{}", e.field), message: e.message }
    }
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> InvalidBridge {
    InvalidBridge { field: field.into(), message: message.into() }
}

impl BridgeSpec {
    pub fn client_id(&self) -> String {
        self.client_id.clone().unwrap_or_else(|| format!("rill-{}", self.name))
    }

    pub fn dead_letter_topic(&self) -> String {
        self.dead_letter_topic.clone().unwrap_or_else(|| DEAD_LETTER_TOPIC_DEFAULT.to_owned())
    }

    pub fn version(&self) -> Result<MqttVersion, InvalidBridge> {
        match self.version.as_str() {
            "3.1.1" => Ok(MqttVersion::V311),
            "5" | "5.0" => Ok(MqttVersion::V5),
            other => Err(invalid("version", format!("{other:?}: \"3.1.1\" or \"5\""))),
        }
    }

    /// MQTT 5's session expiry interval.
    pub fn session_expiry_s(&self) -> u32 {
        self.session_expiry_s.unwrap_or(MQTT_SESSION_EXPIRY_S_DEFAULT)
    }

    /// `(host, port, tls)` of the MQTT broker.
    pub fn address(&self) -> Result<(String, u16, bool), InvalidBridge> {
        let bad = || invalid("url", format!("{:?} is not an mqtt://host:port or mqtts://host:port URL", self.url));
        let (rest, tls) = match self.url.split_once("://") {
            Some(("mqtt", rest)) => (rest, false),
            Some(("mqtts", rest)) => (rest, true),
            _ => return Err(bad()),
        };
        let rest = rest.trim_end_matches('/');
        if rest.is_empty() || rest.contains('/') || rest.contains('@') {
            return Err(bad());
        }
        match rest.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && !host.ends_with(':') => {
                let port = port
                    .parse::<u16>()
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| invalid("url", format!("{port:?} is not a port")))?;
                Ok((host.trim_start_matches('[').trim_end_matches(']').to_owned(), port, tls))
            }
            _ => Ok((rest.to_owned(), if tls { 8883 } else { 1883 }, tls)),
        }
    }

    /// The TLS configuration of an `mqtts://` bridge (reads its files); `None` for `mqtt://`.
    pub fn tls_config(&self) -> Result<Option<std::sync::Arc<rustls::ClientConfig>>, InvalidBridge> {
        let (_, _, tls) = self.address()?;
        match (tls, &self.tls) {
            (true, spec) => client_config(&spec.clone().unwrap_or_default()).map(Some).map_err(InvalidBridge::from),
            (false, None) => Ok(None),
            (false, Some(_)) => Err(invalid("tls", "TLS settings need an mqtts:// url")),
        }
    }

    /// Checks what can be checked without the broker (plugins are checked when they load).
    pub fn check(&self) -> Result<(), InvalidBridge> {
        self.address()?;
        self.tls_config()?;
        let version = self.version()?;
        if self.session_expiry_s.is_some() && version != MqttVersion::V5 {
            return Err(invalid("session_expiry_s", "MQTT 5 only (MQTT 3.1.1 sessions have no expiry interval)"));
        }
        if self.session_expiry_s == Some(0) {
            // 0 ends the session at disconnect: the broker would queue nothing while Rill is away.
            return Err(invalid("session_expiry_s", "at least 1 second (0 would end the session at each disconnect)"));
        }
        if !(1024..=MQTT_MESSAGE_BYTES_MAX).contains(&self.max_message_bytes) {
            return Err(invalid("max_message_bytes", format!("1024 to {MQTT_MESSAGE_BYTES_MAX}")));
        }
        if let Some(dedup) = &self.dedup {
            if let IdSource::UserProperty(_) = dedup.source()?
                && version != MqttVersion::V5
            {
                return Err(invalid("dedup.user_property", "user properties are MQTT 5: set version = \"5\""));
            }
            if !(MQTT_DEDUP_WINDOW_MIN..=MQTT_DEDUP_WINDOW_MAX).contains(&dedup.window) {
                return Err(invalid(
                    "dedup.window",
                    format!("{MQTT_DEDUP_WINDOW_MIN} to {MQTT_DEDUP_WINDOW_MAX} ids (at least the in-flight window)"),
                ));
            }
        }
        if self.client_id().is_empty() || self.client_id().len() > 128 {
            return Err(invalid("client_id", "1 to 128 characters"));
        }
        if self.password.is_some() && self.username.is_none() {
            return Err(invalid("password", "a password needs a username"));
        }
        if !(1..=65_535).contains(&self.keep_alive_s) {
            return Err(invalid("keep_alive_s", "1 to 65535 seconds"));
        }
        if self.subscriptions.is_empty() {
            return Err(invalid("subscriptions", "a bridge needs at least one subscription"));
        }
        for (i, subscription) in self.subscriptions.iter().enumerate() {
            check_filter(&subscription.filter).map_err(|m| invalid(format!("subscriptions[{i}].filter"), m))?;
            if subscription.qos > 1 {
                // rumqttc forgets QoS 2 state across reconnects and then fails on the broker's
                // PUBREL (rumqtt#664); the bridge deduplicates nothing QoS 2 would add anyway.
                return Err(invalid(
                    format!("subscriptions[{i}].qos"),
                    "0 or 1 (QoS 1 with acknowledgement after the durable append loses nothing)",
                ));
            }
        }
        Template::parse(&self.target).map_err(|m| invalid("target", m))?;
        if !(1..=PARTITIONS_PER_TOPIC_MAX).contains(&self.partitions) {
            return Err(invalid("partitions", format!("1 to {PARTITIONS_PER_TOPIC_MAX}")));
        }
        crate::storage::topic::validate_topic_name(&self.dead_letter_topic())
            .map_err(|e| invalid("dead_letter_topic", e.to_string()))?;
        if self.batch_messages == 0 || self.batch_bytes < 1024 || self.batch_window_ms > 10_000 {
            return Err(invalid(
                "batch_messages",
                "batch_messages ≥ 1, batch_bytes ≥ 1024 and batch_window_ms ≤ 10000",
            ));
        }
        Ok(())
    }
}

/// MQTT's rules for a subscription filter: `#` only last and alone in its level, `+` alone in
/// its level.
fn check_filter(filter: &str) -> Result<(), String> {
    if filter.is_empty() || filter.len() > 65_535 {
        return Err("empty or too long".into());
    }
    let levels: Vec<&str> = filter.split('/').collect();
    for (i, level) in levels.iter().enumerate() {
        if level.contains('#') && (*level != "#" || i != levels.len() - 1) {
            return Err(format!("{filter:?}: '#' must be the whole last level"));
        }
        if level.contains('+') && *level != "+" {
            return Err(format!("{filter:?}: '+' must be a whole level"));
        }
    }
    Ok(())
}

/// A target topic template: text with `{N}` placeholders for MQTT topic levels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Level(usize),
}

impl Template {
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_owned()));
            }
            let close = rest[open..].find('}').ok_or_else(|| format!("{text:?}: '{{' without '}}'"))? + open;
            let level = rest[open + 1..close]
                .parse::<usize>()
                .map_err(|_| format!("{text:?}: {{{}}} is not a level number", &rest[open + 1..close]))?;
            parts.push(Part::Level(level));
            rest = &rest[close + 1..];
        }
        if rest.contains('}') {
            return Err(format!("{text:?}: '}}' without '{{'"));
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        let template = Template { parts };
        if template.is_fixed() {
            crate::storage::topic::validate_topic_name(text).map_err(|e| e.to_string())?;
        } else {
            // With every level a plain word, the result must be a valid topic name.
            let sample = template.render("a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p").unwrap_or_default();
            if !sample.is_empty() {
                crate::storage::topic::validate_topic_name(&sample)
                    .map_err(|e| format!("{text:?} makes invalid topic names: {e}"))?;
            }
        }
        Ok(template)
    }

    fn is_fixed(&self) -> bool {
        self.parts.iter().all(|p| matches!(p, Part::Text(_)))
    }

    /// The topic for MQTT topic `mqtt_topic`; `Err` when a level is missing or the result is no
    /// valid topic name.
    pub fn render(&self, mqtt_topic: &str) -> Result<String, String> {
        let levels: Vec<&str> = mqtt_topic.split('/').collect();
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Level(n) => {
                    let level = levels.get(*n).ok_or_else(|| format!("MQTT topic {mqtt_topic:?} has no level {n}"))?;
                    let _ = write!(out, "{level}");
                }
            }
        }
        crate::storage::topic::validate_topic_name(&out)
            .map_err(|e| format!("MQTT topic {mqtt_topic:?} makes topic {out:?}: {e}"))?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: serde_json::Value) -> BridgeSpec {
        serde_json::from_value(json).unwrap()
    }

    fn base() -> serde_json::Value {
        serde_json::json!({"name": "b", "url": "mqtt://127.0.0.1:1884", "subscriptions": [{"filter": "sensors/+/telemetry"}],
            "target": "sensors.{1}", "ingest": {"plugin": "senml"}})
    }

    #[test]
    fn defaults_addresses_and_checks_name_the_key() {
        let b = spec(base());
        assert_eq!(b.check(), Ok(()));
        assert_eq!(
            (b.client_id(), b.dead_letter_topic(), b.subscriptions[0].qos),
            ("rill-b".into(), "mqtt.dlq".into(), 1)
        );
        assert_eq!(b.address().unwrap(), ("127.0.0.1".into(), 1884, false));
        let mut default_port = b.clone();
        default_port.url = "mqtt://gateway.local".into();
        assert_eq!(default_port.address().unwrap(), ("gateway.local".into(), 1883, false));
        default_port.url = "mqtts://broker.example".into();
        assert_eq!(default_port.address().unwrap(), ("broker.example".into(), 8883, true));
        for (key, value, field) in [
            ("url", serde_json::json!("http://x:1"), "url"),
            ("url", serde_json::json!("mqtt://x:0"), "url"),
            ("version", serde_json::json!("4.5"), "version"),
            ("session_expiry_s", serde_json::json!(60), "session_expiry_s"),
            ("dedup", serde_json::json!({"user_property": "id"}), "dedup.user_property"),
            ("dedup", serde_json::json!({"record_header": "id", "user_property": "id"}), "dedup"),
            ("dedup", serde_json::json!({"record_header": "id", "window": 10}), "dedup.window"),
            ("target", serde_json::json!("sensors.{x}"), "target"),
            ("target", serde_json::json!("bad topic"), "target"),
            ("subscriptions", serde_json::json!([{"filter": "a/#/b"}]), "subscriptions[0].filter"),
            ("subscriptions", serde_json::json!([{"filter": "a", "qos": 2}]), "subscriptions[0].qos"),
            ("partitions", serde_json::json!(0), "partitions"),
            ("max_message_bytes", serde_json::json!(10), "max_message_bytes"),
            ("tls", serde_json::json!({"ca_file": "/etc/hostname"}), "tls"),
        ] {
            let mut json = base();
            json[key] = value;
            assert_eq!(spec(json).check().unwrap_err().field, field, "{key}");
        }
        for (tls, field) in [
            (serde_json::json!({"ca_file": "/nonexistent/ca.pem"}), "tls.ca_file"),
            (serde_json::json!({"ca_file": "/etc/hostname"}), "tls.ca_file"),
            (serde_json::json!({"cert_file": "/etc/hostname"}), "tls.key_file"),
        ] {
            let mut json = base();
            json["url"] = "mqtts://127.0.0.1".into();
            json["tls"] = tls;
            assert_eq!(spec(json).check().unwrap_err().field, field);
        }
        let mut v5 = base();
        v5["version"] = "5".into();
        v5["session_expiry_s"] = 3600.into();
        v5["dedup"] = serde_json::json!({"user_property": "msg-id"});
        let v5 = spec(v5);
        assert_eq!(v5.check(), Ok(()));
        assert_eq!((v5.version().unwrap(), v5.session_expiry_s()), (MqttVersion::V5, 3600));
        assert_eq!(v5.dedup.unwrap().source().unwrap(), IdSource::UserProperty("msg-id".into()));
        let unknown = serde_json::from_value::<BridgeSpec>(serde_json::json!({"name": "b", "colour": 1}));
        assert!(unknown.unwrap_err().to_string().contains("colour"));
    }

    #[test]
    fn templates_take_levels_and_refuse_bad_results() {
        let t = Template::parse("sensors.{1}").unwrap();
        assert_eq!(t.render("site/dev7/telemetry").unwrap(), "sensors.dev7");
        assert!(t.render("site").unwrap_err().contains("no level 1"));
        assert!(t.render("site/dev 7/x").is_err(), "a space is no topic name character");
        assert_eq!(Template::parse("all").unwrap().render("a/b").unwrap(), "all");
        assert!(Template::parse("x.{1").is_err());
        assert!(Template::parse("x.}").is_err());
    }
}
