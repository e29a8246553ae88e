//! One client connection: read frames, decode, dispatch, write the responses in request order.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, CreatePartitionsRequest, CreateTopicsRequest, DeleteGroupsRequest,
    DeleteRecordsRequest, DeleteTopicsRequest, DescribeClusterRequest, DescribeConfigsRequest, DescribeGroupsRequest,
    FetchRequest, FindCoordinatorRequest, HeartbeatRequest, IncrementalAlterConfigsRequest, InitProducerIdRequest,
    JoinGroupRequest, LeaveGroupRequest, ListGroupsRequest, ListOffsetsRequest, MetadataRequest, OffsetCommitRequest,
    OffsetFetchRequest, ProduceRequest, RequestHeader, SyncGroupRequest,
};
use kafka_protocol::protocol::{Decodable, Encodable};
use std::collections::VecDeque;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use tokio::sync::{mpsc, watch};

use super::errors::ErrorCodes;
use super::frame::{self, FrameError};
use super::{Broker, admin, bounds, configs, fetch, groups, metadata, produce, versions};
use crate::limits::{KAFKA_PIPELINE_BYTES_MAX, KAFKA_PIPELINE_MAX};
use crate::metrics::ApiLabels;

/// A response in the making, in request order.
struct Pending {
    /// The request's frame size, counted against [`KAFKA_PIPELINE_BYTES_MAX`].
    bytes: usize,
    /// Polled only at the front of the queue: the storage writer completes the appends behind
    /// it on its own, and awaiting here rather than in a spawned task saves a wake-up per request.
    response: Pin<Box<dyn Future<Output = Result<Option<BytesMut>, String>> + Send>>,
}

/// Serves one connection until the client closes it, it breaks the protocol, or shutdown.
///
/// Produce requests are pipelined: each is validated and queued for the storage writer in
/// request order, and the next one is read while it commits (up to [`KAFKA_PIPELINE_MAX`]
/// requests and [`KAFKA_PIPELINE_BYTES_MAX`] bytes), so one connection's requests share group
/// commits. Responses go out in request order. Any other request first waits for everything
/// before it, so it sees the effects of the produce requests sent ahead of it.
pub async fn serve(socket: TcpStream, peer: SocketAddr, broker: Arc<Broker>, shutdown: watch::Receiver<bool>) {
    tracing::debug!(%peer, "kafka connection opened");
    let (reader, mut writer) = socket.into_split();
    // Frames are read by their own task: a half-read frame must survive this loop's select.
    let (frames_in, mut frames) = mpsc::channel(1);
    let reading = tokio::spawn(read_frames(BufReader::new(reader), broker.config.request_bytes_max, peer, frames_in));
    let mut pending: VecDeque<Pending> = VecDeque::new();
    let mut pending_bytes = 0;
    let mut stopping = shutdown.clone();
    loop {
        let room = pending.len() < KAFKA_PIPELINE_MAX && pending_bytes < KAFKA_PIPELINE_BYTES_MAX;
        tokio::select! {
            biased;
            // (The guard `wait_for` returns must not live across the handlers' awaits.)
            () = async { drop(stopping.wait_for(|stop| *stop).await) } => break,
            done = async { (&mut pending.front_mut().expect("checked non-empty").response).await }, if !pending.is_empty() => {
                if let Some(sent) = pending.pop_front() {
                    pending_bytes -= sent.bytes;
                }
                if !answer_with(&mut writer, done, peer).await {
                    break;
                }
            }
            frame = frames.recv(), if room => {
                let Some(frame) = frame else {
                    // The client is done sending (maybe only half-closed): answer what it sent.
                    drain(&mut pending, &mut writer, peer).await;
                    break;
                };
                let bytes = frame.len();
                match parse(frame) {
                    Err(reason) => {
                        tracing::warn!(%peer, %reason, "closing kafka connection");
                        break;
                    }
                    Ok(Parsed::Request(request)) if matches!(request.body, Body::Produce(_)) => {
                        let Request { to, body: Body::Produce(decoded), .. } = *request else { unreachable!("matched above") };
                        let in_flight = produce::start(&broker, decoded, to.version).await;
                        let broker = Arc::clone(&broker);
                        let response = Box::pin(async move {
                            match in_flight.finish().await {
                                Some(response) => to.respond(&broker, &response),
                                None => Ok(None),
                            }
                        });
                        pending_bytes += bytes;
                        pending.push_back(Pending { bytes, response });
                    }
                    Ok(parsed) => {
                        // Everything before it first, in order.
                        let open = drain(&mut pending, &mut writer, peer).await;
                        pending_bytes = 0;
                        let answer = match parsed {
                            Parsed::Answer(answer) => Ok(answer),
                            Parsed::Request(request) => dispatch(&broker, *request, peer, &shutdown).await,
                        };
                        if !open || !answer_with(&mut writer, answer, peer).await {
                            break;
                        }
                    }
                }
            }
        }
    }
    reading.abort();
}

