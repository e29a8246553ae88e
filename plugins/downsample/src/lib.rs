//! `downsample` (stateful): keeps at most one record per key per time window, by record
//! timestamp, so a sensor reporting every 100 ms reaches the cloud once a minute. The last kept
//! timestamp of each key is the plugin's state: the broker commits it with the pipeline's
//! progress, so a restart neither re-sends nor skips.
//!
//! Config: `window_ms` (required, > 0); `max_keys` (default 100000): keys remembered, the ones
//! seen longest ago forgotten first.

use std::collections::HashMap;

use rill_plugin_sdk::{Config, Emit, Error, Plugin, Record, Transform, transform_plugin};

#[derive(Debug)]
pub struct Downsample {
    window_ms: i64,
    max_keys: usize,
    /// Key → timestamp of the last record kept.
    last_kept: HashMap<Vec<u8>, i64>,
}

impl Downsample {
    fn forget_oldest(&mut self) {
        while self.last_kept.len() > self.max_keys {
            let oldest = self.last_kept.iter().min_by_key(|(_, at)| **at).map(|(key, _)| key.clone());
            match oldest {
                Some(key) => self.last_kept.remove(&key),
                None => break,
            };
        }
    }
}

impl Plugin for Downsample {
    const NAME: &'static str = "downsample";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const STATEFUL: bool = true;

    fn new(config: &Config) -> Result<Self, Error> {
        let window_ms: i64 =
            config.parse("window_ms")?.ok_or_else(|| Error::invalid_input("missing config key \"window_ms\""))?;
        if window_ms <= 0 {
            return Err(Error::invalid_input("window_ms must be positive"));
        }
        let max_keys = config.parse("max_keys")?.unwrap_or(100_000);
        if max_keys == 0 {
            return Err(Error::invalid_input("max_keys must be positive"));
        }
        Ok(Downsample { window_ms, max_keys, last_kept: HashMap::new() })
    }

    /// `count:u32`, then per key `len:u32, key, timestamp:i64`, big-endian, keys sorted (the same
    /// state always makes the same bytes).
    fn snapshot(&self) -> Vec<u8> {
        let mut entries: Vec<_> = self.last_kept.iter().collect();
        entries.sort();
        let mut out = (entries.len() as u32).to_be_bytes().to_vec();
        for (key, at) in entries {
            out.extend_from_slice(&(key.len() as u32).to_be_bytes());
            out.extend_from_slice(key);
            out.extend_from_slice(&at.to_be_bytes());
        }
        out
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), Error> {
        let bad = || Error::fatal("the downsample state is corrupt");
        let mut at = 0usize;
        let mut take = |n: usize| -> Result<&[u8], Error> {
            let head = state.get(at..at.checked_add(n).ok_or_else(bad)?).ok_or_else(bad)?;
            at += n;
            Ok(head)
        };
        let count = u32::from_be_bytes(take(4)?.try_into().map_err(|_| bad())?);
        let mut restored = HashMap::new();
        for _ in 0..count {
            let len = u32::from_be_bytes(take(4)?.try_into().map_err(|_| bad())?) as usize;
            let key = take(len)?.to_vec();
            let last = i64::from_be_bytes(take(8)?.try_into().map_err(|_| bad())?);
            restored.insert(key, last);
        }
        if at != state.len() {
            return Err(bad());
        }
        self.last_kept = restored;
        Ok(())
    }
}

impl Transform for Downsample {
    fn transform(&mut self, record: &Record<'_>, emit: &mut Emit) -> Result<(), Error> {
        let key = record.key.unwrap_or_default();
        let due = self.last_kept.get(key).is_none_or(|&last| record.timestamp.saturating_sub(last) >= self.window_ms);
        if due {
            emit.keep();
            self.last_kept.insert(key.to_vec(), record.timestamp);
            if self.last_kept.len() > self.max_keys {
                self.forget_oldest();
            }
        }
        Ok(())
    }
}

transform_plugin!(Downsample);

#[cfg(test)]
mod tests {
    use super::*;
    use rill_plugin_sdk::rill_core::batch::{BatchParams, RecordSpec, build_vec};
    use rill_plugin_sdk::transform_batches;

    fn plugin(window: &str) -> Downsample {
        Downsample::new(&Config::new(vec![("window_ms".into(), window.into())])).unwrap()
    }

    /// Records kept from (key, timestamp) pairs.
    fn kept(plugin: &mut Downsample, records: &[(&str, i64)]) -> i32 {
        let specs: Vec<RecordSpec<'_>> = records
            .iter()
            .map(|(k, t)| RecordSpec { timestamp: *t, key: Some(k.as_bytes()), value: Some(b"v"), headers: &[] })
            .collect();
        let output = transform_batches(plugin, &build_vec(BatchParams::default(), &specs).unwrap()).unwrap();
        output.get(57..61).map_or(0, |b| i32::from_be_bytes(b.try_into().unwrap()))
    }

    #[test]
    fn one_record_per_key_per_window() {
        let mut p = plugin("1000");
        assert_eq!(kept(&mut p, &[("a", 0), ("a", 500), ("b", 600), ("a", 1000), ("a", 1999), ("b", 1700)]), 4);
    }

    #[test]
    fn state_survives_a_snapshot_and_restore() {
        let mut before = plugin("1000");
        kept(&mut before, &[("a", 0), ("b", 100)]);
        let snapshot = before.snapshot();
        let mut after = plugin("1000");
        after.restore(&snapshot).unwrap();
        assert_eq!(after.snapshot(), snapshot);
        assert_eq!(kept(&mut after, &[("a", 900), ("b", 1100)]), 1, "a's window is still open after restore");
        assert!(after.restore(&snapshot[..snapshot.len() - 1]).is_err());
        assert!(after.restore(&[snapshot.clone(), vec![0]].concat()).is_err());
        assert!(Downsample::new(&Config::new(vec![("window_ms".into(), "0".into())])).is_err());
    }
}
