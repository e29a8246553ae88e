//! Every bound the host enforces, in one place, each with the reason for its number.
//! `rill-core` keeps its own in `rill_core::limits`.

use std::time::Duration;

use rill_core::limits::BATCH_BYTES_MAX;

/// Appends waiting for the storage writer. A bounded queue: when storage falls behind, producers
/// wait here instead of the broker buffering without limit. 1024 covers a burst from every
/// connection a gateway serves while one commit (a few ms of fsync) is in progress.
pub const WRITER_QUEUE_MAX: usize = 1024;

/// Most appends folded into one write transaction (group commit). Bounds the latency one commit
/// adds to the first append in it.
pub const COMMIT_APPENDS_MAX: usize = 512;

/// Most payload bytes folded into one write transaction. 8 MiB keeps a commit's dirty pages well
/// under redb's cache and a commit under ~50 ms on an SD card at 200 MB/s.
pub const COMMIT_BYTES_MAX: usize = 8 * 1024 * 1024;

/// A partition's newest row group closes at this size (see `storage::layout`). It is the step in
/// which retention deletes (Kafka's `segment.bytes`, whose default is 1 GiB: a gateway's disk needs
/// finer steps) and the most a read from the middle of a group loads beyond what it returns.
/// 256 KiB: 64 full 4 KiB leaves, so the partial last leaf wastes under 2%.
pub const GROUP_BYTES_MAX_DEFAULT: usize = 256 * 1024;

/// redb's page cache. It fills with what was just written, so a broker's memory follows it up to
/// the cap: under a steady 1 MB/s of produce, 76 MiB resident with a 64 MiB cache, 34 MiB with
/// 16 MiB. A gateway's consumers read mostly what was just written, which the OS page cache holds
/// too: the same-session A/B of `bench kafka` showed no loss, produce or consume
/// (docs/benchmarks.md). redb's own default (1 GiB) is far too much for a gateway.
pub const CACHE_BYTES_DEFAULT: usize = 16 * 1024 * 1024;

/// The storage journal's size (`rill.journal`, made once, reused from its start after each
/// checkpoint). A checkpoint (a durable redb commit) comes at the latest when it is full, so this
/// bounds what a start replays. At a gateway's 10 × 1 KB a second, 4 MiB last about six minutes.
pub const JOURNAL_BYTES: u64 = 4 * 1024 * 1024;
/// The largest commit the journal takes. A durable redb commit costs ≈ 32 KiB of writes whatever it
/// carries, a journaled one its own size now and again at the next checkpoint: past this size the
/// commit goes to redb durably instead (a checkpoint), as high-rate commits do.
pub const JOURNAL_RECORD_BYTES_MAX: usize = 32 * 1024;

/// Longest interval the `interval` durability policy may be set to: the loss window on power cut.
pub const FLUSH_INTERVAL_MS_MAX: u64 = 60_000;

/// How often retention runs by default (Kafka's `log.retention.check.interval.ms` is 5 minutes;
/// a gateway with a small disk checks more often).
pub const RETENTION_CHECK_INTERVAL_MS_DEFAULT: u64 = 60_000;

/// Kafka's default `max.message.bytes` (1 MiB + record batch overhead).
pub const MAX_MESSAGE_BYTES_DEFAULT: u32 = 1_048_588;

/// Longest topic name, as in Kafka (a partition directory name must fit in 255 bytes).
pub const TOPIC_NAME_LEN_MAX: usize = 249;

/// Most partitions per topic. A gateway has no use for more; each costs a metadata row.
pub const PARTITIONS_PER_TOPIC_MAX: u32 = 1024;

/// How long writes are refused after the first IO error; doubled for each further failure in a
/// row. Each retry reopens the database, and a reopen after an IO error repairs the file (a full
/// scan), so a disk that stays full must not trigger one per append.
pub const RECOVERY_BACKOFF_MIN: Duration = Duration::from_millis(100);

/// The longest refusal: a gateway whose disk was full resumes within this of space returning.
pub const RECOVERY_BACKOFF_MAX: Duration = Duration::from_secs(30);

