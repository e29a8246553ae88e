//! One Prometheus registry for the whole broker, served at `GET /metrics`.
//!
//! Counters that the hot paths update live next to what they count (a partition's
//! [`Traffic`](crate::storage::PartitionState), the store's commit histograms) or here (Kafka
//! requests); values that are already state (offsets, lag, connections) are read at scrape time
//! by collectors, so they can never drift from the truth. Later subsystems (plugins, bridges,
//! mirrors, devices) add their own metrics with [`Metrics::register`] or
//! [`Metrics::register_collector`].

use std::sync::RwLock;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Metric, Registry};

use crate::storage::{PartitionOffsets, Store, TrafficCounts};

/// Every metric family name starts with this.
pub const PREFIX: &str = "rill";

/// The broker's registry and the metrics the Kafka listener updates.
#[derive(Debug)]
pub struct Metrics {
    registry: RwLock<Registry>,
    pub kafka: KafkaMetrics,
}

/// What the Kafka listener counts as it serves requests.
#[derive(Debug, Clone)]
pub struct KafkaMetrics {
    /// Seconds from a request's arrival to its encoded response, per API.
    pub request_seconds: Family<ApiLabels, Histogram, fn() -> Histogram>,
    /// Non-zero error codes in responses, per API and error.
    pub errors: Family<ErrorLabels, Counter>,
    /// Connections accepted since start, and open now.
    pub connections_accepted: Counter,
    connections_open: Gauge,
    /// Connections refused at the connection limit.
    pub connections_refused: Counter,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiLabels {
    pub api: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub api: String,
    pub error: String,
}

fn request_histogram() -> Histogram {
    // 50 µs .. ~26 s: a page-cache produce up to a Fetch long-poll at its longest wait.
    Histogram::new(exponential_buckets(0.000_05, 2.0, 20))
}

impl KafkaMetrics {
    fn new() -> Self {
        Self {
            request_seconds: Family::new_with_constructor(request_histogram as fn() -> Histogram),
            errors: Family::default(),
            connections_accepted: Counter::default(),
            connections_open: Default::default(),
            connections_refused: Counter::default(),
        }
    }

    /// Counts an open connection until the guard drops.
    pub fn connection_opened(&self) -> ConnectionGuard {
        self.connections_accepted.inc();
        self.connections_open.inc();
        ConnectionGuard(self.connections_open.clone())
    }

    pub fn connections_open(&self) -> i64 {
        self.connections_open.get()
    }
}

/// Decrements the open-connection gauge when dropped.
#[derive(Debug)]
pub struct ConnectionGuard(Gauge);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Metrics {
    /// The registry with the Kafka listener's metrics and a collector over `store`'s state.
    pub fn new(store: &Store) -> Self {
        let kafka = KafkaMetrics::new();
        let mut registry = Registry::with_prefix(PREFIX);
        registry.register(
            "kafka_request_seconds",
            "Time from a Kafka request's arrival to its encoded response",
            kafka.request_seconds.clone(),
        );
        registry.register("kafka_errors", "Kafka error codes returned, by API and error", kafka.errors.clone());
        registry.register(
            "kafka_connections_accepted",
            "Kafka connections accepted",
            kafka.connections_accepted.clone(),
        );
        registry.register("kafka_connections_open", "Kafka connections open now", kafka.connections_open.clone());
        registry.register(
            "kafka_connections_refused",
            "Kafka connections refused at the connection limit",
            kafka.connections_refused.clone(),
        );
        let stats = store.stats();
        registry.register(
            "storage_commit_seconds",
            "Time to write and commit one storage transaction (group commit), fsync included when durable",
            stats.commit_seconds.clone(),
        );
        registry.register(
            "storage_commit_batches",
            "Record batches per storage group commit",
            stats.batches_per_commit.clone(),
        );
        registry.register(
            "storage_commit_bytes",
            "Record bytes per storage group commit",
            stats.bytes_per_commit.clone(),
        );
        registry.register(
            "storage_appends_refused_no_space",
            "Appends refused because free space on the data directory's filesystem is under the reserve",
            stats.appends_refused_no_space.clone(),
        );
        registry.register(
            "storage_free_bytes",
            "Bytes free on the data directory's filesystem, as last read by the storage writer",
            stats.free_bytes.clone(),
        );
        registry.register(
            "storage_reserve_bytes",
            "Free space kept for deletions and metadata: appends are refused below it",
            stats.reserve_bytes.clone(),
        );
        registry.register_collector(Box::new(StateCollector { store: store.clone() }));
        Self { registry: RwLock::new(registry), kafka }
    }

    /// Adds a metric (its name gets the `rill_` prefix).
    pub fn register(&self, name: &str, help: &str, metric: impl Metric) {
        self.registry.write().unwrap_or_else(|p| p.into_inner()).register(name, help, metric);
    }

    /// Adds a collector, read at every scrape.
    pub fn register_collector(&self, collector: Box<dyn Collector>) {
        self.registry.write().unwrap_or_else(|p| p.into_inner()).register_collector(collector);
    }

    /// The OpenMetrics text exposition, which Prometheus scrapes.
    pub fn render(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry.read().unwrap_or_else(|p| p.into_inner()))?;
        Ok(text)
    }

