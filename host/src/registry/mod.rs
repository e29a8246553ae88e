//! Rill's own resources — MQTT bridges, pipelines, mirrors — all kept the same way: a JSON spec
//! stored under a name, checked against the broker when created, started again after a restart,
//! stopped and deleted with everything stored beside it.
//!
//! A [`Registry`] holds one kind's resources: the name → entry map, the admin lock that makes
//! "check, then store, then start" one step, load-at-start and the name-taken conflict. What
//! differs between kinds is a [`Kind`]: how a spec is checked and prepared, what it stores beside
//! itself, how it runs and stops and how it looks in the admin API.
//!
//! Two seams are left for the cluster: specs persist through [`Persistence`] (today the local
//! [`Store`]), and a resource starts only where [`Placement::runs_here`] says so (today:
//! [`Everywhere`]). A replicated store and a placement that runs each resource on one node slot in
//! there without touching the kinds.

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::storage::{AppendError, DocumentWrite, ResourceError, Store};

/// Why a resource operation was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The spec is wrong; `field` names where.
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    #[error("unknown {noun} {name:?}")]
    NotFound { noun: &'static str, name: String },
    #[error("{noun} {name:?} already exists")]
    AlreadyExists { noun: &'static str, name: String },
    /// It clashes with the node's state (a limit reached, a client id taken).
    #[error("{0}")]
    Conflict(String),
    /// Reading stored specs failed.
    #[error("cannot read the stored resources: {0}")]
    Read(#[source] ResourceError),
    /// Storing or deleting failed; nothing was changed.
    #[error("cannot store: {0}")]
    Write(#[source] AppendError),
    /// The resource cannot take the operation now (it is stopping, a task failed).
    #[error("{0}")]
    Unavailable(String),
}

impl RegistryError {
    pub fn invalid(field: impl Into<String>, message: impl ToString) -> Self {
        RegistryError::Invalid { field: field.into(), message: message.to_string() }
    }
}

/// A future a [`Persistence`] returns (boxed: the registry holds it as a trait object).
pub type PersistFuture<'a> = Pin<Box<dyn Future<Output = Result<(), AppendError>> + Send + 'a>>;

/// Where specs (and what is stored beside them) are kept.
pub trait Persistence: Send + Sync + 'static {
    /// Every document of `kind`, by name.
    fn documents(&self, kind: &str) -> Result<Vec<(String, Vec<u8>)>, ResourceError>;
    fn document(&self, kind: &str, name: &str) -> Result<Option<Vec<u8>>, ResourceError>;
    /// Writes and deletes `writes`, all or nothing, in order.
    fn write(&self, writes: Vec<DocumentWrite>) -> PersistFuture<'_>;
}

impl Persistence for Store {
    fn documents(&self, kind: &str) -> Result<Vec<(String, Vec<u8>)>, ResourceError> {
        self.resources(kind)
    }

    fn document(&self, kind: &str, name: &str) -> Result<Option<Vec<u8>>, ResourceError> {
        self.resource(kind, name)
    }

    fn write(&self, writes: Vec<DocumentWrite>) -> PersistFuture<'_> {
        Box::pin(self.write_documents(writes))
    }
}

/// Which resources this node runs.
pub trait Placement: Send + Sync + 'static {
    fn runs_here(&self, kind: &str, name: &str) -> bool;
}

/// A single node runs every resource.
#[derive(Debug, Clone, Copy, Default)]
pub struct Everywhere;

impl Placement for Everywhere {
    fn runs_here(&self, _kind: &str, _name: &str) -> bool {
        true
    }
}

/// What one kind of resource does; the [`Registry`] does the rest.
pub trait Kind: Send + Sync + Sized + 'static {
    /// The document users write, stored as JSON under [`Kind::KIND`].
    type Spec: Serialize + DeserializeOwned + Clone + Send + Sync + 'static;
    /// What a resource needs to run, made while it is checked (loaded plugins, progress).
    type Prepared: Send + 'static;
    /// A running resource.
    type Running: Send + 'static;
    /// How the admin API shows one.
    type View: Serialize + Send + 'static;

    /// The storage kind of the specs (on disk: never change it).
    const KIND: &'static str;
    /// What users call one ("MQTT bridge"), and several.
    const NOUN: &'static str;
    const PLURAL: &'static str;
    /// Most resources of the kind one node holds.
    const MAX: usize;

    fn name(spec: &Self::Spec) -> &str;

    /// Checks a new resource against the broker and the kind's other resources (`others`),
    /// pinning what it resolves (plugin versions) into the spec. Runs under the admin lock.
    fn prepare(
        &self,
        spec: &mut Self::Spec,
        others: &[&Self::Spec],
    ) -> impl Future<Output = Result<Self::Prepared, RegistryError>> + Send;

    /// Checks a resource from the config file before it is stored (it may name plugins not
    /// uploaded yet, so this is looser than [`Kind::prepare`]).
    fn admit_configured(&self, spec: &mut Self::Spec) -> impl Future<Output = Result<(), RegistryError>> + Send;

    /// Makes what a stored resource needs to run again (at start).
    fn restore(&self, spec: &Self::Spec) -> impl Future<Output = Result<Self::Prepared, RegistryError>> + Send;

    /// Documents stored with a new resource's spec, in the same transaction.
    fn companions(&self, _spec: &Self::Spec, _prepared: &Self::Prepared) -> Vec<DocumentWrite> {
        Vec::new()
    }

    /// Deletions of everything stored beside the spec of resource `name`: written when it is
    /// removed, and before a new one of the same name is stored (a namesake starts clean).
    fn leftovers(&self, name: &str) -> Result<Vec<DocumentWrite>, RegistryError>;

    fn run(&self, spec: Self::Spec, prepared: Self::Prepared) -> Self::Running;

    /// Stops a running resource and waits for it (it finishes what it is committing).
    fn stop(&self, running: Self::Running) -> impl Future<Output = ()> + Send;

    /// After a removal is stored: drops what the node holds for it in memory.
    fn removed(&self, _name: &str) {}

    /// `running` is `None` where the resource runs on another node.
    fn view(&self, spec: &Self::Spec, running: Option<&Self::Running>) -> Self::View;
}

