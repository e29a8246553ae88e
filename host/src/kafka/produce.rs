//! Produce: batches are validated by `rill-core` and appended as sent; the broker assigns the
//! base offset and partition leader epoch in place.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::init_producer_id_request::InitProducerIdRequest;
use kafka_protocol::messages::init_producer_id_response::InitProducerIdResponse;
use kafka_protocol::messages::produce_request::ProduceRequest;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, ProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProducerId, TopicName};
use kafka_protocol::protocol::{Decodable, StrBytes};

use super::{Broker, codes};
use crate::storage::{AppendError, AppendOutcome, AppendTicket};

/// Appends every partition's batches and answers; `None` for acks=0 (Kafka sends no response).
pub async fn produce(broker: &Broker, request: ProduceRequest, version: i16) -> Option<ProduceResponse> {
    start(broker, request, version).await.finish().await
}

/// A produce request whose batches are validated and queued for the writer, waiting for the
/// commit. Queueing happens in request order; waiting may overlap with the next request's.
pub struct ProduceInFlight {
    acks: i16,
    version: i16,
    responses: Vec<TopicProduceResponse>,
    /// (topic index, partition index, the queued append or why it was refused).
    queued: Vec<(usize, usize, Result<AppendTicket, AppendError>)>,
}

/// Validates and queues every partition's batches. All partitions of a request are queued before
/// the writer wakes for them, so they share one storage commit.
pub async fn start(broker: &Broker, request: ProduceRequest, version: i16) -> ProduceInFlight {
    let acks = request.acks;
    let refusal = if !matches!(acks, -1..=1) {
        Some((ResponseError::InvalidRequiredAcks.code(), "acks must be -1, 0 or 1".to_owned()))
    } else if request.transactional_id.is_some() {
        Some((ResponseError::InvalidRequest.code(), "transactions are not supported yet".to_owned()))
    } else {
        None
    };
    let mut queued = Vec::new();
    let mut responses = Vec::with_capacity(request.topic_data.len());
    for (topic_index, topic) in request.topic_data.into_iter().enumerate() {
        let mut partitions = Vec::with_capacity(topic.partition_data.len());
        for (partition_index, partition) in topic.partition_data.into_iter().enumerate() {
            let response = PartitionProduceResponse::default().with_index(partition.index).with_base_offset(-1);
            if let Some((code, message)) = &refusal {
                partitions.push(with_error(response, *code, message.clone(), version));
                continue;
            }
            let (Ok(index), Some(records)) = (u32::try_from(partition.index), partition.records) else {
                let code = ResponseError::UnknownTopicOrPartition.code();
                partitions.push(with_error(response, code, "no such partition, or no records".into(), version));
                continue;
            };
            partitions.push(response);
            let ticket = broker.store.enqueue_append(topic.name.as_str(), index, records).await;
            queued.push((topic_index, partition_index, ticket));
        }
        responses.push(TopicProduceResponse::default().with_name(topic.name).with_partition_responses(partitions));
    }
    ProduceInFlight { acks, version, responses, queued }
}

impl ProduceInFlight {
    /// Waits for every queued append's commit and builds the response.
    pub async fn finish(self) -> Option<ProduceResponse> {
        let ProduceInFlight { acks, version, mut responses, queued } = self;
        for (topic_index, partition_index, ticket) in queued {
            let outcome = match ticket {
                Ok(ticket) => ticket.outcome().await,
                Err(e) => Err(e),
            };
            let response = &mut responses[topic_index].partition_responses[partition_index];
            *response = answer(std::mem::take(response), outcome, version);
        }
        (acks != 0).then(|| ProduceResponse::default().with_responses(responses))
    }
}

fn answer(
    response: PartitionProduceResponse,
    outcome: Result<AppendOutcome, AppendError>,
    version: i16,
) -> PartitionProduceResponse {
    match outcome {
        Ok(at) => {
            let response = response
                .with_base_offset(at.base_offset as i64)
                .with_log_append_time_ms(at.log_append_time_ms.unwrap_or(-1));
            if version >= 5 { response.with_log_start_offset(at.log_start_offset as i64) } else { response }
        }
        Err(e) => {
            tracing::debug!(error = %e, "produce refused");
            with_error(response, codes::for_append(&e), e.to_string(), version)
        }
    }
}

