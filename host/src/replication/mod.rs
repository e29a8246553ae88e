//! Edge → cloud replication, the host's half: the state machines are `rill_core::replication`;
//! here they meet sockets and the store.
//!
//! - Edge: every `[[mirror]]` ([`edge`]) dials its aggregation node and streams the partitions of
//!   the topics it names.
//! - Aggregation node: the replication listener ([`cloud`]) accepts the edges in
//!   `[replication]`, keeps each edge topic's copy in a read-only topic (`<edge-id>.<topic>`)
//!   at the edge's offsets, and a new incarnation of an edge topic in a new copy ([`copies`]).

pub mod cloud;
pub mod copies;
pub mod edge;
pub mod filter;
pub mod metrics;
pub mod mirrors;
pub mod spec;
mod wire;

pub use cloud::{Cloud, ReplicationListener};
pub use edge::MirrorStatus;
pub use mirrors::{MirrorView, Mirrors};
pub use spec::{MirrorSpec, ReplicationSection};
