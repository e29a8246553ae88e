//! `/v1/mqtt`: add, list, describe and remove MQTT bridges (see [`crate::mqtt`]).

use super::AppState;
use super::resources::Served;
use crate::mqtt::{BridgeKind, Bridges};

impl Served for BridgeKind {
    const PATH: &'static str = "mqtt";

    fn registry(state: &AppState) -> &Bridges {
        &state.bridges
    }
}
