//! `/metrics` for replication, read at scrape time: per mirror (edge side) its link and losses,
//! per mirrored partition its acknowledged offset and lag; per accepted edge (aggregation node)
//! its link and the gaps recorded in its copies.

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet};
use prometheus_client::metrics::MetricType;

use super::{Cloud, Mirrors};
use crate::metrics::encode_family;

#[derive(Debug)]
pub struct ReplicationCollector {
    pub mirrors: Mirrors,
    pub cloud: Option<Arc<Cloud>>,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MirrorLabels {
    mirror: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PartitionLabels {
    mirror: String,
    topic: String,
    partition: u32,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EdgeLabels {
    edge: String,
}

impl Collector for ReplicationCollector {
    /// Every replication family, mirrors' then edges'. Long because it is the table of families
    /// (name, help, type, value per row), one entry each.
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> std::fmt::Result {
        let views = self.mirrors.list();
        let mirrors: Vec<(MirrorLabels, &crate::replication::MirrorStatus)> =
            views.iter().map(|v| (MirrorLabels { mirror: v.spec.name.clone() }, &v.status)).collect();
        type ReadMirror = fn(&crate::replication::MirrorStatus) -> u64;
        let families: [(&str, &str, MetricType, ReadMirror); 6] = [
            ("mirror_connected", "1 while the mirror is connected to its aggregation node", MetricType::Gauge, |s| {
                u64::from(s.link == "connected")
            }),
            ("mirror_connects", "Connections the mirror made to its aggregation node", MetricType::Counter, |s| {
                s.connects
            }),
            ("mirror_bytes_sent", "Batch bytes the mirror sent upstream", MetricType::Counter, |s| s.bytes_sent),
            (
                "mirror_records_lost",
                "Records deleted on the edge before they were mirrored (disk budget exhausted)",
                MetricType::Counter,
                |s| s.records_lost,
            ),
            (
                "mirror_records_filtered",
                "Records the mirror's filter plugin held back from going upstream",
                MetricType::Counter,
                |s| s.records_filtered,
            ),
            (
                "mirror_filter_refused_batches",
                "Batches the mirror's filter refused as invalid input (sent upstream without records)",
                MetricType::Counter,
                |s| s.batches_refused_by_filter,
            ),
        ];
        for (name, help, metric_type, read) in families {
            encode_family(&mut encoder, name, help, metric_type, mirrors.iter().map(|(l, s)| (l, read(s))))?;
        }
        let partitions: Vec<(PartitionLabels, &crate::replication::edge::MirrorPartitionStatus)> = views
            .iter()
            .flat_map(|v| {
                v.status.partitions.iter().map(|p| {
                    (PartitionLabels { mirror: v.spec.name.clone(), topic: p.topic.clone(), partition: p.partition }, p)
                })
            })
            .collect();
        type ReadPartition = fn(&crate::replication::edge::MirrorPartitionStatus) -> u64;
        let families: [(&str, &str, ReadPartition); 4] = [
            ("mirror_acked_offset", "Below this the aggregation node holds the copy durably", |p| p.acked_offset),
            ("mirror_lag_records", "Offsets durable on the edge and not yet acknowledged upstream", |p| p.lag_records),
            ("mirror_lag_bytes", "Bytes not yet acknowledged upstream (estimated)", |p| p.lag_bytes),
            ("mirror_lag_milliseconds", "Age of the oldest record not yet acknowledged upstream", |p| {
                (p.lag_seconds * 1000.0) as u64
            }),
        ];
        for (name, help, read) in families {
            let values = partitions.iter().map(|(l, p)| (l, read(p)));
            encode_family(&mut encoder, name, help, MetricType::Gauge, values)?;
        }
        if let Some(cloud) = &self.cloud {
            let edges: Vec<(EdgeLabels, crate::replication::cloud::EdgeStatus)> =
                cloud.status().into_iter().map(|e| (EdgeLabels { edge: e.edge.clone() }, e)).collect();
            let connected = edges.iter().map(|(l, e)| (l, u64::from(e.connected)));
            encode_family(
                &mut encoder,
                "replication_edge_connected",
                "1 while the edge is connected",
                MetricType::Gauge,
                connected,
            )?;
            let gaps = edges.iter().map(|(l, e)| (l, e.gaps));
            let help = "Gaps recorded in the edge's copies since the process started";
            encode_family(&mut encoder, "replication_gaps", help, MetricType::Counter, gaps)?;
        }
        Ok(())
    }
}
