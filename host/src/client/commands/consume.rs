//! `rill consume TOPIC`: reads partitions from a position, prints records as text or JSON lines.

use std::collections::BTreeMap;
use std::io::Write;

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchRequest, FetchTopic};
use serde_json::json;

use super::lookup::{Missing, offsets_at, partitions, topic_name};
use super::{ConsumeArgs, Format};
use crate::client::{Client, ClientError, ConsumedRecord, check, decode_records};
use crate::limits::{CLIENT_FETCH_BYTES, CLIENT_FETCH_WAIT};

pub async fn run(client: &mut Client, args: ConsumeArgs) -> Result<(), ClientError> {
    let (_, count) = partitions(client, &args.topic, Missing::Refuse).await?;
    let wanted: Vec<u32> = match args.partition {
        Some(p) if p < count => vec![p],
        Some(p) => {
            return Err(ClientError::Refused(format!("topic {} has {count} partitions; no partition {p}", args.topic)));
        }
        None => (0..count).collect(),
    };
    let mut next: BTreeMap<u32, i64> =
        offsets_at(client, &args.topic, &wanted, args.offset).await?.into_iter().collect();
    let version = client.version::<FetchRequest>(12)?;
    let mut printed = 0u64;
    let stdout = std::io::stdout();
    loop {
        let partitions = next
            .iter()
            .map(|(&p, &offset)| {
                FetchPartition::default()
                    .with_partition(p as i32)
                    .with_fetch_offset(offset)
                    .with_partition_max_bytes(CLIENT_FETCH_BYTES as i32)
            })
            .collect();
        let request = FetchRequest::default()
            .with_max_wait_ms(CLIENT_FETCH_WAIT.as_millis() as i32)
            .with_min_bytes(1)
            .with_max_bytes(CLIENT_FETCH_BYTES as i32)
            .with_session_epoch(-1)
            .with_topics(vec![FetchTopic::default().with_topic(topic_name(&args.topic)).with_partitions(partitions)]);
        let response = client.send(&request, version).await?;
        check(response.error_code, || format!("fetching {}", args.topic), None)?;
        let mut caught_up = true;
        let mut out = stdout.lock();
        for partition in response.responses.into_iter().flat_map(|t| t.partitions) {
            let index = partition.partition_index as u32;
            check(partition.error_code, || format!("fetching {}/{index}", args.topic), None)?;
            let from = next.get(&index).copied().unwrap_or(0);
            let records =
                partition.records.as_deref().map(|bytes| decode_records(bytes, from)).transpose()?.unwrap_or_default();
            for record in &records {
                if args.max.is_some_and(|max| printed >= max) {
                    return Ok(());
                }
                print(&mut out, &args, index, record)?;
                printed += 1;
                next.insert(index, record.offset + 1);
            }
            if next.get(&index).is_some_and(|&offset| offset < partition.high_watermark) {
                caught_up = false;
            }
        }
        out.flush()?;
        if args.max.is_some_and(|max| printed >= max) || (args.exit && caught_up) {
            return Ok(());
        }
    }
}

fn print(out: &mut impl Write, args: &ConsumeArgs, partition: u32, record: &ConsumedRecord) -> std::io::Result<()> {
    match args.format {
        Format::Text => {
            out.write_all(record.value.as_deref().unwrap_or_default())?;
            out.write_all(b"\n")
        }
        Format::Json => {
            let headers: serde_json::Map<String, serde_json::Value> =
                record.headers.iter().map(|(k, v)| (k.clone(), bytes_json(v.as_deref()))).collect();
            let line = json!({
                "topic": args.topic,
                "partition": partition,
                "offset": record.offset,
                "timestamp": record.timestamp,
                "key": bytes_json(record.key.as_deref()),
                "value": bytes_json(record.value.as_deref()),
                "headers": headers,
            });
            writeln!(out, "{line}")
        }
    }
}

/// UTF-8 bytes as a string; anything else as `{"hex": "..."}`, so no byte is lost.
fn bytes_json(bytes: Option<&[u8]>) -> serde_json::Value {
    match bytes {
        None => serde_json::Value::Null,
        Some(bytes) => match std::str::from_utf8(bytes) {
            Ok(text) => json!(text),
            Err(_) => json!({ "hex": bytes.iter().map(|b| format!("{b:02x}")).collect::<String>() }),
        },
    }
}
