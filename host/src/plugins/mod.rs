//! The plugin runtime: WebAssembly components of the `rill:plugin` contract (`wit/plugin.wit`),
//! run by wasmtime, one call per record batch, each call on a budget.
//!
//! - One [`PluginRuntime`] (one `wasmtime::Engine`) per process: component model on, fuel on,
//!   `concurrency_support(false)` (the default routes every sync call through the async machinery,
//!   measured at ~450 ns a call), pooling allocator.
//! - [`PluginRuntime::compile`] finds which kind of plugin a component is (transform,
//!   partitioner, ingest) from what it exports, before anything runs, and names the expected and
//!   found versions when the contract's version differs.
//! - A [`PluginInstance`] owns one `Store`: every call gets [`PluginLimits::fuel_per_call`] and
//!   the instance's memory is capped ([`PluginLimits::memory_bytes`]); a trap (endless loop,
//!   allocation bomb, panic) fails that call with an error and the next call gets a fresh
//!   instance, configured again and restored to the last committed state. The broker never stops
//!   for a plugin.
//! - What a plugin returns is validated and, for batches, sealed with CRCs here ([`output`]).

pub mod catalog;
mod instance;
mod output;
pub mod stage;

pub use catalog::{PluginArtifact, PluginCatalog};
pub use instance::{PluginInstance, describe};
pub use stage::{AfterFailure, LoadError, Slot, SlotError, StageSpec, load_instance, load_off_runtime};

/// Host bindings, one module per world; they share the `log` import, linked once.
mod bindings {
    pub mod transform {
        wasmtime::component::bindgen!({ path: "../wit", world: "transform-plugin" });
    }
    pub mod partitioner {
        wasmtime::component::bindgen!({ path: "../wit", world: "partitioner-plugin" });
    }
    pub mod ingest {
        wasmtime::component::bindgen!({ path: "../wit", world: "ingest-plugin" });
    }
}

use std::sync::Arc;

use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, StoreLimits};

use crate::limits::{
    PLUGIN_FUEL_PER_CALL_DEFAULT, PLUGIN_INSTANCES_MAX, PLUGIN_LOG_MESSAGE_BYTES_MAX, PLUGIN_MEMORY_BYTES_DEFAULT,
};
use bindings::transform::rill::plugin::log::{Host as LogHost, Level};

/// The contract this broker serves.
pub const CONTRACT_PACKAGE: &str = "rill:plugin";
pub const CONTRACT_VERSION: &str = "0.1.0";

/// Budgets for one plugin instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PluginLimits {
    pub fuel_per_call: u64,
    pub memory_bytes: usize,
}

impl Default for PluginLimits {
    fn default() -> Self {
        Self { fuel_per_call: PLUGIN_FUEL_PER_CALL_DEFAULT, memory_bytes: PLUGIN_MEMORY_BYTES_DEFAULT }
    }
}

/// The three kinds of plugin, one per world of the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PluginKind {
    Transform,
    Partitioner,
    Ingest,
}

impl PluginKind {
    const ALL: [PluginKind; 3] = [PluginKind::Transform, PluginKind::Partitioner, PluginKind::Ingest];

    /// The contract interface a plugin of this kind exports.
    pub fn interface(self) -> &'static str {
        match self {
            PluginKind::Transform => "transform",
            PluginKind::Partitioner => "partitioner",
            PluginKind::Ingest => "ingest",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PluginError {
    #[error("not a plugin component: {0}")]
    Invalid(String),
    #[error("the component exports {found}; this broker serves {expected}")]
    Version { expected: String, found: String },
    #[error("plugin {plugin} is a {found:?} plugin; a {expected:?} plugin is needed here")]
    WrongKind { plugin: String, expected: PluginKind, found: PluginKind },
    #[error("plugin {plugin} refused its configuration: {message}")]
    Config { plugin: String, message: String },
    #[error("plugin {plugin} trapped: {reason}")]
    Trap { plugin: String, reason: String },
    #[error("plugin {plugin}: {kind:?}: {message}{}", record_index.map(|i| format!(" (record {i})")).unwrap_or_default())]
    Returned { plugin: String, kind: ErrorKind, message: String, record_index: Option<u32> },
    #[error("plugin {plugin} returned invalid output: {reason}")]
    BadOutput { plugin: String, reason: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    InvalidInput,
    Retryable,
    Fatal,
}

/// What a plugin says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginMetadata {
    pub name: String,
    pub version: String,
    pub kind: PluginKind,
    pub stateful: bool,
}

/// One raw message for an ingest plugin (an MQTT publish).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceMessage {
    /// Shared with the buffer it arrived in (an MQTT publish's).
    pub payload: bytes::Bytes,
    pub topic: String,
    pub qos: u8,
    pub retained: bool,
    pub properties: Vec<(String, String)>,
    pub received_ms: i64,
}

/// The process's plugin engine.
#[derive(Clone)]
pub struct PluginRuntime {
    engine: Engine,
    linker: Arc<Linker<HostState>>,
    pooled: bool,
}

/// The pool: every instance the broker may hold at once, with room for the largest memory.
fn default_pooling() -> PoolingAllocationConfig {
    let mut pooling = PoolingAllocationConfig::default();
    pooling
        .total_component_instances(PLUGIN_INSTANCES_MAX)
        .total_core_instances(PLUGIN_INSTANCES_MAX * 4)
        .total_memories(PLUGIN_INSTANCES_MAX * 2)
        .total_tables(PLUGIN_INSTANCES_MAX * 4)
        .max_memory_size(PLUGIN_MEMORY_BYTES_DEFAULT.max(64 << 20) * 4);
    pooling
}

fn engine_config(pooling: Option<PoolingAllocationConfig>, target: Option<&str>) -> Result<Config, String> {
    let mut config = Config::new();
    if let Some(target) = target {
        config.target(target).map_err(|e| format!("cannot compile plugins for {target}: {e:#}"))?;
    }
    config.wasm_component_model(true).consume_fuel(true).concurrency_support(false);
    config.allocation_strategy(match pooling {
        Some(pooling) => InstanceAllocationStrategy::Pooling(pooling),
        None => InstanceAllocationStrategy::OnDemand,
    });
    Ok(config)
}

impl std::fmt::Debug for PluginRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginRuntime").finish_non_exhaustive()
    }
}