/// How long the writer waits for in-flight reads to drop the database before reopening it (a
/// read takes milliseconds; a reader stuck longer must not block recovery forever).
pub const READERS_RELEASE_WAIT: Duration = Duration::from_secs(5);

/// Free space kept for deletions and metadata once appends stop (`[storage] reserve_bytes`
/// overrides it): a twentieth of the data directory's filesystem, within the two bounds below.
/// redb is copy-on-write, so even a deletion needs free pages to commit.
pub const SPACE_RESERVE_FRACTION: u64 = 20;
/// The smallest default reserve: a few deletions' and metadata commits' pages, with room to spare.
pub const SPACE_RESERVE_MIN: u64 = 4 * 1024 * 1024;
/// The largest default reserve (Redpanda keeps 5 GiB; a gateway's card is smaller).
pub const SPACE_RESERVE_MAX: u64 = 256 * 1024 * 1024;

/// Room an append must find before a refusal for lack of space ends by itself (so one freed
/// kilobyte does not resume and refuse again at once).
pub const SPACE_RESUME_BYTES: u64 = 1024 * 1024;

/// How often a writer that refuses appends for lack of space reads the free space again, so that
/// readiness recovers without waiting for a producer to try.
pub const SPACE_RECHECK_INTERVAL: Duration = Duration::from_secs(1);

const _: () = assert!(RECOVERY_BACKOFF_MIN.as_millis() < RECOVERY_BACKOFF_MAX.as_millis());
const _: () = assert!(MAX_MESSAGE_BYTES_DEFAULT as usize <= BATCH_BYTES_MAX);
const _: () = assert!(COMMIT_BYTES_MAX >= BATCH_BYTES_MAX, "one largest batch must fit a commit");
const _: () = assert!(SPACE_RESERVE_MIN < SPACE_RESERVE_MAX && SPACE_RESUME_BYTES < SPACE_RESERVE_MIN);

/// Largest records section a compressed batch may decompress to. Kafka producers compress at most
/// `batch.size` (16 KiB default) to a few MiB; 64 MiB stops a decompression bomb.
pub const DECOMPRESSED_BYTES_MAX: usize = 64 * 1024 * 1024;

// ---- Kafka listener -------------------------------------------------------------------------

/// Kafka clients connected at once (`[kafka] max_connections`). A gateway serves a handful of
/// local producers and consumers; each connection costs a task and up to one request buffer.
pub const KAFKA_CONNECTIONS_MAX_DEFAULT: usize = 256;

/// Largest request frame (`[kafka] request_bytes_max`). Kafka's `socket.request.max.bytes` is
/// 100 MiB; a gateway does not need that: producers send at most `max.request.size` (1 MiB by
/// default) and 16 MiB leaves room for large batches while bounding memory per connection.
pub const KAFKA_REQUEST_BYTES_MAX_DEFAULT: usize = 16 * 1024 * 1024;

/// The smallest request limit a config may set: a Kafka client's first requests (ApiVersions,
/// Metadata) must fit.
pub const KAFKA_REQUEST_BYTES_MIN: usize = 64 * 1024;

/// Most memory decoding a request may allocate for its arrays, per byte of the request
/// (`kafka::bounds`). Real clients' requests stay far below (a Fetch for a thousand partitions
/// decodes into ~3 bytes per byte); a request of tiny elements, such as a LeaveGroup of a million
/// null members, would take ~30 and is refused, so no request can make the broker allocate more
/// than this multiple of what it was sent.
pub const DECODE_AMPLIFICATION_MAX: usize = 16;

/// Small requests may always decode into this much, whatever their ratio.
pub const DECODE_BYTES_FLOOR: usize = 64 * 1024;

/// Produce requests one connection may have in progress (queued for or waiting on the storage
/// writer) while its next request is read. Kafka brokers handle one request per connection at a
/// time, which makes a producer's in-flight window (5 for idempotent clients) wait a full commit
/// per request; pipelining lets those requests share commits. 8 covers that window.
pub const KAFKA_PIPELINE_MAX: usize = 8;

