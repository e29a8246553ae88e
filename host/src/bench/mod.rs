//! `rill bench …`: measurements against a baseline measured in the same run.

mod kafka;
mod mirror;
mod mqtt;
mod plugins;
mod storage;

use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Append throughput, file size and bytes written, against plain file append + fdatasync
    /// with the same bytes per sync.
    Storage(storage::StorageArgs),
    /// Produce and consume over the Kafka protocol on loopback: throughput against a plain
    /// loopback socket and file append + fdatasync, open-loop produce latency against fdatasync.
    Kafka(kafka::KafkaArgs),
    /// Record batches through WebAssembly plugins against the same work in native Rust, and a
    /// plugin's cold start.
    Plugins(plugins::PluginsArgs),
    /// Sustained ingest from a private mosquitto into Rill (senml plugin, fsync before ack),
    /// against the same broker's delivery to a plain subscriber.
    Mqtt(mqtt::MqttArgs),
    /// Edge → cloud replication between two `rill serve` processes: catch-up of a backlog
    /// against a plain loopback socket into a sink process, steady-state lag against fdatasync
    /// p99 + loopback round trip.
    Mirror(mirror::MirrorArgs),
    /// The plain-socket ceiling's receiving process (used by `bench mirror`).
    #[command(hide = true)]
    MirrorSink(mirror::SinkArgs),
}

pub async fn run(command: BenchCommand) -> Result<(), String> {
    match command {
        BenchCommand::Storage(args) => storage::run(args).await,
        BenchCommand::Kafka(args) => kafka::run(args).await,
        BenchCommand::Plugins(args) => plugins::run(args).await,
        BenchCommand::Mqtt(args) => mqtt::run(args).await,
        BenchCommand::Mirror(args) => mirror::run(args).await,
        BenchCommand::MirrorSink(args) => mirror::sink(args),
    }
}
