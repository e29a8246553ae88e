//! `rill mirror add|list|status|remove`: this edge's mirrors to aggregation nodes, and on an
//! aggregation node the edges it accepts, through the admin API.

use bytes::Bytes;
use clap::{Args, Subcommand};
use hyper::Method;

use super::pipeline::{call, parse_setting, stage};
use crate::client::admin::{AdminArgs, AdminClient, AdminError};
use crate::http::mirrors::ReplicationView;
use crate::limits::MIRROR_WINDOW_BYTES_DEFAULT;
use crate::replication::{MirrorSpec, MirrorView};

#[derive(Debug, Subcommand)]
pub enum MirrorCommand {
    /// Mirror topics to an aggregation node (stored; runs again after a restart).
    Add(AddArgs),
    /// List mirrors with their link state.
    List,
    /// Per partition: leader offset, acknowledged offset, lag, link state, last error — for this
    /// node's mirrors and, on an aggregation node, for the edges it accepts.
    Status,
    /// Stop and remove a mirror (what it copied stays upstream).
    Remove { name: String },
}

#[derive(Debug, Args)]
pub struct AddArgs {
    name: String,
    /// The aggregation node's replication listener, HOST:PORT.
    #[arg(long)]
    upstream: String,
    /// How this edge is known upstream (copies are named EDGE_ID.TOPIC there).
    #[arg(long)]
    edge_id: String,
    /// The secret the aggregation node accepts for this edge (also RILL_MIRROR_TOKEN).
    #[arg(long, env = "RILL_MIRROR_TOKEN", hide_env_values = true)]
    token: String,
    /// A topic name, or a pattern with * and ?; repeat.
    #[arg(long = "topic", required = true, value_name = "NAME|PATTERN")]
    topics: Vec<String>,
    /// Batch bytes per second sent upstream (metered links).
    #[arg(long, value_name = "BYTES")]
    rate_limit: Option<u64>,
    /// Bytes sent ahead of the aggregation node's durable acknowledgement.
    #[arg(long, default_value_t = MIRROR_WINDOW_BYTES_DEFAULT)]
    window_bytes: u64,
    /// A transform plugin filtering what goes upstream: NAME, NAME@VERSION or a FILE.wasm to
    /// upload first. The copy keeps the edge's offsets, with gaps.
    #[arg(long, value_name = "PLUGIN")]
    filter: Option<String>,
    /// Filter plugin configuration, KEY=VALUE; repeatable.
    #[arg(long = "filter-config", value_name = "KEY=VALUE", requires = "filter")]
    filter_config: Vec<String>,
}

pub async fn mirror(admin: &AdminArgs, command: MirrorCommand) -> Result<(), AdminError> {
    let client = AdminClient::new(admin)?;
    match command {
        MirrorCommand::Add(args) => {
            let filter = match &args.filter {
                Some(plugin) => {
                    let mut stage = stage(&client, plugin).await?;
                    for setting in &args.filter_config {
                        let (_, key, value) = parse_setting(setting)?;
                        stage.config.insert(key, value);
                    }
                    Some(stage)
                }
                None => None,
            };
            let spec = MirrorSpec {
                name: args.name,
                upstream: args.upstream,
                edge_id: args.edge_id,
                token: args.token,
                topics: args.topics,
                rate_limit_bytes_per_s: args.rate_limit,
                window_bytes: args.window_bytes,
                filter,
            };
            let view: MirrorView = call(&client, Method::POST, "/v1/mirrors", &spec).await?;
            println!(
                "added mirror {}: {:?} -> {} as {}",
                view.spec.name, view.spec.topics, view.spec.upstream, view.spec.edge_id
            );
        }
        MirrorCommand::List => {
            let views: Vec<MirrorView> = client.get("/v1/mirrors").await?;
            println!(
                "{:<20} {:<11} {:<28} {:<16} {:<30} LAST ERROR",
                "MIRROR", "LINK", "UPSTREAM", "EDGE ID", "TOPICS"
            );
            if views.is_empty() {
                println!("(no mirrors)");
            }
            for v in views {
                println!(
                    "{:<20} {:<11} {:<28} {:<16} {:<30} {}",
                    v.spec.name,
                    v.status.link,
                    v.spec.upstream,
                    v.spec.edge_id,
                    v.spec.topics.join(","),
                    v.status.last_error.as_deref().unwrap_or("-")
                );
            }
        }
        MirrorCommand::Status => {
            let views: Vec<MirrorView> = client.get("/v1/mirrors").await?;
            let replication: ReplicationView = client.get("/v1/replication").await?;
            print_mirrors(&views);
            if replication.listening {
                print_edges(&replication);
            }
        }
        MirrorCommand::Remove { name } => {
            client.send(Method::DELETE, &format!("/v1/mirrors/{name}"), None, Bytes::new()).await?;
            println!("removed mirror {name}");
        }
    }
    Ok(())
}

fn print_mirrors(views: &[MirrorView]) {
    if views.is_empty() {
        println!("mirrors: none");
    }
    for v in views {
        let error = v.status.last_error.as_deref().map(|e| format!(" — last error: {e}")).unwrap_or_default();
        let filter = match &v.status.filter {
            Some(plugin) => format!(
                ", filter {plugin}: {} records held back, {} batches refused",
                v.status.records_filtered, v.status.batches_refused_by_filter
            ),
            None => String::new(),
        };
        println!(
            "mirror {} -> {} as {}: {} ({} connects, {} bytes sent, {} records lost{filter}){error}",
            v.spec.name,
            v.spec.upstream,
            v.spec.edge_id,
            v.status.link,
            v.status.connects,
            v.status.bytes_sent,
            v.status.records_lost
        );
        println!(
            "  {:<30} {:>5} {:>14} {:>14} {:>12} {:>12} {:>9} {:<10} ERROR",
            "TOPIC", "PART", "LEADER OFFSET", "ACKED OFFSET", "LAG RECORDS", "LAG BYTES", "LAG S", "STATE"
        );
        for p in &v.status.partitions {
            println!(
                "  {:<30} {:>5} {:>14} {:>14} {:>12} {:>12} {:>9.1} {:<10} {}",
                p.topic,
                p.partition,
                p.leader_offset,
                p.acked_offset,
                p.lag_records,
                p.lag_bytes,
                p.lag_seconds,
                p.state,
                p.error.as_deref().unwrap_or("-")
            );
        }
    }
}

fn print_edges(replication: &ReplicationView) {
    if replication.edges.is_empty() {
        println!("edges: none connected yet");
    }
    for edge in &replication.edges {
        let state = if edge.connected { "connected" } else { "disconnected" };
        let peer = edge.peer.as_deref().unwrap_or("-");
        let error = edge.last_error.as_deref().map(|e| format!(" — last error: {e}")).unwrap_or_default();
        println!("edge {} ({state}, {peer}, {} gaps){error}", edge.edge, edge.gaps);
        println!("  {:<30} {:>5} {:<36} {:>14} {:>14} ERROR", "EDGE TOPIC", "PART", "COPY", "LOG END", "DURABLE END");
        for p in &edge.partitions {
            println!(
                "  {:<30} {:>5} {:<36} {:>14} {:>14} {}",
                p.edge_topic,
                p.partition,
                p.copy_topic.as_deref().unwrap_or("-"),
                p.log_end,
                p.durable_end,
                p.stopped.as_deref().unwrap_or("-")
            );
        }
    }
}
