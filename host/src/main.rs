//! The `rill` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use rill::client::admin::{AdminArgs, AdminError};
use rill::client::commands::{
    self, Bootstrap, ConsumeArgs, GroupCommand, MirrorCommand, MqttCommand, PipelineCommand, PluginCommand,
    ProduceArgs, TopicCommand,
};
use rill::config::Config;

/// The man-page part of `rill --help`.
const RILL_HELP: &str = "\
Environment:
  RILL_LOG            Log filter (default info; e.g. rill=debug). Logs go to stderr: under
                      systemd, to the journal (journalctl -u rill).
  RILL_ADMIN_TOKEN    Bearer token the admin API requires for changes (also [http] admin_token).

Every command but `serve` is a client of a running broker: see each command's --help.";

/// The man-page part of `rill serve --help`: where things live, signals, exit status.
const SERVE_HELP: &str = "\
Files:
  ./rill-data/rill.redb   The log and all metadata, without --data-dir or data_dir.
  ./rill-data/rill.journal  The most recent small commits until they are checkpointed into
                          rill.redb (4 MiB, made once); both files belong together.
  /etc/rill/rill.toml     The config the Debian package installs (loopback only); the rill.service
                          unit runs `rill serve --config /etc/rill/rill.toml` as user rill.
  /var/lib/rill           The package's data directory (data_dir in that config).

Signals:
  SIGTERM, SIGINT         Stop listening, finish what is queued, close the store, exit 0.

Exit status:
  0 after a clean stop; 1 when the config is invalid, a port is taken, or the data directory is
  locked by another rill or cannot be opened.

Examples:
  rill serve                                      embedded defaults, data in ./rill-data
  rill serve --config /etc/rill/rill.toml         as the systemd unit runs it
  rill serve --listen 0.0.0.0:9092 --data-dir /srv/rill";

#[derive(Debug, Parser)]
#[command(name = "rill", version, about = "Rill: a streaming log for the edge, speaking Kafka.", after_long_help = RILL_HELP)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the broker on embedded defaults (data in ./rill-data).
    #[command(after_long_help = SERVE_HELP)]
    Serve {
        /// Directory for the log and metadata (default ./rill-data).
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// TOML config file; flags override it. Unknown keys are errors.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Address for Kafka clients (default 127.0.0.1:9092; port 0 picks a free port).
        #[arg(long, value_name = "ADDR")]
        listen: Option<std::net::SocketAddr>,
        /// Address for the HTTP admin API, metrics and status page (default 127.0.0.1:9644;
        /// port 0 picks a free port).
        #[arg(long, value_name = "ADDR")]
        http_listen: Option<std::net::SocketAddr>,
        /// Address where edges connect to mirror their topics (default 127.0.0.1:9093; port 0
        /// picks a free port). Runs when the config accepts edges ([replication] edges).
        #[arg(long, value_name = "ADDR")]
        replication_listen: Option<std::net::SocketAddr>,
    },
    /// Create, list, describe, alter and delete topics.
    Topic {
        #[command(flatten)]
        bootstrap: Bootstrap,
        #[command(subcommand)]
        command: TopicCommand,
    },
    /// Send records, one per line of stdin (or --file), with acks=-1.
    Produce {
        #[command(flatten)]
        bootstrap: Bootstrap,
        #[command(flatten)]
        args: ProduceArgs,
    },
    /// Print a topic's records.
    Consume {
        #[command(flatten)]
        bootstrap: Bootstrap,
        #[command(flatten)]
        args: ConsumeArgs,
    },
    /// List, describe, reset and delete consumer groups.
    Group {
        #[command(flatten)]
        bootstrap: Bootstrap,
        #[command(subcommand)]
        command: GroupCommand,
    },
    /// One screen: readiness, topics with ingest rates, consumer groups with lag, plugins, MQTT
    /// bridges, pipelines, devices.
    Status {
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Upload, list, describe and delete plugin components.
    Plugin {
        #[command(flatten)]
        admin: AdminArgs,
        #[command(subcommand)]
        command: PluginCommand,
    },
    /// Create and manage pipelines: topic -> WebAssembly plugins -> topic, exactly once.
    Pipeline {
        #[command(flatten)]
        admin: AdminArgs,
        #[command(subcommand)]
        command: PipelineCommand,
    },
    /// Add, list, describe and remove MQTT bridges (sensor ingest from an MQTT broker).
    Mqtt {
        #[command(flatten)]
        admin: AdminArgs,
        #[command(subcommand)]
        command: MqttCommand,
    },
    /// Mirror topics to an aggregation node (add, list, status, remove); on an aggregation node,
    /// `status` also shows the edges it accepts.
    Mirror {
        #[command(flatten)]
        admin: AdminArgs,
        #[command(subcommand)]
        command: MirrorCommand,
    },
    /// Measure Rill against a baseline measured in the same run.
    Bench {
        #[command(subcommand)]
        what: rill::bench::BenchCommand,
    },
}