/// Request bytes one connection may have in progress (at least one request of any size is).
/// With the connection limit it bounds the memory held for pipelined requests.
pub const KAFKA_PIPELINE_BYTES_MAX: usize = 4 * 1024 * 1024;

/// Longest a Fetch may wait for data (`max_wait_ms` above this is clamped). Clients default to
/// 500 ms; a bound keeps a connection from being parked for an unbounded time.
pub const FETCH_WAIT_MS_MAX: u64 = 30_000;

/// Most record bytes in one Fetch response, whatever the client asks (Kafka's broker-side
/// `fetch.max.bytes` is 55 MiB; a gateway answers in smaller steps). At least one whole batch is
/// still returned when a batch is larger (KIP-74).
pub const FETCH_RESPONSE_BYTES_MAX: usize = 16 * 1024 * 1024;

const _: () = assert!(KAFKA_REQUEST_BYTES_MIN <= KAFKA_REQUEST_BYTES_MAX_DEFAULT);
const _: () = assert!(KAFKA_REQUEST_BYTES_MAX_DEFAULT >= BATCH_BYTES_MAX, "a largest batch must fit a request");

/// How long shutdown waits for connections to finish the request they are handling (a Fetch
/// long-poll ends early on shutdown; a Produce waits for its commit).
pub const SHUTDOWN_DRAIN_WAIT: Duration = Duration::from_secs(10);

// ---- HTTP control plane ---------------------------------------------------------------------

/// HTTP connections at once (`[http] max_connections`): operators, a Prometheus scraper, the
/// CLI. Past it new connections are closed at once.
pub const HTTP_CONNECTIONS_MAX_DEFAULT: usize = 64;

/// Largest JSON request body. Admin resources are small; a megabyte is generous.
pub const HTTP_JSON_BYTES_MAX: usize = 1024 * 1024;

/// Largest plugin component (`[http] plugin_bytes_max`). Components built from Rust with
/// rill-core inside weigh 100 KiB–2 MiB; 32 MiB leaves room without letting an upload fill a
/// gateway's disk.
pub const PLUGIN_BYTES_MAX_DEFAULT: usize = 32 * 1024 * 1024;

/// How long a client may take to send a request's headers (slow-loris bound).
pub const HTTP_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// How often the status page's ingest rates are sampled, and how many samples are kept: 5 s for
/// 10 minutes (121 samples of every topic's counters, a few KiB per topic).
pub const STATUS_SAMPLE_EVERY: Duration = Duration::from_secs(5);
pub const STATUS_SAMPLES: usize = 121;

/// How long shutdown waits for HTTP requests in progress.
pub const HTTP_SHUTDOWN_WAIT: Duration = Duration::from_secs(5);

// ---- plugins ---------------------------------------------------------------------------------

/// Fuel (roughly, WebAssembly instructions) one plugin call may burn: ~30 ms of CPU here
/// (measured: 50M fuel stop an endless loop in ~3 ms). A call handles a whole batch, so the
/// budget is for the batch; a plugin whose batches need more is configured with more.
pub const PLUGIN_FUEL_PER_CALL_DEFAULT: u64 = 500_000_000;

/// Linear memory one plugin instance may grow to. Past it, growth traps (an allocation bomb
/// becomes a contained trap). A batch is at most 8 MiB; 64 MiB leaves room to decode and build.
pub const PLUGIN_MEMORY_BYTES_DEFAULT: usize = 64 * 1024 * 1024;

/// Plugin instances alive at once (the pooling allocator reserves their slots up front, where the
/// address space allows; see `PluginRuntime::with_pooling`).
pub const PLUGIN_INSTANCES_MAX: u32 = 64;

/// Longest log message a plugin may write; the rest is cut.
pub const PLUGIN_LOG_MESSAGE_BYTES_MAX: usize = 4096;

/// Most bytes a plugin may return from one call: output is validated and copied into the log.
pub const PLUGIN_OUTPUT_BYTES_MAX: usize = 32 * 1024 * 1024;

// ---- pipelines --------------------------------------------------------------------------------

