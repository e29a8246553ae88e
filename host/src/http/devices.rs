//! `/v1/devices`: the sensor nodes this gateway hears from (see [`crate::devices`]).

use axum::Router;
use axum::extract::State;
use axum::routing::get;

use super::AppState;
use crate::devices::DeviceStatus;

pub fn routes() -> Router<AppState> {
    Router::new().route("/devices", get(list))
}

/// Every device heard from since the start (none when the device listener does not run).
async fn list(State(state): State<AppState>) -> axum::Json<Vec<DeviceStatus>> {
    axum::Json(state.devices.as_ref().map(|devices| devices.status()).unwrap_or_default())
}
