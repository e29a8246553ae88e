//! Fetch (the stored batch bytes as they are, long-polled) and ListOffsets.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::fetch_request::FetchRequest;
use kafka_protocol::messages::fetch_response::{FetchResponse, FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::list_offsets_request::ListOffsetsRequest;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{BrokerId, TopicName};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::metadata::LEADER_EPOCH;
use super::{Broker, codes};
use crate::limits::{FETCH_RESPONSE_BYTES_MAX, FETCH_WAIT_MS_MAX};
use crate::storage::{ReadError, Store};

/// Kafka's `isolation_level` for READ_COMMITTED.
const READ_COMMITTED: i8 = 1;

/// One partition a Fetch asks for, in request order.
#[derive(Debug)]
struct Wanted {
    topic: String,
    partition: i32,
    offset: i64,
    max_bytes: usize,
}

/// Answers a Fetch: reads every partition from its offset and, while fewer than `min_bytes` are
/// available, waits up to `max_wait_ms` for an append to any of them (or shutdown).
pub async fn fetch(
    broker: &Broker,
    request: FetchRequest,
    version: i16,
    mut shutdown: watch::Receiver<bool>,
) -> FetchResponse {
    // Rill keeps no fetch sessions (KIP-227): session id 0 tells the client to send full requests.
    if request.session_id != 0 {
        return FetchResponse::default()
            .with_error_code(ResponseError::FetchSessionIdNotFound.code())
            .with_session_id(0);
    }
    let wait = Duration::from_millis((request.max_wait_ms.max(0) as u64).min(FETCH_WAIT_MS_MAX));
    let deadline = tokio::time::Instant::now() + wait;
    // Before v3 there is no response limit.
    let response_max = if version >= 3 { request.max_bytes.max(0) as usize } else { usize::MAX };
    let response_max = response_max.min(FETCH_RESPONSE_BYTES_MAX);
    let min_bytes = request.min_bytes.max(0) as usize;
    let committed = request.isolation_level == READ_COMMITTED;
    let mut names = Vec::with_capacity(request.topics.len());
    let mut wanted: Vec<Wanted> = Vec::new();
    for topic in &request.topics {
        names.push((topic.topic.clone(), topic.partitions.len()));
        for partition in &topic.partitions {
            wanted.push(Wanted {
                topic: topic.topic.to_string(),
                partition: partition.partition,
                offset: partition.fetch_offset,
                max_bytes: partition.partition_max_bytes.max(0) as usize,
            });
        }
    }
    let wanted: Arc<[Wanted]> = wanted.into();
    loop {
        // Subscribe before reading, so an append between the read and the wait is not missed.
        let mut watchers: Vec<watch::Receiver<_>> = wanted
            .iter()
            .filter_map(|w| broker.store.watch_offsets(&w.topic, u32::try_from(w.partition).ok()?))
            .collect();
        for watcher in &mut watchers {
            watcher.mark_unchanged();
        }
        let store = broker.store.clone();
        let reading = Arc::clone(&wanted);
        let read = tokio::task::spawn_blocking(move || read_all(&store, &reading, response_max)).await;
        let (partitions, bytes, errors) = match read {
            Ok(read) => read,
            Err(e) => {
                tracing::error!(error = %e, "fetch read task failed");
                return FetchResponse::default().with_error_code(ResponseError::UnknownServerError.code());
            }
        };
        let now = tokio::time::Instant::now();
        if bytes >= min_bytes || errors || now >= deadline || *shutdown.borrow() || watchers.is_empty() {
            count_out(&broker.store, &wanted, &partitions);
            return FetchResponse::default()
                .with_responses(group_by_topic(&names, &wanted, partitions, committed, version));
        }
        let mut changes = JoinSet::new();
        for mut watcher in watchers {
            changes.spawn(async move { watcher.changed().await.is_ok() });
        }
        tokio::select! {
            _ = changes.join_next() => {}
            _ = tokio::time::sleep_until(deadline) => {}
            _ = shutdown.wait_for(|stop| *stop) => {}
        }
    }
}

/// Counts the records and bytes a response hands out, per partition.
fn count_out(store: &Store, wanted: &[Wanted], reads: &[Read]) {
    for (wanted, read) in wanted.iter().zip(reads) {
        let records = &read.records;
        if records.is_empty() {
            continue;
        }
        let partition = u32::try_from(wanted.partition).ok().and_then(|p| store.topic(&wanted.topic)?.partition(p));
        if let Some(partition) = partition {
            partition.traffic.count_out(records_in(records), records.len() as u64);
        }
    }
}

/// Records in concatenated stored batches (validated when appended: headers only).
fn records_in(mut batches: &[u8]) -> u64 {
    let mut records = 0;
    while let Ok(header) = rill_core::batch::BatchHeader::decode(batches) {
        records += u64::try_from(header.last_offset_delta).map_or(0, |delta| delta + 1);
        batches = batches.get(header.total_len().max(rill_core::batch::HEADER_LEN)..).unwrap_or_default();
    }
    records
}

/// What one partition's read produced.
struct Read {
    error_code: i16,
    high_watermark: i64,
    log_start_offset: i64,
    records: Bytes,
}

/// Reads every wanted partition (blocking: redb read transactions). Returns the reads in order,
/// the record bytes in total, and whether any partition failed (a failed partition ends the
/// long-poll at once, as in Kafka).
fn read_all(store: &Store, wanted: &[Wanted], response_max: usize) -> (Vec<Read>, usize, bool) {
    let mut total = 0;
    let mut errors = false;
    let reads = wanted
        .iter()
        .map(|w| {
            let read = read_one(store, w, response_max.saturating_sub(total), total == 0);
            total += read.records.len();
            errors |= read.error_code != codes::NONE;
            read
        })
        .collect();
    (reads, total, errors)
}

/// One partition: up to `min(its limit, what the response has left)`; the first batch of the
/// first partition with data is returned whole even above the limits (KIP-74).
fn read_one(store: &Store, wanted: &Wanted, response_left: usize, first_with_data: bool) -> Read {
    // Empty records, never null: Kafka sends an empty set with an error, and librdkafka (2.16)
    // rejects a whole response holding a null one (`invalid MessageSetSize -1`), so it would never
    // see the error code (an offset below the log start would never be reset).
    let failed = |error_code| Read { error_code, high_watermark: -1, log_start_offset: -1, records: Bytes::new() };
    let (Ok(partition), Ok(offset)) = (u32::try_from(wanted.partition), u64::try_from(wanted.offset)) else {
        let error =
            if wanted.offset < 0 { ResponseError::OffsetOutOfRange } else { ResponseError::UnknownTopicOrPartition };
        return failed(error.code());
    };
    let limit = wanted.max_bytes.min(response_left);
    // A full response still reports the partition's offsets (read with 0: nothing is read).
    let read_bytes = if limit == 0 && !first_with_data { 0 } else { limit.max(1) };
    match store.read(&wanted.topic, partition, offset, read_bytes) {
        Ok(mut read) => {
            if !first_with_data && read.records.len() > limit {
                read.records.clear(); // the whole-batch exception is for the first partition only
            }
            Read {
                error_code: codes::NONE,
                high_watermark: read.high_watermark as i64,
                log_start_offset: read.log_start_offset as i64,
                records: Bytes::from(read.records),
            }
        }
        Err(e) => {
            if !matches!(
                e,
                ReadError::OffsetOutOfRange { .. } | ReadError::UnknownTopic(_) | ReadError::UnknownPartition { .. }
            ) {
                tracing::error!(topic = %wanted.topic, partition, error = %e, "fetch read failed");
            }
            let mut read = failed(codes::for_read(&e));
            if let ReadError::OffsetOutOfRange { log_start_offset, next_offset, .. } = e {
                read.high_watermark = next_offset as i64;
                read.log_start_offset = log_start_offset as i64;
            }
            read
        }
    }
}

fn group_by_topic(
    names: &[(TopicName, usize)],
    wanted: &[Wanted],
    reads: Vec<Read>,
    committed: bool,
    version: i16,
) -> Vec<FetchableTopicResponse> {
    let mut reads = wanted.iter().zip(reads);
    names
        .iter()
        .map(|(name, count)| {
            let partitions = reads
                .by_ref()
                .take(*count)
                .map(|(w, read)| {
                    let data = PartitionData::default()
                        .with_partition_index(w.partition)
                        .with_error_code(read.error_code)
                        .with_high_watermark(read.high_watermark)
                        // No transactions yet: the last stable offset is the high watermark.
                        .with_last_stable_offset(read.high_watermark)
                        .with_log_start_offset(read.log_start_offset)
                        .with_aborted_transactions(committed.then(Vec::new))
                        .with_records(Some(read.records));
                    if version >= 11 { data.with_preferred_read_replica(BrokerId(-1)) } else { data }
                })
                .collect();
            FetchableTopicResponse::default().with_topic(name.clone()).with_partitions(partitions)
        })
        .collect()
}

/// ListOffsets: -2 earliest, -1 latest (the high watermark; also for READ_COMMITTED, as there are
/// no transactions), otherwise the first offset with a timestamp at or after the one given.
pub async fn list_offsets(broker: &Broker, request: ListOffsetsRequest, version: i16) -> ListOffsetsResponse {
    let store = broker.store.clone();
    let answered = tokio::task::spawn_blocking(move || {
        request
            .topics
            .into_iter()
            .map(|topic| {
                let name = topic.name.to_string();
                let partitions = topic
                    .partitions
                    .iter()
                    .map(|p| list_one(&store, &name, p.partition_index, p.timestamp, version))
                    .collect();
                ListOffsetsTopicResponse::default().with_name(topic.name).with_partitions(partitions)
            })
            .collect::<Vec<_>>()
    })
    .await;
    match answered {
        Ok(topics) => ListOffsetsResponse::default().with_topics(topics),
        Err(e) => {
            tracing::error!(error = %e, "list offsets task failed");
            ListOffsetsResponse::default()
        }
    }
}

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;

fn list_one(
    store: &Store,
    topic: &str,
    partition_index: i32,
    timestamp: i64,
    version: i16,
) -> ListOffsetsPartitionResponse {
    let response = ListOffsetsPartitionResponse::default().with_partition_index(partition_index);
    let unknown = || response.clone().with_error_code(ResponseError::UnknownTopicOrPartition.code());
    let Ok(partition) = u32::try_from(partition_index) else { return unknown() };
    let Some(state) = store.topic(topic).and_then(|t| t.partition(partition)) else { return unknown() };
    let offsets = state.offsets();
    let found = match timestamp {
        LATEST => Ok(Some((offsets.high_watermark, -1))),
        EARLIEST => Ok(Some((offsets.log_start_offset, -1))),
        t if t < 0 => {
            return response.with_error_code(ResponseError::UnsupportedVersion.code());
        }
        t => store.offset_for_timestamp(topic, partition, t),
    };
    match found {
        Ok(Some((offset, at))) => {
            let response = response.with_offset(offset as i64).with_timestamp(at);
            // The field exists from v4 on; a value set earlier would fail to encode.
            if version >= 4 { response.with_leader_epoch(LEADER_EPOCH) } else { response }
        }
        // No record that recent: Kafka answers offset -1 (v1+).
        Ok(None) => response.with_offset(-1).with_timestamp(-1),
        Err(e) => response.with_error_code(codes::for_read(&e)),
    }
}