/// Bytes a pipeline reads from a source partition at a time: one plugin call and one
/// transaction (output, progress, plugin state) per read, so this is the batching knob.
pub const PIPELINE_READ_BYTES: usize = 1024 * 1024;

/// Most bytes of plugin input one read makes once decompressed: a read stops adding compressed
/// batches past it (at least one batch is always taken), so a few small batches that decompress
/// to a lot cannot make a pipeline allocate without bound.
pub const PIPELINE_INPUT_BYTES_MAX: usize = 16 * 1024 * 1024;

/// Room for the headers of a dead letter (plugin, error, source) above the source topic's
/// `max.message.bytes`, when the pipeline creates its dead-letter topic.
pub const PIPELINE_DEAD_LETTER_HEADROOM_BYTES: u32 = 64 * 1024;

/// Largest batch a pipeline builds when it rebuilds records (partitioner split, dead letters).
pub const PIPELINE_OUTPUT_BATCH_BYTES: usize = 256 * 1024;

/// Plugins in one pipeline (plus its partitioner).
pub const PIPELINE_STAGES_MAX: usize = 16;

/// Failed batches in a row after which a pipeline pauses itself, unless configured.
pub const PIPELINE_FAILURES_BEFORE_PAUSE_DEFAULT: u32 = 10;

/// Times a batch is tried again when a plugin answers `retryable`, before it is dead-lettered.
pub const PIPELINE_RETRIES_MAX: u32 = 3;

/// Wait before trying again after a retryable plugin error or a failed commit (doubles).
pub const PIPELINE_RETRY_BACKOFF: Duration = Duration::from_millis(100);

/// An idle pipeline looks at its source again at least this often (it is also woken by appends).
pub const PIPELINE_IDLE_RECHECK: Duration = Duration::from_secs(1);

/// Upgrades remembered per pipeline (which plugin versions wrote which output offsets).
pub const PIPELINE_HISTORY_MAX: usize = 100;

/// Pipelines per broker.
pub const PIPELINES_MAX: usize = 32;

// ---- MQTT ingest --------------------------------------------------------------------------------

/// Messages a bridge gathers into one ingest call and one commit, unless configured.
pub const MQTT_BATCH_MESSAGES_DEFAULT: usize = 1000;

/// Payload bytes a bridge gathers into one commit, unless configured.
pub const MQTT_BATCH_BYTES_DEFAULT: usize = 1024 * 1024;

/// How long a bridge's first message waits for others before the batch is committed, unless
/// configured: none. A batch is what arrived while the previous one was being committed (group
/// commit), so batches grow with the rate by themselves; waiting only adds latency (a 10 ms window
/// measured p50 17.7 ms publish → consumable at 1k msg/s, against 0.65 ms without).
pub const MQTT_BATCH_WINDOW_MS_DEFAULT: u64 = 0;

/// MQTT keep-alive, unless configured.
pub const MQTT_KEEP_ALIVE_S_DEFAULT: u64 = 30;

/// Messages received and not yet committed, per bridge: the in-flight window. Past it the bridge
/// stops reading from the MQTT broker (which queues for the persistent session) instead of
/// buffering. With QoS 1, at most this many messages are delivered again after a crash.
pub const MQTT_INFLIGHT_MAX: usize = 2048;

/// QoS 0 publishes a bridge holds, besides its channel, while the worker is behind; past it they
/// are dropped (and counted). QoS 1 publishes are bounded by the MQTT broker's in-flight window.
pub const MQTT_STASH_MAX: usize = 256;

/// Reconnection back-off after the MQTT broker is unreachable: doubling from the first to the
/// second.
pub const MQTT_RECONNECT_BACKOFF_MIN: Duration = Duration::from_millis(100);
pub const MQTT_RECONNECT_BACKOFF_MAX: Duration = Duration::from_secs(10);

