//! `rill bench …`: measurements against a baseline measured in the same run.

mod storage;

use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Append throughput, file size and bytes written, against plain file append + fdatasync
    /// with the same bytes per sync.
    Storage(storage::StorageArgs),
}

pub async fn run(command: BenchCommand) -> Result<(), String> {
    match command {
        BenchCommand::Storage(args) => storage::run(args).await,
    }
}