/// Waits for every pending response in order and writes it; `false` when the connection must
/// close.
async fn drain(
    pending: &mut VecDeque<Pending>,
    writer: &mut tokio::net::tcp::OwnedWriteHalf,
    peer: SocketAddr,
) -> bool {
    while let Some(earlier) = pending.pop_front() {
        if !answer_with(writer, earlier.response.await, peer).await {
            return false;
        }
    }
    true
}

/// Reads frames until the client closes the connection or sends one over the limit.
async fn read_frames(
    mut reader: BufReader<tokio::net::tcp::OwnedReadHalf>,
    max: usize,
    peer: SocketAddr,
    frames: mpsc::Sender<Bytes>,
) {
    loop {
        match frame::read_frame(&mut reader, max).await {
            Ok(frame) => {
                if frames.send(frame).await.is_err() {
                    return;
                }
            }
            Err(FrameError::Closed) => {
                tracing::debug!(%peer, "kafka connection closed by the client");
                return;
            }
            Err(e @ (FrameError::TooLarge { .. } | FrameError::Negative(_))) => {
                tracing::warn!(%peer, error = %e, "closing kafka connection");
                return;
            }
            Err(e) => {
                tracing::debug!(%peer, error = %e, "kafka connection lost");
                return;
            }
        }
    }
}

/// Writes an answer; `false` when the connection must close (logged).
async fn answer_with(
    writer: &mut tokio::net::tcp::OwnedWriteHalf,
    answer: Result<Option<BytesMut>, String>,
    peer: SocketAddr,
) -> bool {
    match answer {
        Ok(Some(response)) => match writer.write_all(&response).await {
            Ok(()) => true,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "kafka connection lost while answering");
                false
            }
        },
        Ok(None) => true,
        Err(reason) => {
            tracing::warn!(%peer, %reason, "closing kafka connection");
            false
        }
    }
}

/// The first fields of every request header, read before the header's version is known.
struct Preamble {
    api_key: i16,
    version: i16,
    correlation_id: i32,
}

fn preamble(frame: &[u8]) -> Option<Preamble> {
    let mut bytes = frame.get(..8)?;
    Some(Preamble { api_key: bytes.get_i16(), version: bytes.get_i16(), correlation_id: bytes.get_i32() })
}

/// A request frame, decoded: either answered already (KIP-511 fallback, legacy Produce) or to be
/// dispatched.
pub enum Parsed {
    Answer(Option<BytesMut>),
    // Boxed: request bodies are hundreds of bytes, answers a pointer.
    Request(Box<Request>),
}