/// A compiled component, checked against the contract, with its kind.
#[derive(Clone)]
pub struct CompiledPlugin {
    component: Component,
    kind: PluginKind,
}

impl CompiledPlugin {
    pub fn kind(&self) -> PluginKind {
        self.kind
    }
}

impl std::fmt::Debug for CompiledPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledPlugin").field("kind", &self.kind).finish_non_exhaustive()
    }
}

impl PluginRuntime {
    pub fn new() -> Result<Self, String> {
        Self::with_pooling(default_pooling(), None)
    }

    /// An engine that compiles plugins for `target`, a wasmtime target such as `pulley64`
    /// (Pulley, wasmtime's interpreter) instead of this machine: `rill bench plugins --pulley`
    /// measures with it what plugins cost where they run on Pulley (armv7 gateways). Where
    /// Cranelift has a backend, Pulley needs the `pulley` feature.
    pub fn for_target(target: &str) -> Result<Self, String> {
        Self::with_pooling(default_pooling(), Some(target))
    }

    /// An engine that takes instances from the pooling allocator `pooling` describes, or, where
    /// the machine cannot reserve the address space that needs (32-bit targets, kernels with a
    /// 39-bit virtual address space), one that allocates them on demand: slower to instantiate,
    /// the same otherwise. One log line says which.
    fn with_pooling(pooling: PoolingAllocationConfig, target: Option<&str>) -> Result<Self, String> {
        let (engine, pooled) = match Engine::new(&engine_config(Some(pooling), target)?) {
            Ok(engine) => {
                tracing::info!("plugin instances come from the pooling allocator");
                (engine, true)
            }
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"),
                    "plugin instances are allocated on demand: the pooling allocator cannot reserve its address space here");
                let engine = Engine::new(&engine_config(None, target)?)
                    .map_err(|e| format!("cannot start the plugin engine: {e:#}"))?;
                (engine, false)
            }
        };
        let mut linker = Linker::new(&engine);
        // Every world imports the same `log`: linking it once serves all three.
        bindings::transform::TransformPlugin::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |state| {
            state
        })
        .map_err(|e| format!("cannot link the host's log: {e:#}"))?;
        Ok(Self { engine, linker: Arc::new(linker), pooled })
    }

    /// Whether instances come from the pooling allocator (else: allocated on demand).
    pub fn is_pooled(&self) -> bool {
        self.pooled
    }

    /// Compiles `bytes` (15–45 ms for a small component) and tells its kind from its exports.
    pub fn compile(&self, bytes: &[u8]) -> Result<CompiledPlugin, PluginError> {
        let component = Component::new(&self.engine, bytes).map_err(|e| PluginError::Invalid(format!("{e:#}")))?;
        self.checked(component)
    }

    fn checked(&self, component: Component) -> Result<CompiledPlugin, PluginError> {
        let exports: Vec<String> =
            component.component_type().exports(&self.engine).map(|(name, _)| name.to_owned()).collect();
        let kind = kind_of(&exports)?;
        Ok(CompiledPlugin { component, kind })
    }

    /// Identifies the machine code this engine makes (wasmtime version, settings, CPU features):
    /// a compiled component is reused only by an engine with the same hash.
    pub fn compatibility_hash(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        self.engine.precompile_compatibility_hash().hash(&mut hasher);
        hasher.finish()
    }

    /// The compiled form of `compiled`, for [`load_compiled`](Self::load_compiled).
    pub fn serialize(&self, compiled: &CompiledPlugin) -> Result<Vec<u8>, PluginError> {
        compiled.component.serialize().map_err(|e| PluginError::Invalid(format!("cannot serialize: {e:#}")))
    }

    /// Loads a component this process's engine compiled earlier (see [`catalog`]'s disk cache).
    ///
    /// Only for files written by [`serialize`](Self::serialize) into the broker's own data
    /// directory under this engine's [`compatibility_hash`](Self::compatibility_hash).
    #[allow(unsafe_code)] // the one unsafe call of the plugin runtime: see SAFETY below
    pub fn load_compiled(&self, path: &std::path::Path) -> Result<CompiledPlugin, PluginError> {
        // SAFETY: wasmtime runs the machine code in the file as it is. The file comes from
        // `serialize` by an engine with the same compatibility hash (it is in the file name, and
        // wasmtime checks its own header too), written to a temporary name and renamed into the
        // data directory, which only the broker writes to. Anyone who can rewrite that directory
        // can rewrite the database and the binary's inputs as well.
        let component = unsafe { Component::deserialize_file(&self.engine, path) }
            .map_err(|e| PluginError::Invalid(format!("cannot load {}: {e:#}", path.display())))?;
        self.checked(component)
    }
}

