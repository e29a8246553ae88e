//! `rill serve` configuration: embedded defaults, then a TOML file (`--config`), then flags.
//! Unknown keys are errors, so a typo never silently falls back to a default.
//!
//! ```toml
//! data_dir = "./rill-data"
//!
//! [storage]
//! durability = "every-commit"      # or "interval"
//! flush_interval_ms = 100          # with durability = "interval": the loss window on power cut
//! cache_bytes = 16777216           # redb page cache
//! retention_check_interval_ms = 60000
//! disk_budget_bytes = 8000000000   # past it the oldest batches go, mirrored or not (default: none)
//! reserve_bytes = 67108864         # free space kept for deletions: appends are refused below it
//!                                  # (default: 5% of the filesystem, 4 MiB to 256 MiB)
//!
//! [kafka]
//! listen = "127.0.0.1:9092"        # port 0: any free port (the bound address is logged)
//! advertised = "gateway.local:9092" # what Metadata tells clients; default: the bound address
//! max_connections = 256
//! request_bytes_max = 16777216
//! auto_create_topics = true        # a Metadata request that allows it creates unknown topics
//!                                  # (Kafka's auto.create.topics.enable; Produce never does)
//! default_partitions = 1           # for auto-created topics and CreateTopics without a count
//!
//! [http]
//! listen = "127.0.0.1:9644"        # admin API, /metrics, /health, /ready, status page
//! admin_token = "…"                # required (Bearer) by every mutating call; or RILL_ADMIN_TOKEN
//! max_connections = 64
//! plugin_bytes_max = 33554432      # largest plugin component accepted
//!
//! [[mqtt]]                          # an MQTT bridge (repeatable; see `examples/gateway.toml`)
//! name = "sensors"
//! url = "mqtt://127.0.0.1:1883"   # or mqtts://host:8883 with tls = { ca_file, cert_file, key_file }
//! version = "3.1.1"                 # or "5" (session_expiry_s, user properties)
//! subscriptions = [{ filter = "sensors/+/telemetry", qos = 1 }]
//! target = "sensors"                # or a template over MQTT topic levels: "sensors.{1}"
//! partitions = 3                    # of target topics the bridge creates (default 1)
//! ingest = { plugin = "senml" }     # also version = "…", config = { key = "value" }
//! partitioner = { plugin = "key-field-partitioner", config = { field = "device" } }  # default: murmur2 of the key
//! dead_letter_topic = "mqtt.dlq"    # the default
//! dedup = { record_header = "senml.id" }  # or { user_property = "msg-id" } (MQTT 5): stored once
//! max_message_bytes = 1048576       # also client_id, username, password, keep_alive_s,
//!                                   # batch_messages, batch_bytes, batch_window_ms
//!
//! [[mirror]]                        # an edge: copy topics to an aggregation node (repeatable)
//! name = "cloud"
//! upstream = "cloud.example:9093"   # the aggregation node's replication listener
//! edge_id = "gw-17"                 # copies are named <edge_id>.<topic> there
//! token = "…"                       # the secret the aggregation node accepts for this edge
//! topics = ["sensors", "alerts.*"]  # names, or patterns with * and ?
//! rate_limit_bytes_per_s = 125000   # optional, for metered links
//! window_bytes = 8388608            # sent ahead of the aggregation node's durable ack (the default)
//! filter = { plugin = "downsample", config = { window_ms = "60000" } }  # optional transform plugin
//!
//! [replication]                     # an aggregation node: accept edges' mirrors
//! listen = "127.0.0.1:9093"         # runs when edges are listed; port 0: any free port
//! copy_topic = "{edge}.{topic}"
//! on_new_incarnation = "new-topic"  # a wiped edge's topics go to new copies; or "stop"
//! edges = [{ id = "gw-17", token = "…" }]
//!
//! [devices]                         # sensor nodes' uplink (firmware/), off unless listen is set
//! listen = "127.0.0.1:9094"         # port 0: any free port (logged)
//! topic = "devices"                 # made with `partitions` when missing
//! partitions = 1
//!
//! [[devices.serial]]                # a sensor node on a serial port (repeatable)
//! path = "/dev/ttyUSB0"
//! baud = 115200                     # the default
//!
//! [devices.partitioner]             # optional: a partitioner plugin (default: by device id)
//! plugin = "key-field-partitioner"
//! config = { field = "room" }
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::limits::{
    CACHE_BYTES_DEFAULT, FLUSH_INTERVAL_MS_MAX, HTTP_CONNECTIONS_MAX_DEFAULT, KAFKA_CONNECTIONS_MAX_DEFAULT,
    KAFKA_REQUEST_BYTES_MAX_DEFAULT, KAFKA_REQUEST_BYTES_MIN, PARTITIONS_PER_TOPIC_MAX, PLUGIN_BYTES_MAX_DEFAULT,
    RETENTION_CHECK_INTERVAL_MS_DEFAULT,
};
use crate::storage::{DurabilityPolicy, StoreConfig};

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub data_dir: PathBuf,
    pub storage: StorageSection,
    pub kafka: KafkaSection,
    pub http: HttpSection,
    /// `[[mqtt]]`: MQTT bridges (see [`crate::mqtt`]).
    pub mqtt: Vec<crate::mqtt::BridgeSpec>,
    /// `[[mirror]]`: this node's topics mirrored to aggregation nodes.
    pub mirror: Vec<crate::replication::MirrorSpec>,
    /// `[replication]`: edges this node accepts as an aggregation node.
    pub replication: crate::replication::ReplicationSection,
    /// `[devices]`: the listener for sensor nodes' uplink frames.
    pub devices: crate::devices::DevicesSection,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./rill-data"),
            storage: StorageSection::default(),
            kafka: KafkaSection::default(),
            http: HttpSection::default(),
            mqtt: Vec::new(),
            mirror: Vec::new(),
            replication: crate::replication::ReplicationSection::default(),
            devices: crate::devices::DevicesSection::default(),
        }
    }
}

