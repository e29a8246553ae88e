//! Admin API errors: a JSON body with a machine-readable code, a message for people and, for bad
//! input, the offending field; and the JSON body extractor that names that field.

use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::limits::HTTP_JSON_BYTES_MAX;
use crate::storage::{AppendError, ResourceError, TopicError};

/// An error as the admin API answers it: `{"error": {"code", "message", "field"?}}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
}

#[derive(Serialize)]
struct Body<'a> {
    error: Detail<'a>,
}

#[derive(Serialize)]
struct Detail<'a> {
    code: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), field: None }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// Bad input in one field.
    pub fn invalid_field(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: Some(field.into()), ..Self::bad_request("invalid_field", message) }
    }

    pub fn not_found(what: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", what)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }

    pub fn storage(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Body { error: Detail { code: self.code, message: &self.message, field: self.field.as_deref() } };
        (self.status, axum::Json(body)).into_response()
    }
}

impl From<TopicError> for ApiError {
    fn from(e: TopicError) -> Self {
        match &e {
            TopicError::AlreadyExists(_) => ApiError::new(StatusCode::CONFLICT, "already_exists", e.to_string()),
            TopicError::Unknown(_) => ApiError::not_found(e.to_string()),
            TopicError::InvalidName { .. } => ApiError::invalid_field("name", e.to_string()),
            TopicError::InvalidPartitions { .. } => ApiError::invalid_field("partitions", e.to_string()),
            TopicError::InvalidConfig { key, .. } => ApiError::invalid_field(format!("config.{key}"), e.to_string()),
            TopicError::Storage(_) => ApiError::storage(e.to_string()),
        }
    }
}

impl From<ResourceError> for ApiError {
    fn from(e: ResourceError) -> Self {
        match &e {
            ResourceError::AlreadyExists { .. } => ApiError::new(StatusCode::CONFLICT, "already_exists", e.to_string()),
            ResourceError::Unknown { .. } => ApiError::not_found(e.to_string()),
            ResourceError::Storage(_) => ApiError::storage(e.to_string()),
        }
    }
}

impl From<AppendError> for ApiError {
    fn from(e: AppendError) -> Self {
        match &e {
            AppendError::UnknownTopic(_) | AppendError::UnknownPartition { .. } => ApiError::not_found(e.to_string()),
            AppendError::Storage(_) | AppendError::ShutDown => ApiError::storage(e.to_string()),
            _ => ApiError::bad_request("invalid_request", e.to_string()),
        }
    }
}

/// A JSON body, decoded strictly: bad JSON, a wrong type and an unknown field are 400 with the
/// field's path (`config.retention.ms`, `to.offset`) in `field`.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json =
            request.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| {
                v.split(';').next().is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
            });
        if !is_json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as Content-Type: application/json",
            ));
        }
        let bytes = axum::body::Bytes::from_request(request, state).await.map_err(|e| {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", format!("cannot read the body: {e}"))
        })?;
        if bytes.len() > HTTP_JSON_BYTES_MAX {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("a JSON body may have at most {HTTP_JSON_BYTES_MAX} bytes"),
            ));
        }
        decode_json(&bytes).map(JsonBody)
    }
}

/// Decodes `bytes` as `T`, naming the offending field on failure.
pub fn decode_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        // The path names the field, an unknown one included (`inner.extra`).
        let field = e.path().to_string();
        let inner = e.into_inner();
        let message = inner.to_string();
        if inner.is_syntax() || inner.is_eof() {
            ApiError::bad_request("invalid_json", format!("the body is not valid JSON: {message}"))
        } else {
            ApiError::invalid_field(field, message)
        }
    })?;
    deserializer.end().map_err(|e| ApiError::bad_request("invalid_json", format!("trailing data after JSON: {e}")))?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        name: String,
        inner: Option<Inner>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        count: u32,
    }

    #[test]
    fn errors_name_the_offending_field() {
        let e = decode_json::<Outer>(br#"{"name": "a", "colour": 1}"#).unwrap_err();
        assert_eq!((e.status, e.field.as_deref()), (StatusCode::BAD_REQUEST, Some("colour")), "{e:?}");
        let e = decode_json::<Outer>(br#"{"name": "a", "inner": {"count": "x"}}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("inner.count"), "{e:?}");
        let e = decode_json::<Outer>(br#"{"name": "a", "inner": {"count": 1, "extra": 2}}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("inner.extra"), "{e:?}");
        let e = decode_json::<Outer>(br#"{"name": "#).unwrap_err();
        assert_eq!(e.code, "invalid_json");
        let e = decode_json::<Outer>(br#"{}"#).unwrap_err();
        assert!(e.message.contains("name"), "{e:?}");
    }
}
