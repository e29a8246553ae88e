//! One running plugin: a `Store`, an instance of its world, and what it takes to rebuild both
//! after a trap (its configuration and its last committed state).

use wasmtime::component::{ComponentType, Func, Instance, Lower, TypedFunc};
use wasmtime::{Store, StoreLimitsBuilder};

use super::bindings::{ingest, partitioner, transform};
use super::output::seal_output;
use super::{
    CONTRACT_PACKAGE, CONTRACT_VERSION, CompiledPlugin, ErrorKind, HostState, PluginError, PluginKind, PluginLimits,
    PluginMetadata, PluginRuntime, SourceMessage,
};

/// An instance of one of the three worlds.
enum World {
    Transform(transform::TransformPlugin),
    Partitioner(partitioner::PartitionerPlugin),
    /// The bindings, and the `ingest` export, called with messages lent ([`LentMessage`]).
    Ingest(ingest::IngestPlugin, Func),
}

/// Evaluates `$call` with `$iface` bound to the `plugin` interface of whichever world `$world`
/// is. The generated types differ per world, so `$call` must map them to one type.
macro_rules! with_plugin {
    ($world:expr, |$iface:ident| $call:expr) => {
        match $world {
            World::Transform(w) => {
                let $iface = w.rill_plugin_plugin();
                $call
            }
            World::Partitioner(w) => {
                let $iface = w.rill_plugin_plugin();
                $call
            }
            World::Ingest(w, _) => {
                let $iface = w.rill_plugin_plugin();
                $call
            }
        }
    };
}

macro_rules! error_kinds {
    ($($world:ident),*) => {$(
        impl From<$world::rill::plugin::types::ErrorKind> for ErrorKind {
            fn from(kind: $world::rill::plugin::types::ErrorKind) -> Self {
                use $world::rill::plugin::types::ErrorKind as K;
                match kind {
                    K::InvalidInput => ErrorKind::InvalidInput,
                    K::Retryable => ErrorKind::Retryable,
                    K::Fatal => ErrorKind::Fatal,
                }
            }
        }
    )*};
}

error_kinds!(transform, partitioner, ingest);

/// A plugin ready for calls of its kind.
pub struct PluginInstance {
    runtime: PluginRuntime,
    compiled: CompiledPlugin,
    config: Vec<(String, String)>,
    limits: PluginLimits,
    metadata: PluginMetadata,
    /// The state a fresh instance starts from (stateful plugins): the last one committed.
    committed_state: Option<Vec<u8>>,
    /// `None` after a trap, until the next call builds a fresh one.
    live: Option<(Store<HostState>, World)>,
}

impl std::fmt::Debug for PluginInstance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginInstance").field("metadata", &self.metadata).finish_non_exhaustive()
    }
}

fn trapped(plugin: &str, error: &wasmtime::Error) -> PluginError {
    PluginError::Trap { plugin: plugin.to_owned(), reason: trap_reason(error) }
}

/// Why a call trapped, in words an operator can act on.
fn trap_reason(error: &wasmtime::Error) -> String {
    match error.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::OutOfFuel) => {
            "ran out of fuel (an endless loop, or a batch too big for its fuel budget)".into()
        }
        Some(wasmtime::Trap::UnreachableCodeReached) => "panicked (unreachable code reached)".into(),
        Some(trap) => format!("{trap}"),
        None => format!("{error:#}"),
    }
}

fn returned(plugin: &str, (kind, message): (ErrorKind, String), record_index: Option<u32>) -> PluginError {
    PluginError::Returned { plugin: plugin.to_owned(), kind, message, record_index }
}

