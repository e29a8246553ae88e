//! `/v1/plugins`: WebAssembly components uploaded as bytes, stored content-addressed (SHA-256) in
//! redb and named by name and version. A version is immutable: uploading the same bytes again is
//! a no-op, other bytes under a taken version are refused. `POST /v1/plugins` takes the name and version from the plugin itself (`describe`), after
//! compiling it against the contract; under an explicit name only the component header is checked,
//! and the contract is checked when a pipeline loads it. A version used by a pipeline cannot be
//! deleted.

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};

use super::AppState;
use super::error::ApiError;
use crate::registry::validate_name;
use crate::storage::{Blob, PutMode, ResourceError};

pub use crate::plugins::PluginArtifact;
use crate::plugins::catalog::{KIND, blob_of, key};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/plugins", get(list).post(upload_described))
        .route("/plugins/{name}/{version}", get(describe).post(upload).delete(delete))
        .route("/plugins/{name}/{version}/component", get(component))
}

/// Versions are what Cargo and WIT packages use: a digit first, then letters, digits, `.+-`.
fn validate_version(version: &str) -> Result<(), ApiError> {
    let valid = version.len() <= 64
        && version.starts_with(|c: char| c.is_ascii_digit())
        && version.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'+' | b'-'));
    if valid {
        Ok(())
    } else {
        Err(ApiError::invalid_field("version", format!("{version:?} is not a version such as 0.1.0")))
    }
}

/// The component-model binary header: `\0asm`, then version 0x0d and layer 1. A core module has
/// version 1 and layer 0.
const WASM_MAGIC: &[u8; 4] = b"\0asm";
const COMPONENT_VERSION_AND_LAYER: [u8; 4] = [0x0d, 0x00, 0x01, 0x00];

fn check_component(bytes: &[u8]) -> Result<(), ApiError> {
    let refuse = |message: &str| ApiError::bad_request("not_a_component", message);
    if bytes.len() < 8 || &bytes[..4] != WASM_MAGIC {
        return Err(refuse("the body is not WebAssembly (no \\0asm header)"));
    }
    if bytes[4..8] != COMPONENT_VERSION_AND_LAYER {
        return Err(refuse(
            "the body is a core WebAssembly module, not a component: build it with `cargo xtask plugins`, \
             which turns the module into a component",
        ));
    }
    Ok(())
}

fn decode(document: &[u8]) -> Result<PluginArtifact, ApiError> {
    crate::plugins::catalog::decode(document)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "stored_document_invalid", e.to_string()))
}

/// Every stored plugin version, by name then version.
pub fn stored_plugins(state: &AppState) -> Result<Vec<PluginArtifact>, ApiError> {
    state.store.resources(KIND)?.iter().map(|(_, document)| decode(document)).collect()
}

async fn list(State(state): State<AppState>) -> Result<axum::Json<Vec<PluginArtifact>>, ApiError> {
    stored_plugins(&state).map(axum::Json)
}

fn find(state: &AppState, name: &str, version: &str) -> Result<PluginArtifact, ApiError> {
    match state.store.resource(KIND, &key(name, version))? {
        Some(document) => decode(&document),
        None => Err(ApiError::not_found(format!("no plugin {name} version {version}"))),
    }
}

async fn describe(
    State(state): State<AppState>,
    Path((name, version)): Path<(String, String)>,
) -> Result<axum::Json<PluginArtifact>, ApiError> {
    find(&state, &name, &version).map(axum::Json)
}

async fn component(
    State(state): State<AppState>,
    Path((name, version)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let artifact = find(&state, &name, &version)?;
    let bytes = state.store.blob(&artifact.sha256)?.ok_or_else(|| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "blob_missing",
            format!("the component {} is missing", artifact.sha256),
        )
    })?;
    // The address comes from a stored document: a corrupt one is an error, not a panic.
    let etag = HeaderValue::from_str(&format!("\"{}\"", artifact.sha256)).map_err(|_| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "stored_document_invalid",
            "a stored plugin's sha256 is corrupt",
        )
    })?;
    let headers = [(header::CONTENT_TYPE, HeaderValue::from_static("application/wasm")), (header::ETAG, etag)];
    Ok((headers, bytes).into_response())
}

