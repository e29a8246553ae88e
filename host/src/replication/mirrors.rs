//! The mirrors of an edge node as a [`Registry`] kind: from the config file (stored at start)
//! and the admin API (`/v1/mirrors`), kept in the store so they run again after a restart.

use super::edge::{ACKS_KIND, MirrorStatus, MirrorTask, holder, with_lag};
use super::filter::{self, MirrorFilter};
use super::spec::{InvalidSpec, MirrorSpec};
use crate::limits::MIRRORS_MAX;
use crate::plugins::PluginCatalog;
use crate::registry::{Kind, Registry, RegistryError};
use crate::storage::{DocumentWrite, Store};
use serde::{Deserialize, Serialize};

/// The storage kind of mirror documents.
pub const KIND: &str = "mirror";

/// A mirror as the admin API shows it: its spec (token hidden) and its state.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MirrorView {
    pub spec: MirrorSpec,
    pub status: MirrorStatus,
}

/// Every mirror of the node.
pub type Mirrors = Registry<MirrorKind>;

/// What mirrors need: the store they read and the plugins their filters run.
#[derive(Debug)]
pub struct MirrorKind {
    store: Store,
    catalog: PluginCatalog,
}

impl Mirrors {
    /// The mirrors of `store` (none runs before [`Registry::start`]).
    pub fn for_store(store: Store, catalog: PluginCatalog) -> Self {
        Registry::local(MirrorKind { store: store.clone(), catalog }, store)
    }

    /// The mirrors whose filter is plugin `name` at `version`.
    pub fn using_plugin(&self, name: &str, version: &str) -> Vec<String> {
        self.names_where(|spec, _| {
            spec.filter.as_ref().is_some_and(|f| f.plugin == name && f.version.as_deref().is_none_or(|v| v == version))
        })
    }
}

impl From<InvalidSpec> for RegistryError {
    fn from(e: InvalidSpec) -> Self {
        RegistryError::invalid(e.field, e.message)
    }
}

impl MirrorKind {
    /// Loads the filter `spec` names (a transform plugin, configured) and pins its version.
    async fn check_filter(&self, spec: &mut MirrorSpec) -> Result<(), RegistryError> {
        let Some(stage) = &mut spec.filter else { return Ok(()) };
        let artifact = self
            .catalog
            .resolve(&stage.plugin, stage.version.as_deref())
            .map_err(|e| RegistryError::invalid("filter", e))?;
        stage.version = Some(artifact.version);
        let (catalog, store, name, stage) =
            (self.catalog.clone(), self.store.clone(), spec.name.clone(), stage.clone());
        tokio::task::spawn_blocking(move || MirrorFilter::load(&catalog, &store, &name, &stage).map(drop))
            .await
            .map_err(|e| RegistryError::Unavailable(format!("the filter check failed: {e}")))?
            .map_err(|e| RegistryError::invalid("filter", e))
    }
}

impl Kind for MirrorKind {
    type Spec = MirrorSpec;
    type Prepared = ();
    type Running = MirrorTask;
    type View = MirrorView;

    const KIND: &'static str = KIND;
    const NOUN: &'static str = "mirror";
    const PLURAL: &'static str = "mirrors";
    const MAX: usize = MIRRORS_MAX;

    fn name(spec: &MirrorSpec) -> &str {
        &spec.name
    }

    async fn prepare(&self, spec: &mut MirrorSpec, others: &[&MirrorSpec]) -> Result<(), RegistryError> {
        spec.check()?;
        self.check_filter(spec).await?;
        if others.iter().any(|other| other.upstream == spec.upstream && other.edge_id == spec.edge_id) {
            // An aggregation node keeps one connection per edge: two would replace each other.
            return Err(RegistryError::Conflict(format!(
                "another mirror already connects to {} as {:?}: name all its topics in one mirror",
                spec.upstream, spec.edge_id
            )));
        }
        Ok(())
    }

    /// A configured filter that does not load yet (its plugin not uploaded) is stored as given:
    /// the mirror waits for it and says why.
    async fn admit_configured(&self, spec: &mut MirrorSpec) -> Result<(), RegistryError> {
        if let Err(e) = self.check_filter(spec).await {
            tracing::warn!(mirror = %spec.name, error = %e, "configured mirror's filter does not load yet");
        }
        Ok(spec.check()?)
    }

    async fn restore(&self, _spec: &MirrorSpec) -> Result<(), RegistryError> {
        Ok(())
    }

    /// Its acknowledged offsets and its filter's state: what it copied stays upstream.
    fn leftovers(&self, name: &str) -> Result<Vec<DocumentWrite>, RegistryError> {
        Ok([ACKS_KIND, filter::STATE_KIND]
            .map(|kind| DocumentWrite { kind: kind.into(), name: name.to_owned(), document: None })
            .to_vec())
    }

    fn run(&self, spec: MirrorSpec, _prepared: ()) -> MirrorTask {
        tracing::info!(mirror = %spec.name, upstream = %spec.upstream, topics = ?spec.topics, "mirror starting");
        MirrorTask::start(spec, self.store.clone(), self.catalog.clone())
    }

    async fn stop(&self, running: MirrorTask) {
        running.stop().await;
    }

    /// Retention no longer waits for it.
    fn removed(&self, name: &str) {
        self.store.clear_retention_floors(&holder(name));
    }

    fn view(&self, spec: &MirrorSpec, running: Option<&MirrorTask>) -> MirrorView {
        let status = match running {
            Some(task) => {
                let mut status = task.status();
                status.partitions = status.partitions.into_iter().map(|row| with_lag(&self.store, row)).collect();
                status
            }
            None => MirrorStatus {
                name: spec.name.clone(),
                upstream: spec.upstream.clone(),
                edge_id: spec.edge_id.clone(),
                link: "stopped".into(),
                ..MirrorStatus::default()
            },
        };
        MirrorView { spec: MirrorSpec { token: "********".into(), ..spec.clone() }, status }
    }
}
