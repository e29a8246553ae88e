//! Write Rill plugins as plain Rust.
//!
//! A plugin implements [`Plugin`] (name, version, configuration, state) and one per-record trait
//! for its kind ([`Transform`], [`Partitioner`] or [`Ingest`]), then calls one macro
//! ([`transform_plugin!`], [`partitioner_plugin!`], [`ingest_plugin!`]); the SDK does the rest: it receives whole record batches across the
//! WebAssembly boundary as Kafka v2 batch bytes (one call per batch, never per record), decodes
//! them with `rill-core` (the codec the broker runs), calls the trait for each record, and builds
//! the output batches. The broker validates what comes back and computes the CRCs.
//!
//! ```ignore
//! use rill_plugin_sdk::{Config, Emit, Error, Plugin, Record, Transform, transform_plugin};
//!
//! struct DropEmpty;
//!
//! impl Plugin for DropEmpty {
//!     const NAME: &'static str = "drop-empty";
//!     const VERSION: &'static str = env!("CARGO_PKG_VERSION");
//!
//!     fn new(_config: &Config) -> Result<Self, Error> {
//!         Ok(DropEmpty)
//!     }
//! }
//!
//! impl Transform for DropEmpty {
//!     fn transform(&mut self, record: &Record<'_>, emit: &mut Emit) -> Result<(), Error> {
//!         if record.value.is_some_and(|v| !v.is_empty()) {
//!             emit.keep();
//!         }
//!         Ok(())
//!     }
//! }
//!
//! transform_plugin!(DropEmpty);
//! ```

extern crate alloc;

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

pub use rill_core;
use rill_core::batch::{
    BatchHeader, BatchParams, Compression, HEADER_LEN, OffsetLayout, RecordSpec, build_vec_at_without_crc,
    build_vec_without_crc, records_in,
};

/// Bindings generated from `wit/plugin.wit`, one module per world. Used by the macros.
/// Bindings generated from `wit/plugin.wit`, one crate per world. Used by the macros.
#[doc(hidden)]
pub mod bindings {
    pub use rill_plugin_world_ingest as ingest;
    pub use rill_plugin_world_partitioner as partitioner;
    pub use rill_plugin_world_transform as transform;
}

use bindings::transform::rill::plugin::log as wit_log;

/// Writes to the broker's log, tagged with the plugin's name.
pub mod log {
    use super::wit_log::{Level, log};

    pub fn debug(message: &str) {
        log(Level::Debug, message);
    }

    pub fn info(message: &str) {
        log(Level::Info, message);
    }

    pub fn warn(message: &str) {
        log(Level::Warn, message);
    }

    pub fn error(message: &str) {
        log(Level::Error, message);
    }
}

/// The plugin's configuration, as the operator gave it (`key=value` pairs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    entries: Vec<(String, String)>,
}

impl Config {
    pub fn new(entries: Vec<(String, String)>) -> Self {
        Self { entries }
    }

    /// The last value given for `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// The value of `key`, or an error naming it.
    pub fn require(&self, key: &str) -> Result<&str, Error> {
        self.get(key).ok_or_else(|| Error::invalid_input(alloc::format!("missing config key {key:?}")))
    }

    /// The value of `key` parsed as `T`, `None` when absent, an error naming the key when it does
    /// not parse.
    pub fn parse<T: core::str::FromStr>(&self, key: &str) -> Result<Option<T>, Error>
    where
        T::Err: fmt::Display,
    {
        self.get(key)
            .map(|text| {
                text.trim().parse().map_err(|e| Error::invalid_input(alloc::format!("config {key}={text:?}: {e}")))
            })
            .transpose()
    }

    pub fn entries(&self) -> &[(String, String)] {
        &self.entries
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The input is wrong: the batch goes to a dead-letter topic.
    InvalidInput,
    /// A passing condition: the broker may call again with the same batch.
    Retryable,
    /// The plugin cannot go on.
    Fatal,
}

/// A plugin's error, with the record to blame when there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub kind: ErrorKind,
    pub message: String,
    /// The index (from 0) of the offending record within the call's input.
    pub record_index: Option<u32>,
}

