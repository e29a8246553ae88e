//! `/v1/mirrors`: add, list, describe and remove this edge's mirrors; `/v1/replication`: the edges
//! an aggregation node accepts and the state of their copies (see [`crate::replication`]).

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use serde::{Deserialize, Serialize};

use super::AppState;
use super::resources::{Served, routes as resource_routes};
use crate::replication::Mirrors;
use crate::replication::cloud::EdgeStatus;
use crate::replication::mirrors::MirrorKind;

pub fn routes() -> Router<AppState> {
    resource_routes::<MirrorKind>().route("/replication", get(replication))
}

impl Served for MirrorKind {
    const PATH: &'static str = "mirrors";

    fn registry(state: &AppState) -> &Mirrors {
        &state.mirrors
    }
}

/// The aggregation node's side.
#[derive(Debug, Serialize, Deserialize)]
pub struct ReplicationView {
    /// Whether this node accepts edges (`[replication]` lists some).
    pub listening: bool,
    pub edges: Vec<EdgeStatus>,
}

async fn replication(State(state): State<AppState>) -> axum::Json<ReplicationView> {
    axum::Json(match &state.cloud {
        Some(cloud) => ReplicationView { listening: true, edges: cloud.status() },
        None => ReplicationView { listening: false, edges: Vec::new() },
    })
}
