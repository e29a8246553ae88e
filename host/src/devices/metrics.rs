//! `/metrics` for devices, read at scrape time: per device, its link and what it sent.

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet};
use prometheus_client::metrics::MetricType;

use super::{DeviceStatus, Devices};
use crate::metrics::encode_family;

#[derive(Debug)]
pub struct DevicesCollector(pub Arc<Devices>);

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeviceLabels {
    device: String,
}

impl Collector for DevicesCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> std::fmt::Result {
        let devices: Vec<(DeviceLabels, DeviceStatus)> =
            self.0.status().into_iter().map(|d| (DeviceLabels { device: d.device.clone() }, d)).collect();
        type Read = fn(&DeviceStatus) -> u64;
        let families: [(&str, &str, MetricType, Read); 8] = [
            ("device_connected", "1 while the device is connected", MetricType::Gauge, |d| {
                u64::from(d.connections > 0)
            }),
            ("device_frames", "Uplink frames taken (stored, or dead-lettered)", MetricType::Counter, |d| d.frames),
            ("device_records", "Records stored from the device", MetricType::Counter, |d| d.records),
            ("device_bytes", "Batch bytes taken from the device", MetricType::Counter, |d| d.bytes),
            (
                "device_duplicate_frames",
                "Frames received again after a lost ack, acknowledged without storing",
                MetricType::Counter,
                |d| d.duplicates,
            ),
            (
                "device_gaps",
                "Frames that came after one lost on the way, answered with a nak and sent again",
                MetricType::Counter,
                |d| d.gaps,
            ),
            (
                "device_refused_batches",
                "Batches that could not be stored, kept in the dead-letter topic",
                MetricType::Counter,
                |d| d.refused,
            ),
            (
                "device_dropped_records",
                "Records the device reports it dropped this boot, its log full",
                MetricType::Gauge,
                |d| d.dropped_by_device,
            ),
        ];
        for (name, help, metric_type, read) in families {
            encode_family(&mut encoder, name, help, metric_type, devices.iter().map(|(l, d)| (l, read(d))))?;
        }
        Ok(())
    }
}
