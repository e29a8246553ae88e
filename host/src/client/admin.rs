//! The CLI's client for the HTTP admin API (`--admin`, default `http://127.0.0.1:9644`): the
//! commands for Rill's own resources (plugins, status) talk to it, since a second process never
//! opens the database `rill serve` holds.

use bytes::Bytes;
use clap::Args;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::de::DeserializeOwned;

use crate::limits::{CLIENT_RESPONSE_BYTES_MAX, CLIENT_TIMEOUT};

/// Where the control plane is; every resource command takes it.
#[derive(Debug, Clone, Args)]
pub struct AdminArgs {
    /// The broker's HTTP admin address (also RILL_ADMIN).
    #[arg(long, value_name = "URL", env = "RILL_ADMIN", default_value = "http://127.0.0.1:9644", global = true)]
    pub admin: String,
    /// The admin token, when the broker has one (also RILL_ADMIN_TOKEN).
    #[arg(long, value_name = "TOKEN", env = "RILL_ADMIN_TOKEN", hide_env_values = true, global = true)]
    pub admin_token: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("--admin {0:?} is not an http:// URL")]
    BadUrl(String),
    #[error("cannot reach the admin API at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("the admin API did not answer within {0:?}")]
    Timeout(std::time::Duration),
    /// The API's own error: status, machine code, message and field.
    #[error("{message}{}", field.as_ref().map(|f| format!(" (field {f})")).unwrap_or_default())]
    Refused { status: StatusCode, code: String, message: String, field: Option<String> },
    #[error("unexpected answer from the admin API: {0}")]
    Protocol(String),
    #[error("{0}")]
    Local(String),
}

impl AdminError {
    pub fn hint(&self) -> &'static str {
        match self {
            AdminError::BadUrl(_) | AdminError::Unreachable { .. } | AdminError::Timeout(_) => {
                "is `rill serve` running, and is --admin its HTTP address (default http://127.0.0.1:9644)?"
            }
            AdminError::Refused { status, .. } if status.as_u16() == 401 || status.as_u16() == 403 => {
                "pass the broker's admin token with --admin-token or RILL_ADMIN_TOKEN"
            }
            AdminError::Refused { .. } | AdminError::Local(_) => "see `rill <command> --help`",
            AdminError::Protocol(_) => "--admin must name a rill HTTP listener",
        }
    }
}

/// An HTTP/1.1 client for one admin base URL.
#[derive(Debug, Clone)]
pub struct AdminClient {
    base: String,
    token: Option<String>,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl AdminClient {
    pub fn new(args: &AdminArgs) -> Result<AdminClient, AdminError> {
        let base = args.admin.trim_end_matches('/').to_owned();
        let uri: Uri = base.parse().map_err(|_| AdminError::BadUrl(args.admin.clone()))?;
        if uri.scheme_str() != Some("http") || uri.host().is_none() {
            return Err(AdminError::BadUrl(args.admin.clone()));
        }
        let client = Client::builder(TokioExecutor::new()).build_http();
        Ok(AdminClient { base, token: args.admin_token.clone(), client })
    }

    /// Sends one request; a non-2xx answer becomes [`AdminError::Refused`] with the API's words.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: Bytes,
    ) -> Result<Bytes, AdminError> {
        let url = format!("{}{path}", self.base);
        let mut request = Request::builder().method(method).uri(&url);
        if let Some(content_type) = content_type {
            request = request.header(hyper::header::CONTENT_TYPE, content_type);
        }
        if let Some(token) = &self.token {
            request = request.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = request.body(Full::new(body)).map_err(|e| AdminError::BadUrl(format!("{url}: {e}")))?;
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| AdminError::Unreachable { url: self.base.clone(), reason: error_chain(&e) })?;
            let status = response.status();
            let body = http_body_util::Limited::new(response.into_body(), CLIENT_RESPONSE_BYTES_MAX)
                .collect()
                .await
                .map_err(|e| AdminError::Protocol(format!("reading the answer: {e}")))?
                .to_bytes();
            Ok::<_, AdminError>((status, body))
        };
        let (status, body) =
            tokio::time::timeout(CLIENT_TIMEOUT, exchange).await.map_err(|_| AdminError::Timeout(CLIENT_TIMEOUT))??;
        if status.is_success() {
            return Ok(body);
        }
        let error: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        let detail = &error["error"];
        Err(AdminError::Refused {
            status,
            code: detail["code"].as_str().unwrap_or("unknown").to_owned(),
            message: detail["message"]
                .as_str()
                .map_or_else(|| format!("HTTP {status}: {}", String::from_utf8_lossy(&body)), str::to_owned),
            field: detail["field"].as_str().map(str::to_owned),
        })
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, AdminError> {
        let body = self.send(Method::GET, path, None, Bytes::new()).await?;
        serde_json::from_slice(&body).map_err(|e| AdminError::Protocol(format!("GET {path}: {e}")))
    }
}

/// An error with its causes, for messages like "connection refused".
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
