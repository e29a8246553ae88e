//! `rill bench storage`: append throughput of the redb store against plain file append + fdatasync
//! with the same bytes per sync, measured in the same run, plus file size and bytes written to
//! disk (from `/proc/self/io`) per payload byte.
//!
//! Each case runs `--repeat` times in a fresh directory; the table shows medians. Durability
//! class is named per row: `fsync` = fsync before every acknowledgement, `interval` = fsync every
//! 100 ms (acknowledged from the page cache in between).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use rill_core::batch::{BatchParams, RecordSpec, build_vec};

use crate::limits::GROUP_BYTES_MAX_DEFAULT;
use crate::storage::{DB_FILE_NAME, DurabilityPolicy, Location, Store, StoreConfig, TopicConfig};

#[derive(Debug, Args)]
pub struct StorageArgs {
    /// Directory on the disk to measure (a scratch subdirectory is made and removed).
    #[arg(long, default_value = ".")]
    dir: PathBuf,
    /// Payload bytes per case and repetition.
    #[arg(long, default_value_t = 256)]
    mib_per_case: u64,
    /// Longest a case may run before it stops early (seconds).
    #[arg(long, default_value_t = 3.0)]
    seconds_per_case: f64,
    /// Repetitions per case; the table reports medians.
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// A few tiny cases, to check that the benchmark still works (CI).
    #[arg(long)]
    quick: bool,
    /// Also write the markdown table to this file.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Run only the cases whose row contains this text (e.g. "8 → 1" or "16384").
    #[arg(long)]
    filter: Option<String>,
    /// Size at which a partition's row group closes (the store's `group_bytes_max`), to compare
    /// layouts; 1 starts a new group at every commit.
    #[arg(long, default_value_t = GROUP_BYTES_MAX_DEFAULT)]
    group_bytes_max: usize,
}

#[derive(Debug, Clone, Copy)]
struct Case {
    record_bytes: usize,
    batch_bytes: usize,
    durability: DurabilityPolicy,
    producers: usize,
    /// Producers share the partitions round-robin (8 producers on 1 partition: group commit packs
    /// their batches into one row group; on 8 partitions: one group per partition per commit).
    partitions: usize,
    /// One small batch per commit, as a gateway at 10 msg/s produces.
    low_rate: bool,
    /// One batch per this interval, as a gateway with a few sensors sends (real time, so these
    /// cases show what the durability policies cost on flash at low rates).
    pace: Option<Duration>,
}

#[derive(Debug, Clone, Copy, Default)]
struct Measured {
    mb_per_s: f64,
    records_per_s: f64,
    file_per_payload: f64,
    allocated_per_payload: f64,
    written_per_payload: f64,
    bytes_per_sync: f64,
}

const INTERVAL: Duration = Duration::from_millis(100);

/// A sensor gateway at 10 msg/s: one 1 KB batch every 100 ms.
const GATEWAY_PACE: Duration = Duration::from_millis(100);

fn cases(quick: bool) -> Vec<Case> {
    let mut cases = Vec::new();
    let batch_sizes_100 = [1020, 4090, 16_380, 65_530, 16_384, 65_536];
    let batch_sizes_1k = [4090, 16_384, 65_530];
    for durability in [DurabilityPolicy::EveryCommit, DurabilityPolicy::Interval(INTERVAL)] {
        for (producers, partitions) in [(1, 1), (8, 1), (8, 8)] {
            for (record_bytes, sizes) in [(100, &batch_sizes_100[..]), (1024, &batch_sizes_1k[..])] {
                for &batch_bytes in sizes {
                    cases.push(Case {
                        record_bytes,
                        batch_bytes,
                        durability,
                        producers,
                        partitions,
                        low_rate: false,
                        pace: None,
                    });
                }
            }
        }
    }
    cases.push(Case {
        record_bytes: 100,
        batch_bytes: 1020,
        durability: DurabilityPolicy::EveryCommit,
        producers: 1,
        partitions: 1,
        low_rate: true,
        pace: None,
    });
    for durability in [
        DurabilityPolicy::EveryCommit,
        DurabilityPolicy::Interval(INTERVAL),
        DurabilityPolicy::Interval(Duration::from_secs(1)),
    ] {
        let low_rate = true;
        let pace = Some(GATEWAY_PACE);
        cases.push(Case {
            record_bytes: 100,
            batch_bytes: 1020,
            durability,
            producers: 1,
            partitions: 1,
            low_rate,
            pace,
        });
    }
    if quick {
        cases.retain(|c| {
            (c.low_rate && c.pace.is_none()) || (c.record_bytes == 100 && c.batch_bytes == 16_384 && c.producers == 8)
        });
    }
    cases
}