/// A failure as the user sees it: one line with the cause, and what to try.
struct Failure {
    cause: String,
    hint: &'static str,
}

impl From<AdminError> for Failure {
    fn from(e: AdminError) -> Self {
        Failure { hint: e.hint(), cause: e.to_string() }
    }
}

impl From<rill::client::ClientError> for Failure {
    fn from(e: rill::client::ClientError) -> Self {
        Failure { hint: e.hint(), cause: e.to_string() }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("error: {} (hint: {})", failure.cause, failure.hint);
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<(), Failure> {
    match cli.command {
        Command::Serve { data_dir, config, listen, http_listen, replication_listen } => {
            let mut settings = match &config {
                Some(path) => Config::load(path).map_err(|e| Failure {
                    cause: e.to_string(),
                    hint: "fix the file, or run without --config for the defaults",
                })?,
                None => Config::default(),
            };
            if let Some(dir) = data_dir {
                settings.data_dir = dir;
            }
            if let Some(listen) = listen {
                settings.kafka.listen = listen;
            }
            if let Some(listen) = http_listen {
                settings.http.listen = listen;
            }
            if let Some(listen) = replication_listen {
                settings.replication.listen = listen;
            }
            // The environment keeps the token out of files and process listings.
            if let Some(token) = std::env::var("RILL_ADMIN_TOKEN").ok().filter(|t| !t.trim().is_empty()) {
                settings.http.admin_token = Some(token);
            }
            let runtime = runtime()?;
            runtime.block_on(async {
                let shutdown = rill::serve::shutdown_signal().map_err(|e| Failure {
                    cause: format!("cannot listen for SIGINT/SIGTERM: {e}"),
                    hint: "run rill as a normal process (signals are how it is stopped cleanly)",
                })?;
                rill::serve::serve(settings, shutdown).await.map_err(|e| Failure {
                    cause: e.to_string(),
                    hint: "check that the data directory is writable and not used by another rill (--data-dir DIR), \
                           and that the listen addresses are free (--listen ADDR, --http-listen ADDR, \
                           --replication-listen ADDR)",
                })
            })
        }
        Command::Topic { bootstrap, command } => client(commands::topic(&bootstrap, command)),
        Command::Produce { bootstrap, args } => client(commands::produce(&bootstrap, args)),
        Command::Consume { bootstrap, args } => client(commands::consume(&bootstrap, args)),
        Command::Group { bootstrap, command } => client(commands::group(&bootstrap, command)),
        Command::Status { admin } => runtime()?.block_on(commands::status(&admin)).map_err(Failure::from),
        Command::Plugin { admin, command } => {
            runtime()?.block_on(commands::plugin(&admin, command)).map_err(Failure::from)
        }
        Command::Pipeline { admin, command } => {
            runtime()?.block_on(commands::pipeline(&admin, command)).map_err(Failure::from)
        }
        Command::Mqtt { admin, command } => runtime()?.block_on(commands::mqtt(&admin, command)).map_err(Failure::from),
        Command::Mirror { admin, command } => {
            runtime()?.block_on(commands::mirror(&admin, command)).map_err(Failure::from)
        }
        Command::Bench { what } => {
            let runtime = runtime()?;
            runtime.block_on(rill::bench::run(what)).map_err(|e| Failure { cause: e, hint: "see `rill bench --help`" })
        }
    }
}

/// Runs a client command; its errors name what failed.
fn client(command: impl std::future::Future<Output = Result<(), rill::client::ClientError>>) -> Result<(), Failure> {
    let runtime = runtime()?;
    runtime.block_on(command).map_err(Failure::from)
}

fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| Failure {
        cause: format!("cannot start the async runtime: {e}"),
        hint: "check the process limits (ulimit -u, -n)",
    })
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("RILL_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only for people: a log file or a test reading stderr gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr).init();
}