/// The HTTP control plane (`[http]`).
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSection {
    pub listen: SocketAddr,
    /// When set, every mutating admin call needs `Authorization: Bearer <token>`.
    pub admin_token: Option<String>,
    pub max_connections: usize,
    pub plugin_bytes_max: usize,
}

// The token stays out of logs and debug output.
impl std::fmt::Debug for HttpSection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpSection")
            .field("listen", &self.listen)
            .field("admin_token", &self.admin_token.as_ref().map(|_| "<set>"))
            .field("max_connections", &self.max_connections)
            .field("plugin_bytes_max", &self.plugin_bytes_max)
            .finish()
    }
}

impl Default for HttpSection {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 9644)),
            admin_token: None,
            max_connections: HTTP_CONNECTIONS_MAX_DEFAULT,
            plugin_bytes_max: PLUGIN_BYTES_MAX_DEFAULT,
        }
    }
}

impl HttpSection {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.max_connections == 0 {
            return Err(ConfigError::Invalid("http.max_connections must be positive".into()));
        }
        if self.plugin_bytes_max < 1024 {
            return Err(ConfigError::Invalid("http.plugin_bytes_max must be at least 1024".into()));
        }
        if self.admin_token.as_deref().is_some_and(|token| token.trim().is_empty()) {
            return Err(ConfigError::Invalid("http.admin_token must not be empty (leave it out for no token)".into()));
        }
        Ok(())
    }
}

/// The Kafka listener (`[kafka]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaSection {
    pub listen: SocketAddr,
    /// `host:port` that Metadata advertises; `None`: the bound address.
    pub advertised: Option<String>,
    pub max_connections: usize,
    pub request_bytes_max: usize,
    /// Kafka's `auto.create.topics.enable`: a Metadata request for an unknown topic that allows
    /// auto-creation (v4+; always before) creates it. A Produce to an unknown topic is refused,
    /// as in Kafka: clients ask Metadata first.
    pub auto_create_topics: bool,
    pub default_partitions: u32,
}

impl Default for KafkaSection {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 9092)),
            advertised: None,
            max_connections: KAFKA_CONNECTIONS_MAX_DEFAULT,
            request_bytes_max: KAFKA_REQUEST_BYTES_MAX_DEFAULT,
            auto_create_topics: true,
            default_partitions: 1,
        }
    }
}

impl KafkaSection {
    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |message: String| Err(ConfigError::Invalid(message));
        if self.max_connections == 0 {
            return invalid("kafka.max_connections must be positive".into());
        }
        if self.request_bytes_max < KAFKA_REQUEST_BYTES_MIN || self.request_bytes_max > i32::MAX as usize {
            return invalid(format!("kafka.request_bytes_max must be {KAFKA_REQUEST_BYTES_MIN}..={}", i32::MAX));
        }
        if !(1..=PARTITIONS_PER_TOPIC_MAX).contains(&self.default_partitions) {
            return invalid(format!("kafka.default_partitions must be 1..={PARTITIONS_PER_TOPIC_MAX}"));
        }
        if let Some(advertised) = &self.advertised {
            parse_host_port(advertised)
                .map_err(|reason| ConfigError::Invalid(format!("kafka.advertised {advertised:?}: {reason}")))?;
        }
        Ok(())
    }
}