fn with_error(
    response: PartitionProduceResponse,
    code: i16,
    message: String,
    version: i16,
) -> PartitionProduceResponse {
    let response = response.with_error_code(code).with_base_offset(-1);
    // The message field exists from v8 on; setting it earlier would fail to encode.
    if version >= 8 { response.with_error_message(Some(StrBytes::from_string(message))) } else { response }
}

/// Produce v0–v2: advertised for librdkafka's sake (KAFKA-18659), answered with
/// `UNSUPPORTED_VERSION` for every partition. kafka-protocol decodes Produce from v3 on, and v3
/// is v2 with a leading nullable transactional id, so the body is read as v3 behind a null id;
/// the v0–v2 response is written here. `body` is what follows the request header, already
/// checked by `bounds` (`connection::parse`).
pub fn legacy_unsupported(body: Bytes, version: i16, correlation_id: i32) -> Result<Option<BytesMut>, String> {
    let mut as_v3 = BytesMut::with_capacity(body.len() + 2);
    as_v3.put_i16(-1);
    as_v3.put_slice(&body);
    let request = ProduceRequest::decode(&mut as_v3.freeze(), 3)
        .map_err(|e| format!("Produce v{version}: cannot decode the request: {e}"))?;
    // Bytes after the request are ignored, as for every other request (`connection::Reader`).
    tracing::debug!(version, "produce below v3 refused with UNSUPPORTED_VERSION");
    if request.acks == 0 {
        return Ok(None);
    }
    let unsupported = ResponseError::UnsupportedVersion.code();
    let mut out = BytesMut::new();
    out.put_i32(0); // size, patched below
    out.put_i32(correlation_id);
    out.put_i32(len_i32(request.topic_data.len())?);
    for topic in &request.topic_data {
        put_string(&mut out, &topic.name)?;
        out.put_i32(len_i32(topic.partition_data.len())?);
        for partition in &topic.partition_data {
            out.put_i32(partition.index);
            out.put_i16(unsupported);
            out.put_i64(-1); // base offset
            if version >= 2 {
                out.put_i64(-1); // log append time
            }
        }
    }
    if version >= 1 {
        out.put_i32(0); // throttle time
    }
    let size = len_i32(out.len() - 4)?;
    out[..4].copy_from_slice(&size.to_be_bytes());
    Ok(Some(out))
}

fn len_i32(len: usize) -> Result<i32, String> {
    i32::try_from(len).map_err(|_| "response too large".to_owned())
}

fn put_string(out: &mut BytesMut, name: &TopicName) -> Result<(), String> {
    let bytes = name.as_bytes();
    out.put_i16(i16::try_from(bytes.len()).map_err(|_| "topic name too long".to_owned())?);
    out.put_slice(bytes);
    Ok(())
}

/// InitProducerId for idempotent producers: a new producer id (epoch 0) every time, as Kafka does
/// without a transactional id. Transactional producers are refused until transactions exist.
pub async fn init_producer_id(broker: &Broker, request: InitProducerIdRequest) -> InitProducerIdResponse {
    let response = InitProducerIdResponse::default().with_producer_id(ProducerId(-1)).with_producer_epoch(-1);
    if request.transactional_id.is_some() {
        tracing::debug!("InitProducerId with a transactional id refused: transactions are not supported yet");
        return response.with_error_code(ResponseError::TransactionalIdAuthorizationFailed.code());
    }
    match broker.store.allocate_producer_id().await {
        Ok(id) => response.with_producer_id(ProducerId(id)).with_producer_epoch(0),
        Err(e) => {
            tracing::warn!(error = %e, "cannot allocate a producer id");
            response.with_error_code(ResponseError::CoordinatorNotAvailable.code())
        }
    }
}
