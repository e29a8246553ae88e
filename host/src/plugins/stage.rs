//! A plugin as the broker's resources name it (a stage: plugin, version, configuration), loaded
//! into an instance, and the slot an instance lives in between calls: every call runs off the
//! async runtime (plugins compile and run for milliseconds) and the instance comes back after it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::catalog::CatalogError;
use super::{PluginCatalog, PluginError, PluginInstance, PluginLimits};

/// One plugin of a pipeline, a bridge, a mirror or the device listener, with its configuration.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct StageSpec {
    pub plugin: String,
    /// The newest stored version when not given; stored resolved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub config: BTreeMap<String, String>,
}

impl StageSpec {
    pub fn label(&self) -> String {
        format!("{}@{}", self.plugin, self.version.as_deref().unwrap_or("newest"))
    }
}

/// Why a stage could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// No such plugin or version stored.
    #[error(transparent)]
    Resolve(CatalogError),
    /// `label` (`name@version`) does not compile.
    #[error("{label}: {source}")]
    Compile { label: String, source: CatalogError },
    /// `label` does not instantiate or its `init` refused the configuration.
    #[error("{label}: {source}")]
    Instantiate { label: String, source: PluginError },
}

/// Loads stage `stage` (its version resolved, else the newest) as a configured instance with
/// `limits`; returns its `name@version` too. Blocking: loading may compile.
pub fn load_instance(
    catalog: &PluginCatalog,
    stage: &StageSpec,
    limits: PluginLimits,
) -> Result<(String, PluginInstance), LoadError> {
    let artifact = catalog.resolve(&stage.plugin, stage.version.as_deref()).map_err(LoadError::Resolve)?;
    let label = artifact.label();
    let compiled = match catalog.load(&artifact) {
        Ok(compiled) => compiled,
        Err(CatalogError::Plugin(source)) => return Err(LoadError::Instantiate { label, source }),
        Err(source) => return Err(LoadError::Compile { label, source }),
    };
    let config = stage.config.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    match PluginInstance::new(catalog.runtime(), &compiled, config, limits) {
        Ok(instance) => Ok((label, instance)),
        Err(source) => Err(LoadError::Instantiate { label, source }),
    }
}

/// Loads a stage off the async runtime.
pub async fn load_off_runtime(
    catalog: &PluginCatalog,
    stage: &StageSpec,
    limits: PluginLimits,
) -> Result<(String, PluginInstance), SlotError<LoadError>> {
    let (catalog, stage) = (catalog.clone(), stage.clone());
    match tokio::task::spawn_blocking(move || load_instance(&catalog, &stage, limits)).await {
        Ok(loaded) => loaded.map_err(SlotError::Failed),
        Err(e) => Err(SlotError::Lost(e.to_string())),
    }
}

/// Why a call through a [`Slot`] gave no result.
#[derive(Debug, thiserror::Error)]
pub enum SlotError<E> {
    /// Nothing is loaded in the slot.
    #[error("no plugin is loaded")]
    Empty,
    /// The call's task failed (it panicked): the instance went with it.
    #[error("the plugin's task failed: {0}")]
    Lost(String),
    /// The call ran and failed.
    #[error(transparent)]
    Failed(E),
}

/// Where a loaded instance (or a chain of them) waits between calls.
#[derive(Debug)]
pub struct Slot<T> {
    held: Option<T>,
}

impl<T> Default for Slot<T> {
    fn default() -> Self {
        Slot { held: None }
    }
}

/// What a [`Slot`] does with its instance after a call that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFailure {
    /// Keep it: the plugin recovers by itself (a trap gets a fresh store on the next call).
    Keep,
    /// Drop it: the next call loads the plugin afresh.
    Drop,
}

impl<T: Send + 'static> Slot<T> {
    pub fn new(held: T) -> Self {
        Slot { held: Some(held) }
    }

    pub fn is_loaded(&self) -> bool {
        self.held.is_some()
    }

    pub fn get(&self) -> Option<&T> {
        self.held.as_ref()
    }

    pub fn get_mut(&mut self) -> Option<&mut T> {
        self.held.as_mut()
    }

    pub fn put(&mut self, held: T) {
        self.held = Some(held);
    }

    pub fn take(&mut self) -> Option<T> {
        self.held.take()
    }

    /// Runs `call` on the instance on a blocking thread and puts the instance back, unless the
    /// call failed and `after_failure` says to drop it. `call` takes what it needs by value and
    /// may hand it back in its output, so nothing is copied for the trip.
    pub async fn call<R, E>(
        &mut self,
        after_failure: AfterFailure,
        call: impl FnOnce(&mut T) -> Result<R, E> + Send + 'static,
    ) -> Result<R, SlotError<E>>
    where
        R: Send + 'static,
        E: Send + 'static,
    {
        let mut held = self.held.take().ok_or(SlotError::Empty)?;
        let joined = tokio::task::spawn_blocking(move || {
            let result = call(&mut held);
            (held, result)
        })
        .await;
        let (held, result) = joined.map_err(|e| SlotError::Lost(e.to_string()))?;
        if result.is_ok() || after_failure == AfterFailure::Keep {
            self.held = Some(held);
        }
        result.map_err(SlotError::Failed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_slot_keeps_its_instance_across_calls_and_loses_it_as_told() {
        let mut slot = Slot::new(vec![1u8]);
        let pushed = slot.call(AfterFailure::Drop, |held| Ok::<_, ()>(held.len())).await.map_err(drop);
        assert_eq!(pushed, Ok(1));
        let failed = slot.call(AfterFailure::Keep, |_| Err::<(), _>("refused")).await;
        assert!(matches!(failed, Err(SlotError::Failed("refused"))));
        assert!(slot.is_loaded(), "kept after a failure when told to");
        let failed = slot.call(AfterFailure::Drop, |_| Err::<(), _>("refused")).await;
        assert!(matches!(failed, Err(SlotError::Failed(_))));
        assert!(!slot.is_loaded(), "dropped after a failure when told to");
        assert!(matches!(slot.call(AfterFailure::Keep, |_| Ok::<(), ()>(())).await, Err(SlotError::Empty)));
        slot.put(vec![]);
        let lost = slot.call(AfterFailure::Keep, |_| -> Result<(), ()> { panic!("a plugin call panics") }).await;
        assert!(matches!(lost, Err(SlotError::Lost(_))));
        assert!(!slot.is_loaded(), "a panicking call takes the instance with it");
    }
}