/// Splits `host:port` (IPv6 hosts in brackets), as Kafka's `advertised.listeners` takes it.
pub fn parse_host_port(text: &str) -> Result<(String, u16), &'static str> {
    let (host, port) = text.rsplit_once(':').ok_or("expected host:port")?;
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    if host.is_empty() {
        return Err("the host is empty");
    }
    let port: u16 = port.parse().map_err(|_| "the port is not a number from 1 to 65535")?;
    if port == 0 {
        return Err("the port must not be 0");
    }
    Ok((host.to_owned(), port))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Durability {
    /// fsync before acknowledging every commit.
    EveryCommit,
    /// fsync every `flush_interval_ms`.
    Interval,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageSection {
    pub durability: Durability,
    pub flush_interval_ms: u64,
    pub cache_bytes: usize,
    pub retention_check_interval_ms: u64,
    /// Bytes of batches the node may hold. Past it, retention deletes the oldest batches even
    /// where a mirror has not copied them yet (logged, counted), and keeps deleting the oldest
    /// until the node is within it. `None`: no budget (mirrors hold data until it is copied).
    pub disk_budget_bytes: Option<u64>,
    /// Free space on the data directory's filesystem kept for deletions and metadata: appends
    /// are refused below it. `None`: 5% of the filesystem, within 4 MiB..256 MiB.
    pub reserve_bytes: Option<u64>,
}

impl Default for StorageSection {
    fn default() -> Self {
        Self {
            durability: Durability::EveryCommit,
            flush_interval_ms: 100,
            cache_bytes: CACHE_BYTES_DEFAULT,
            retention_check_interval_ms: RETENTION_CHECK_INTERVAL_MS_DEFAULT,
            disk_budget_bytes: None,
            reserve_bytes: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("invalid config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid config: {0}")]
    Invalid(String),
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        Self::parse(&text).map_err(|message| ConfigError::Parse { path: path.to_owned(), message })
    }

    pub fn parse(text: &str) -> Result<Config, String> {
        let config: Config = toml::from_str(text).map_err(|e| e.message().to_owned() + &span_hint(text, e.span()))?;
        config.validate().map_err(|e| e.to_string())?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let storage = &self.storage;
        if storage.durability == Durability::Interval
            && !(1..=FLUSH_INTERVAL_MS_MAX).contains(&storage.flush_interval_ms)
        {
            return Err(ConfigError::Invalid(format!("storage.flush_interval_ms must be 1..={FLUSH_INTERVAL_MS_MAX}")));
        }
        if storage.cache_bytes < 1024 * 1024 {
            return Err(ConfigError::Invalid("storage.cache_bytes must be at least 1 MiB".into()));
        }
        if storage.retention_check_interval_ms == 0 {
            return Err(ConfigError::Invalid("storage.retention_check_interval_ms must be positive".into()));
        }
        self.kafka.validate()?;
        self.http.validate()?;
        let (mut names, mut client_ids) = (std::collections::BTreeSet::new(), std::collections::BTreeSet::new());
        for (i, bridge) in self.mqtt.iter().enumerate() {
            bridge.check().map_err(|e| ConfigError::Invalid(format!("mqtt[{i}].{}: {}", e.field, e.message)))?;
            if !names.insert(&bridge.name) {
                return Err(ConfigError::Invalid(format!("mqtt[{i}].name: {:?} is used twice", bridge.name)));
            }
            // Two clients with one id take the session from each other, again and again.
            if !client_ids.insert(bridge.client_id()) {
                return Err(ConfigError::Invalid(format!(
                    "mqtt[{i}].client_id: {:?} is used twice",
                    bridge.client_id()
                )));
            }
        }
        let mut mirrors = std::collections::BTreeSet::new();
        for (i, mirror) in self.mirror.iter().enumerate() {
            mirror.check().map_err(|e| ConfigError::Invalid(format!("mirror[{i}].{e}")))?;
            if !mirrors.insert(&mirror.name) {
                return Err(ConfigError::Invalid(format!("mirror[{i}].name: {:?} is used twice", mirror.name)));
            }
            // An aggregation node keeps one connection per edge: two mirrors would replace each other.
            if self.mirror[..i].iter().any(|m| m.upstream == mirror.upstream && m.edge_id == mirror.edge_id) {
                return Err(ConfigError::Invalid(format!(
                    "mirror[{i}].edge_id: another mirror already connects to {} as {:?}; name all its topics in one",
                    mirror.upstream, mirror.edge_id
                )));
            }
        }
        if self.mirror.len() > crate::limits::MIRRORS_MAX {
            return Err(ConfigError::Invalid(format!("at most {} mirrors", crate::limits::MIRRORS_MAX)));
        }
        self.replication.check().map_err(|e| ConfigError::Invalid(format!("replication.{e}")))?;
        self.devices.check().map_err(|e| ConfigError::Invalid(format!("devices.{e}")))?;
        Ok(())
    }

    pub fn store_config(&self) -> StoreConfig {
        let durability = match self.storage.durability {
            Durability::EveryCommit => DurabilityPolicy::EveryCommit,
            Durability::Interval => DurabilityPolicy::Interval(Duration::from_millis(self.storage.flush_interval_ms)),
        };
        StoreConfig {
            durability,
            cache_bytes: self.storage.cache_bytes,
            disk_budget_bytes: self.storage.disk_budget_bytes,
            reserve_bytes: self.storage.reserve_bytes,
            ..StoreConfig::default()
        }
    }
}

/// " (line N)" for a parse error's position, so the message names where to look.
fn span_hint(text: &str, span: Option<std::ops::Range<usize>>) -> String {
    span.map(|span| {
        format!(" (line {})", text.as_bytes()[..span.start.min(text.len())].iter().filter(|&&b| b == b'\n').count() + 1)
    })
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gateway_example_is_a_valid_config() {
        let config = Config::parse(include_str!("../../examples/gateway.toml")).unwrap();
        assert_eq!(config.mqtt.len(), 1);
        assert_eq!(config.mqtt[0].address().unwrap(), ("127.0.0.1".into(), 1883, false));
        let twice = format!(
            "{0}\n{0}",
            include_str!("../../examples/gateway.toml")
                .split("[[mqtt]]")
                .nth(1)
                .map(|b| format!("[[mqtt]]{b}"))
                .unwrap()
        );
        assert!(Config::parse(&twice).unwrap_err().contains("used twice"));
        let typo = "[[mqtt]]\nname = \"b\"\nurl = \"mqtt://x\"\nsubscriptions = []\ntarget = \"t\"\ningest = { plugin = \"p\" }\ncolour = 1\n";
        assert!(Config::parse(typo).unwrap_err().contains("colour"), "unknown keys are named");
        let bad = "[[mqtt]]\nname = \"b\"\nurl = \"http://x\"\nsubscriptions = [{ filter = \"a\" }]\ntarget = \"t\"\ningest = { plugin = \"p\" }\n";
        assert!(Config::parse(bad).unwrap_err().contains("mqtt[0].url"));
    }

    #[test]
    fn empty_file_is_the_defaults() {
        assert_eq!(Config::parse("").unwrap(), Config::default());
    }

    #[test]
    fn unknown_keys_are_errors_naming_the_key() {
        let err = Config::parse("data_dir = \"x\"\n[storage]\ndurabilty = \"interval\"\n").unwrap_err();
        assert!(err.contains("durabilty"), "{err}");
        assert!(err.contains("line 3"), "{err}");
        assert!(Config::parse("colour = 1").unwrap_err().contains("colour"));
    }

    #[test]
    fn interval_policy_is_parsed_and_bounded() {
        let config = Config::parse("[storage]\ndurability = \"interval\"\nflush_interval_ms = 50\n").unwrap();
        assert_eq!(config.store_config().durability, DurabilityPolicy::Interval(Duration::from_millis(50)));
        assert!(Config::parse("[storage]\ndurability = \"interval\"\nflush_interval_ms = 0\n").is_err());
        assert!(Config::parse("[storage]\ndurability = \"sometimes\"\n").is_err());
    }

    #[test]
    fn kafka_section_is_parsed_and_checked() {
        let config = Config::parse(
            "[kafka]\nlisten = \"127.0.0.1:0\"\nadvertised = \"gw.local:19092\"\nauto_create_topics = false\n",
        )
        .unwrap();
        assert_eq!(config.kafka.listen.port(), 0);
        assert_eq!(config.kafka.advertised.as_deref(), Some("gw.local:19092"));
        assert!(!config.kafka.auto_create_topics);
        for bad in [
            "[kafka]\nlisten = \"nowhere\"\n",
            "[kafka]\nadvertised = \"no-port\"\n",
            "[kafka]\nadvertised = \"host:0\"\n",
            "[kafka]\nmax_connections = 0\n",
            "[kafka]\nrequest_bytes_max = 10\n",
            "[kafka]\ndefault_partitions = 0\n",
            "[kafka]\nlisten_on = \"127.0.0.1:1\"\n",
        ] {
            assert!(Config::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_host_port("[::1]:9092"), Ok(("::1".to_owned(), 9092)));
    }

    #[test]
    fn http_section_is_parsed_and_checked() {
        let config =
            Config::parse("[http]\nlisten = \"127.0.0.1:0\"\nadmin_token = \"s3cret\"\nmax_connections = 4\n").unwrap();
        assert_eq!(config.http.listen.port(), 0);
        assert_eq!(config.http.admin_token.as_deref(), Some("s3cret"));
        assert!(!format!("{config:?}").contains("s3cret"), "the token never reaches debug output");
        for bad in ["[http]\nmax_connections = 0\n", "[http]\nadmin_token = \" \"\n", "[http]\nport = 1\n"] {
            assert!(Config::parse(bad).is_err(), "{bad}");
        }
    }
}
