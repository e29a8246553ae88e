//! The pattern every Rill resource follows (pipelines, MQTT bridges, mirrors, devices): a JSON
//! document with a name, validated against the broker, stored durably in redb (so it survives
//! restarts), managed with create / list / get / replace / delete under `/v1/<kind>`.
//!
//! A subsystem implements [`Resource`] for its document type and merges [`routes`] into the
//! router (and lists the routes in [`super::ROUTES`] and `docs/openapi.json`); it reads its
//! resources back at startup with [`load_all`].

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::AppState;
use super::error::{ApiError, JsonBody};
use crate::storage::{PutMode, ResourceError};

/// A kind of resource managed through the admin API.
pub trait Resource: Serialize + DeserializeOwned + Send + 'static {
    /// The kind's plural name: the URL segment (`/v1/<KIND>`) and the storage key.
    const KIND: &'static str;

    /// The resource's name, unique within its kind (see [`validate_name`]).
    fn name(&self) -> &str;

    /// Checks the document against the broker; errors name the offending field.
    fn validate(&self, state: &AppState) -> Result<(), ApiError>;
}

/// Longest resource name.
pub const NAME_LEN_MAX: usize = 128;

/// Names are 1–128 characters of `[a-zA-Z0-9._-]`, as topic names (they appear in URLs, logs
/// and metric labels).
pub fn validate_name(field: &str, name: &str) -> Result<(), ApiError> {
    let valid = !name.is_empty()
        && name.len() <= NAME_LEN_MAX
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && name != "."
        && name != "..";
    if valid {
        Ok(())
    } else {
        Err(ApiError::invalid_field(
            field,
            format!("{name:?} is not a valid name: 1 to {NAME_LEN_MAX} characters of a-z, A-Z, 0-9, '.', '_', '-'"),
        ))
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

/// `/<KIND>` and `/<KIND>/{name}` for resource type `R`.
pub fn routes<R: Resource>() -> Router<AppState> {
    Router::new()
        .route(&format!("/{}", R::KIND), get(list::<R>).post(create::<R>))
        .route(&format!("/{}/{{name}}", R::KIND), get(describe::<R>).put(replace::<R>).delete(delete::<R>))
}

fn decode<R: Resource>(name: &str, document: &[u8]) -> Result<R, ApiError> {
    serde_json::from_slice(document).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "stored_document_invalid",
            format!("the stored {} {name:?} no longer decodes: {e}", R::KIND),
        )
    })
}

fn encode<R: Resource>(resource: &R) -> Result<Vec<u8>, ApiError> {
    serde_json::to_vec(resource).map_err(|e| {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "encode_failed", format!("cannot encode the {}: {e}", R::KIND))
    })
}

/// Every stored resource of kind `R`, for the subsystem that runs them.
pub fn load_all<R: Resource>(state: &AppState) -> Result<Vec<R>, ApiError> {
    state.store.resources(R::KIND)?.iter().map(|(name, document)| decode(name, document)).collect()
}

async fn list<R: Resource>(State(state): State<AppState>) -> Result<axum::Json<Vec<R>>, ApiError> {
    load_all(&state).map(axum::Json)
}

