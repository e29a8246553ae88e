//! Recognising redelivered messages by their ids, across crashes.
//!
//! A bridge configured with ids (an MQTT 5 user property, or a header the ingest plugin sets)
//! remembers the ids of the last `window` messages or records it stored. The memory is committed
//! in the same transaction as the records (a redelivery after a crash finds its id exactly when
//! its records are in the log), as segments: each commit that stores ids writes one segment
//! document with just those ids, and deletes the oldest segments once the others still hold the
//! window. A commit costs what its own ids weigh, whatever the window.
//!
//! Ids are scoped by MQTT topic: two devices counting from 1 do not collide.

use std::collections::{HashSet, VecDeque};

use crate::storage::{DocumentWrite, ResourceError, StorageError, Store};

/// The storage kind of dedup segments, named `<bridge>/<sequence>`.
pub const KIND: &str = "mqtt-dedup";

/// The ids a bridge has stored, the newest `window` of them at least.
#[derive(Debug)]
pub(super) struct DedupWindow {
    bridge: String,
    window: usize,
    seen: HashSet<String>,
    /// Oldest first: (sequence, ids).
    segments: VecDeque<(u64, Vec<String>)>,
    /// Segments on disk past the window (it was made smaller): deleted with the next commit.
    stale: Vec<u64>,
    held: usize,
    next: u64,
}

/// A message's (or record's) id, scoped by its MQTT topic; `None` for an empty id (which would
/// make every message after the first a duplicate). Text ids are kept as they are, others in
/// hex, each tagged so the two never meet.
pub(super) fn scoped(mqtt_topic: &str, id: &[u8]) -> Option<String> {
    if id.is_empty() {
        return None;
    }
    Some(match std::str::from_utf8(id) {
        Ok(text) => format!("{mqtt_topic}\u{0}t{text}"),
        Err(_) => {
            let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
            format!("{mqtt_topic}\u{0}b{hex}")
        }
    })
}

impl DedupWindow {
    /// The window as stored for `bridge`.
    pub(super) fn load(store: &Store, bridge: &str, window: usize) -> Result<Self, ResourceError> {
        let mut segments: Vec<(u64, Vec<String>)> = Vec::new();
        for (name, document) in store.resources(KIND)? {
            let Some(sequence) = segment_of(&name, bridge) else { continue };
            let ids: Vec<String> = postcard::from_bytes(&document)
                .map_err(|e| StorageError::corrupt("dedup segment", format!("{name:?}: {e}")))?;
            segments.push((sequence, ids));
        }
        segments.sort_by_key(|(sequence, _)| *sequence);
        let mut this = Self {
            bridge: bridge.to_owned(),
            window,
            seen: HashSet::new(),
            segments: VecDeque::new(),
            held: 0,
            next: segments.last().map_or(0, |(sequence, _)| sequence + 1),
            stale: Vec::new(),
        };
        for (sequence, ids) in segments {
            let expired = this.apply(sequence, ids);
            this.stale.extend(expired);
        }
        Ok(this)
    }

    /// Deletions of every segment of `bridge` (removed with it, in the same transaction).
    pub(super) fn forget(store: &Store, bridge: &str) -> Result<Vec<DocumentWrite>, ResourceError> {
        let segments = store.resources(KIND)?.into_iter().filter(|(name, _)| segment_of(name, bridge).is_some());
        Ok(segments.map(|(name, _)| DocumentWrite { kind: KIND.to_owned(), name, document: None }).collect())
    }

    pub(super) fn contains(&self, id: &str) -> bool {
        self.seen.contains(id)
    }

    /// The documents that record `ids` (not yet seen, distinct) and drop the segments they push
    /// out of the window: write them in the transaction storing the ids' records, then call
    /// [`DedupWindow::committed`] with the same ids.
    pub(super) fn writes(&self, ids: &[String]) -> Vec<DocumentWrite> {
        if ids.is_empty() {
            return Vec::new();
        }
        let mut writes = vec![DocumentWrite {
            kind: KIND.to_owned(),
            name: self.name(self.next),
            document: Some(postcard::to_allocvec(ids).expect("strings encode")),
        }];
        for sequence in self.expired(ids.len()).into_iter().chain(self.stale.iter().copied()) {
            writes.push(DocumentWrite { kind: KIND.to_owned(), name: self.name(sequence), document: None });
        }
        writes
    }

    /// The transaction with [`DedupWindow::writes`] of `ids` landed.
    pub(super) fn committed(&mut self, ids: Vec<String>) {
        if ids.is_empty() {
            return;
        }
        let sequence = self.next;
        self.next += 1;
        self.apply(sequence, ids);
        self.stale.clear();
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.held
    }

    /// Adds a segment, dropping those it pushes out of the window; returns their sequences.
    fn apply(&mut self, sequence: u64, ids: Vec<String>) -> Vec<u64> {
        let expired = self.expired(ids.len());
        for _ in &expired {
            if let Some((_, old)) = self.segments.pop_front() {
                self.held -= old.len();
                for id in &old {
                    self.seen.remove(id);
                }
            }
        }
        self.held += ids.len();
        self.seen.extend(ids.iter().cloned());
        self.segments.push_back((sequence, ids));
        expired
    }

