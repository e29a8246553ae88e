//! Which partition a device's batch goes to. By default the device id's (Kafka's murmur2 of it
//! as a key), so one device's readings stay in order in one partition. With a partitioner plugin
//! (`[devices.partitioner]`, as for MQTT bridges) each record's partition is the plugin's: a
//! batch whose records all go to one partition is stored as the device built it; otherwise its
//! records are regrouped into a batch per partition, in order.
//!
//! The plugin is loaded when the first frame needs it, so it can be uploaded after the gateway
//! starts. Until it loads, frames are not acknowledged (the devices keep them and send again),
//! and why is logged when it changes; a failed load is tried again at most every
//! [`PARTITIONER_RELOAD_WAIT`]. A batch the plugin refuses goes to the dead-letter topic, like any
//! batch the gateway cannot store. A compressed batch reaches the plugin decompressed, as the
//! plugin contract promises.

use std::time::Instant;

use rill_core::batch::{Batch, Compression};

use crate::limits::PARTITIONER_RELOAD_WAIT;
use crate::plugins::load_off_runtime;
use crate::plugins::{
    AfterFailure, PluginCatalog, PluginError, PluginInstance, PluginKind, PluginLimits, Slot, StageSpec,
};
use crate::records::{build_batches, owned_records};

use super::errors::PartitionRefusal;

/// A batch's destination: (topic, partition, batches).
pub type Append = (String, u32, Vec<u8>);

/// Why a batch has no partition.
#[derive(Debug)]
pub enum NoPartition {
    /// The plugin refused this batch (or failed on it): the batch goes to the dead-letter topic.
    Refused(PartitionRefusal),
    /// The plugin cannot be loaded now (why, as logged): the frame is not acknowledged, the
    /// device sends it again.
    Unavailable(String),
}

#[derive(Debug)]
pub struct Partitioning {
    catalog: PluginCatalog,
    stage: Option<StageSpec>,
    /// The loaded plugin, one call at a time; dropped after a failure, so the next frame loads
    /// it afresh.
    held: tokio::sync::Mutex<Held>,
}

#[derive(Debug, Default)]
struct Held {
    slot: Slot<(String, PluginInstance)>,
    /// The last load failed: why, and when to try again.
    failed: Option<(String, Instant)>,
}

impl Partitioning {
    pub fn new(catalog: PluginCatalog, stage: Option<StageSpec>) -> Partitioning {
        Partitioning { catalog, stage, held: tokio::sync::Mutex::default() }
    }

    /// Where `batch` (one v2 batch of `records` records, from `device`) goes in `topic`.
    pub async fn appends(
        &self,
        topic: &str,
        partitions: u32,
        device: &str,
        batch: Vec<u8>,
        records: usize,
    ) -> Result<Vec<Append>, NoPartition> {
        let Some(stage) = &self.stage else {
            let partition = rill_core::partitioner::partition_for_key(device.as_bytes(), partitions)
                .map_err(|e| NoPartition::Refused(e.into()))?;
            return Ok(vec![(topic.to_owned(), partition, batch)]);
        };
        let mut held = self.held.lock().await;
        if !held.slot.is_loaded() {
            let loaded = self.load_or_remember(stage, &mut held).await?;
            held.slot.put(loaded);
        }
        // The plugin contract promises uncompressed batches.
        let compressed = Batch::parse(&batch).is_ok_and(|parsed| parsed.compression() != Compression::None);
        let decompressed = match compressed {
            true => Some(
                owned_records(&batch)
                    .and_then(|records| build_batches(&records))
                    .map_err(|e| NoPartition::Refused(e.into()))?,
            ),
            false => None,
        };
        let owned_topic = topic.to_owned();
        let label = held.slot.get().map(|(label, _)| label.clone()).unwrap_or_default();
        // The batch goes to the blocking task and comes back, rather than being copied.
        let called = held
            .slot
            .call(AfterFailure::Drop, move |(_, instance)| -> Result<_, PluginError> {
                let input = decompressed.as_deref().unwrap_or(&batch);
                let chosen = instance.partition(&owned_topic, 0, input, partitions, records)?;
                Ok((batch, chosen))
            })
            .await;
        drop(held);
        match called {
            Ok((batch, chosen)) => split(topic, batch, &chosen).map_err(NoPartition::Refused),
            Err(error) => Err(NoPartition::Refused(PartitionRefusal::Plugin { label, error })),
        }
    }