async fn describe<R: Resource>(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<axum::Json<R>, ApiError> {
    match state.store.resource(R::KIND, &name)? {
        Some(document) => decode(&name, &document).map(axum::Json),
        None => Err(ApiError::not_found(format!("unknown {} {name:?}", R::KIND))),
    }
}

async fn create<R: Resource>(
    State(state): State<AppState>,
    JsonBody(resource): JsonBody<R>,
) -> Result<Response, ApiError> {
    validate_name("name", resource.name())?;
    resource.validate(&state)?;
    let name = resource.name().to_owned();
    state.store.put_resource(R::KIND, &name, encode(&resource)?, PutMode::Create, None).await?;
    tracing::info!(kind = R::KIND, %name, "resource created");
    Ok((StatusCode::CREATED, axum::Json(resource)).into_response())
}

async fn replace<R: Resource>(
    State(state): State<AppState>,
    Path(name): Path<String>,
    JsonBody(resource): JsonBody<R>,
) -> Result<axum::Json<R>, ApiError> {
    if resource.name() != name {
        return Err(ApiError::invalid_field(
            "name",
            format!("the body names {:?}, the path {name:?}", resource.name()),
        ));
    }
    resource.validate(&state)?;
    state.store.put_resource(R::KIND, &name, encode(&resource)?, PutMode::Replace, None).await?;
    tracing::info!(kind = R::KIND, %name, "resource replaced");
    Ok(axum::Json(resource))
}

async fn delete<R: Resource>(State(state): State<AppState>, Path(name): Path<String>) -> Result<StatusCode, ApiError> {
    if state.store.delete_resource(R::KIND, &name, |_| None).await? {
        tracing::info!(kind = R::KIND, %name, "resource deleted");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("unknown {} {name:?}", R::KIND)))
    }
}

#[cfg(test)]
mod tests {
    use axum::http::Method;
    use serde::Deserialize;
    use serde_json::json;

    use super::*;
    use crate::http::tests::harness;

    /// A resource kind for testing the pattern itself.
    #[derive(Debug, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Widget {
        name: String,
        topic: String,
    }

    impl Resource for Widget {
        const KIND: &'static str = "widgets";

        fn name(&self) -> &str {
            &self.name
        }

        fn validate(&self, state: &AppState) -> Result<(), ApiError> {
            match state.store.topic(&self.topic) {
                Some(_) => Ok(()),
                None => Err(ApiError::invalid_field("topic", format!("unknown topic {:?}", self.topic))),
            }
        }
    }

    #[tokio::test]
    async fn resources_round_trip_and_survive_a_reopen() {
        let h = harness(None).await.with_routes(routes::<Widget>());
        h.state.store.create_topic("t", 1, crate::storage::TopicConfig::default()).await.unwrap();
        let widget = json!({"name": "w1", "topic": "t"});
        assert_eq!(h.call(Method::POST, "/v1/widgets", Some(widget.clone())).await.0, StatusCode::CREATED);
        let (status, body) = h.call(Method::POST, "/v1/widgets", Some(widget.clone())).await;
        assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("already_exists")));
        for (body, field) in [
            (json!({"name": "w 2", "topic": "t"}), "name"),
            (json!({"name": "w2", "topic": "nope"}), "topic"),
            (json!({"name": "w2", "topic": "t", "colour": 1}), "colour"),
        ] {
            let (status, answer) = h.call(Method::POST, "/v1/widgets", Some(body.clone())).await;
            assert_eq!((status, answer["error"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some(field)), "{body}");
        }
        let (status, body) = h.call(Method::PUT, "/v1/widgets/w1", Some(json!({"name": "w9", "topic": "t"}))).await;
        assert_eq!((status, body["error"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some("name")));
        let (status, _) = h.call(Method::PUT, "/v1/widgets/w9", Some(json!({"name": "w9", "topic": "t"}))).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "replace needs an existing resource");
        h.state.store.create_topic("u", 1, crate::storage::TopicConfig::default()).await.unwrap();
        let (status, _) = h.call(Method::PUT, "/v1/widgets/w1", Some(json!({"name": "w1", "topic": "u"}))).await;
        assert_eq!(status, StatusCode::OK);

        let h = h.reopen().await;
        assert_eq!(h.call(Method::GET, "/v1/widgets", None).await.1, json!([{"name": "w1", "topic": "u"}]));
        assert_eq!(h.call(Method::GET, "/v1/widgets/w1", None).await.1["topic"], "u");
        assert_eq!(h.call(Method::DELETE, "/v1/widgets/w1", None).await.0, StatusCode::NO_CONTENT);
        assert_eq!(h.call(Method::GET, "/v1/widgets/w1", None).await.0, StatusCode::NOT_FOUND);
        assert_eq!(h.call(Method::DELETE, "/v1/widgets/w1", None).await.0, StatusCode::NOT_FOUND);
    }
}