impl Error {
    pub fn invalid_input(message: impl Into<String>) -> Self {
        Self { kind: ErrorKind::InvalidInput, message: message.into(), record_index: None }
    }

    pub fn retryable(message: impl Into<String>) -> Self {
        Self { kind: ErrorKind::Retryable, message: message.into(), record_index: None }
    }

    pub fn fatal(message: impl Into<String>) -> Self {
        Self { kind: ErrorKind::Fatal, message: message.into(), record_index: None }
    }

    /// Blames record `index` unless a record is blamed already.
    pub fn at(mut self, index: u32) -> Self {
        self.record_index.get_or_insert(index);
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.kind, self.message)?;
        if let Some(index) = self.record_index {
            write!(f, " (record {index})")?;
        }
        Ok(())
    }
}

/// Each world has its own copy of the contract's types: convert into each.
macro_rules! world_types {
    ($($world:ident),*) => {$(
        impl From<Error> for bindings::$world::rill::plugin::types::Error {
            fn from(e: Error) -> Self {
                use bindings::$world::rill::plugin::types as t;
                let kind = match e.kind {
                    ErrorKind::InvalidInput => t::ErrorKind::InvalidInput,
                    ErrorKind::Retryable => t::ErrorKind::Retryable,
                    ErrorKind::Fatal => t::ErrorKind::Fatal,
                };
                t::Error { kind, message: e.message, record_index: e.record_index }
            }
        }
    )*};
}

world_types!(transform, partitioner, ingest);

/// One input record, borrowing the batch's bytes.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    pub offset: i64,
    /// Milliseconds since the Unix epoch.
    pub timestamp: i64,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    inner: rill_core::batch::Record<'a>,
}

impl<'a> Record<'a> {
    /// The record's headers, in order: (key, value).
    pub fn headers(&self) -> impl Iterator<Item = (&'a [u8], Option<&'a [u8]>)> + 'a {
        self.inner.headers().map(|h| (h.key, h.value))
    }

    /// The first header named `key`.
    pub fn header(&self, key: &str) -> Option<Option<&'a [u8]>> {
        self.headers().find(|(k, _)| *k == key.as_bytes()).map(|(_, v)| v)
    }

    /// A new record with this one's fields, to change before emitting.
    pub fn to_new(&self) -> NewRecord {
        NewRecord {
            timestamp: self.timestamp,
            key: self.key.map(<[u8]>::to_vec),
            value: self.value.map(<[u8]>::to_vec),
            headers: self.headers().map(|(k, v)| (k.to_vec(), v.map(<[u8]>::to_vec))).collect(),
        }
    }
}

/// A record a plugin makes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewRecord {
    /// Milliseconds since the Unix epoch.
    pub timestamp: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

/// What a plugin emits for the record it is given: nothing (dropped), the record itself, new
/// records, or any mix, in order.
///
/// An emitted record stands for the input record it was emitted for: while every input record
/// gets at most one, the output keeps their offsets (see [`transform_batches`]).
#[derive(Debug, Default)]
pub struct Emit {
    current: usize,
    out: Vec<Out>,
}

#[derive(Debug)]
enum Out {
    /// The input record at this position, unchanged.
    Keep(usize),
    /// A new record, emitted for the input record at `for_input` (none for ingest).
    New { for_input: usize, record: NewRecord },
}

impl Out {
    /// The input record this output stands for.
    fn for_input(&self) -> usize {
        match self {
            Out::Keep(position) => *position,
            Out::New { for_input, .. } => *for_input,
        }
    }
}

impl Emit {
    /// Emits the input record unchanged (no copy of its bytes is made until the batch is built).
    pub fn keep(&mut self) {
        self.out.push(Out::Keep(self.current));
    }

    /// Emits a new record, standing for the input record being handled (a changed copy of it, or
    /// a summary of a window it closes).
    pub fn push(&mut self, record: NewRecord) {
        self.out.push(Out::New { for_input: self.current, record });
    }
}