/// Bridges per broker.
pub const MQTT_BRIDGES_MAX: usize = 16;
/// How long a stopping bridge lets its worker finish the batch it is committing (and get its
/// acknowledgements out) before it is cut short; what was not acknowledged comes again.
pub const MQTT_WORKER_FINISH_WAIT: Duration = Duration::from_secs(5);
/// The pause after a connection error while a stopping bridge waits for its worker.
pub const MQTT_FINISH_RETRY_PAUSE: Duration = Duration::from_millis(50);
/// How long a stopping bridge waits for its DISCONNECT (and the acknowledgements queued before
/// it) to go out.
pub const MQTT_DISCONNECT_WAIT: Duration = Duration::from_secs(1);

/// The largest MQTT message a bridge accepts, unless configured (`max_message_bytes`): Kafka's
/// default `max.message.bytes`, so what is larger would not fit a default topic anyway. At most
/// [`MQTT_MESSAGE_BYTES_MAX`]. What a bridge holds is bounded by the in-flight window times this.
pub const MQTT_MESSAGE_BYTES_DEFAULT: usize = 1024 * 1024;
pub const MQTT_MESSAGE_BYTES_MAX: usize = 64 * 1024 * 1024;

/// Ids a deduplicating bridge remembers by default, and the range allowed: at least the bridge's
/// in-flight window (what a crash can leave unacknowledged), at most what a gateway's memory
/// holds comfortably (about 100 bytes an id).
pub const MQTT_DEDUP_WINDOW_DEFAULT: usize = 65_536;
pub const MQTT_DEDUP_WINDOW_MIN: usize = 4096;
pub const MQTT_DEDUP_WINDOW_MAX: usize = 1 << 20;

/// MQTT 5 session expiry asked by default: a week, so a gateway down over a long weekend still
/// finds its messages queued.
pub const MQTT_SESSION_EXPIRY_S_DEFAULT: u32 = 7 * 24 * 3600;

// ---- idempotent producers -------------------------------------------------------------------

/// Batches remembered per producer and partition for recognising retries: Kafka clients keep at
/// most 5 requests in flight per connection with idempotence on (`max.in.flight.requests`).
pub const PRODUCER_BATCHES_REMEMBERED: usize = 5;

/// Producers remembered per partition. Every InitProducerId makes a new producer; past this the
/// one idle longest is forgotten (its late retries would be stored again), so a client looping on
/// InitProducerId cannot grow the state without bound.
pub const PRODUCERS_PER_PARTITION_MAX: usize = 1024;

/// How long a producer's state outlives its last append (Kafka's `producer.id.expiration.ms`).
pub const PRODUCER_ID_EXPIRATION_MS: i64 = 24 * 60 * 60 * 1000;

/// Producer ids reserved per durable write of the id counter, as Kafka allocates them in blocks:
/// an InitProducerId rarely costs an fsync. Ids of a block unused at a crash are skipped.
pub const PRODUCER_ID_BLOCK: i64 = 1000;

// ---- consumer groups ------------------------------------------------------------------------

/// Session timeouts a consumer may ask for (Kafka's `group.min.session.timeout.ms` and
/// `group.max.session.timeout.ms`).
pub const GROUP_SESSION_TIMEOUT_MIN: Duration = Duration::from_secs(6);
pub const GROUP_SESSION_TIMEOUT_MAX: Duration = Duration::from_secs(30 * 60);

/// How long the first rebalance of an empty group waits for more members to join (Kafka's
/// `group.initial.rebalance.delay.ms` is 3 s; consumers on a gateway start together within well
/// under a second, and a shorter wait gets the first one going sooner).
pub const GROUP_INITIAL_REBALANCE_DELAY: Duration = Duration::from_millis(500);

/// Members (and member ids handed out but not yet joined) per group (Kafka's `group.max.size`).
/// Past it JoinGroup answers `GROUP_MAX_SIZE_REACHED`.
pub const GROUP_MEMBERS_MAX: usize = 256;

/// Consumer groups with members at once. Past it a JoinGroup for a new group answers
/// `COORDINATOR_NOT_AVAILABLE` (retriable). Groups known only by their committed offsets cost a
/// row each, not memory beyond their offsets.
pub const GROUPS_MAX: usize = 1024;

/// Longest `metadata` string an offset commit may carry (Kafka's `offset.metadata.max.bytes`).
pub const OFFSET_METADATA_BYTES_MAX: usize = 4096;