    /// Loads the plugin; a failure is remembered (and logged when it is new), so that frames
    /// meanwhile are answered at once and the load is not tried for each of them.
    async fn load_or_remember(
        &self,
        stage: &StageSpec,
        held: &mut Held,
    ) -> Result<(String, PluginInstance), NoPartition> {
        let earlier = match held.failed.take() {
            Some((why, retry_at)) if Instant::now() < retry_at => {
                held.failed = Some((why.clone(), retry_at));
                return Err(NoPartition::Unavailable(why));
            }
            failed => failed.map(|(why, _)| why),
        };
        match load(&self.catalog, stage).await {
            Ok(loaded) => {
                if earlier.is_some() {
                    tracing::info!(partitioner = %loaded.0, "device partitioner loaded");
                }
                Ok(loaded)
            }
            Err(why) => {
                if earlier.as_ref() != Some(&why) {
                    tracing::warn!(error = %why, "device frames wait: the partitioner cannot be loaded");
                }
                held.failed = Some((why.clone(), Instant::now() + PARTITIONER_RELOAD_WAIT));
                Err(NoPartition::Unavailable(why))
            }
        }
    }
}

/// Loads the partitioner and checks that it is one.
async fn load(catalog: &PluginCatalog, stage: &StageSpec) -> Result<(String, PluginInstance), String> {
    let (label, instance) = load_off_runtime(catalog, stage, PluginLimits::default())
        .await
        .map_err(|e| format!("partitioner {} cannot be loaded: {e}", stage.label()))?;
    let kind = instance.metadata().kind;
    if kind != PluginKind::Partitioner {
        return Err(format!("{label} is a {} plugin, not a partitioner", kind.interface()));
    }
    Ok((label, instance))
}

/// The batch whole when every record goes to one partition; else its records regrouped, in
/// order, into a batch per partition (in the order the partitions first appear).
fn split(topic: &str, batch: Vec<u8>, chosen: &[u32]) -> Result<Vec<Append>, PartitionRefusal> {
    match chosen {
        [] => Err(PartitionRefusal::NothingChosen),
        [first, rest @ ..] if rest.iter().all(|p| p == first) => Ok(vec![(topic.to_owned(), *first, batch)]),
        _ => {
            let records = owned_records(&batch)?;
            let mut partitions: Vec<u32> = Vec::new();
            for &p in chosen {
                if !partitions.contains(&p) {
                    partitions.push(p);
                }
            }
            partitions
                .into_iter()
                .map(|p| {
                    let group: Vec<_> =
                        records.iter().zip(chosen).filter(|&(_, &to)| to == p).map(|(r, _)| r.clone()).collect();
                    Ok((topic.to_owned(), p, build_batches(&group)?))
                })
                .collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use rill_core::batch::{BatchParams, RecordSpec, build_vec};

    use super::*;
    use crate::records::owned_records;

    fn batch(values: &[&str]) -> Vec<u8> {
        let specs: Vec<RecordSpec<'_>> = values
            .iter()
            .enumerate()
            .map(|(i, v)| RecordSpec {
                timestamp: 1_000 + i as i64,
                key: None,
                value: Some(v.as_bytes()),
                headers: &[],
            })
            .collect();
        build_vec(BatchParams::default(), &specs).unwrap()
    }

    #[test]
    fn one_partition_keeps_the_batch_and_several_regroup_its_records_in_order() {
        let whole = batch(&["a", "b", "c"]);
        assert_eq!(split("t", whole.clone(), &[2, 2, 2]).unwrap(), vec![("t".to_owned(), 2, whole.clone())]);
        let parts = split("t", whole, &[1, 0, 1]).unwrap();
        let seen: Vec<(u32, Vec<String>, Vec<i64>)> = parts
            .iter()
            .map(|(_, p, bytes)| {
                let records = owned_records(bytes).unwrap();
                let values = records.iter().map(|r| String::from_utf8(r.value.clone().unwrap()).unwrap()).collect();
                (*p, values, records.iter().map(|r| r.timestamp).collect())
            })
            .collect();
        assert_eq!(
            seen,
            vec![(1, vec!["a".into(), "c".into()], vec![1_000, 1_002]), (0, vec!["b".into()], vec![1_001])],
            "records keep their order and timestamps"
        );
        assert!(split("t", batch(&["a"]), &[]).is_err());
    }
}
