//! `/v1/pipelines`: create, list, describe, pause, resume, upgrade and delete pipelines (see
//! [`crate::pipelines`]).

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::error::{ApiError, JsonBody};
use super::resources::validate_name;
use crate::pipelines::{PipelineError, PipelineSpec, PipelineView, StageSpec};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/pipelines", get(list).post(create))
        .route("/pipelines/{name}", get(describe).delete(delete))
        .route("/pipelines/{name}/pause", post(pause))
        .route("/pipelines/{name}/resume", post(resume))
        .route("/pipelines/{name}/upgrade", post(upgrade))
}

/// The body of an upgrade: the new plugin chain (versions default to the newest stored).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Upgrade {
    pub plugins: Vec<StageSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partitioner: Option<StageSpec>,
}

impl From<PipelineError> for ApiError {
    fn from(e: PipelineError) -> Self {
        match e {
            PipelineError::Invalid { field, message } => ApiError::invalid_field(field, message),
            PipelineError::NotFound(_) => ApiError::not_found(e.to_string()),
            PipelineError::Conflict(message) => ApiError::conflict(message),
            PipelineError::Failed(message) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "pipeline_failed", message)
            }
        }
    }
}

async fn list(State(state): State<AppState>) -> axum::Json<Vec<PipelineView>> {
    axum::Json(state.pipelines.list())
}

async fn create(State(state): State<AppState>, JsonBody(spec): JsonBody<PipelineSpec>) -> Result<Response, ApiError> {
    validate_name("name", &spec.name)?;
    let view = state.pipelines.create(spec).await?;
    Ok((StatusCode::CREATED, axum::Json(view)).into_response())
}

fn found(name: &str, view: Option<PipelineView>) -> Result<axum::Json<PipelineView>, ApiError> {
    view.map(axum::Json).ok_or_else(|| PipelineError::NotFound(name.to_owned()).into())
}

async fn describe(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<axum::Json<PipelineView>, ApiError> {
    found(&name, state.pipelines.get(&name))
}

async fn pause(State(state): State<AppState>, Path(name): Path<String>) -> Result<axum::Json<PipelineView>, ApiError> {
    Ok(axum::Json(state.pipelines.pause(&name).await?))
}

async fn resume(State(state): State<AppState>, Path(name): Path<String>) -> Result<axum::Json<PipelineView>, ApiError> {
    Ok(axum::Json(state.pipelines.resume(&name).await?))
}

async fn upgrade(
    State(state): State<AppState>,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<Upgrade>,
) -> Result<axum::Json<PipelineView>, ApiError> {
    Ok(axum::Json(state.pipelines.upgrade(&name, body.plugins, body.partitioner).await?))
}

async fn delete(State(state): State<AppState>, Path(name): Path<String>) -> Result<StatusCode, ApiError> {
    state.pipelines.delete(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}