/// Reads an upload's body: at most `http.plugin_bytes_max` bytes, and a component.
async fn component_body(state: &AppState, headers: &HeaderMap, body: Body) -> Result<Vec<u8>, ApiError> {
    let limit = state.config.plugin_bytes_max;
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("a plugin component may have at most {limit} bytes (http.plugin_bytes_max)"),
        )
    };
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    if declared.is_some_and(|length| length > limit) {
        return Err(too_large());
    }
    let bytes = axum::body::to_bytes(body, limit).await.map_err(|_| too_large())?;
    check_component(&bytes)?;
    Ok(bytes.to_vec())
}

/// Stores the body as plugin `name` version `version`.
async fn upload(
    State(state): State<AppState>,
    Path((name, version)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    validate_name("name", &name)?;
    validate_version(&version)?;
    let bytes = component_body(&state, &headers, body).await?;
    store_component(&state, name, version, bytes).await
}

/// Stores the body under the name and version the plugin gives itself (`describe`), after
/// compiling it and checking it against the contract.
async fn upload_described(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Result<Response, ApiError> {
    let bytes = component_body(&state, &headers, body).await?;
    let catalog = state.pipelines.catalog().clone();
    let (bytes, described) = tokio::task::spawn_blocking(move || {
        let runtime = catalog.runtime();
        let described = runtime.compile(&bytes).and_then(|compiled| crate::plugins::describe(runtime, &compiled));
        (bytes, described)
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "upload_failed", e.to_string()))?;
    let metadata = described.map_err(|e| ApiError::bad_request("not_a_plugin", e.to_string()))?;
    validate_name("name", &metadata.name)?;
    validate_version(&metadata.version)?;
    store_component(&state, metadata.name, metadata.version, bytes).await
}

async fn store_component(
    state: &AppState,
    name: String,
    version: String,
    bytes: Vec<u8>,
) -> Result<Response, ApiError> {
    let sha256 = hex(&Sha256::digest(&bytes));
    if let Some(existing) = state.store.resource(KIND, &key(&name, &version))? {
        let existing = decode(&existing)?;
        return if existing.sha256 == sha256 {
            Ok((StatusCode::OK, axum::Json(existing)).into_response())
        } else {
            Err(ApiError::conflict(format!(
                "plugin {name} version {version} exists with other bytes (sha256 {}); versions are immutable: \
                 upload under a new version",
                existing.sha256
            )))
        };
    }
    let artifact = PluginArtifact {
        name: name.clone(),
        version: version.clone(),
        sha256: sha256.clone(),
        size_bytes: bytes.len() as u64,
        uploaded_ms: crate::clock::now_ms(),
    };
    let document = serde_json::to_vec(&artifact).expect("a plugin artifact encodes");
    let blob = Blob { sha256, bytes };
    match state.store.put_resource(KIND, &key(&name, &version), document, PutMode::Create, Some(blob)).await {
        Ok(()) => {}
        // Another upload of the same version won the race.
        Err(ResourceError::AlreadyExists { .. }) => {
            return Err(ApiError::conflict(format!("plugin {name} version {version} was just uploaded")));
        }
        Err(e) => return Err(e.into()),
    }
    tracing::info!(plugin = %name, %version, sha256 = %artifact.sha256, bytes = artifact.size_bytes, "plugin uploaded");
    Ok((StatusCode::CREATED, axum::Json(artifact)).into_response())
}

async fn delete(
    State(state): State<AppState>,
    Path((name, version)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    // No pipeline may start using the version while it is deleted.
    let _admin = state.pipelines.lock_admin().await;
    let users = state.pipelines.using_plugin(&name, &version);
    if !users.is_empty() {
        return Err(ApiError::conflict(format!(
            "plugin {name} version {version} is used by pipeline(s) {}: upgrade or delete them first",
            users.join(", ")
        )));
    }
    let mirrors = state.mirrors.using_plugin(&name, &version);
    if !mirrors.is_empty() {
        return Err(ApiError::conflict(format!(
            "plugin {name} version {version} filters mirror(s) {}: remove them first",
            mirrors.join(", ")
        )));
    }
    let sha256 = state.store.resource(KIND, &key(&name, &version))?.and_then(|document| blob_of(&document));
    if state.store.delete_resource(KIND, &key(&name, &version), blob_of).await? {
        tracing::info!(plugin = %name, %version, "plugin deleted");
        // Its compiled form goes with the last version naming the same bytes.
        if let Some(sha256) = sha256.filter(|sha| matches!(state.store.blob(sha), Ok(None))) {
            state.pipelines.catalog().forget(&sha256);
        }
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("no plugin {name} version {version}")))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use axum::http::{Method, Request};
    use tower::ServiceExt;

    use super::*;
    use crate::http::tests::harness;

    /// The smallest component: the header alone.
    fn component(extra: &[u8]) -> Vec<u8> {
        let mut bytes = WASM_MAGIC.to_vec();
        bytes.extend_from_slice(&COMPONENT_VERSION_AND_LAYER);
        bytes.extend_from_slice(extra);
        bytes
    }

    async fn upload(h: &crate::http::tests::Harness, path: &str, bytes: Vec<u8>) -> (StatusCode, serde_json::Value) {
        let request = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header(header::CONTENT_TYPE, "application/wasm")
            .body(Body::from(bytes))
            .unwrap();
        let response = crate::http::router(h.state.clone()).oneshot(request).await.unwrap();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
        (status, serde_json::from_slice(&body).unwrap_or_default())
    }

    #[tokio::test]
    async fn components_are_stored_by_content_and_versions_are_immutable() {
        let h = harness(None).await;
        let (status, stored) = upload(&h, "/v1/plugins/filter/0.1.0", component(b"one")).await;
        assert_eq!(status, StatusCode::CREATED, "{stored}");
        assert_eq!(stored["sha256"], hex(&Sha256::digest(component(b"one"))));
        assert_eq!(stored["size_bytes"], 11);
        assert_eq!(upload(&h, "/v1/plugins/filter/0.1.0", component(b"one")).await.0, StatusCode::OK, "idempotent");
        let (status, body) = upload(&h, "/v1/plugins/filter/0.1.0", component(b"two")).await;
        assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("conflict")));
        // The same bytes under another name share one blob.
        assert_eq!(upload(&h, "/v1/plugins/copy/1.0.0", component(b"one")).await.0, StatusCode::CREATED);
        assert_eq!(upload(&h, "/v1/plugins/filter/0.2.0", component(b"two")).await.0, StatusCode::CREATED);

        let h = h.reopen().await;
        let (_, listed) = h.call(Method::GET, "/v1/plugins", None).await;
        let names: Vec<String> = listed
            .as_array()
            .unwrap()
            .iter()
            .map(|p| format!("{}@{}", p["name"].as_str().unwrap(), p["version"].as_str().unwrap()))
            .collect();
        assert_eq!(names, ["copy@1.0.0", "filter@0.1.0", "filter@0.2.0"]);
        let request = Request::get("/v1/plugins/filter/0.1.0/component").body(Body::empty()).unwrap();
        let response = crate::http::router(h.state.clone()).oneshot(request).await.unwrap();
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/wasm");
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
        assert_eq!(bytes.as_ref(), component(b"one").as_slice());

        // Deleting one user of a blob keeps it for the other; deleting the last removes it.
        let sha = stored["sha256"].as_str().unwrap().to_owned();
        assert_eq!(h.call(Method::DELETE, "/v1/plugins/filter/0.1.0", None).await.0, StatusCode::NO_CONTENT);
        assert!(h.state.store.blob(&sha).unwrap().is_some());
        assert_eq!(h.call(Method::DELETE, "/v1/plugins/copy/1.0.0", None).await.0, StatusCode::NO_CONTENT);
        assert!(h.state.store.blob(&sha).unwrap().is_none());
        assert_eq!(h.call(Method::GET, "/v1/plugins/copy/1.0.0", None).await.0, StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn bad_uploads_are_refused_and_store_nothing() {
        let h = harness(None).await;
        let core_module = [b"\0asm".as_slice(), &[1, 0, 0, 0]].concat();
        let cases = [
            ("/v1/plugins/p/0.1.0", b"not wasm at all".to_vec(), StatusCode::BAD_REQUEST, "not_a_component"),
            ("/v1/plugins/p/0.1.0", core_module, StatusCode::BAD_REQUEST, "not_a_component"),
            ("/v1/plugins/p%20q/0.1.0", component(b""), StatusCode::BAD_REQUEST, "invalid_field"),
            ("/v1/plugins/p/latest", component(b""), StatusCode::BAD_REQUEST, "invalid_field"),
            (
                "/v1/plugins/p/0.1.0",
                component(&vec![0; 40 * 1024 * 1024]),
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
            ),
        ];
        for (path, bytes, status, code) in cases {
            let (got, body) = upload(&h, path, bytes).await;
            assert_eq!((got, body["error"]["code"].as_str()), (status, Some(code)), "{path}: {body}");
        }
        assert_eq!(h.call(Method::GET, "/v1/plugins", None).await.1, serde_json::json!([]));
    }
}
