//! Stored plugins as the broker uses them: components uploaded through `/v1/plugins`, stored
//! content-addressed (SHA-256) and named by name and version; compiled once per content hash and
//! kept compiled on disk (`<data dir>/plugin-cache/`), so a restart does not compile again.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use super::{CompiledPlugin, PluginError, PluginRuntime};
use crate::storage::{ResourceError, StorageError, Store};

/// The storage kind of plugin documents.
pub const KIND: &str = "plugins";

/// A stored plugin component.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PluginArtifact {
    pub name: String,
    pub version: String,
    /// Lowercase hex SHA-256 of the component bytes: their address in storage.
    pub sha256: String,
    pub size_bytes: u64,
    pub uploaded_ms: i64,
}

impl PluginArtifact {
    /// `name@version`, as logs, headers and pipeline histories name a plugin.
    pub fn label(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }
}

/// The storage key of a plugin version.
pub fn key(name: &str, version: &str) -> String {
    format!("{name}@{version}")
}

/// The blob a stored plugin document refers to.
pub fn blob_of(document: &[u8]) -> Option<String> {
    serde_json::from_slice::<PluginArtifact>(document).ok().map(|artifact| artifact.sha256)
}

pub fn decode(document: &[u8]) -> Result<PluginArtifact, StorageError> {
    serde_json::from_slice(document).map_err(|e| StorageError::corrupt("plugin document", e))
}