/// A fresh instance and what it says about itself (`describe`), not yet configured.
fn instantiate_bare(
    runtime: &PluginRuntime,
    compiled: &CompiledPlugin,
    limits: PluginLimits,
    name: &str,
) -> Result<(Store<HostState>, World, PluginMetadata), PluginError> {
    let store_limits = StoreLimitsBuilder::new().memory_size(limits.memory_bytes).trap_on_grow_failure(true).build();
    let mut store = Store::new(&runtime.engine, HostState { limits: store_limits, plugin: name.to_owned() });
    store.limiter(|state| &mut state.limits);
    store.set_fuel(limits.fuel_per_call).map_err(|e| trapped(name, &e))?;
    let refused = |e: wasmtime::Error| PluginError::Invalid(format!("cannot instantiate: {e:#}"));
    let (component, linker) = (&compiled.component, runtime.linker.as_ref());
    let world = match compiled.kind {
        PluginKind::Transform => {
            World::Transform(transform::TransformPlugin::instantiate(&mut store, component, linker).map_err(refused)?)
        }
        PluginKind::Partitioner => World::Partitioner(
            partitioner::PartitionerPlugin::instantiate(&mut store, component, linker).map_err(refused)?,
        ),
        PluginKind::Ingest => {
            let instance = linker.instantiate(&mut store, component).map_err(refused)?;
            let bindings = ingest::IngestPlugin::new(&mut store, &instance).map_err(refused)?;
            let export = ingest_export(&mut store, &instance).map_err(refused)?;
            // The lent type is checked against the plugin's export once, here.
            ingest_func(&mut store, export).map_err(refused)?;
            World::Ingest(bindings, export)
        }
    };
    let trap = |e: wasmtime::Error| trapped(name, &e);
    let (plugin_name, version, stateful) = match &world {
        World::Transform(w) => {
            w.rill_plugin_plugin().call_describe(&mut store).map(|m| (m.name, m.version, m.stateful))
        }
        World::Partitioner(w) => {
            w.rill_plugin_plugin().call_describe(&mut store).map(|m| (m.name, m.version, m.stateful))
        }
        World::Ingest(w, _) => {
            w.rill_plugin_plugin().call_describe(&mut store).map(|m| (m.name, m.version, m.stateful))
        }
    }
    .map_err(trap)?;
    store.data_mut().plugin = format!("{plugin_name}@{version}");
    Ok((store, world, PluginMetadata { name: plugin_name, version, kind: compiled.kind, stateful }))
}

/// A fresh instance, configured (`init`).
fn instantiate(
    runtime: &PluginRuntime,
    compiled: &CompiledPlugin,
    config: &[(String, String)],
    limits: PluginLimits,
    name: &str,
) -> Result<(Store<HostState>, World, PluginMetadata), PluginError> {
    let (mut store, world, metadata) = instantiate_bare(runtime, compiled, limits, name)?;
    let initialized = with_plugin!(&world, |p| p.call_init(&mut store, config).map(|r| r.map_err(|e| e.message)))
        .map_err(|e| trapped(name, &e))?;
    initialized.map_err(|message| PluginError::Config { plugin: metadata.name.clone(), message })?;
    Ok((store, world, metadata))
}

/// What a compiled plugin says about itself, from an instance that is not configured.
pub fn describe(runtime: &PluginRuntime, compiled: &CompiledPlugin) -> Result<PluginMetadata, PluginError> {
    instantiate_bare(runtime, compiled, PluginLimits::default(), "plugin").map(|(_, _, metadata)| metadata)
}

impl PluginInstance {
    /// Instantiates and configures the plugin (`init`), and reads its metadata.
    pub fn new(
        runtime: &PluginRuntime,
        compiled: &CompiledPlugin,
        config: Vec<(String, String)>,
        limits: PluginLimits,
    ) -> Result<Self, PluginError> {
        let (store, world, metadata) = instantiate(runtime, compiled, &config, limits, "plugin")?;
        Ok(Self {
            runtime: runtime.clone(),
            compiled: compiled.clone(),
            config,
            limits,
            metadata,
            committed_state: None,
            live: Some((store, world)),
        })
    }

    pub fn metadata(&self) -> &PluginMetadata {
        &self.metadata
    }