    /// Counts the non-zero error codes of a response.
    pub fn count_errors(&self, api: &str, codes: impl IntoIterator<Item = i16>) {
        for code in codes.into_iter().filter(|&code| code != 0) {
            let labels = ErrorLabels { api: api.to_owned(), error: error_name(code) };
            self.kafka.errors.get_or_create(&labels).inc();
        }
    }
}

/// Kafka's name for an error code (`UNKNOWN_TOPIC_OR_PARTITION`), or the number.
pub fn error_name(code: i16) -> String {
    // Codes kafka-protocol does not know come back as `Unknown(code)`.
    match kafka_protocol::error::ResponseError::try_from_code(code).map(|error| format!("{error:?}")) {
        Some(name) if name.chars().all(|c| c.is_ascii_alphanumeric()) => screaming_snake(&name),
        _ => format!("CODE_{code}"),
    }
}

fn screaming_snake(camel: &str) -> String {
    let mut out = String::with_capacity(camel.len() + 8);
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

/// A metric family's name and help, and how to read its value from `T`.
type Described<T> = (&'static str, &'static str, fn(&T) -> u64);

/// Reads offsets, sizes, traffic and group lag at scrape time.
#[derive(Debug)]
struct StateCollector {
    store: Store,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PartitionLabels {
    topic: String,
    partition: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LagLabels {
    group: String,
    topic: String,
    partition: String,
}

impl Collector for StateCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let topics = self.store.topics();
        let mut partitions = Vec::new();
        for topic in &topics {
            for partition in &topic.partitions {
                let labels = PartitionLabels { topic: topic.name.clone(), partition: partition.index.to_string() };
                partitions.push((labels, partition.offsets(), partition.traffic.counts()));
            }
        }
        let gauges: [Described<PartitionOffsets>; 5] = [
            ("partition_log_start_offset", "First offset a consumer can read", |o| o.log_start_offset),
            ("partition_log_end_offset", "Offset the next appended record gets", |o| o.high_watermark),
            ("partition_high_watermark", "Offset below which records are committed and readable", |o| o.high_watermark),
            ("partition_durable_offset", "Offset below which records are fsynced", |o| o.durable_offset),
            ("partition_size_bytes", "Stored record batch bytes", |o| o.size_bytes),
        ];
        for (name, help, value) in gauges {
            let values = partitions.iter().map(|(labels, offsets, _)| (labels, value(offsets)));
            encode_family(&mut encoder, name, help, MetricType::Gauge, values)?;
        }
        let counters: [Described<TrafficCounts>; 4] = [
            ("partition_records_in", "Records appended since start", |t| t.records_in),
            ("partition_bytes_in", "Record batch bytes appended since start", |t| t.bytes_in),
            ("partition_records_out", "Records fetched by consumers since start", |t| t.records_out),
            ("partition_bytes_out", "Record batch bytes fetched by consumers since start", |t| t.bytes_out),
        ];
        for (name, help, value) in counters {
            let values = partitions.iter().map(|(labels, _, traffic)| (labels, value(traffic)));
            encode_family(&mut encoder, name, help, MetricType::Counter, values)?;
        }
        let mut lags = Vec::new();
        for group in self.store.groups_with_offsets() {
            for ((topic, index), committed) in self.store.committed_offsets(&group) {
                let Some(partition) = self.store.topic(&topic).and_then(|t| t.partition(index)) else {
                    continue;
                };
                let lag = partition.offsets().high_watermark.saturating_sub(committed.offset.max(0) as u64);
                lags.push((LagLabels { group: group.clone(), topic, partition: index.to_string() }, lag));
            }
        }
        encode_family(
            &mut encoder,
            "group_lag",
            "Records between a consumer group's committed offset and the high watermark",
            MetricType::Gauge,
            lags.iter().map(|(labels, lag)| (labels, *lag)),
        )
    }
}

/// A family of a collector's table: name, help, type, and how to read a row's value.
pub(crate) type FamilySpec<R> = (&'static str, &'static str, MetricType, fn(&R) -> u64);

/// Every family of `families`, one sample per row of `rows` (each row with its labels).
pub(crate) fn encode_families<L: EncodeLabelSet, R>(
    encoder: &mut DescriptorEncoder<'_>,
    families: &[FamilySpec<R>],
    rows: &[(L, R)],
) -> Result<(), std::fmt::Error> {
    for (name, help, metric_type, read) in families {
        encode_family(encoder, name, help, *metric_type, rows.iter().map(|(labels, row)| (labels, read(row))))?;
    }
    Ok(())
}

/// One family of constant gauges or counters, one sample per label set.
pub(crate) fn encode_family<'l, L: EncodeLabelSet + 'l>(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    metric_type: MetricType,
    values: impl Iterator<Item = (&'l L, u64)>,
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, metric_type)?;
    for (labels, value) in values {
        let sample = family.encode_family(labels)?;
        match metric_type {
            MetricType::Counter => ConstCounter::new(value).encode(sample)?,
            _ => ConstGauge::new(value as i64).encode(sample)?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_names_are_kafkas() {
        assert_eq!(error_name(3), "UNKNOWN_TOPIC_OR_PARTITION");
        assert_eq!(error_name(10), "MESSAGE_TOO_LARGE");
        assert_eq!(error_name(-999), "CODE_-999");
    }
}
