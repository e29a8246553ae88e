//! `rill produce TOPIC`: one record per line of stdin or a file, batched per partition, acks=-1.
//!
//! Lines are read on a thread and sent as soon as the input pauses or a batch is full, so typing
//! lines by hand sends each at once and a large file goes in large batches.

use std::io::BufRead;

use kafka_protocol::messages::produce_request::{PartitionProduceData, ProduceRequest, TopicProduceData};
use rill_core::partitioner::{RoundRobin, partition_for_key};
use tokio::sync::mpsc;

use super::ProduceArgs;
use super::lookup::{Missing, partitions, topic_name};
use crate::client::{Client, ClientError, build_batch, check};
use crate::limits::CLIENT_BATCH_BYTES;

/// Lines in flight between the reading thread and the sender.
const LINES_QUEUED: usize = 4096;

pub async fn run(client: &mut Client, args: ProduceArgs) -> Result<(), ClientError> {
    let (_, count) = partitions(client, &args.topic, Missing::Create).await?;
    if let Some(partition) = args.partition
        && partition >= count
    {
        return Err(ClientError::Refused(format!(
            "topic {} has {count} partitions; no partition {partition}",
            args.topic
        )));
    }
    let (lines, progress) = read_lines(&args)?;
    let key = args.key.map(String::into_bytes);
    let keyed = match &key {
        Some(key) => Some(partition_for_key(key, count).map_err(|e| ClientError::Refused(e.to_string()))?),
        None => None,
    };
    let mut spread = RoundRobin::new(0);
    let mut lines = lines;
    let mut produced = 0u64;
    while let Some(first) = lines.recv().await {
        // Everything already read, up to a batch's worth, goes in this request, to one partition.
        let mut records = Vec::new();
        let partition = match (args.partition, keyed) {
            (Some(p), _) | (None, Some(p)) => p,
            // No key: one partition per request, the next one each time (Kafka's sticky idea).
            (None, None) => spread.next_partition(count).map_err(|e| ClientError::Refused(e.to_string()))?,
        };
        let mut bytes = 0;
        let mut next = Some(first);
        while let Some(line) = next.take() {
            bytes += line.len();
            records.push((key.clone(), line));
            if bytes < CLIENT_BATCH_BYTES {
                next = lines.try_recv().ok();
            }
        }
        let sent = records.len() as u64;
        send(client, &args.topic, partition, &records).await?;
        produced += sent;
        if let Some(bar) = &progress {
            // Line ends count too, so the bar ends at the file's size.
            bar.inc(bytes as u64 + sent);
        }
    }
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    eprintln!("produced {produced} record{} to {}", if produced == 1 { "" } else { "s" }, args.topic);
    Ok(())
}

/// Starts the thread reading lines (without their line ends); a progress bar for a file.
fn read_lines(args: &ProduceArgs) -> Result<(mpsc::Receiver<Vec<u8>>, Option<indicatif::ProgressBar>), ClientError> {
    let (sender, receiver) = mpsc::channel(LINES_QUEUED);
    let (reader, progress): (Box<dyn BufRead + Send>, _) = match &args.file {
        Some(path) => {
            let file = std::fs::File::open(path)
                .map_err(|e| ClientError::Refused(format!("cannot open {}: {e}", path.display())))?;
            let size = file.metadata().map(|m| m.len()).unwrap_or(0);
            let bar = indicatif::ProgressBar::new(size).with_style(
                indicatif::ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            (Box::new(std::io::BufReader::new(file)), Some(bar))
        }
        None => (Box::new(std::io::BufReader::new(std::io::stdin())), None),
    };
    std::thread::spawn(move || {
        for line in reader.split(b'\n') {
            let Ok(mut line) = line else {
                eprintln!("error: reading the input failed; records read so far are sent");
                break;
            };
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            if sender.blocking_send(line).is_err() {
                break;
            }
        }
    });
    Ok((receiver, progress))
}

async fn send(
    client: &mut Client,
    topic: &str,
    partition: u32,
    records: &[(Option<Vec<u8>>, Vec<u8>)],
) -> Result<(), ClientError> {
    let version = client.version::<ProduceRequest>(9)?;
    let timestamp = crate::clock::now_ms();
    let batch = build_batch(records, timestamp)?;
    let partitions =
        vec![PartitionProduceData::default().with_index(partition as i32).with_records(Some(batch.into()))];
    let request =
        ProduceRequest::default().with_transactional_id(None).with_acks(-1).with_timeout_ms(30_000).with_topic_data(
            vec![TopicProduceData::default().with_name(topic_name(topic)).with_partition_data(partitions)],
        );
    let response = client.send(&request, version).await?;
    for partition in response.responses.iter().flat_map(|t| &t.partition_responses) {
        check(
            partition.error_code,
            || format!("producing to {topic}/{}", partition.index),
            partition.error_message.as_ref(),
        )?;
    }
    Ok(())
}
