//! One client connection: read a frame, decode, dispatch, write the response, repeat.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, CreateTopicsRequest, DeleteTopicsRequest, FetchRequest, ListOffsetsRequest,
    MetadataRequest, ProduceRequest, RequestHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable};
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::frame::{self, FrameError};
use super::{Broker, admin, fetch, metadata, produce, versions};

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
        match handle(&broker, frame, &shutdown).await {
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
    shutdown: &watch::Receiver<bool>,
) -> Result<Option<BytesMut>, String> {
    let Preamble { api_key, version, correlation_id } =
        preamble(&frame).ok_or_else(|| format!("request of {} bytes is shorter than a header", frame.len()))?;
    let key = ApiKey::try_from(api_key).map_err(|_| format!("unknown api key {api_key}"))?;
    if key == ApiKey::ApiVersions && !versions::is_served(key, version) {
        return versions::unsupported_api_versions(correlation_id).map(Some);
    }
    if !versions::is_served(key, version) {
        return Err(format!("{key:?} v{version} is not served (see ApiVersions)"));
    }
    if key == ApiKey::Produce && version < versions::PRODUCE_UNSUPPORTED_BELOW {
        return produce::legacy_unsupported(frame, version, correlation_id);
    }
    let mut body = frame;
    let header = RequestHeader::decode(&mut body, key.request_header_version(version))
        .map_err(|e| format!("{key:?} v{version}: bad request header: {e}"))?;
    tracing::trace!(api = ?key, version, correlation_id, client = ?header.client_id, "kafka request");
    let request = Request { key, version, correlation_id, body };
    dispatch(broker, request, shutdown).await
}

/// A request whose header has been read; `body` is what follows it.
struct Request {
    key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: Bytes,
}

impl Request {
    fn decode<T: Decodable>(&mut self) -> Result<T, String> {
        let decoded = T::decode(&mut self.body, self.version)
            .map_err(|e| format!("{:?} v{}: cannot decode the request: {e}", self.key, self.version))?;
        // Trailing bytes mean the client and broker disagree on the layout: do not guess.
        if self.body.has_remaining() {
            return Err(format!("{:?} v{}: {} bytes after the request", self.key, self.version, self.body.remaining()));
        }
        Ok(decoded)
    }

    fn respond<R: Encodable>(&self, response: &R) -> Result<Option<BytesMut>, String> {
        let header_version = self.key.response_header_version(self.version);
        frame::encode_response(self.correlation_id, header_version, self.version, response).map(Some)
    }
}

async fn dispatch(
    broker: &Broker,
    mut request: Request,
    shutdown: &watch::Receiver<bool>,
) -> Result<Option<BytesMut>, String> {
    let version = request.version;
    match request.key {
        ApiKey::ApiVersions => {
            let _: ApiVersionsRequest = request.decode()?;
            request.respond(&versions::api_versions())
        }
        ApiKey::Metadata => {
            let decoded: MetadataRequest = request.decode()?;
            request.respond(&metadata::metadata(broker, decoded, version).await)
        }
        ApiKey::Produce => {
            let decoded: ProduceRequest = request.decode()?;
            match produce::produce(broker, decoded, version).await {
                Some(response) => request.respond(&response),
                None => Ok(None),
            }
        }
        ApiKey::Fetch => {
            let decoded: FetchRequest = request.decode()?;
            request.respond(&fetch::fetch(broker, decoded, version, shutdown.clone()).await)
        }
        ApiKey::ListOffsets => {
            let decoded: ListOffsetsRequest = request.decode()?;
            request.respond(&fetch::list_offsets(broker, decoded, version).await)
        }
        ApiKey::CreateTopics => {
            let decoded: CreateTopicsRequest = request.decode()?;
            request.respond(&admin::create_topics(broker, decoded, version).await)
        }
        ApiKey::DeleteTopics => {
            let decoded: DeleteTopicsRequest = request.decode()?;
            request.respond(&admin::delete_topics(broker, decoded, version).await)
        }
        other => Err(format!("{other:?} is advertised but has no handler")),
    }
}