/// Orders versions as SemVer does: numerically part by part; a pre-release (`-rc1`) before its
/// release; build metadata (`+…`) ignored.
pub fn compare_versions(a: &str, b: &str) -> std::cmp::Ordering {
    let parts = |v: &str| -> (Vec<(u64, String)>, bool, String) {
        let v = v.split('+').next().unwrap_or_default();
        let (release, pre) = v.split_once('-').map_or((v, None), |(r, p)| (r, Some(p)));
        let numbers = release.split('.').map(|part| (part.parse().unwrap_or(u64::MAX), part.to_owned())).collect();
        (numbers, pre.is_none(), pre.unwrap_or_default().to_owned())
    };
    parts(a).cmp(&parts(b))
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogError {
    #[error("no plugin {name}{}", version.as_ref().map(|v| format!(" version {v}")).unwrap_or_default())]
    Unknown { name: String, version: Option<String> },
    #[error("storage: {0}")]
    Storage(#[from] ResourceError),
    #[error("the component of {label} is missing from the store")]
    MissingComponent { label: String },
    #[error(transparent)]
    Plugin(#[from] PluginError),
}

/// Stored plugins, compiled on demand.
#[derive(Clone)]
pub struct PluginCatalog {
    runtime: PluginRuntime,
    store: Store,
    cache_dir: Option<PathBuf>,
    compiled: Arc<Mutex<HashMap<String, CompiledPlugin>>>,
}

impl std::fmt::Debug for PluginCatalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginCatalog").field("cache_dir", &self.cache_dir).finish_non_exhaustive()
    }
}

impl PluginCatalog {
    /// `cache_dir: None` keeps compiled components in memory only.
    pub fn new(runtime: PluginRuntime, store: Store, cache_dir: Option<PathBuf>) -> Self {
        Self { runtime, store, cache_dir, compiled: Arc::default() }
    }

    pub fn runtime(&self) -> &PluginRuntime {
        &self.runtime
    }

    /// Every stored plugin version, by name then version.
    pub fn artifacts(&self) -> Result<Vec<PluginArtifact>, CatalogError> {
        let documents = self.store.resources(KIND)?;
        documents.iter().map(|(_, document)| Ok(decode(document).map_err(ResourceError::Storage)?)).collect()
    }

    /// Plugin `name` at `version`, or its newest version when `version` is `None`.
    pub fn resolve(&self, name: &str, version: Option<&str>) -> Result<PluginArtifact, CatalogError> {
        let unknown = || CatalogError::Unknown { name: name.to_owned(), version: version.map(str::to_owned) };
        match version {
            Some(version) => {
                let document = self.store.resource(KIND, &key(name, version))?;
                Ok(decode(&document.ok_or_else(unknown)?).map_err(ResourceError::Storage)?)
            }
            None => self
                .artifacts()?
                .into_iter()
                .filter(|artifact| artifact.name == name)
                .max_by(|a, b| compare_versions(&a.version, &b.version))
                .ok_or_else(unknown),
        }
    }

    /// The compiled component of `artifact`: from memory, from the disk cache, or compiled now
    /// (and cached). Blocking: tens of milliseconds when it compiles.
    pub fn load(&self, artifact: &PluginArtifact) -> Result<CompiledPlugin, CatalogError> {
        if let Some(compiled) = self.compiled.lock().unwrap_or_else(|p| p.into_inner()).get(&artifact.sha256) {
            return Ok(compiled.clone());
        }
        let cached = self.cache_path(&artifact.sha256);
        let from_disk = cached.as_ref().filter(|path| path.exists()).and_then(|path| {
            self.runtime
                .load_compiled(path)
                .inspect_err(
                    |e| tracing::warn!(path = %path.display(), error = %e, "compiled plugin unusable; compiling again"),
                )
                .ok()
        });
        let compiled = match from_disk {
            Some(compiled) => compiled,
            None => {
                let bytes = self
                    .store
                    .blob(&artifact.sha256)?
                    .ok_or_else(|| CatalogError::MissingComponent { label: artifact.label() })?;
                let compiled = self.runtime.compile(&bytes)?;
                if let Some(path) = &cached {
                    self.write_cache(path, &compiled);
                }
                compiled
            }
        };
        self.compiled.lock().unwrap_or_else(|p| p.into_inner()).insert(artifact.sha256.clone(), compiled.clone());
        Ok(compiled)
    }

    /// Drops the compiled form of a component no longer stored (memory and disk cache).
    pub fn forget(&self, sha256: &str) {
        self.compiled.lock().unwrap_or_else(|p| p.into_inner()).remove(sha256);
        if let Some(path) = self.cache_path(sha256) {
            let _ = std::fs::remove_file(path);
        }
    }

    fn cache_path(&self, sha256: &str) -> Option<PathBuf> {
        // Only hex digits reach the file system, whatever a stored document says.
        if sha256.is_empty() || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let dir = self.cache_dir.as_ref()?;
        Some(dir.join(format!("{sha256}-{:016x}.cwasm", self.runtime.compatibility_hash())))
    }

    /// Best effort: a cache that cannot be written costs a compile at the next start, nothing more.
    fn write_cache(&self, path: &std::path::Path, compiled: &CompiledPlugin) {
        let written = self.runtime.serialize(compiled).map_err(|e| e.to_string()).and_then(|bytes| {
            let dir = path.parent().ok_or("no cache directory")?;
            std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
            let partial = path.with_extension("partial");
            std::fs::write(&partial, bytes).map_err(|e| e.to_string())?;
            std::fs::rename(&partial, path).map_err(|e| e.to_string())
        });
        if let Err(e) = written {
            tracing::warn!(path = %path.display(), error = %e, "cannot cache a compiled plugin");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_order_numerically() {
        use std::cmp::Ordering::*;
        assert_eq!(compare_versions("0.10.0", "0.9.1"), Greater);
        assert_eq!(compare_versions("1.0.0", "1.0.0"), Equal);
        assert_eq!(compare_versions("1.0", "1.0.1"), Less);
        assert_eq!(compare_versions("2.0.0-rc1", "2.0.0"), Less, "a pre-release comes before its release");
        assert_eq!(compare_versions("2.0.0-rc2", "2.0.0-rc1"), Greater);
        assert_eq!(compare_versions("1.0.0+build7", "1.0.0"), Equal);
    }
}
