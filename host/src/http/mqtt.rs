//! `/v1/mqtt`: add, list, describe and remove MQTT bridges (see [`crate::mqtt`]).

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::AppState;
use super::error::{ApiError, JsonBody};
use super::resources::validate_name;
use crate::mqtt::{BridgeError, BridgeSpec, BridgeView};

pub fn routes() -> Router<AppState> {
    Router::new().route("/mqtt", get(list).post(add)).route("/mqtt/{name}", get(describe).delete(remove))
}

impl From<BridgeError> for ApiError {
    fn from(e: BridgeError) -> Self {
        match e {
            BridgeError::Invalid(invalid) => ApiError::invalid_field(invalid.field, invalid.message),
            BridgeError::NotFound(_) => ApiError::not_found(e.to_string()),
            BridgeError::Conflict(message) => ApiError::conflict(message),
            BridgeError::Storage(message) => ApiError::storage(message),
        }
    }
}

async fn list(State(state): State<AppState>) -> axum::Json<Vec<BridgeView>> {
    axum::Json(state.bridges.list())
}

async fn add(State(state): State<AppState>, JsonBody(spec): JsonBody<BridgeSpec>) -> Result<Response, ApiError> {
    validate_name("name", &spec.name)?;
    let view = state.bridges.add(spec).await?;
    Ok((StatusCode::CREATED, axum::Json(view)).into_response())
}

async fn describe(State(state): State<AppState>, Path(name): Path<String>) -> Result<axum::Json<BridgeView>, ApiError> {
    state.bridges.get(&name).map(axum::Json).ok_or_else(|| BridgeError::NotFound(name).into())
}

async fn remove(State(state): State<AppState>, Path(name): Path<String>) -> Result<StatusCode, ApiError> {
    state.bridges.remove(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}