    /// The live instance, or a fresh one (configured, and restored to the committed state) after
    /// a trap; its fuel is topped up for one call.
    fn live(&mut self) -> Result<(Store<HostState>, World), PluginError> {
        let name = self.metadata.name.clone();
        let (mut store, world) = match self.live.take() {
            Some(live) => live,
            None => {
                let (mut store, world, _) =
                    instantiate(&self.runtime, &self.compiled, &self.config, self.limits, &name)?;
                if let Some(state) = &self.committed_state {
                    let restored = with_plugin!(&world, |p| p
                        .call_restore(&mut store, state)
                        .map(|r| r.map_err(|e| (ErrorKind::from(e.kind), e.message))))
                    .map_err(|e| trapped(&name, &e))?;
                    restored.map_err(|(kind, message)| {
                        returned(&name, (kind, format!("cannot restore its committed state: {message}")), None)
                    })?;
                }
                (store, world)
            }
        };
        store.set_fuel(self.limits.fuel_per_call).map_err(|e| trapped(&name, &e))?;
        Ok((store, world))
    }

    fn wrong_kind(&self, expected: PluginKind) -> PluginError {
        PluginError::WrongKind { plugin: self.metadata.name.clone(), expected, found: self.metadata.kind }
    }

    /// Runs a transform plugin over `input` (uncompressed v2 batches); returns its output,
    /// validated and with CRCs computed.
    pub fn transform(
        &mut self,
        topic: &str,
        partition: u32,
        base_offset: u64,
        input: &[u8],
    ) -> Result<Vec<u8>, PluginError> {
        if self.metadata.kind != PluginKind::Transform {
            return Err(self.wrong_kind(PluginKind::Transform));
        }
        let name = self.metadata.name.clone();
        let (mut store, world) = self.live()?;
        let World::Transform(instance) = &world else { unreachable!("the kind was checked") };
        let context = transform::rill::plugin::types::BatchContext { topic: topic.to_owned(), partition, base_offset };
        // The generated binding takes a `&Vec<u8>`: one copy of the batch, small beside lowering
        // it into the instance's memory.
        let input = input.to_vec();
        // After a trap wasmtime refuses to enter the instance again: it is dropped here.
        let answer = instance
            .rill_plugin_transform()
            .call_transform(&mut store, &context, &input)
            .map_err(|e| trapped(&name, &e))?;
        self.live = Some((store, world));
        let output = answer.map_err(|e| returned(&name, (e.kind.into(), e.message), e.record_index))?;
        seal_output(output).map_err(|reason| PluginError::BadOutput { plugin: name, reason })
    }

    /// Runs a partitioner plugin: one partition below `partitions` per record of `input`.
    pub fn partition(
        &mut self,
        topic: &str,
        base_offset: u64,
        input: &[u8],
        partitions: u32,
        records: usize,
    ) -> Result<Vec<u32>, PluginError> {
        if self.metadata.kind != PluginKind::Partitioner {
            return Err(self.wrong_kind(PluginKind::Partitioner));
        }
        let name = self.metadata.name.clone();
        let (mut store, world) = self.live()?;
        let World::Partitioner(instance) = &world else { unreachable!("the kind was checked") };
        let context =
            partitioner::rill::plugin::types::BatchContext { topic: topic.to_owned(), partition: 0, base_offset };
        let input = input.to_vec();
        let answer = instance
            .rill_plugin_partitioner()
            .call_partition(&mut store, &context, &input, partitions)
            .map_err(|e| trapped(&name, &e))?;
        self.live = Some((store, world));
        let chosen = answer.map_err(|e| returned(&name, (e.kind.into(), e.message), e.record_index))?;
        let bad = |reason: String| PluginError::BadOutput { plugin: name.clone(), reason };
        if chosen.len() != records {
            return Err(bad(format!("{} partitions for {records} records", chosen.len())));
        }
        if let Some(index) = chosen.iter().position(|&p| p >= partitions) {
            return Err(bad(format!("record {index}: partition {} of {partitions}", chosen[index])));
        }
        Ok(chosen)
    }

