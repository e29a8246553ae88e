//! `/v1/devices`: the sensor nodes this gateway hears from (see [`crate::devices`]).

use axum::Router;
use axum::extract::State;
use axum::routing::get;

use super::AppState;
use crate::devices::{DeviceStatus, ListenerStatus};

pub fn routes() -> Router<AppState> {
    Router::new().route("/devices", get(list)).route("/devices/listener", get(listener))
}

/// How the device listener is set up: its TCP address, topic, partitioner, and each serial
/// port's state (`enabled: false` when `[devices]` takes no devices).
async fn listener(State(state): State<AppState>) -> axum::Json<ListenerStatus> {
    axum::Json(state.devices.as_ref().map_or_else(ListenerStatus::disabled, |devices| devices.listener_status()))
}

/// Every device heard from since the start (none when the device listener does not run).
async fn list(State(state): State<AppState>) -> axum::Json<Vec<DeviceStatus>> {
    axum::Json(state.devices.as_ref().map(|devices| devices.status()).unwrap_or_default())
}
