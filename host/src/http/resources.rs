//! The admin API of every [`Registry`] kind (MQTT bridges, pipelines, mirrors): list, create,
//! describe and delete under `/v1/<path>`. A kind implements [`Served`] and merges [`routes`]
//! into the router (and lists the routes in [`super::ROUTES`] and `docs/openapi.json`); what
//! else it serves (a pipeline's pause, resume and upgrade) it routes itself.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::AppState;
use super::error::{ApiError, JsonBody};
use crate::registry::{Kind, Registry, RegistryError};

/// A registry kind the admin API serves.
pub trait Served: Kind {
    /// The URL segment: `/v1/<PATH>`.
    const PATH: &'static str;

    fn registry(state: &AppState) -> &Registry<Self>;
}

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> Self {
        match e {
            RegistryError::Invalid { field, message } => ApiError::invalid_field(field, message),
            RegistryError::NotFound { .. } => ApiError::not_found(e.to_string()),
            RegistryError::AlreadyExists { .. } => ApiError::new(StatusCode::CONFLICT, "already_exists", e.to_string()),
            RegistryError::Conflict(message) => ApiError::conflict(message),
            RegistryError::Read(_) | RegistryError::Write(_) => ApiError::storage(e.to_string()),
            RegistryError::Unavailable(message) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
            }
        }
    }
}

/// `/<PATH>` and `/<PATH>/{name}` for kind `K`.
pub fn routes<K: Served>() -> Router<AppState> {
    Router::new()
        .route(&format!("/{}", K::PATH), get(list::<K>).post(create::<K>))
        .route(&format!("/{}/{{name}}", K::PATH), get(describe::<K>).delete(remove::<K>))
}

async fn list<K: Served>(State(state): State<AppState>) -> axum::Json<Vec<K::View>> {
    axum::Json(K::registry(&state).list())
}

async fn create<K: Served>(
    State(state): State<AppState>,
    JsonBody(spec): JsonBody<K::Spec>,
) -> Result<Response, ApiError> {
    let view = K::registry(&state).create(spec).await?;
    Ok((StatusCode::CREATED, axum::Json(view)).into_response())
}

async fn describe<K: Served>(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<axum::Json<K::View>, ApiError> {
    Ok(axum::Json(K::registry(&state).found(&name)?))
}

async fn remove<K: Served>(State(state): State<AppState>, Path(name): Path<String>) -> Result<StatusCode, ApiError> {
    K::registry(&state).remove(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}