    /// The oldest segments that can go once `adding` more ids are held: those whose removal
    /// still leaves at least the window.
    fn expired(&self, adding: usize) -> Vec<u64> {
        let mut held = self.held + adding;
        let mut expired = Vec::new();
        for (sequence, ids) in &self.segments {
            if held - ids.len() < self.window {
                break;
            }
            held -= ids.len();
            expired.push(*sequence);
        }
        expired
    }

    fn name(&self, sequence: u64) -> String {
        format!("{}/{sequence:020}", self.bridge)
    }
}

fn segment_of(name: &str, bridge: &str) -> Option<u64> {
    let (owner, sequence) = name.rsplit_once('/')?;
    if owner != bridge {
        return None;
    }
    sequence.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{Location, StoreConfig};

    fn id(topic: &str, n: u32) -> String {
        scoped(topic, n.to_string().as_bytes()).unwrap()
    }

    fn ids(range: std::ops::Range<u32>) -> Vec<String> {
        range.map(|n| id("t", n)).collect()
    }

    #[test]
    fn ids_are_scoped_tagged_and_never_empty() {
        assert_eq!(scoped("t", b""), None);
        assert_ne!(scoped("t", &[0xff, 1]), scoped("t", &[0xfe, 1]), "binary ids stay distinct");
        assert_ne!(scoped("t", b"ff01"), scoped("t", &[0xff, 1]), "text and binary never meet");
        assert_ne!(scoped("a", b"1"), scoped("b", b"1"));
    }

    /// A store in `dir` whose bridge `b` has stored `count` ids in segments of `per_commit`.
    async fn filled(dir: &std::path::Path, window: usize, count: u32, per_commit: u32) -> (Store, DedupWindow) {
        let store = Store::open(Location::Dir(dir.to_owned()), StoreConfig::default()).unwrap();
        let mut ids_window = DedupWindow::load(&store, "b", window).unwrap();
        for start in (0..count).step_by(per_commit as usize) {
            commit(&store, &mut ids_window, ids(start..start + per_commit)).await;
        }
        (store, ids_window)
    }

    async fn commit(store: &Store, window: &mut DedupWindow, new: Vec<String>) {
        let writes = window.writes(&new);
        store.write_documents(writes).await.unwrap();
        window.committed(new);
    }

    #[tokio::test]
    async fn the_window_survives_a_reopen_and_forgets_only_past_it() {
        let dir = tempfile::tempdir().unwrap();
        let (store, window) = filled(dir.path(), 100, 300, 30).await;
        // 300 ids in segments of 30: the newest 4 segments (120 ids) cover the window of 100.
        assert_eq!(window.len(), 120);
        let reloaded = DedupWindow::load(&store, "b", 100).unwrap();
        assert_eq!(reloaded.len(), 120);
        for n in 0..300 {
            assert_eq!(reloaded.contains(&id("t", n)), n >= 180, "{n}");
            assert_eq!(window.contains(&id("t", n)), n >= 180, "{n}");
        }
        assert!(!reloaded.contains(&id("other-topic", 250)), "ids are scoped by MQTT topic");
        // Another bridge's segments are its own; forgetting one bridge leaves the other.
        let mut other = DedupWindow::load(&store, "b2", 10).unwrap();
        commit(&store, &mut other, ids(0..5)).await;
        store.write_documents(DedupWindow::forget(&store, "b").unwrap()).await.unwrap();
        assert_eq!(DedupWindow::load(&store, "b", 100).unwrap().len(), 0);
        assert_eq!(DedupWindow::load(&store, "b2", 10).unwrap().len(), 5);
        store.shutdown().await;
    }

    #[tokio::test]
    async fn a_smaller_window_deletes_what_it_no_longer_holds() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = filled(dir.path(), 100, 100, 10).await;
        assert_eq!(store.resources(KIND).unwrap().len(), 10);
        let mut smaller = DedupWindow::load(&store, "b", 20).unwrap();
        assert_eq!(smaller.len(), 20);
        commit(&store, &mut smaller, ids(100..110)).await;
        assert_eq!(store.resources(KIND).unwrap().len(), 2, "only what the window holds stays on disk");
        assert_eq!(DedupWindow::load(&store, "b", 20).unwrap().len(), 20);
        store.shutdown().await;
    }

    #[tokio::test]
    async fn writes_not_committed_change_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(Location::Dir(dir.path().to_owned()), StoreConfig::default()).unwrap();
        let mut window = DedupWindow::load(&store, "b", 10).unwrap();
        commit(&store, &mut window, ids(0..10)).await;
        // Prepared, never written (the transaction failed): memory and disk agree without them.
        let _ = window.writes(&ids(10..20));
        assert!(!window.contains(&id("t", 15)));
        assert_eq!(DedupWindow::load(&store, "b", 10).unwrap().len(), 10);
        store.shutdown().await;
    }
}
