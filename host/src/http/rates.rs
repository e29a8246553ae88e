//! Ingest rates per topic over the last minutes, for the status page's charts and `rill status`:
//! a sampler reads every topic's traffic counters at a fixed interval into a bounded ring.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::watch;

use crate::limits::{STATUS_SAMPLE_EVERY, STATUS_SAMPLES};
use crate::storage::Store;

/// One topic's counters at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Sample {
    at_ms: i64,
    records_in: u64,
    bytes_in: u64,
}

/// Records and bytes per second over one sample interval, ending at `at_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, serde::Deserialize)]
pub struct Rate {
    pub at_ms: i64,
    pub records_per_s: f64,
    pub bytes_per_s: f64,
}

/// The last [`STATUS_SAMPLES`] samples of every topic.
#[derive(Debug, Default)]
pub struct RateHistory {
    topics: Mutex<HashMap<String, VecDeque<Sample>>>,
}

impl RateHistory {
    /// Reads every topic's counters now; forgets deleted topics.
    pub fn sample(&self, store: &Store, now_ms: i64) {
        let mut topics = self.topics.lock().unwrap_or_else(|p| p.into_inner());
        let current = store.topics();
        topics.retain(|name, _| current.iter().any(|t| &t.name == name));
        for topic in current {
            let (records_in, bytes_in) = topic.partitions.iter().fold((0, 0), |(records, bytes), p| {
                let counts = p.traffic.counts();
                (records + counts.records_in, bytes + counts.bytes_in)
            });
            let ring = topics.entry(topic.name.clone()).or_default();
            if ring.len() == STATUS_SAMPLES {
                ring.pop_front();
            }
            ring.push_back(Sample { at_ms: now_ms, records_in, bytes_in });
        }
    }

    /// A topic's rates, oldest first: one per interval between consecutive samples.
    pub fn rates(&self, topic: &str) -> Vec<Rate> {
        let topics = self.topics.lock().unwrap_or_else(|p| p.into_inner());
        let Some(ring) = topics.get(topic) else { return Vec::new() };
        ring.iter()
            .zip(ring.iter().skip(1))
            .map(|(before, after)| {
                let seconds = ((after.at_ms - before.at_ms).max(1)) as f64 / 1000.0;
                Rate {
                    at_ms: after.at_ms,
                    // Counters restart with the process; a topic recreated under the same name
                    // starts again from zero: never a negative rate.
                    records_per_s: after.records_in.saturating_sub(before.records_in) as f64 / seconds,
                    bytes_per_s: after.bytes_in.saturating_sub(before.bytes_in) as f64 / seconds,
                }
            })
            .collect()
    }

    /// Samples until `shutdown`.
    pub async fn run(&self, store: Store, mut shutdown: watch::Receiver<bool>) {
        let mut ticker = tokio::time::interval(STATUS_SAMPLE_EVERY);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => self.sample(&store, crate::clock::now_ms()),
                _ = shutdown.wait_for(|stop| *stop) => return,
            }
        }
    }
}

/// How far back the history reaches.
pub fn history_span() -> Duration {
    STATUS_SAMPLE_EVERY * (STATUS_SAMPLES as u32 - 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{Location, StoreConfig, TopicConfig};

    #[tokio::test]
    async fn rates_follow_appends_and_the_ring_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(Location::Dir(dir.path().to_owned()), StoreConfig::default()).unwrap();
        store.create_topic("t", 1, TopicConfig::default()).await.unwrap();
        let history = RateHistory::default();
        history.sample(&store, 0);
        let spec = rill_core::batch::RecordSpec { timestamp: 1, key: None, value: Some(b"v"), headers: &[] };
        let batch = rill_core::batch::build_vec(Default::default(), &vec![spec; 20]).unwrap();
        store.append("t", 0, batch.clone()).await.unwrap();
        history.sample(&store, 2000);
        let rates = history.rates("t");
        assert_eq!(rates.len(), 1);
        assert_eq!(rates[0].records_per_s, 10.0);
        assert_eq!(rates[0].bytes_per_s, batch.len() as f64 / 2.0);
        for i in 0..(STATUS_SAMPLES as i64 * 2) {
            history.sample(&store, 4000 + i * 1000);
        }
        assert_eq!(history.rates("t").len(), STATUS_SAMPLES - 1);
        store.delete_topic("t").await.unwrap();
        history.sample(&store, 1_000_000);
        assert!(history.rates("t").is_empty(), "a deleted topic's history goes");
    }
}