/// How often session and rebalance deadlines are checked. Deadlines are seconds long; 100 ms
/// keeps the error small without waking often.
pub const GROUP_TICK: Duration = Duration::from_millis(100);

// ---- the CLI's Kafka client -------------------------------------------------------------------

/// How long the CLI waits to connect and for each response (a Fetch waits at most
/// `CLIENT_FETCH_WAIT` on the broker, well within this).
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);

/// How long one Fetch of `rill consume` waits on the broker for new records.
pub const CLIENT_FETCH_WAIT: Duration = Duration::from_millis(500);

/// Largest response the CLI accepts (a Fetch asks for at most `CLIENT_FETCH_BYTES`).
pub const CLIENT_RESPONSE_BYTES_MAX: usize = 64 * 1024 * 1024;

/// Record bytes one Fetch of `rill consume` asks for.
pub const CLIENT_FETCH_BYTES: usize = 4 * 1024 * 1024;

/// `rill produce` sends a batch once it holds this many bytes of values (Kafka's `batch.size` is
/// 16 KiB; a CLI feeding a file gains from larger batches) or the input pauses.
pub const CLIENT_BATCH_BYTES: usize = 256 * 1024;

const _: () = assert!(CLIENT_BATCH_BYTES < MAX_MESSAGE_BYTES_DEFAULT as usize);

/// How often, and how far apart, the CLI asks Metadata again while a topic it just had created
/// has no leader yet (Kafka answers LEADER_NOT_AVAILABLE until the controller elected one; Rill
/// never does): 20 × 250 ms covers a loaded broker's election.
pub const CLIENT_LEADER_WAIT_ATTEMPTS: u32 = 20;
pub const CLIENT_LEADER_WAIT: Duration = Duration::from_millis(250);

// ---- edge → cloud replication -------------------------------------------------------------------

/// Bytes a mirror sends ahead of the aggregation node's durable acknowledgement (per connection,
/// all partitions). It must cover bandwidth × (round trip + the follower's fsync): 8 MiB keeps a
/// 1 Gbit/s loopback busy across a 30 ms commit, and is what the follower buffers per edge.
pub const MIRROR_WINDOW_BYTES_DEFAULT: u64 = 8 * 1024 * 1024;
pub const MIRROR_WINDOW_BYTES_MIN: u64 = 64 * 1024;

/// Batch bytes read into one replication frame (at least one whole batch is always sent).
pub const MIRROR_FRAME_BYTES: usize = 1024 * 1024;

/// A stateful mirror filter keeps its state after each of at most this many recent reads per
/// partition, to go back to when the link drops (a rewind between two kept ones replays the
/// reads in between).
pub const MIRROR_FILTER_CHECKPOINTS_MAX: usize = 64;
/// And at most this many bytes of them per partition (a downsampler remembering 100k keys
/// snapshots ~2.4 MB): past either bound, every other checkpoint is dropped.
pub const MIRROR_FILTER_CHECKPOINT_BYTES_MAX: usize = 16 * 1024 * 1024;

/// Most stored bytes a filter replays to rebuild its state where a resend starts (from the last
/// checkpoint before it, or from the log start when there is none); past it the state carries on
/// from where it got.
pub const MIRROR_FILTER_REPLAY_BYTES_MAX: usize = 256 * 1024 * 1024;

/// A mirror pings when it sent nothing for this long; an end that heard nothing for
/// `REPLICATION_LINK_TIMEOUT` closes the connection (a NAT that forgot it, a cable pulled: TCP
/// alone may wait minutes).
pub const MIRROR_HEARTBEAT: Duration = Duration::from_secs(5);
pub const REPLICATION_LINK_TIMEOUT: Duration = Duration::from_secs(30);

/// Sent data unacknowledged this long is sent again from the follower's end. TCP does not lose
/// frames, so this only fires for a follower stalled this long (a dying disk).
pub const MIRROR_RETRANSMIT: Duration = Duration::from_secs(60);