struct Entry<K: Kind> {
    spec: K::Spec,
    running: Option<K::Running>,
}

/// One kind's resources on this node.
pub struct Registry<K: Kind> {
    inner: Arc<Inner<K>>,
}

impl<K: Kind> Clone for Registry<K> {
    fn clone(&self) -> Self {
        Registry { inner: Arc::clone(&self.inner) }
    }
}

impl<K: Kind> std::fmt::Debug for Registry<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").field("kind", &K::KIND).field("names", &self.names()).finish()
    }
}

struct Inner<K: Kind> {
    kind: K,
    persistence: Arc<dyn Persistence>,
    placement: Arc<dyn Placement>,
    entries: Mutex<BTreeMap<String, Entry<K>>>,
    /// Admin operations one at a time: create checks the name, then stores it.
    admin: tokio::sync::Mutex<()>,
}

impl<K: Kind> Registry<K> {
    pub fn new(kind: K, persistence: Arc<dyn Persistence>, placement: Arc<dyn Placement>) -> Self {
        Registry {
            inner: Arc::new(Inner {
                kind,
                persistence,
                placement,
                entries: Mutex::default(),
                admin: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// A registry of one node's own store, running everything.
    pub fn local(kind: K, store: Store) -> Self {
        Self::new(kind, Arc::new(store), Arc::new(Everywhere))
    }

    pub fn kind(&self) -> &K {
        &self.inner.kind
    }

    fn entries(&self) -> MutexGuard<'_, BTreeMap<String, Entry<K>>> {
        self.inner.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn names(&self) -> Vec<String> {
        self.entries().keys().cloned().collect()
    }

    /// Stores the config file's resources (replacing stored ones of the same name), then starts
    /// every stored one that runs here. One that cannot be stored does not keep the others from
    /// starting: the first such error is returned after they run. Returns how many run.
    pub async fn start(&self, configured: &[K::Spec]) -> Result<usize, RegistryError> {
        let mut failed = None;
        for spec in configured {
            let mut spec = spec.clone();
            let stored = match self.inner.kind.admit_configured(&mut spec).await {
                Ok(()) => {
                    self.inner.persistence.write(vec![spec_write::<K>(&spec)]).await.map_err(RegistryError::Write)
                }
                Err(e) => Err(e),
            };
            if let Err(e) = stored {
                tracing::error!(kind = K::KIND, name = K::name(&spec), error = %e, "configured resource not stored");
                failed.get_or_insert(e);
            }
        }
        let stored = self.inner.persistence.documents(K::KIND).map_err(RegistryError::Read)?;
        let mut running = 0;
        for (name, document) in stored {
            let spec = match serde_json::from_slice::<K::Spec>(&document) {
                Ok(spec) => spec,
                Err(e) => {
                    tracing::error!(kind = K::KIND, %name, error = %e, "stored spec does not decode; not started");
                    continue;
                }
            };
            let started = self.start_stored(&name, &spec).await;
            running += usize::from(started.is_some());
            self.entries().insert(name, Entry { spec, running: started });
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(running),
        }
    }

    async fn start_stored(&self, name: &str, spec: &K::Spec) -> Option<K::Running> {
        if !self.inner.placement.runs_here(K::KIND, name) {
            return None;
        }
        match self.inner.kind.restore(spec).await {
            Ok(prepared) => Some(self.inner.kind.run(spec.clone(), prepared)),
            Err(e) => {
                tracing::error!(kind = K::KIND, %name, error = %e, "stored resource cannot run; not started");
                None
            }
        }
    }

    /// Checks, stores and starts a new resource.
    pub async fn create(&self, mut spec: K::Spec) -> Result<K::View, RegistryError> {
        let _admin = self.inner.admin.lock().await;
        let name = K::name(&spec).to_owned();
        validate_name("name", &name)?;
        let stored = self.inner.persistence.document(K::KIND, &name).map_err(RegistryError::Read)?;
        if stored.is_some() || self.entries().contains_key(&name) {
            return Err(RegistryError::AlreadyExists { noun: K::NOUN, name });
        }
        if self.entries().len() >= K::MAX {
            return Err(RegistryError::Conflict(format!("a node runs at most {} {}", K::MAX, K::PLURAL)));
        }
        let others: Vec<K::Spec> = self.entries().values().map(|entry| entry.spec.clone()).collect();
        let prepared = self.inner.kind.prepare(&mut spec, &others.iter().collect::<Vec<_>>()).await?;
        let mut writes = self.inner.kind.leftovers(&name)?;
        writes.push(spec_write::<K>(&spec));
        writes.extend(self.inner.kind.companions(&spec, &prepared));
        self.inner.persistence.write(writes).await.map_err(RegistryError::Write)?;
        tracing::info!(kind = K::KIND, %name, "resource created");
        let running =
            self.inner.placement.runs_here(K::KIND, &name).then(|| self.inner.kind.run(spec.clone(), prepared));
        let view = self.inner.kind.view(&spec, running.as_ref());
        self.entries().insert(name, Entry { spec, running });
        Ok(view)
    }

    /// Stops a resource and deletes it with everything stored beside it.
    pub async fn remove(&self, name: &str) -> Result<(), RegistryError> {
        let _admin = self.inner.admin.lock().await;
        let entry = self.entries().remove(name);
        if let Some(running) = entry.and_then(|entry| entry.running) {
            self.inner.kind.stop(running).await;
        }
        let stored = self.inner.persistence.document(K::KIND, name).map_err(RegistryError::Read)?;
        if stored.is_none() {
            return Err(RegistryError::NotFound { noun: K::NOUN, name: name.to_owned() });
        }
        let mut writes = self.inner.kind.leftovers(name)?;
        writes.push(DocumentWrite { kind: K::KIND.into(), name: name.to_owned(), document: None });
        self.inner.persistence.write(writes).await.map_err(RegistryError::Write)?;
        self.inner.kind.removed(name);
        tracing::info!(kind = K::KIND, %name, "resource removed");
        Ok(())
    }

    pub fn list(&self) -> Vec<K::View> {
        self.entries().values().map(|entry| self.inner.kind.view(&entry.spec, entry.running.as_ref())).collect()
    }

    pub fn get(&self, name: &str) -> Option<K::View> {
        self.entries().get(name).map(|entry| self.inner.kind.view(&entry.spec, entry.running.as_ref()))
    }

    /// `get`, or the error the admin API answers for an unknown name.
    pub fn found(&self, name: &str) -> Result<K::View, RegistryError> {
        self.get(name).ok_or_else(|| RegistryError::NotFound { noun: K::NOUN, name: name.to_owned() })
    }

    /// Runs `read` on resource `name` where it runs here.
    pub fn with_running<T>(&self, name: &str, read: impl FnOnce(&K::Running) -> T) -> Option<T> {
        self.entries().get(name).and_then(|entry| entry.running.as_ref()).map(read)
    }

    /// The specs of the resources that `select` picks, by name.
    pub fn names_where(&self, select: impl Fn(&K::Spec, Option<&K::Running>) -> bool) -> Vec<String> {
        let entries = self.entries();
        entries
            .iter()
            .filter(|(_, entry)| select(&entry.spec, entry.running.as_ref()))
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// Holds off creation and removal (and what a kind does under the same lock).
    pub async fn lock_admin(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.inner.admin.lock().await
    }

    /// Stops every running resource (after the broker's stop signal), all at once.
    pub async fn shutdown(&self) {
        let entries = std::mem::take(&mut *self.entries());
        let mut stopping = tokio::task::JoinSet::new();
        for running in entries.into_values().filter_map(|entry| entry.running) {
            let registry = self.clone();
            stopping.spawn(async move { registry.inner.kind.stop(running).await });
        }
        stopping.join_all().await;
    }
}

fn spec_write<K: Kind>(spec: &K::Spec) -> DocumentWrite {
    let document = serde_json::to_vec(spec).expect("a spec encodes as JSON");
    DocumentWrite { kind: K::KIND.into(), name: K::name(spec).to_owned(), document: Some(document) }
}

/// Longest resource name.
pub const NAME_LEN_MAX: usize = 128;

/// Names are 1–128 characters of `[a-zA-Z0-9._-]`, as topic names (they appear in URLs, logs
/// and metric labels).
pub fn validate_name(field: &str, name: &str) -> Result<(), RegistryError> {
    let valid = !name.is_empty()
        && name.len() <= NAME_LEN_MAX
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && name != "."
        && name != "..";
    if valid {
        Ok(())
    } else {
        Err(RegistryError::invalid(
            field,
            format!("{name:?} is not a valid name: 1 to {NAME_LEN_MAX} characters of a-z, A-Z, 0-9, '.', '_', '-'"),
        ))
    }
}