/// What every plugin is: a name, a version, a configuration, and (for stateful plugins) state.
pub trait Plugin: Sized + 'static {
    const NAME: &'static str;
    const VERSION: &'static str;
    /// Whether [`snapshot`](Self::snapshot) carries state the broker must keep.
    const STATEFUL: bool = false;

    /// Builds the plugin from its configuration; an error refuses the configuration.
    fn new(config: &Config) -> Result<Self, Error>;

    /// State to keep with the progress it belongs to (stateful plugins).
    fn snapshot(&self) -> Vec<u8> {
        Vec::new()
    }

    /// Puts back what [`snapshot`](Self::snapshot) returned.
    fn restore(&mut self, _state: &[u8]) -> Result<(), Error> {
        Ok(())
    }
}

/// A transform plugin: called once per record of every batch, in order.
pub trait Transform: Plugin {
    fn transform(&mut self, record: &Record<'_>, emit: &mut Emit) -> Result<(), Error>;
}

/// A partitioner plugin: one partition per record.
pub trait Partitioner: Plugin {
    /// A partition below `partitions` for `record`.
    fn partition(&mut self, record: &Record<'_>, partitions: u32) -> Result<u32, Error>;
}

/// One raw message from an ingest source (an MQTT publish).
#[derive(Debug, Clone, Copy)]
pub struct SourceMessage<'a> {
    pub payload: &'a [u8],
    /// The source's topic (the MQTT topic name).
    pub topic: &'a str,
    pub qos: u8,
    pub retained: bool,
    /// MQTT 5 user properties, in order.
    pub properties: &'a [(String, String)],
    /// When the gateway received it: milliseconds since the Unix epoch.
    pub received_ms: i64,
}

/// An ingest plugin: turns each source message into zero or more records.
pub trait Ingest: Plugin {
    fn ingest(&mut self, message: &SourceMessage<'_>, records: &mut Vec<NewRecord>) -> Result<(), Error>;
}

/// Calls `each` with every batch of `input` (concatenated uncompressed v2 batches): its bytes,
/// header, records, and the index in `input` of its first record.
fn for_each_batch<'a>(
    input: &'a [u8],
    mut each: impl FnMut(&'a [u8], &BatchHeader, &[rill_core::batch::Record<'a>], u32) -> Result<(), Error>,
) -> Result<(), Error> {
    let mut rest = input;
    let mut first = 0u32;
    while !rest.is_empty() {
        let header = BatchHeader::decode(rest).map_err(|e| Error::invalid_input(alloc::format!("batch: {e}")))?;
        let len = header.total_len();
        if len < HEADER_LEN || len > rest.len() {
            return Err(Error::invalid_input(alloc::format!("a batch of {len} bytes where {} are left", rest.len())));
        }
        let (bytes, next) = rest.split_at(len);
        rest = next;
        if header.compression() != Ok(Compression::None) {
            return Err(Error::invalid_input("a compressed batch (the broker hands plugins uncompressed ones)"));
        }
        // One walk: the broker validated the batch when it was stored, and decoding each record
        // checks its framing again on the way.
        let records: Vec<rill_core::batch::Record<'a>> = records_in(&bytes[HEADER_LEN..], header.records_count)
            .collect::<Result<_, _>>()
            .map_err(|e| Error::invalid_input(alloc::format!("record: {e}")))?;
        each(bytes, &header, &records, first)?;
        first = first.saturating_add(records.len() as u32);
    }
    Ok(())
}

/// The plugin's view of a record of the batch `header` heads.
fn view<'a>(header: &BatchHeader, inner: &rill_core::batch::Record<'a>) -> Record<'a> {
    Record {
        offset: inner.offset(header.base_offset),
        timestamp: header.timestamp_of(inner),
        key: inner.key,
        value: inner.value,
        inner: *inner,
    }
}

