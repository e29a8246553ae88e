//! Rill's own small Kafka client, for the CLI's `topic`, `produce`, `consume` and `group`
//! commands: one connection to the bootstrap broker (Rill is a single node; against a Kafka
//! cluster, point it at the leader), requests encoded by `kafka-protocol` at the highest version
//! both sides know, batches built and read by `rill-core`.

pub mod admin;
pub mod commands;
mod records;

use std::collections::HashMap;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::{ApiVersionsRequest, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub use records::{ConsumedRecord, build_batch, decode_records};

use crate::limits::{CLIENT_RESPONSE_BYTES_MAX, CLIENT_TIMEOUT};

/// The client id the broker logs and shows in DescribeGroups.
const CLIENT_ID: &str = "rill-cli";

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to {addr}: {reason}")]
    Connect { addr: String, reason: String },
    #[error("connection to the broker failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("the broker did not answer within {0:?}")]
    Timeout(Duration),
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("the broker does not serve {api} (or no version this client knows)")]
    Unsupported { api: String },
    #[error("{0}")]
    Refused(String),
}

impl ClientError {
    /// What the user can try.
    pub fn hint(&self) -> &'static str {
        match self {
            ClientError::Connect { .. } | ClientError::Io(_) | ClientError::Timeout(_) => {
                "is `rill serve` running, and is --bootstrap its Kafka address (default 127.0.0.1:9092)?"
            }
            ClientError::Protocol(_) | ClientError::Unsupported { .. } => {
                "--bootstrap must name a Kafka broker (rill, or Kafka 2.4 or newer)"
            }
            ClientError::Refused(_) => "see `rill <command> --help`",
        }
    }
}

/// A Kafka error code (non-zero) as an error naming what was refused.
pub fn check(code: i16, what: impl FnOnce() -> String, message: Option<&StrBytes>) -> Result<(), ClientError> {
    if code == 0 {
        return Ok(());
    }
    let name = ResponseError::try_from_code(code).map_or_else(|| format!("error code {code}"), |e| format!("{e:?}"));
    let detail = message.map(|m| format!(": {}", m.as_str())).unwrap_or_default();
    Err(ClientError::Refused(format!("{}: {name}{detail}", what())))
}

/// One connection to a broker.
#[derive(Debug)]
pub struct Client {
    stream: TcpStream,
    correlation: i32,
    /// The broker's version range per API key.
    versions: HashMap<i16, (i16, i16)>,
}

impl Client {
    /// Connects and asks the broker which API versions it serves.
    pub async fn connect(bootstrap: &str) -> Result<Client, ClientError> {
        let connect = tokio::time::timeout(CLIENT_TIMEOUT, TcpStream::connect(bootstrap));
        let stream = connect
            .await
            .map_err(|_| ClientError::Connect { addr: bootstrap.to_owned(), reason: "timed out".into() })?
            .map_err(|e| ClientError::Connect { addr: bootstrap.to_owned(), reason: e.to_string() })?;
        stream.set_nodelay(true)?;
        let mut client = Client { stream, correlation: 0, versions: HashMap::new() };
        // ApiVersions v3 is what every broker since Kafka 2.4 and Rill answer.
        let answer = client.exchange(&ApiVersionsRequest::default(), 3).await?;
        check(answer.error_code, || "ApiVersions".into(), None)?;
        client.versions = answer.api_keys.iter().map(|api| (api.api_key, (api.min_version, api.max_version))).collect();
        Ok(client)
    }

    /// The version to send `R` in: the highest that the broker, the codec and `newest` (what the
    /// calling code was written for) all know.
    pub fn version<R: Request>(&self, newest: i16) -> Result<i16, ClientError> {
        let api = api_name::<R>();
        let Some(&(min, max)) = self.versions.get(&R::KEY) else {
            return Err(ClientError::Unsupported { api });
        };
        let version = max.min(newest).min(R::VERSIONS.max);
        if version < min || version < R::VERSIONS.min {
            return Err(ClientError::Unsupported { api });
        }
        Ok(version)
    }

    /// Sends `request` at `version` and waits for its response.
    pub async fn send<R: Request>(&mut self, request: &R, version: i16) -> Result<R::Response, ClientError> {
        self.exchange(request, version).await
    }

    async fn exchange<R: Request>(&mut self, request: &R, version: i16) -> Result<R::Response, ClientError> {
        self.correlation = self.correlation.wrapping_add(1);
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation)
            .with_client_id(Some(StrBytes::from_static_str(CLIENT_ID)));
        let mut frame = BytesMut::new();
        frame.put_i32(0);
        header
            .encode(&mut frame, R::header_version(version))
            .and_then(|()| request.encode(&mut frame, version))
            .map_err(|e| ClientError::Protocol(format!("cannot encode {}: {e}", api_name::<R>())))?;
        let size = i32::try_from(frame.len() - 4).map_err(|_| ClientError::Protocol("request too large".into()))?;
        frame[..4].copy_from_slice(&size.to_be_bytes());
        let exchange = async {
            self.stream.write_all(&frame).await?;
            let size = self.stream.read_i32().await?;
            let size = usize::try_from(size)
                .ok()
                .filter(|size| *size <= CLIENT_RESPONSE_BYTES_MAX)
                .ok_or_else(|| ClientError::Protocol(format!("response size {size} out of bounds")))?;
            let mut body = vec![0u8; size];
            self.stream.read_exact(&mut body).await?;
            Ok::<_, ClientError>(Bytes::from(body))
        };
        let mut body = tokio::time::timeout(CLIENT_TIMEOUT, exchange)
            .await
            .map_err(|_| ClientError::Timeout(CLIENT_TIMEOUT))??;
        let header = ResponseHeader::decode(&mut body, R::Response::header_version(version))
            .map_err(|e| ClientError::Protocol(format!("cannot decode a response header: {e}")))?;
        if header.correlation_id != self.correlation {
            return Err(ClientError::Protocol(format!(
                "response for request {} while waiting for {}",
                header.correlation_id, self.correlation
            )));
        }
        let response = R::Response::decode(&mut body, version)
            .map_err(|e| ClientError::Protocol(format!("cannot decode the {} response: {e}", api_name::<R>())))?;
        if body.has_remaining() {
            return Err(ClientError::Protocol(format!(
                "{} bytes after the {} response",
                body.remaining(),
                api_name::<R>()
            )));
        }
        Ok(response)
    }
}

fn api_name<R: Request>() -> String {
    kafka_protocol::messages::ApiKey::try_from(R::KEY)
        .map_or_else(|_| format!("API {}", R::KEY), |key| format!("{key:?}"))
}