/// The plugin kind whose interface, at this broker's contract version, `exports` holds.
fn kind_of(exports: &[String]) -> Result<PluginKind, PluginError> {
    let name = |kind: PluginKind| format!("{CONTRACT_PACKAGE}/{}@{CONTRACT_VERSION}", kind.interface());
    if let Some(kind) = PluginKind::ALL.into_iter().find(|kind| exports.contains(&name(*kind))) {
        return Ok(kind);
    }
    // Another version of the contract, or something else entirely.
    let expected = PluginKind::ALL.map(name).join(" or ");
    let found = exports
        .iter()
        .find(|export| export.starts_with(&format!("{CONTRACT_PACKAGE}/")))
        .cloned()
        .unwrap_or_else(|| if exports.is_empty() { "nothing".to_owned() } else { exports.join(", ") });
    Err(PluginError::Version { expected, found })
}

/// What a plugin's store holds: its limits and its name for log lines.
#[derive(Debug)]
pub struct HostState {
    limits: StoreLimits,
    plugin: String,
}

impl LogHost for HostState {
    fn log(&mut self, level: Level, message: String) {
        let mut message = message;
        if message.len() > PLUGIN_LOG_MESSAGE_BYTES_MAX {
            let mut cut = PLUGIN_LOG_MESSAGE_BYTES_MAX;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
        }
        let plugin = self.plugin.as_str();
        match level {
            Level::Trace => tracing::trace!(plugin, "{message}"),
            Level::Debug => tracing::debug!(plugin, "{message}"),
            Level::Info => tracing::info!(plugin, "{message}"),
            Level::Warn => tracing::warn!(plugin, "{message}"),
            Level::Error => tracing::error!(plugin, "{message}"),
        }
    }
}

impl bindings::transform::rill::plugin::types::Host for HostState {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kind_comes_from_the_exports_and_other_versions_are_named() {
        let exports = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        let partitioner = exports(&["rill:plugin/plugin@0.1.0", "rill:plugin/partitioner@0.1.0"]);
        assert_eq!(kind_of(&partitioner), Ok(PluginKind::Partitioner));
        let newer = exports(&["rill:plugin/plugin@0.2.0", "rill:plugin/transform@0.2.0"]);
        match kind_of(&newer) {
            Err(PluginError::Version { expected, found }) => {
                assert!(expected.contains("rill:plugin/transform@0.1.0"), "{expected}");
                assert_eq!(found, "rill:plugin/plugin@0.2.0");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(kind_of(&[]), Err(PluginError::Version { found, .. }) if found == "nothing"));
    }

    /// Where the pool's address space cannot be reserved (a 32-bit gateway; here, a pool that no
    /// 64-bit address space holds either), plugins still run: instances are allocated on demand.
    #[test]
    fn an_unreservable_pool_falls_back_to_on_demand_instances() {
        let mut huge = default_pooling();
        huge.total_memories(1 << 20).max_memory_size(1 << 32);
        let runtime = PluginRuntime::with_pooling(huge, None).expect("the engine starts anyway");
        assert!(!runtime.is_pooled());
        assert!(PluginRuntime::new().expect("starts").is_pooled(), "the default pool fits this machine");
    }
}