/// Runs `plugin` over every record of `input` and returns one partition per record.
pub fn partition_batches<T: Partitioner>(plugin: &mut T, input: &[u8], partitions: u32) -> Result<Vec<u32>, Error> {
    if partitions == 0 {
        return Err(Error::invalid_input("a topic has at least one partition"));
    }
    let mut chosen = Vec::new();
    for_each_batch(input, |_, header, records, first| {
        for (position, inner) in records.iter().enumerate() {
            let at = first.saturating_add(position as u32);
            let partition = plugin.partition(&view(header, inner), partitions).map_err(|e| e.at(at))?;
            if partition >= partitions {
                return Err(Error::fatal(alloc::format!("partition {partition} chosen of {partitions}")).at(at));
            }
            chosen.push(partition);
        }
        Ok(())
    })?;
    Ok(chosen)
}

/// Runs `plugin` over `messages` and returns their records as batches (CRCs left to the broker).
pub fn ingest_messages<T: Ingest>(plugin: &mut T, messages: &[SourceMessage<'_>]) -> Result<Vec<u8>, Error> {
    let mut records = Vec::new();
    for (index, message) in messages.iter().enumerate() {
        plugin.ingest(message, &mut records).map_err(|e| e.at(index as u32))?;
    }
    let out: Vec<Out> = records.into_iter().map(|record| Out::New { for_input: 0, record }).collect();
    let mut output = Vec::new();
    build_output(&mut output, None, &[], &out)?;
    Ok(output)
}

/// Runs `plugin` over every record of `input` (concatenated uncompressed v2 batches) and
/// returns the output batches, one per input batch that keeps any record, CRCs left to the
/// broker.
///
/// When each input record gets at most one output record, an output batch keeps its input
/// batch's base offset and `lastOffsetDelta`, and each record the offset delta of the input
/// record it stands for: a host that keeps offsets (a mirror filter) stores the survivors at
/// their offsets, with gaps. Otherwise (several records for one input record, or output too
/// large for one batch) the output batch has base offset -1: its records stand for no offsets in
/// particular.
pub fn transform_batches<T: Transform>(plugin: &mut T, input: &[u8]) -> Result<Vec<u8>, Error> {
    let mut output = Vec::new();
    for_each_batch(input, |bytes, header, records, first| {
        let mut emit = Emit::default();
        for (position, inner) in records.iter().enumerate() {
            emit.current = position;
            plugin
                .transform(&view(header, inner), &mut emit)
                .map_err(|e| e.at(first.saturating_add(position as u32)))?;
        }
        let kept_whole = emit.out.len() == records.len()
            && emit.out.iter().enumerate().all(|(i, out)| matches!(out, Out::Keep(kept) if *kept == i));
        if kept_whole {
            // The common case for a filter: the batch passes as it is, without a rebuild.
            pass_whole(&mut output, bytes, header)
        } else {
            build_output(&mut output, Some(header), records, &emit.out)
        }
    })?;
    Ok(output)
}

/// Appends `bytes`, a batch every record of which is kept unchanged, as a new batch at the same
/// offsets: the stored batch's leader epoch and producer identity are not the output's (the
/// plugin is not that producer), and the CRC is left to the broker.
fn pass_whole(output: &mut Vec<u8>, bytes: &[u8], header: &BatchHeader) -> Result<(), Error> {
    let start = output.len();
    output.extend_from_slice(bytes);
    let mut fresh = *header;
    fresh.partition_leader_epoch = -1;
    fresh.producer_id = -1;
    fresh.producer_epoch = -1;
    fresh.base_sequence = -1;
    fresh.crc = 0;
    fresh.encode(&mut output[start..]).map_err(|_| Error::fatal("cannot rewrite a batch header"))
}

/// A record's headers as the batch builder takes them.
type HeaderRefs<'a> = Vec<(&'a [u8], Option<&'a [u8]>)>;

/// Appends the batch holding `out` (nothing when it is empty).
fn build_output(
    output: &mut Vec<u8>,
    input: Option<&BatchHeader>,
    records: &[rill_core::batch::Record<'_>],
    out: &[Out],
) -> Result<(), Error> {
    if out.is_empty() {
        return Ok(());
    }
    let headers: Vec<HeaderRefs<'_>> = out
        .iter()
        .map(|o| match o {
            Out::Keep(i) => records[*i].headers().map(|h| (h.key, h.value)).collect(),
            Out::New { record, .. } => record.headers.iter().map(|(k, v)| (k.as_slice(), v.as_deref())).collect(),
        })
        .collect();
    let specs: Vec<RecordSpec<'_>> = out
        .iter()
        .zip(&headers)
        .map(|(o, headers)| match o {
            Out::Keep(i) => RecordSpec {
                // What a consumer of the input read (the append time under LogAppendTime): the
                // output batch is CreateTime.
                timestamp: input.map_or_else(|| records[*i].timestamp(0), |header| header.timestamp_of(&records[*i])),
                key: records[*i].key,
                value: records[*i].value,
                headers,
            },
            Out::New { record: r, .. } => {
                RecordSpec { timestamp: r.timestamp, key: r.key.as_deref(), value: r.value.as_deref(), headers }
            }
        })
        .collect();
    if let Some(batch) = input.and_then(|input| build_at_input_offsets(input, records, out, &specs)) {
        output.extend_from_slice(&batch);
        return Ok(());
    }
    build_split(output, &specs, if input.is_some() { -1 } else { 0 })
}

/// The output batch with each record at the offset of the input record it stands for, over the
/// input batch's range; `None` when two outputs stand for one input record (or it is too large).
fn build_at_input_offsets(
    input: &BatchHeader,
    records: &[rill_core::batch::Record<'_>],
    out: &[Out],
    specs: &[RecordSpec<'_>],
) -> Option<Vec<u8>> {
    let deltas: Vec<i32> = out.iter().map(|o| records[o.for_input()].offset_delta).collect();
    if !deltas.windows(2).all(|pair| pair[0] < pair[1]) {
        return None;
    }
    let params = BatchParams { base_offset: input.base_offset, ..BatchParams::default() };
    let layout = OffsetLayout { offset_deltas: &deltas, last_offset_delta: input.last_offset_delta };
    build_vec_at_without_crc(params, specs, layout).ok()
}

/// Builds `specs` into as few batches as the batch size limit allows, at `base_offset`.
fn build_split(output: &mut Vec<u8>, specs: &[RecordSpec<'_>], base_offset: i64) -> Result<(), Error> {
    match build_vec_without_crc(BatchParams { base_offset, ..BatchParams::default() }, specs) {
        Ok(batch) => {
            output.extend_from_slice(&batch);
            Ok(())
        }
        Err(rill_core::batch::BuildError::BatchTooLarge { .. }) if specs.len() > 1 => {
            let (first, second) = specs.split_at(specs.len() / 2);
            build_split(output, first, base_offset)?;
            build_split(output, second, base_offset)
        }
        Err(e) => Err(Error::invalid_input(alloc::format!("cannot build the output batch: {e}"))),
    }
}

/// Glue for the macros: the per-world code is the same but for the generated types, so the
/// macros call these and convert the errors.
#[doc(hidden)]
pub mod __private {
    use core::cell::RefCell;
    use std::thread::LocalKey;

    use super::*;

    pub type Slot<T> = LocalKey<RefCell<Option<T>>>;

    fn not_initialized() -> Error {
        Error::fatal("init was not called")
    }

    pub fn init<T: Plugin>(slot: &'static Slot<T>, config: Vec<(String, String)>) -> Result<(), Error> {
        let plugin = T::new(&Config::new(config))?;
        slot.with(|s| *s.borrow_mut() = Some(plugin));
        Ok(())
    }

    pub fn snapshot<T: Plugin>(slot: &'static Slot<T>) -> Vec<u8> {
        slot.with(|s| s.borrow().as_ref().map(Plugin::snapshot).unwrap_or_default())
    }

    pub fn with<T: Plugin, R>(slot: &'static Slot<T>, f: impl FnOnce(&mut T) -> Result<R, Error>) -> Result<R, Error> {
        slot.with(|s| match s.borrow_mut().as_mut() {
            Some(plugin) => f(plugin),
            None => Err(not_initialized()),
        })
    }

    /// Views of the generated source messages.
    pub fn messages<'a>(
        messages: &'a [crate::bindings::ingest::rill::plugin::types::SourceMessage],
    ) -> Vec<SourceMessage<'a>> {
        messages
            .iter()
            .map(|m| SourceMessage {
                payload: &m.payload,
                topic: &m.topic,
                qos: m.qos,
                retained: m.retained,
                properties: &m.properties,
                received_ms: m.received_ms,
            })
            .collect()
    }
}

/// The exports every world shares (`plugin`: init, describe, snapshot, restore).
#[doc(hidden)]
#[macro_export]
macro_rules! __plugin_exports {
    ($world:ident, $kind:ident, $plugin:ty) => {
        impl $crate::bindings::$world::exports::rill::plugin::plugin::Guest for RillPluginExport {
            fn init(
                config: ::std::vec::Vec<(::std::string::String, ::std::string::String)>,
            ) -> ::core::result::Result<(), $crate::bindings::$world::rill::plugin::types::Error> {
                $crate::__private::init::<$plugin>(&RILL_PLUGIN, config).map_err(Into::into)
            }

            fn describe() -> $crate::bindings::$world::rill::plugin::types::Metadata {
                $crate::bindings::$world::rill::plugin::types::Metadata {
                    name: <$plugin as $crate::Plugin>::NAME.into(),
                    version: <$plugin as $crate::Plugin>::VERSION.into(),
                    kind: $crate::bindings::$world::rill::plugin::types::PluginKind::$kind,
                    stateful: <$plugin as $crate::Plugin>::STATEFUL,
                }
            }

            fn snapshot() -> ::std::vec::Vec<u8> {
                $crate::__private::snapshot::<$plugin>(&RILL_PLUGIN)
            }

            fn restore(
                state: ::std::vec::Vec<u8>,
            ) -> ::core::result::Result<(), $crate::bindings::$world::rill::plugin::types::Error> {
                $crate::__private::with::<$plugin, ()>(&RILL_PLUGIN, |p| $crate::Plugin::restore(p, &state))
                    .map_err(Into::into)
            }
        }

        ::std::thread_local! {
            static RILL_PLUGIN: ::core::cell::RefCell<::core::option::Option<$plugin>> =
                const { ::core::cell::RefCell::new(None) };
        }
    };
}

/// Exports `$plugin` (a [`Transform`]) as a component of the `transform-plugin` world. Only
/// when building for WebAssembly: a native build (the plugin's own `cargo test`) has no exports,
/// and tests call [`transform_batches`] directly.
#[macro_export]
macro_rules! transform_plugin {
    ($plugin:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct RillPluginExport;
            $crate::__plugin_exports!(transform, Transform, $plugin);

            impl $crate::bindings::transform::exports::rill::plugin::transform::Guest for RillPluginExport {
                fn transform(
                    _context: $crate::bindings::transform::rill::plugin::types::BatchContext,
                    batch: ::std::vec::Vec<u8>,
                ) -> ::core::result::Result<::std::vec::Vec<u8>, $crate::bindings::transform::rill::plugin::types::Error>
                {
                    $crate::__private::with::<$plugin, _>(&RILL_PLUGIN, |p| $crate::transform_batches(p, &batch))
                        .map_err(Into::into)
                }
            }

            $crate::bindings::transform::export_transform!(RillPluginExport with_types_in $crate::bindings::transform);
        };
    };
}

/// Exports `$plugin` (a [`Partitioner`]) as a component of the `partitioner-plugin` world.
#[macro_export]
macro_rules! partitioner_plugin {
    ($plugin:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct RillPluginExport;
            $crate::__plugin_exports!(partitioner, Partitioner, $plugin);

            impl $crate::bindings::partitioner::exports::rill::plugin::partitioner::Guest for RillPluginExport {
                fn partition(
                    _context: $crate::bindings::partitioner::rill::plugin::types::BatchContext,
                    batch: ::std::vec::Vec<u8>,
                    partitions: u32,
                ) -> ::core::result::Result<::std::vec::Vec<u32>, $crate::bindings::partitioner::rill::plugin::types::Error>
                {
                    $crate::__private::with::<$plugin, _>(&RILL_PLUGIN, |p| {
                        $crate::partition_batches(p, &batch, partitions)
                    })
                    .map_err(Into::into)
                }
            }

            $crate::bindings::partitioner::export_partitioner!(RillPluginExport with_types_in $crate::bindings::partitioner);
        };
    };
}

/// Exports `$plugin` (an [`Ingest`]) as a component of the `ingest-plugin` world.
#[macro_export]
macro_rules! ingest_plugin {
    ($plugin:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct RillPluginExport;
            $crate::__plugin_exports!(ingest, Ingest, $plugin);

            impl $crate::bindings::ingest::exports::rill::plugin::ingest::Guest for RillPluginExport {
                fn ingest(
                    messages: ::std::vec::Vec<$crate::bindings::ingest::rill::plugin::types::SourceMessage>,
                ) -> ::core::result::Result<::std::vec::Vec<u8>, $crate::bindings::ingest::rill::plugin::types::Error>
                {
                    let views = $crate::__private::messages(&messages);
                    $crate::__private::with::<$plugin, _>(&RILL_PLUGIN, |p| $crate::ingest_messages(p, &views))
                        .map_err(Into::into)
                }
            }

    $crate::bindings::ingest::export_ingest!(RillPluginExport with_types_in $crate::bindings::ingest);
        };
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use rill_core::batch::{Batch, build_vec, seal_crc};

    /// Keeps even values, drops odd ones, and doubles "dup" into two records.
    struct Parity;

    impl Plugin for Parity {
        const NAME: &'static str = "parity";
        const VERSION: &'static str = "0.0.1";

        fn new(_config: &Config) -> Result<Self, Error> {
            Ok(Parity)
        }
    }

    impl Transform for Parity {
        fn transform(&mut self, record: &Record<'_>, emit: &mut Emit) -> Result<(), Error> {
            match record.value {
                Some(b"dup") => {
                    emit.keep();
                    let mut copy = record.to_new();
                    copy.value = Some(b"dup-2".to_vec());
                    emit.push(copy);
                }
                Some(b"bad") => return Err(Error::invalid_input("bad record")),
                Some(v) if v.last().is_some_and(|d| d % 2 == 0) => emit.keep(),
                _ => {}
            }
            Ok(())
        }
    }

    fn batch(values: &[&[u8]], first_ts: i64) -> Vec<u8> {
        let headers: &[(&[u8], Option<&[u8]>)] = &[(b"sensor", Some(b"s1"))];
        let specs: Vec<RecordSpec<'_>> = values
            .iter()
            .enumerate()
            .map(|(i, v)| RecordSpec { timestamp: first_ts + i as i64, key: Some(b"k"), value: Some(v), headers })
            .collect();
        build_vec(BatchParams::default(), &specs).unwrap()
    }

    /// Each batch of `bytes`, its CRC sealed as the broker does.
    fn sealed(bytes: &[u8]) -> Vec<Vec<u8>> {
        let (mut out, mut rest) = (Vec::new(), bytes.to_vec());
        while !rest.is_empty() {
            let len = BatchHeader::decode(&rest).unwrap().total_len();
            let mut one: Vec<u8> = rest.drain(..len).collect();
            seal_crc(&mut one).unwrap();
            out.push(one);
        }
        out
    }

    /// Every record of `bytes`.
    fn values(bytes: &[u8]) -> Vec<(i64, Vec<u8>, usize)> {
        let mut out = Vec::new();
        for one in sealed(bytes) {
            let parsed = Batch::parse(&one).unwrap();
            for record in parsed.records().unwrap() {
                let record = record.unwrap();
                out.push((
                    record.timestamp(parsed.header().base_timestamp),
                    record.value.unwrap().to_vec(),
                    record.headers().count(),
                ));
            }
        }
        out
    }

    #[test]
    fn records_are_kept_dropped_and_added_in_order() {
        let input = [batch(&[b"1", b"2", b"dup"], 1000), batch(&[b"3", b"5"], 2000), batch(&[b"4"], 3000)].concat();
        let output = transform_batches(&mut Parity, &input).unwrap();
        let got = values(&output);
        let expected: Vec<(i64, Vec<u8>, usize)> = vec![
            (1001, b"2".to_vec(), 1),
            (1002, b"dup".to_vec(), 1),
            (1002, b"dup-2".to_vec(), 1),
            (3000, b"4".to_vec(), 1),
        ];
        assert_eq!(got, expected, "timestamps and headers carried, the all-dropped batch left out");
        assert_eq!(&output[17..21], &[0, 0, 0, 0], "CRCs are left to the broker");
    }

    #[test]
    fn batches_kept_whole_pass_as_they_are_but_for_the_producer() {
        let params = BatchParams {
            base_offset: 500,
            producer_id: 77,
            producer_epoch: 3,
            base_sequence: 9,
            ..BatchParams::default()
        };
        let specs = [RecordSpec { timestamp: 5, key: None, value: Some(b"2"), headers: &[] }; 3];
        let input = build_vec(params, &specs).unwrap();
        let output = transform_batches(&mut Parity, &input).unwrap();
        let header = BatchHeader::decode(&output).unwrap();
        assert_eq!(
            (header.base_offset, header.producer_id, header.producer_epoch, header.base_sequence),
            (500, -1, -1, -1)
        );
        assert_eq!(
            output[HEADER_OFFSET_OF_RECORDS..],
            input[HEADER_OFFSET_OF_RECORDS..],
            "the records are the input's bytes"
        );
        assert_eq!(values(&output).len(), 3);
    }

    const HEADER_OFFSET_OF_RECORDS: usize = rill_core::batch::HEADER_LEN;

    /// Each output batch's (base offset, lastOffsetDelta) and its records' offsets.
    fn offsets(bytes: &[u8]) -> Vec<(i64, i32, Vec<i64>)> {
        sealed(bytes)
            .iter()
            .map(|one| {
                let parsed = Batch::parse(one).unwrap();
                let h = *parsed.header();
                let records = parsed.records().unwrap().map(|r| r.unwrap().offset(h.base_offset)).collect();
                (h.base_offset, h.last_offset_delta, records)
            })
            .collect()
    }

    #[test]
    fn survivors_keep_their_offsets_unless_one_record_becomes_several() {
        let at = |base: i64, values: &[&[u8]]| {
            let mut bytes = batch(values, 0);
            rill_core::batch::set_base_offset(&mut bytes, base).unwrap();
            bytes
        };
        let input = [at(10, &[b"1", b"2", b"3", b"4"]), at(14, &[b"5"]), at(15, &[b"6", b"8"])].concat();
        let output = transform_batches(&mut Parity, &input).unwrap();
        assert_eq!(
            offsets(&output),
            [(10, 3, vec![11, 13]), (15, 1, vec![15, 16])],
            "a filtered batch keeps its range; one kept whole passes as it is"
        );
        let output = transform_batches(&mut Parity, &at(20, &[b"2", b"dup", b"3"])).unwrap();
        assert_eq!(offsets(&output), [(-1, 2, vec![-1, 0, 1])], "two records for one input record keep no offsets");
    }

    #[test]
    fn errors_name_the_record_and_bad_input_is_refused() {
        let input = [batch(&[b"2"], 0), batch(&[b"4", b"bad"], 0)].concat();
        let error = transform_batches(&mut Parity, &input).unwrap_err();
        assert_eq!((error.kind, error.record_index), (ErrorKind::InvalidInput, Some(2)));
        let truncated = &input[..input.len() - 3];
        assert_eq!(transform_batches(&mut Parity, truncated).unwrap_err().kind, ErrorKind::InvalidInput);
        assert!(transform_batches(&mut Parity, &[]).unwrap().is_empty());
    }

    #[test]
    fn config_values_parse_or_name_the_key() {
        let config =
            Config::new(vec![("min".into(), "1.5".into()), ("min".into(), " 2 ".into()), ("x".into(), "y".into())]);
        assert_eq!(config.parse::<f64>("min").unwrap(), Some(2.0), "the last value wins");
        assert_eq!(config.parse::<f64>("max").unwrap(), None);
        assert!(config.parse::<f64>("x").unwrap_err().message.contains("x="));
        assert!(config.require("field").unwrap_err().message.contains("field"));
    }
}