/// How long a mirror waits to connect, and between attempts (doubling from the first to the last).
pub const MIRROR_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
pub const MIRROR_BACKOFF_FIRST: Duration = Duration::from_millis(200);
pub const MIRROR_BACKOFF_MAX: Duration = Duration::from_secs(30);

/// How often a mirror checks for new topics matching its patterns (a new one reconnects, to name
/// it in the `Hello`).
pub const MIRROR_TOPIC_SCAN: Duration = Duration::from_secs(2);

/// Frames decoded ahead of the state machine per connection (each at most a frame's bytes).
pub const REPLICATION_FRAMES_QUEUED: usize = 8;

/// Validated batch bytes a follower holds per edge while its commit runs; past it the edge's
/// frames wait (the edge's window is the real bound; this one guards against a misbehaving edge).
pub const FOLLOWER_PENDING_BYTES_MAX: usize = 64 * 1024 * 1024;

/// Before an edge is accepted, its frames may be at most this long (a `Hello` naming 4,096
/// partitions with 249-byte topic names fits) and it has this long to be accepted: a peer
/// without a token can make the node buffer at most a few Hellos, briefly.
pub const REPLICATION_HELLO_BYTES_MAX: usize = 2 * 1024 * 1024;
pub const REPLICATION_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Replication connections an aggregation node serves at once (one per edge).
pub const REPLICATION_CONNECTIONS_MAX: usize = 1024;

/// Mirrors one node runs.
pub const MIRRORS_MAX: usize = 16;

/// Groups one retention pass deletes to get back within `[storage] disk_budget_bytes` (each a
/// durable transaction); the next pass goes on. Bounds how long the writer is busy with it.
pub const BUDGET_GROUPS_PER_PASS: usize = 1024;

const _: () = assert!((249 + 32) * rill_core::limits::REPLICATION_PARTITIONS_MAX < REPLICATION_HELLO_BYTES_MAX);

// ---- devices (sensor nodes' uplink) ---------------------------------------------------------

/// Sensor nodes connected at once (each holds ~66 KiB of buffers: a 16 KiB read buffer and three
/// of an uplink frame's size; and up to DEVICE_FRAMES_QUEUED frames read ahead, 64 KiB more at
/// most: ~130 MiB for all of them at worst).
pub const DEVICE_CONNECTIONS_MAX: usize = 1024;

/// Frames of one connection read ahead of storing (each at most an uplink batch, 16 KiB): reading
/// goes on while a frame is made durable, so arrival times stay true. A node sends at most its
/// window (4 in the firmware) ahead of the acks.
pub const DEVICE_FRAMES_QUEUED: usize = 4;

/// Devices a gateway keeps progress for (each a few dozen bytes, a set of metrics series and a
/// stored document): past it, frames of new device ids are refused.
pub const DEVICES_MAX: usize = 10_000;

/// Bad frames on one connection before it is closed as not speaking the uplink.
pub const DEVICE_FRAME_ERRORS_MAX: usize = 64;

/// A device connection with nothing received (or an ack not taken) for this long is closed: a
/// node sends readings or reconnects; a half-open TCP connection must not hold a slot forever.
pub const DEVICE_IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

/// A frame begun must end within this (its largest is ~16 KiB: 1.4 s at 115,200 baud): the idle
/// timeout starts again with every byte, so without it a peer sending a byte every few minutes
/// would hold a connection slot for ever.
pub const DEVICE_FRAME_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// How long a device partitioner that failed to load is not tried again (frames meanwhile are
/// not acknowledged; the devices keep them).
pub const PARTITIONER_RELOAD_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Serial ports `[[devices.serial]]` may list (each a task and a connection's buffers).
pub const DEVICE_SERIAL_PORTS_MAX: usize = 64;

/// The highest baud rate accepted (above what common USB serial adapters do).
pub const SERIAL_BAUD_MAX: u32 = 12_000_000;

/// Waits before opening a serial port again after it failed or could not be opened: doubling
/// from the first to the last, back to the first once it opens.
pub const SERIAL_REOPEN_FIRST: std::time::Duration = std::time::Duration::from_secs(1);
pub const SERIAL_REOPEN_MAX: std::time::Duration = std::time::Duration::from_secs(30);