pub async fn run(mut args: StorageArgs) -> Result<(), String> {
    if args.quick {
        args.mib_per_case = args.mib_per_case.min(2);
        args.repeat = 1;
        args.seconds_per_case = args.seconds_per_case.min(1.0);
    }
    let scratch = args.dir.join(format!("rill-bench-{}", std::process::id()));
    let measured = run_cases(&scratch, &args).await;
    // Removed on every path: a failed case must not leave gigabytes behind.
    let _ = std::fs::remove_dir_all(&scratch);
    let table = measured?;
    if let Some(out) = &args.out {
        std::fs::write(out, &table).map_err(|e| format!("cannot write {}: {e}", out.display()))?;
    }
    Ok(())
}

async fn run_cases(scratch: &Path, args: &StorageArgs) -> Result<String, String> {
    let mut table = header(args);
    println!("{table}");
    for case in cases(args.quick) {
        let label = row(case, &Measured::default(), &Measured::default());
        if args.filter.as_ref().is_some_and(|filter| !label.contains(filter.as_str())) {
            continue;
        }
        let mut rill = Vec::new();
        let mut baseline = Vec::new();
        for _ in 0..args.repeat {
            let measured = run_rill(scratch, case, args).await?;
            baseline.push(run_baseline(scratch, case, measured.bytes_per_sync, args)?);
            rill.push(measured);
        }
        let row = row(case, &median(&rill), &median(&baseline));
        println!("{row}");
        table.push_str(&row);
        table.push('\n');
    }
    Ok(table)
}

fn header(args: &StorageArgs) -> String {
    let tunables = std::env::var("GLIBC_TUNABLES").unwrap_or_else(|_| "unset".into());
    format!(
        "rill bench storage: {} MiB/case, {} repeats (medians), max {} s/case, group_bytes_max {}, \
         GLIBC_TUNABLES={tunables}\n\n\
         | records | batch B | durability | producers → partitions | rill MB/s | rill rec/s | baseline MB/s | ratio | file/payload | allocated/payload | written/payload (baseline) | bytes/sync |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|\n",
        args.mib_per_case, args.repeat, args.seconds_per_case, args.group_bytes_max
    )
}

fn row(case: Case, rill: &Measured, baseline: &Measured) -> String {
    let policy = match case.durability {
        DurabilityPolicy::EveryCommit => "fsync".to_owned(),
        DurabilityPolicy::Interval(i) => format!("interval {} ms", i.as_millis()),
    };
    let durability = match (case.low_rate, case.pace) {
        (_, Some(pace)) => format!("{policy}, {} msg/s", 1000 / pace.as_millis().max(1)),
        (true, None) => format!("{policy}, 1 batch/commit"),
        (false, None) => policy,
    };
    format!(
        "| {} B | {} | {} | {} → {} | {:.1} | {:.0} | {:.1} | {:.2} | {:.2} | {:.2} | {:.2} ({:.2}) | {:.0} |",
        case.record_bytes,
        case.batch_bytes,
        durability,
        case.producers,
        case.partitions,
        rill.mb_per_s,
        rill.records_per_s,
        baseline.mb_per_s,
        rill.mb_per_s / baseline.mb_per_s,
        rill.file_per_payload,
        rill.allocated_per_payload,
        rill.written_per_payload,
        baseline.written_per_payload,
        rill.bytes_per_sync,
    )
}

