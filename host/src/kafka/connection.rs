//! One client connection: read a frame, decode, dispatch, write the response, repeat.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, CreatePartitionsRequest, CreateTopicsRequest, DeleteGroupsRequest,
    DeleteRecordsRequest, DeleteTopicsRequest, DescribeClusterRequest, DescribeConfigsRequest, DescribeGroupsRequest,
    FetchRequest, FindCoordinatorRequest, HeartbeatRequest, IncrementalAlterConfigsRequest, InitProducerIdRequest,
    JoinGroupRequest, LeaveGroupRequest, ListGroupsRequest, ListOffsetsRequest, MetadataRequest, OffsetCommitRequest,
    OffsetFetchRequest, ProduceRequest, RequestHeader, SyncGroupRequest,
};
use kafka_protocol::protocol::{Decodable, Encodable};
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::frame::{self, FrameError};
use super::{Broker, admin, configs, fetch, groups, metadata, produce, versions};

/// Serves one connection until the client closes it, it breaks the protocol, or shutdown.
pub async fn serve(socket: TcpStream, peer: SocketAddr, broker: Arc<Broker>, mut shutdown: watch::Receiver<bool>) {
    tracing::debug!(%peer, "kafka connection opened");
    let (reader, mut writer) = socket.into_split();
    let mut reader = BufReader::new(reader);
    let max = broker.config.request_bytes_max;
    loop {
        let frame = tokio::select! {
            frame = frame::read_frame(&mut reader, max) => frame,
            _ = shutdown.wait_for(|stop| *stop) => return,
        };
        let frame = match frame {
            Ok(frame) => frame,
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
        };
        match handle(&broker, frame, peer, &shutdown).await {
            Ok(Some(response)) => {
                if let Err(e) = writer.write_all(&response).await {
                    tracing::debug!(%peer, error = %e, "kafka connection lost while answering");
                    return;
                }
            }
            Ok(None) => {}
            Err(reason) => {
                tracing::warn!(%peer, %reason, "closing kafka connection");
                return;
            }
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

/// Answers one request. `Ok(None)`: nothing to send (Produce with acks=0). `Err`: the request
/// breaks the protocol and the connection must close (the reason is logged).
pub async fn handle(
    broker: &Broker,
    frame: Bytes,
    peer: SocketAddr,
    shutdown: &watch::Receiver<bool>,
) -> Result<Option<BytesMut>, String> {
    match parse(frame)? {
        Parsed::Answer(answer) => Ok(answer),
        Parsed::Request(request) => dispatch(broker, *request, peer, shutdown).await,
    }
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
    if key == ApiKey::Produce && version < versions::PRODUCE_UNSUPPORTED_BELOW {
        return produce::legacy_unsupported(frame, version, correlation_id).map(Parsed::Answer);
    }
    let mut body = frame;
    let header = RequestHeader::decode(&mut body, key.request_header_version(version))
        .map_err(|e| format!("{key:?} v{version}: bad request header: {e}"))?;
    tracing::trace!(api = ?key, version, correlation_id, client = ?header.client_id, "kafka request");
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
    Ok(Parsed::Request(Box::new(Request { to: Responder { key, version, correlation_id }, client_id, body })))
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
    fn decode<T: Decodable>(&mut self) -> Result<T, String> {
        let decoded = T::decode(&mut self.body, self.version)
            .map_err(|e| format!("{:?} v{}: cannot decode the request: {e}", self.key, self.version))?;
        // Trailing bytes mean the client and broker disagree on the layout: do not guess.
        if self.body.has_remaining() {
            return Err(format!("{:?} v{}: {} bytes after the request", self.key, self.version, self.body.remaining()));
        }
        Ok(decoded)
    }
}

/// Where a response goes: the request's API, version and correlation id.
struct Responder {
    key: ApiKey,
    version: i16,
    correlation_id: i32,
}

impl Responder {
    fn respond<R: Encodable>(&self, response: &R) -> Result<Option<BytesMut>, String> {
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
        Body::ApiVersions => to.respond(&versions::api_versions()),
        Body::Metadata(decoded) => to.respond(&metadata::metadata(broker, decoded, version).await),
        Body::Produce(decoded) => match produce::produce(broker, decoded, version).await {
            Some(response) => to.respond(&response),
            None => Ok(None),
        },
        Body::Fetch(decoded) => to.respond(&fetch::fetch(broker, decoded, version, shutdown.clone()).await),
        Body::ListOffsets(decoded) => to.respond(&fetch::list_offsets(broker, decoded, version).await),
        Body::CreateTopics(decoded) => to.respond(&admin::create_topics(broker, decoded, version).await),
        Body::DeleteTopics(decoded) => to.respond(&admin::delete_topics(broker, decoded, version).await),
        Body::CreatePartitions(decoded) => to.respond(&admin::create_partitions(broker, decoded).await),
        Body::DeleteRecords(decoded) => to.respond(&admin::delete_records(broker, decoded).await),
        Body::DescribeConfigs(decoded) => to.respond(&configs::describe_configs(broker, decoded)),
        Body::IncrementalAlterConfigs(decoded) => {
            to.respond(&configs::incremental_alter_configs(broker, decoded).await)
        }
        Body::DescribeCluster => to.respond(&admin::describe_cluster(broker)),
        Body::InitProducerId(decoded) => to.respond(&produce::init_producer_id(broker, decoded).await),
        Body::FindCoordinator(decoded) => to.respond(&groups::find_coordinator(broker, decoded, version)),
        Body::JoinGroup(decoded) => {
            to.respond(&groups::join_group(broker, decoded, version, &client_id, peer, shutdown).await)
        }
        Body::SyncGroup(decoded) => to.respond(&groups::sync_group(broker, decoded, version, shutdown).await),
        Body::Heartbeat(decoded) => to.respond(&groups::heartbeat(broker, decoded)),
        Body::LeaveGroup(decoded) => to.respond(&groups::leave_group(broker, decoded, version)),
        Body::OffsetCommit(decoded) => to.respond(&groups::offset_commit(broker, decoded).await),
        Body::OffsetFetch(decoded) => to.respond(&groups::offset_fetch(broker, decoded, version)),
        Body::ListGroups(decoded) => to.respond(&groups::list_groups(broker, decoded, version)),
        Body::DescribeGroups(decoded) => to.respond(&groups::describe_groups(broker, decoded, version)),
        Body::DeleteGroups(decoded) => to.respond(&groups::delete_groups(broker, decoded).await),
    }
}
