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
use crate::pipelines::batches::{build_batches, owned_records};
use crate::pipelines::{StageSpec, load_instance};
use crate::plugins::{PluginCatalog, PluginInstance, PluginKind, PluginLimits};

/// A batch's destination: (topic, partition, batches).
pub type Append = (String, u32, Vec<u8>);

/// Why a batch has no partition.
#[derive(Debug)]
pub enum NoPartition {
    /// The plugin refused this batch (or failed on it): the batch goes to the dead-letter topic.
    Refused(String),
    /// The plugin cannot be loaded now: the frame is not acknowledged, the device sends it again.
    Unavailable(String),
}

#[derive(Debug)]
pub struct Partitioning {
    catalog: PluginCatalog,
    stage: Option<StageSpec>,
    /// The loaded plugin; taken out while it runs (one call at a time) and dropped after a
    /// failure, so the next frame loads it afresh.
    instance: tokio::sync::Mutex<Loaded>,
}

#[derive(Debug, Default)]
enum Loaded {
    #[default]
    NotYet,
    Ready(String, Box<PluginInstance>),
    /// The last load failed: why, and when to try again.
    Failed(String, Instant),
}

impl Partitioning {
    pub fn new(catalog: PluginCatalog, stage: Option<StageSpec>) -> Partitioning {
        Partitioning { catalog, stage, instance: tokio::sync::Mutex::new(Loaded::NotYet) }
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
                .map_err(|e| NoPartition::Refused(e.to_string()))?;
            return Ok(vec![(topic.to_owned(), partition, batch)]);
        };
        let mut slot = self.instance.lock().await;
        let (label, mut instance) = match std::mem::take(&mut *slot) {
            Loaded::Ready(label, instance) => (label, *instance),
            Loaded::Failed(why, retry_at) if Instant::now() < retry_at => {
                *slot = Loaded::Failed(why.clone(), retry_at);
                return Err(NoPartition::Unavailable(why));
            }
            Loaded::Failed(earlier, _) => self.load_or_remember(stage, &mut slot, Some(earlier)).await?,
            Loaded::NotYet => self.load_or_remember(stage, &mut slot, None).await?,
        };
        // The plugin contract promises uncompressed batches.
        let compressed = Batch::parse(&batch).is_ok_and(|parsed| parsed.compression() != Compression::None);
        let decompressed = match compressed {
            true => {
                Some(owned_records(&batch).and_then(|records| build_batches(&records)).map_err(NoPartition::Refused)?)
            }
            false => None,
        };
        let owned_topic = topic.to_owned();
        // The batch goes to the blocking task and comes back, rather than being copied.
        let (instance, batch, chosen) = tokio::task::spawn_blocking(move || {
            let input = decompressed.as_deref().unwrap_or(&batch);
            let chosen = instance.partition(&owned_topic, 0, input, partitions, records).map_err(|e| e.to_string());
            (instance, batch, chosen)
        })
        .await
        .map_err(|e| NoPartition::Refused(format!("the partitioner's task failed: {e}")))?;
        let chosen = match chosen {
            Ok(chosen) => {
                *slot = Loaded::Ready(label, Box::new(instance));
                chosen
            }
            // Dropped: a plugin that failed once is loaded afresh for the next frame.
            Err(e) => return Err(NoPartition::Refused(format!("partitioner {label}: {e}"))),
        };
        drop(slot);
        split(topic, batch, &chosen).map_err(NoPartition::Refused)
    }

    /// Loads the plugin; a failure is remembered (and logged when it is new), so that frames
    /// meanwhile are answered at once and the load is not tried for each of them.
    async fn load_or_remember(
        &self,
        stage: &StageSpec,
        slot: &mut Loaded,
        earlier: Option<String>,
    ) -> Result<(String, PluginInstance), NoPartition> {
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
                *slot = Loaded::Failed(why.clone(), Instant::now() + PARTITIONER_RELOAD_WAIT);
                Err(NoPartition::Unavailable(why))
            }
        }
    }
}

/// Loads the partitioner and checks that it is one.
async fn load(catalog: &PluginCatalog, stage: &StageSpec) -> Result<(String, PluginInstance), String> {
    let (catalog, loading) = (catalog.clone(), stage.clone());
    let (label, instance) =
        tokio::task::spawn_blocking(move || load_instance(&catalog, &loading, PluginLimits::default()))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("partitioner {} cannot be loaded: {e}", stage.label()))?;
    let kind = instance.metadata().kind;
    if kind != PluginKind::Partitioner {
        return Err(format!("{label} is a {} plugin, not a partitioner", kind.interface()));
    }
    Ok((label, instance))
}

/// The batch whole when every record goes to one partition; else its records regrouped, in
/// order, into a batch per partition (in the order the partitions first appear).
fn split(topic: &str, batch: Vec<u8>, chosen: &[u32]) -> Result<Vec<Append>, String> {
    match chosen {
        [] => Err("the partitioner chose nothing".into()),
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
    use crate::pipelines::batches::owned_records;

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