fn median(samples: &[Measured]) -> Measured {
    let pick = |f: fn(&Measured) -> f64| {
        let mut values: Vec<f64> = samples.iter().map(f).collect();
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    Measured {
        mb_per_s: pick(|m| m.mb_per_s),
        records_per_s: pick(|m| m.records_per_s),
        file_per_payload: pick(|m| m.file_per_payload),
        allocated_per_payload: pick(|m| m.allocated_per_payload),
        written_per_payload: pick(|m| m.written_per_payload),
        bytes_per_sync: pick(|m| m.bytes_per_sync),
    }
}

/// A batch of `record_bytes`-value records that is exactly `batch_bytes` long (the last record
/// is padded; with one record fewer when a varint length boundary makes the exact size
/// unreachable).
pub(super) fn batch_of(record_bytes: usize, batch_bytes: usize) -> Result<(Vec<u8>, usize), String> {
    let value = vec![b'x'; batch_bytes];
    let build = |count: usize, last_len: usize| {
        let record = |len: usize| RecordSpec {
            timestamp: 1_700_000_000_000,
            key: None,
            value: Some(&value[..len]),
            headers: &[],
        };
        let mut records: Vec<RecordSpec> = (0..count).map(|_| record(record_bytes)).collect();
        records.push(record(last_len));
        build_vec(BatchParams::default(), &records).map_err(|e| e.to_string())
    };
    // The most full-size records that leave room for a last (padding) record. Record sizes are
    // not constant (offset deltas take 2 bytes from 64 on), so search rather than divide.
    let (mut low, mut high) = (0, batch_bytes / record_bytes.max(1) + 1);
    while low + 1 < high {
        let mid = (low + high) / 2;
        if build(mid, 0)?.len() <= batch_bytes { low = mid } else { high = mid }
    }
    for count in (low.saturating_sub(2)..=low).rev() {
        let mut last_len = 0;
        for _ in 0..16 {
            let len = build(count, last_len)?.len();
            if len == batch_bytes {
                return Ok((build(count, last_len)?, count + 1));
            }
            // Grow or shrink the padding by the difference; a varint boundary may make the exact
            // size unreachable with this count, then one record fewer is tried.
            match (last_len + batch_bytes).checked_sub(len) {
                Some(next) if next != last_len && next <= batch_bytes => last_len = next,
                _ => break,
            }
        }
    }
    Err(format!("cannot build a batch of exactly {batch_bytes} bytes"))
}

async fn run_rill(scratch: &Path, case: Case, args: &StorageArgs) -> Result<Measured, String> {
    let _ = std::fs::remove_dir_all(scratch);
    let config =
        StoreConfig { durability: case.durability, group_bytes_max: args.group_bytes_max, ..StoreConfig::default() };
    let store = Store::open(Location::Dir(scratch.to_owned()), config).map_err(|e| e.to_string())?;
    let partitions = case.partitions as u32;
    let topic_config = TopicConfig { retention_ms: None, ..TopicConfig::default() };
    store.create_topic("bench", partitions, topic_config).await.map_err(|e| e.to_string())?;
    let (batch, records_per_batch) = batch_of(case.record_bytes, case.batch_bytes)?;
    let batch = Arc::new(batch);
    let total_batches = match (case.low_rate, case.pace) {
        (_, Some(_)) => usize::MAX, // until the deadline
        (true, None) => 300,
        (false, None) => (args.mib_per_case << 20) as usize / batch.len() / case.producers,
    };
    let pace = case.pace;
    let deadline = Duration::from_secs_f64(args.seconds_per_case);

    let commits_before = store.stats().commits();
    let syncs_before = store.stats().syncs();
    let written_before = io_write_bytes();
    let started = Instant::now();
    let mut producers = Vec::new();
    for producer in 0..case.producers as u32 {
        let partition = producer % partitions;
        let (store, batch) = (store.clone(), batch.clone());
        producers.push(tokio::spawn(async move {
            let mut sent = 0u64;
            for _ in 0..total_batches {
                if let Some(pace) = pace {
                    tokio::time::sleep_until((started + pace * sent as u32).into()).await;
                }
                store.append("bench", partition, batch.to_vec()).await.map_err(|e| e.to_string())?;
                sent += 1;
                if started.elapsed() > deadline {
                    break;
                }
            }
            Ok::<u64, String>(sent)
        }));
    }
    let mut batches_sent = 0;
    for producer in producers {
        batches_sent += producer.await.map_err(|e| e.to_string())??;
    }
    store.flush().await.map_err(|e| e.to_string())?;
    let elapsed = started.elapsed().as_secs_f64();
    let written = io_write_bytes().saturating_sub(written_before);
    let syncs = (store.stats().syncs() - syncs_before).max(1);
    let _commits = store.stats().commits() - commits_before;
    let allocated = store.space_usage().await.map_err(|e| e.to_string())?.allocated_bytes;
    store.shutdown().await;
    let payload = batches_sent * batch.len() as u64;
    let file_bytes = std::fs::metadata(scratch.join(DB_FILE_NAME)).map(|m| m.len()).unwrap_or(0);
    Ok(Measured {
        mb_per_s: payload as f64 / elapsed / 1e6,
        records_per_s: (batches_sent * records_per_batch as u64) as f64 / elapsed,
        file_per_payload: file_bytes as f64 / payload as f64,
        allocated_per_payload: allocated as f64 / payload as f64,
        written_per_payload: written as f64 / payload as f64,
        bytes_per_sync: payload as f64 / syncs as f64,
    })
}

/// Appends the same batch bytes to a plain file, fdatasync every `bytes_per_sync` bytes.
fn run_baseline(scratch: &Path, case: Case, bytes_per_sync: f64, args: &StorageArgs) -> Result<Measured, String> {
    let _ = std::fs::remove_dir_all(scratch);
    std::fs::create_dir_all(scratch).map_err(|e| e.to_string())?;
    let path = scratch.join("baseline.log");
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(&path).map_err(|e| e.to_string())?;
    let (batch, records_per_batch) = batch_of(case.record_bytes, case.batch_bytes)?;
    let total = match (case.low_rate, case.pace) {
        (_, Some(_)) => u64::MAX, // until the deadline
        (true, None) => 300 * batch.len() as u64,
        (false, None) => args.mib_per_case << 20,
    };
    let deadline = Duration::from_secs_f64(args.seconds_per_case);
    let written_before = io_write_bytes();
    let started = Instant::now();
    let (mut payload, mut since_sync) = (0u64, 0f64);
    let mut sent = 0u32;
    while payload < total && started.elapsed() < deadline {
        if let Some(pace) = case.pace {
            std::thread::sleep((started + pace * sent).saturating_duration_since(Instant::now()));
        }
        sent += 1;
        file.write_all(&batch).map_err(|e| e.to_string())?;
        payload += batch.len() as u64;
        since_sync += batch.len() as f64;
        if since_sync >= bytes_per_sync {
            file.sync_data().map_err(|e| e.to_string())?;
            since_sync = 0.0;
        }
    }
    file.sync_data().map_err(|e| e.to_string())?;
    let elapsed = started.elapsed().as_secs_f64();
    let written = io_write_bytes().saturating_sub(written_before);
    Ok(Measured {
        mb_per_s: payload as f64 / elapsed / 1e6,
        records_per_s: (payload / batch.len() as u64 * records_per_batch as u64) as f64 / elapsed,
        file_per_payload: 1.0,
        allocated_per_payload: 1.0,
        written_per_payload: written as f64 / payload as f64,
        bytes_per_sync,
    })
}

/// Bytes this process caused to be sent to storage (`write_bytes` in `/proc/self/io`).
fn io_write_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/io")
        .ok()
        .and_then(|io| io.lines().find_map(|line| line.strip_prefix("write_bytes: ")?.trim().parse().ok()))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn batches_of_exact_sizes() {
        for record_bytes in [100, 1024] {
            for batch_bytes in [1020, 4090, 16_380, 65_530, 16_384, 65_536] {
                let (batch, records) = super::batch_of(record_bytes, batch_bytes).unwrap();
                assert_eq!(batch.len(), batch_bytes, "{record_bytes} B records");
                assert!(records >= 1);
            }
        }
    }
}
