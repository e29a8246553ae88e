//! Which topic on the aggregation node holds the copy of which edge topic, per log incarnation.
//!
//! A document of kind [`KIND`] per (edge, edge topic) names the copy of the incarnation being
//! mirrored and every earlier one's (retired, kept as they were). A copy topic is read-only for
//! producers: only the replication follower appends to it.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::spec::{NewIncarnation, ReplicationSection};
use crate::storage::{DocumentWrite, Store, TopicConfig};

pub const KIND: &str = "mirror-copy";

/// Records of gaps in copies (kind, named `<copy topic>/<partition>/<from>`).
pub const GAP_KIND: &str = "mirror-gap";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CopyDocument {
    pub edge: String,
    pub edge_topic: String,
    pub incarnation: Uuid,
    pub topic: String,
    #[serde(default)]
    pub retired: Vec<RetiredCopy>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetiredCopy {
    pub incarnation: Uuid,
    pub topic: String,
    pub retired_ms: i64,
}

fn document_name(edge: &str, edge_topic: &str) -> String {
    format!("{edge}/{edge_topic}")
}

fn read_only_reason(edge: &str, edge_topic: &str) -> String {
    format!("a mirror copy of edge {edge:?}'s topic {edge_topic:?}: produce on the edge")
}

pub fn load(store: &Store, edge: &str, edge_topic: &str) -> Result<Option<CopyDocument>, String> {
    let Some(bytes) = store.resource(KIND, &document_name(edge, edge_topic)).map_err(|e| e.to_string())? else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes).map(Some).map_err(|e| format!("stored copy record of {edge}/{edge_topic}: {e}"))
}

/// Every copy record, for status pages.
pub fn all(store: &Store) -> Vec<CopyDocument> {
    let documents = store.resources(KIND).unwrap_or_default();
    documents.into_iter().filter_map(|(_, bytes)| serde_json::from_slice(&bytes).ok()).collect()
}

/// The copy topic of `edge`'s `edge_topic` in `incarnation`, made (with at least `partitions`
/// partitions) when missing. `Err` says why the topic is not mirrored.
pub async fn resolve(
    store: &Store,
    section: &ReplicationSection,
    edge: &str,
    edge_topic: &str,
    incarnation: Uuid,
    partitions: u32,
) -> Result<String, String> {
    let stored = load(store, edge, edge_topic)?;
    let (topic, mut document) = match stored {
        Some(document) if document.incarnation == incarnation => (document.topic.clone(), None),
        Some(mut document) => {
            let old = document.topic.clone();
            if section.on_new_incarnation == NewIncarnation::Stop {
                return Err(format!(
                    "edge {edge:?} sends a new incarnation ({incarnation}) of topic {edge_topic:?} (its data dir was \
                     wiped or replaced?); the copy of the old one, {old:?}, is kept and mirroring stopped \
                     (replication.on_new_incarnation = \"stop\")"
                ));
            }
            let hex = incarnation.simple().to_string();
            let topic = format!("{}.{}", section.copy_name(edge, edge_topic), &hex[..8]);
            tracing::warn!(
                edge, edge_topic, old_copy = %old, new_copy = %topic, %incarnation,
                "a new incarnation of an edge topic: the old copy is kept, the new one is mirrored separately"
            );
            document.retired.push(RetiredCopy {
                incarnation: document.incarnation,
                topic: old,
                retired_ms: crate::clock::now_ms(),
            });
            document.incarnation = incarnation;
            document.topic = topic.clone();
            (topic, Some(document))
        }
        None => {
            let topic = section.copy_name(edge, edge_topic);
            let document = CopyDocument {
                edge: edge.into(),
                edge_topic: edge_topic.into(),
                incarnation,
                topic: topic.clone(),
                retired: Vec::new(),
            };
            (topic, Some(document))
        }
    };
    ensure_topic(store, edge, edge_topic, &topic, partitions).await?;
    if let Some(document) = document.take() {
        let bytes = serde_json::to_vec(&document).map_err(|e| e.to_string())?;
        let write = DocumentWrite { kind: KIND.into(), name: document_name(edge, edge_topic), document: Some(bytes) };
        store.write_documents(vec![write]).await.map_err(|e| e.to_string())?;
    }
    Ok(topic)
}

/// Makes the copy topic (read-only, at least `partitions` partitions). An existing topic is taken
/// if it is this copy already, or if it is empty (a consumer's Metadata request created it before
/// the edge first connected); a topic holding other records is never written into.
async fn ensure_topic(store: &Store, edge: &str, edge_topic: &str, topic: &str, partitions: u32) -> Result<(), String> {
    let reason = read_only_reason(edge, edge_topic);
    match store.topic(topic) {
        Some(existing) => {
            if store.read_only_reason(topic).as_deref() != Some(reason.as_str()) {
                // Marked first, so no producer slips a record in after the check.
                store.mark_read_only(topic, &reason).await.map_err(|e| e.to_string())?;
                let empty = existing.partitions.iter().all(|p| p.offsets().high_watermark == 0);
                if !empty {
                    store.unmark_read_only(topic).await.map_err(|e| e.to_string())?;
                    return Err(format!(
                        "topic {topic:?} already exists here with records and is not the copy of edge {edge:?}'s \
                         {edge_topic:?}: delete it or choose another replication.copy_topic"
                    ));
                }
                tracing::info!(topic, edge, edge_topic, "an empty topic of the copy's name becomes the copy");
            }
            if (existing.partitions.len() as u32) < partitions {
                store.create_partitions(topic, partitions).await.map_err(|e| e.to_string())?;
            }
        }
        None => {
            // Marked first: no producer can slip a record in between.
            let config = TopicConfig { retention_ms: None, ..TopicConfig::default() };
            store.mark_read_only(topic, &reason).await.map_err(|e| e.to_string())?;
            store.create_topic(topic, partitions, config).await.map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}