    /// Runs an ingest plugin over `messages`; returns their records as sealed batches.
    pub fn ingest<'m>(
        &mut self,
        messages: impl IntoIterator<Item = &'m SourceMessage>,
    ) -> Result<Vec<u8>, PluginError> {
        if self.metadata.kind != PluginKind::Ingest {
            return Err(self.wrong_kind(PluginKind::Ingest));
        }
        let name = self.metadata.name.clone();
        let (mut store, world) = self.live()?;
        let World::Ingest(_, export) = &world else { unreachable!("the kind was checked") };
        let messages: Vec<LentMessage<'_>> = messages.into_iter().map(LentMessage::from).collect();
        let (answer,) = ingest_func(&mut store, *export)
            .and_then(|call| call.call(&mut store, (&messages,)))
            .map_err(|e| trapped(&name, &e))?;
        self.live = Some((store, world));
        let output = answer.map_err(|e| returned(&name, (e.kind.into(), e.message), e.record_index))?;
        seal_output(output).map_err(|reason| PluginError::BadOutput { plugin: name, reason })
    }

    /// The plugin's state now (empty for stateless plugins), to commit with the progress it
    /// belongs to; then [`commit_state`](Self::commit_state) it.
    pub fn snapshot(&mut self) -> Result<Vec<u8>, PluginError> {
        let name = self.metadata.name.clone();
        let (mut store, world) = self.live()?;
        let state = with_plugin!(&world, |p| p.call_snapshot(&mut store)).map_err(|e| trapped(&name, &e))?;
        self.live = Some((store, world));
        Ok(state)
    }

    /// Records `state` as durable: a fresh instance (after a trap) starts from it.
    pub fn commit_state(&mut self, state: Vec<u8>) {
        self.committed_state = Some(state);
    }

    /// Puts the plugin back to `state` (after a restart: the state committed with the progress).
    pub fn restore(&mut self, state: Vec<u8>) -> Result<(), PluginError> {
        self.committed_state = Some(state);
        // A fresh instance restores the committed state as it starts.
        self.live = None;
        let live = self.live()?;
        self.live = Some(live);
        Ok(())
    }
}

/// An ingest message as the `source-message` record of the contract, borrowing from the host's
/// [`SourceMessage`]: lowering copies the payload once, into the plugin's memory. (The owned
/// bindings would copy it into a `Vec` first; wasmtime's borrowing bindings do not build for
/// this contract.)
#[derive(ComponentType, Lower)]
#[component(record)]
struct LentMessage<'a> {
    payload: &'a [u8],
    topic: &'a str,
    qos: u8,
    retained: bool,
    properties: &'a [(String, String)],
    #[component(name = "received-ms")]
    received_ms: i64,
}

impl<'a> From<&'a SourceMessage> for LentMessage<'a> {
    fn from(m: &'a SourceMessage) -> Self {
        LentMessage {
            payload: &m.payload,
            topic: &m.topic,
            qos: m.qos,
            retained: m.retained,
            properties: &m.properties,
            received_ms: m.received_ms,
        }
    }
}

type IngestAnswer = Result<Vec<u8>, ingest::rill::plugin::types::Error>;

/// The plugin's `ingest` export.
fn ingest_export(store: &mut Store<HostState>, instance: &Instance) -> wasmtime::Result<Func> {
    let interface = format!("{CONTRACT_PACKAGE}/{}@{CONTRACT_VERSION}", PluginKind::Ingest.interface());
    let missing = || wasmtime::format_err!("no export {interface}#ingest");
    let (_, interface_index) = instance.get_export(&mut *store, None, &interface).ok_or_else(missing)?;
    let (_, func_index) = instance.get_export(&mut *store, Some(&interface_index), "ingest").ok_or_else(missing)?;
    instance.get_func(&mut *store, func_index).ok_or_else(missing)
}

/// `export` typed for lent messages (a type check against the plugin's signature).
fn ingest_func<'a>(
    store: &mut Store<HostState>,
    export: Func,
) -> wasmtime::Result<TypedFunc<(&'a [LentMessage<'a>],), (IngestAnswer,)>> {
    export.typed(&*store)
}