/// Decodes a request frame without acting on it: every check that can close the connection
/// happens here, so it is what the property tests feed hostile bytes to.
pub fn parse(frame: Bytes) -> Result<Parsed, String> {
    let Preamble { api_key, version, correlation_id } =
        preamble(&frame).ok_or_else(|| format!("request of {} bytes is shorter than a header", frame.len()))?;
    let key = ApiKey::try_from(api_key).map_err(|_| format!("unknown api key {api_key}"))?;
    if key == ApiKey::ApiVersions && !versions::is_served(key, version) {
        return versions::unsupported_api_versions(correlation_id).map(|answer| Parsed::Answer(Some(answer)));
    }
    if !versions::is_served(key, version) {
        return Err(format!("{key:?} v{version} is not served (see ApiVersions)"));
    }
    let mut body = frame;
    let header = RequestHeader::decode(&mut body, key.request_header_version(version))
        .map_err(|e| format!("{key:?} v{version}: bad request header: {e}"))?;
    tracing::trace!(api = ?key, version, correlation_id, client = ?header.client_id, "kafka request");
    bounds::check(key, version, &body).map_err(|e| format!("{key:?} v{version}: refused before decoding: {e}"))?;
    if key == ApiKey::Produce && version < versions::PRODUCE_UNSUPPORTED_BELOW {
        return produce::legacy_unsupported(body, version, correlation_id).map(Parsed::Answer);
    }
    let mut reader = Reader { key, version, body };
    let body = match key {
        ApiKey::ApiVersions => {
            // Its fields (client software name and version) change nothing in the answer.
            let _: ApiVersionsRequest = reader.decode()?;
            Body::ApiVersions
        }
        ApiKey::Metadata => Body::Metadata(reader.decode()?),
        ApiKey::Produce => Body::Produce(reader.decode()?),
        ApiKey::Fetch => Body::Fetch(reader.decode()?),
        ApiKey::ListOffsets => Body::ListOffsets(reader.decode()?),
        ApiKey::CreateTopics => Body::CreateTopics(reader.decode()?),
        ApiKey::DeleteTopics => Body::DeleteTopics(reader.decode()?),
        ApiKey::CreatePartitions => Body::CreatePartitions(reader.decode()?),
        ApiKey::DeleteRecords => Body::DeleteRecords(reader.decode()?),
        ApiKey::DescribeConfigs => Body::DescribeConfigs(reader.decode()?),
        ApiKey::IncrementalAlterConfigs => Body::IncrementalAlterConfigs(reader.decode()?),
        ApiKey::DescribeCluster => {
            // Its fields ask for authorized operations and fenced brokers: none here.
            let _: DescribeClusterRequest = reader.decode()?;
            Body::DescribeCluster
        }
        ApiKey::InitProducerId => Body::InitProducerId(reader.decode()?),
        ApiKey::FindCoordinator => Body::FindCoordinator(reader.decode()?),
        ApiKey::JoinGroup => Body::JoinGroup(reader.decode()?),
        ApiKey::SyncGroup => Body::SyncGroup(reader.decode()?),
        ApiKey::Heartbeat => Body::Heartbeat(reader.decode()?),
        ApiKey::LeaveGroup => Body::LeaveGroup(reader.decode()?),
        ApiKey::OffsetCommit => Body::OffsetCommit(reader.decode()?),
        ApiKey::OffsetFetch => Body::OffsetFetch(reader.decode()?),
        ApiKey::ListGroups => Body::ListGroups(reader.decode()?),
        ApiKey::DescribeGroups => Body::DescribeGroups(reader.decode()?),
        ApiKey::DeleteGroups => Body::DeleteGroups(reader.decode()?),
        other => return Err(format!("{other:?} is advertised but has no handler")),
    };
    let client_id = header.client_id.map(|id| id.to_string()).unwrap_or_default();
    let to = Responder { key, version, correlation_id, arrived: Instant::now() };
    Ok(Parsed::Request(Box::new(Request { to, client_id, body })))
}

/// A decoded request, ready for its handler.
pub struct Request {
    to: Responder,
    /// The header's client id (consumer group members are described with it).
    client_id: String,
    body: Body,
}

/// The request bodies Rill serves.
pub enum Body {
    ApiVersions,
    Metadata(MetadataRequest),
    Produce(ProduceRequest),
    Fetch(FetchRequest),
    ListOffsets(ListOffsetsRequest),
    CreateTopics(CreateTopicsRequest),
    DeleteTopics(DeleteTopicsRequest),
    CreatePartitions(CreatePartitionsRequest),
    DeleteRecords(DeleteRecordsRequest),
    DescribeConfigs(DescribeConfigsRequest),
    IncrementalAlterConfigs(IncrementalAlterConfigsRequest),
    DescribeCluster,
    InitProducerId(InitProducerIdRequest),
    FindCoordinator(FindCoordinatorRequest),
    JoinGroup(JoinGroupRequest),
    SyncGroup(SyncGroupRequest),
    Heartbeat(HeartbeatRequest),
    LeaveGroup(LeaveGroupRequest),
    OffsetCommit(OffsetCommitRequest),
    OffsetFetch(OffsetFetchRequest),
    ListGroups(ListGroupsRequest),
    DescribeGroups(DescribeGroupsRequest),
    DeleteGroups(DeleteGroupsRequest),
}

/// The bytes after a request header.
struct Reader {
    key: ApiKey,
    version: i16,
    body: Bytes,
}

impl Reader {
    /// Decodes the request body. Bytes after it are ignored, as Kafka's brokers ignore them
    /// (they read the schema's fields and drop the rest of the buffer): librdkafka 2.10 and later
    /// send 3 of them after every "all topics" Metadata v9+ request (confluentinc/librdkafka#5049,
    /// a 4-byte array length rewritten as a 1-byte varint), and a broker that refused them could
    /// not list topics for the most used client.
    fn decode<T: Decodable>(&mut self) -> Result<T, String> {
        let decoded = T::decode(&mut self.body, self.version)
            .map_err(|e| format!("{:?} v{}: cannot decode the request: {e}", self.key, self.version))?;
        if self.body.has_remaining() {
            tracing::debug!(api = ?self.key, version = self.version, bytes = self.body.remaining(), "ignoring bytes after the request");
        }
        Ok(decoded)
    }
}

/// Where a response goes: the request's API, version and correlation id, and when it arrived.
struct Responder {
    key: ApiKey,
    version: i16,
    correlation_id: i32,
    arrived: Instant,
}

impl Responder {
    /// Encodes the response, counting its latency and error codes.
    fn respond<R: Encodable + ErrorCodes>(&self, broker: &Broker, response: &R) -> Result<Option<BytesMut>, String> {
        let api = format!("{:?}", self.key);
        let metrics = &broker.metrics;
        metrics.count_errors(&api, response.error_codes());
        let labels = ApiLabels { api };
        metrics.kafka.request_seconds.get_or_create(&labels).observe(self.arrived.elapsed().as_secs_f64());
        let header_version = self.key.response_header_version(self.version);
        frame::encode_response(self.correlation_id, header_version, self.version, response).map(Some)
    }
}

async fn dispatch(
    broker: &Broker,
    request: Request,
    peer: SocketAddr,
    shutdown: &watch::Receiver<bool>,
) -> Result<Option<BytesMut>, String> {
    let Request { to, client_id, body } = request;
    let version = to.version;
    match body {
        Body::ApiVersions => to.respond(broker, &versions::api_versions()),
        Body::Metadata(decoded) => to.respond(broker, &metadata::metadata(broker, decoded, version).await),
        Body::Produce(decoded) => match produce::produce(broker, decoded, version).await {
            Some(response) => to.respond(broker, &response),
            None => Ok(None),
        },
        Body::Fetch(decoded) => to.respond(broker, &fetch::fetch(broker, decoded, version, shutdown.clone()).await),
        Body::ListOffsets(decoded) => to.respond(broker, &fetch::list_offsets(broker, decoded, version).await),
        Body::CreateTopics(decoded) => to.respond(broker, &admin::create_topics(broker, decoded, version).await),
        Body::DeleteTopics(decoded) => to.respond(broker, &admin::delete_topics(broker, decoded, version).await),
        Body::CreatePartitions(decoded) => to.respond(broker, &admin::create_partitions(broker, decoded).await),
        Body::DeleteRecords(decoded) => to.respond(broker, &admin::delete_records(broker, decoded).await),
        Body::DescribeConfigs(decoded) => to.respond(broker, &configs::describe_configs(broker, decoded)),
        Body::IncrementalAlterConfigs(decoded) => {
            to.respond(broker, &configs::incremental_alter_configs(broker, decoded).await)
        }
        Body::DescribeCluster => to.respond(broker, &admin::describe_cluster(broker)),
        Body::InitProducerId(decoded) => to.respond(broker, &produce::init_producer_id(broker, decoded).await),
        Body::FindCoordinator(decoded) => to.respond(broker, &groups::find_coordinator(broker, decoded, version)),
        Body::JoinGroup(decoded) => {
            to.respond(broker, &groups::join_group(broker, decoded, version, &client_id, peer, shutdown).await)
        }
        Body::SyncGroup(decoded) => to.respond(broker, &groups::sync_group(broker, decoded, version, shutdown).await),
        Body::Heartbeat(decoded) => to.respond(broker, &groups::heartbeat(broker, decoded)),
        Body::LeaveGroup(decoded) => to.respond(broker, &groups::leave_group(broker, decoded, version)),
        Body::OffsetCommit(decoded) => to.respond(broker, &groups::offset_commit(broker, decoded).await),
        Body::OffsetFetch(decoded) => to.respond(broker, &groups::offset_fetch(broker, decoded, version)),
        Body::ListGroups(decoded) => to.respond(broker, &groups::list_groups(broker, decoded, version)),
        Body::DescribeGroups(decoded) => to.respond(broker, &groups::describe_groups(broker, decoded, version)),
        Body::DeleteGroups(decoded) => to.respond(broker, &groups::delete_groups(broker, decoded).await),
    }
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;
    use kafka_protocol::messages::{ApiKey, MetadataRequest, RequestHeader};
    use kafka_protocol::protocol::{Encodable, StrBytes};

    use super::{Body, Parsed, parse};

    /// librdkafka 2.10+ (confluentinc/librdkafka#5049) sends an "all topics" Metadata v9+
    /// request whose null topic array is a 1-byte varint followed by the 3 unused bytes of the
    /// 4 it reserved for it. Kafka reads it as all topics; so must Rill.
    #[test]
    fn librdkafka_all_topics_metadata_with_three_stray_bytes_is_served() {
        for version in 9..=12 {
            let mut frame = BytesMut::new();
            RequestHeader::default()
                .with_request_api_key(ApiKey::Metadata as i16)
                .with_request_api_version(version)
                .with_correlation_id(7)
                .with_client_id(Some(StrBytes::from_static_str("rdkafka")))
                .encode(&mut frame, ApiKey::Metadata.request_header_version(version))
                .unwrap();
            let mut body = BytesMut::new();
            MetadataRequest::default().with_topics(None).encode(&mut body, version).unwrap();
            assert_eq!(body[0], 0, "a null compact array is the varint 0");
            frame.extend_from_slice(&body[..1]);
            frame.extend_from_slice(&[0, 0, 0]); // what is left of the 4 bytes librdkafka reserved
            frame.extend_from_slice(&body[1..]);
            let Ok(Parsed::Request(request)) = parse(frame.freeze()) else {
                panic!("Metadata v{version} with stray bytes refused");
            };
            let Body::Metadata(metadata) = request.body else { panic!("not a Metadata request") };
            assert_eq!(metadata.topics, None, "v{version}: all topics");
        }
    }
}
