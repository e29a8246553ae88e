//! The control plane's routes, in process: every resource's round trip and error paths.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use serde_json::{Value, json};
use tower::ServiceExt;

use super::{AppState, router};
use crate::config::{HttpSection, KafkaSection};
use crate::kafka::KafkaListener;
use crate::metrics::Metrics;
use crate::storage::{CommittedOffset, Location, Store, StoreConfig};

pub(super) struct Harness {
    dir: tempfile::TempDir,
    pub state: AppState,
}

pub(super) async fn harness(token: Option<&str>) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let state = state_in(&dir, token).await;
    Harness { dir, state }
}

async fn state_in(dir: &tempfile::TempDir, token: Option<&str>) -> AppState {
    let store = Store::open(Location::Dir(dir.path().to_owned()), StoreConfig::default()).unwrap();
    let metrics = Arc::new(Metrics::new(&store));
    let kafka = KafkaSection { listen: ([127, 0, 0, 1], 0).into(), ..KafkaSection::default() };
    let listener = KafkaListener::bind(kafka, store.clone(), Arc::clone(&metrics)).await.unwrap();
    let config = HttpSection { admin_token: token.map(str::to_owned), ..HttpSection::default() };
    AppState {
        store: store.clone(),
        broker: listener.broker(),
        metrics,
        config: Arc::new(config),
        listeners: {
            let listeners = Arc::new(crate::health::Listeners::default());
            listeners.set_ready(true);
            listeners
        },
        rates: Arc::default(),
        started: std::time::Instant::now(),
        pipelines: crate::pipelines::Pipelines::for_store(
            store.clone(),
            crate::plugins::PluginCatalog::new(test_runtime(), store.clone(), None),
            tokio::sync::watch::channel(false).1,
        ),
        bridges: crate::mqtt::Bridges::for_store(
            store.clone(),
            crate::plugins::PluginCatalog::new(test_runtime(), store.clone(), None),
        ),
        mirrors: crate::replication::Mirrors::for_store(
            store.clone(),
            crate::plugins::PluginCatalog::new(test_runtime(), store.clone(), None),
        ),
        cloud: None,
        devices: None,
    }
}

/// One plugin engine for all tests of the process (an engine reserves its instance pool).
fn test_runtime() -> crate::plugins::PluginRuntime {
    static RUNTIME: std::sync::OnceLock<crate::plugins::PluginRuntime> = std::sync::OnceLock::new();
    RUNTIME.get_or_init(|| crate::plugins::PluginRuntime::new().expect("plugin engine starts")).clone()
}

impl Harness {
    /// The same data directory after a clean shutdown and a fresh open.
    pub(super) async fn reopen(self) -> Harness {
        let token = self.state.config.admin_token.clone();
        self.state.store.shutdown().await;
        let state = state_in(&self.dir, token.as_deref()).await;
        Harness { state, ..self }
    }

    pub(super) async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.call_with(method, path, body, None).await
    }

    async fn call_with(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        token: Option<&str>,
    ) -> (StatusCode, Value) {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = match body {
            Some(body) => request.header(header::CONTENT_TYPE, "application/json").body(Body::from(body.to_string())),
            None => request.body(Body::empty()),
        }
        .unwrap();
        let response = router(self.state.clone()).oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        (status, value)
    }
}

/// A batch of `records` small records stamped 2023-11-14.
fn batch(records: usize) -> Vec<u8> {
    use rill_core::batch::{BatchParams, RecordSpec, build_vec};
    let spec = RecordSpec { timestamp: 1_700_000_000_000, key: None, value: Some(b"21.5"), headers: &[] };
    build_vec(BatchParams::default(), &vec![spec; records]).unwrap()
}

fn error_code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or_else(|| panic!("an error body: {body}"))
}

#[tokio::test]
async fn health_ready_and_metrics() {
    let h = harness(None).await;
    let _kafka = h.state.listeners.serving("kafka");
    let healthy = json!({"status": "ok", "writer": {"state": "accepting"}, "listeners": {"kafka": "serving"}});
    assert_eq!(h.call(Method::GET, "/health", None).await, (StatusCode::OK, healthy));
    let (status, body) = h.call(Method::GET, "/ready", None).await;
    assert_eq!((status, body["ready"].as_bool()), (StatusCode::OK, Some(true)));
    h.state.listeners.set_ready(false);
    let (status, body) = h.call(Method::GET, "/ready", None).await;
    assert_eq!((status, body["listeners"].as_str()), (StatusCode::SERVICE_UNAVAILABLE, Some("starting")));
    let (status, body) = h.call(Method::GET, "/metrics", None).await;
    assert_eq!(status, StatusCode::OK);
    let text = body.as_str().unwrap();
    assert!(text.contains("rill_storage_commit_seconds"), "{text}");
    assert!(text.trim_end().ends_with("# EOF"), "{text}");
}

#[tokio::test]
async fn topics_round_trip() {
    let h = harness(None).await;
    let (status, created) = h
        .call(
            Method::POST,
            "/v1/topics",
            Some(json!({"name": "sensors", "partitions": 2, "config": {"retention.ms": 60000}})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["partitions"].as_array().unwrap().len(), 2);
    assert_eq!(created["config"]["retention.ms"], "60000");

    h.state.store.append("sensors", 1, batch(10)).await.unwrap();
    let (_, listed) = h.call(Method::GET, "/v1/topics", None).await;
    assert_eq!(listed[0]["name"], "sensors");
    assert!(listed[0]["records"].as_u64().unwrap() > 0, "{listed}");

    let (status, altered) = h
        .call(
            Method::PATCH,
            "/v1/topics/sensors",
            Some(json!({"partitions": 3, "config": {"retention.ms": null, "retention.bytes": "1000000"}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{altered}");
    assert_eq!(altered["partitions"].as_array().unwrap().len(), 3);
    assert_eq!(altered["config"]["retention.ms"], "604800000", "null resets to the default");
    assert_eq!(altered["config"]["retention.bytes"], "1000000");
    let partition_1 = &altered["partitions"][1];
    assert_eq!(partition_1["log_end_offset"], partition_1["records_in"], "{altered}");

    let (status, _) = h.call(Method::DELETE, "/v1/topics/sensors", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = h.call(Method::GET, "/v1/topics/sensors", None).await;
    assert_eq!((status, error_code(&body)), (StatusCode::NOT_FOUND, "not_found"));
}

#[tokio::test]
async fn topic_errors_name_the_field() {
    let h = harness(None).await;
    let cases = [
        (json!({"name": "bad name"}), "name"),
        (json!({"name": "t", "partitions": 0}), "partitions"),
        (json!({"name": "t", "partitions": "two"}), "partitions"),
        (json!({"name": "t", "config": {"retention.ms": "soon"}}), "config.retention.ms"),
        (json!({"name": "t", "config": {"segment.bytes": 1}}), "config.segment.bytes"),
        (json!({"name": "t", "colour": "blue"}), "colour"),
    ];
    for (body, field) in cases {
        let (status, answer) = h.call(Method::POST, "/v1/topics", Some(body.clone())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body} -> {answer}");
        assert_eq!(answer["error"]["field"], field, "{body} -> {answer}");
    }
    assert!(h.state.store.topics().is_empty(), "nothing was created by bad input");

    let (status, _) = h.call(Method::POST, "/v1/topics", Some(json!({"name": "t"}))).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, body) = h.call(Method::POST, "/v1/topics", Some(json!({"name": "t"}))).await;
    assert_eq!((status, error_code(&body)), (StatusCode::CONFLICT, "already_exists"));
    let (status, body) = h.call(Method::PATCH, "/v1/topics/t", Some(json!({"partitions": 0}))).await;
    assert_eq!((status, body["error"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some("partitions")));
    // A bad key anywhere in the change leaves the whole topic as it was.
    let (status, _) =
        h.call(Method::PATCH, "/v1/topics/t", Some(json!({"config": {"retention.ms": 5, "nonsense": 1}}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(h.state.store.topic("t").unwrap().config, crate::storage::TopicConfig::default());

    let request = Request::post("/v1/topics").body(Body::from(r#"{"name":"x"}"#)).unwrap();
    let response = router(h.state.clone()).oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE, "JSON needs its content type");
    let request = Request::post("/v1/topics")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(r#"{"name": "#))
        .unwrap();
    let response = router(h.state.clone()).oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let (status, body) = h.call(Method::GET, "/v2/topics", None).await;
    assert_eq!((status, error_code(&body)), (StatusCode::NOT_FOUND, "not_found"));
}

#[tokio::test]
async fn groups_show_offsets_and_lag_and_can_be_reset_and_deleted() {
    let h = harness(None).await;
    let store = &h.state.store;
    store.create_topic("t", 2, crate::storage::TopicConfig::default()).await.unwrap();
    for _ in 0..3 {
        store.append("t", 0, batch(10)).await.unwrap();
    }
    let end = 30;
    let committed = CommittedOffset { offset: 5, leader_epoch: -1, metadata: "m".into(), commit_ms: 1 };
    store.commit_offsets("g", vec![(("t".into(), 0), committed)]).await.unwrap();

    let (_, listed) = h.call(Method::GET, "/v1/groups", None).await;
    assert_eq!(listed, json!([{"group": "g", "state": "Empty", "members": 0, "lag": end - 5}]));
    let (status, described) = h.call(Method::GET, "/v1/groups/g", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(described["offsets"][0]["committed_offset"], 5);
    assert_eq!(described["offsets"][0]["high_watermark"], end);
    assert_eq!(described["offsets"][0]["lag"], end - 5);

    let (status, reset) =
        h.call(Method::POST, "/v1/groups/g/reset-offsets", Some(json!({"to": "latest", "topic": "t"}))).await;
    assert_eq!(status, StatusCode::OK, "{reset}");
    assert_eq!(reset["lag"], 0);
    assert_eq!(reset["offsets"].as_array().unwrap().len(), 2, "every partition of the topic");
    let (_, reset) =
        h.call(Method::POST, "/v1/groups/g/reset-offsets", Some(json!({"to": {"offset": 7}, "partitions": [0]}))).await;
    assert_eq!(reset["offsets"][0]["committed_offset"], 7);
    assert_eq!(store.committed_offsets("g")[&("t".to_owned(), 0)].offset, 7);
    let (_, reset) = h
        .call(Method::POST, "/v1/groups/g/reset-offsets", Some(json!({"to": {"timestamp": 0}, "partitions": [0]})))
        .await;
    assert_eq!(reset["offsets"][0]["committed_offset"], 0, "the first record is after time 0");

    for (body, field) in [
        (json!({"to": "sometime"}), "to"),
        (json!({"to": "earliest", "topic": "nope"}), "topic"),
        (json!({"to": "earliest", "partitions": [9]}), "partitions"),
    ] {
        let (status, answer) = h.call(Method::POST, "/v1/groups/g/reset-offsets", Some(body.clone())).await;
        assert_eq!((status, answer["error"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some(field)), "{body}");
    }

    let (status, _) = h.call(Method::DELETE, "/v1/groups/g", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = h.call(Method::GET, "/v1/groups/g", None).await;
    assert_eq!((status, error_code(&body)), (StatusCode::NOT_FOUND, "not_found"));
    let (status, _) = h.call(Method::DELETE, "/v1/groups/g", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_configured_token_guards_every_mutating_call() {
    let h = harness(Some("s3cret")).await;
    let create = json!({"name": "t"});
    let (status, body) = h.call(Method::POST, "/v1/topics", Some(create.clone())).await;
    assert_eq!((status, error_code(&body)), (StatusCode::UNAUTHORIZED, "unauthorized"));
    let (status, body) = h.call_with(Method::POST, "/v1/topics", Some(create.clone()), Some("guess")).await;
    assert_eq!((status, error_code(&body)), (StatusCode::FORBIDDEN, "forbidden"));
    assert!(h.state.store.topics().is_empty());
    let (status, _) = h.call_with(Method::POST, "/v1/topics", Some(create), Some("s3cret")).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = h.call(Method::GET, "/v1/topics/t", None).await;
    assert_eq!(status, StatusCode::OK, "reads need no token");
    let (status, _) = h.call(Method::DELETE, "/v1/topics/t", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

/// Every route in [`super::ROUTES`] is served and documented in `docs/openapi.json`, and every
/// documented operation is in [`super::ROUTES`].
#[tokio::test]
async fn openapi_documents_every_route() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.json")).unwrap();
    let spec: Value = serde_json::from_str(&text).expect("docs/openapi.json is JSON");
    let mut documented = std::collections::BTreeSet::new();
    for (path, operations) in spec["paths"].as_object().expect("paths") {
        for method in operations.as_object().expect("operations").keys().filter(|k| *k != "parameters") {
            documented.insert(format!("{} {path}", method.to_uppercase()));
        }
    }
    let listed: std::collections::BTreeSet<String> = super::ROUTES.iter().map(|r| r.to_string()).collect();
    let missing: Vec<_> = listed.difference(&documented).collect();
    let extra: Vec<_> = documented.difference(&listed).collect();
    assert!(missing.is_empty(), "routes missing from docs/openapi.json: {missing:?}");
    assert!(extra.is_empty(), "documented but not in ROUTES: {extra:?}");

    // Each listed route reaches a handler: not the fallback, not "method not allowed".
    let h = harness(None).await;
    for route in super::ROUTES {
        let (method, path) = route.split_once(' ').unwrap();
        let path = path.replace(['{', '}'], "");
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let (status, body) = h.call(method, &path, None).await;
        assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{route}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(!message.starts_with("no route for"), "{route} is not served: {body}");
    }
}

/// The routes every registry kind shares, through mirrors (the kind that needs no plugin).
#[tokio::test]
async fn resource_kinds_answer_create_conflict_bad_input_and_unknown_names_alike() {
    let h = harness(None).await;
    let mirror = json!({"name": "m1", "upstream": "127.0.0.1:1", "edge_id": "gw", "token": "s", "topics": ["t"]});
    let (status, body) = h.call(Method::POST, "/v1/mirrors", Some(mirror.clone())).await;
    assert_eq!((status, body["spec"]["token"].as_str()), (StatusCode::CREATED, Some("********")), "{body}");
    let (status, body) = h.call(Method::POST, "/v1/mirrors", Some(mirror.clone())).await;
    assert_eq!((status, error_code(&body)), (StatusCode::CONFLICT, "already_exists"));
    for (body, field) in [
        (json!({"name": "m 2", "upstream": "127.0.0.1:1", "edge_id": "gw2", "token": "s", "topics": []}), "name"),
        (json!({"name": "m2", "upstream": "nowhere", "edge_id": "gw2", "token": "s", "topics": []}), "upstream"),
        (json!({"name": "m2", "upstream": "127.0.0.1:1", "edge_id": "gw2", "token": "s", "topics": [], "x": 1}), "x"),
    ] {
        let (status, answer) = h.call(Method::POST, "/v1/mirrors", Some(body.clone())).await;
        assert_eq!((status, answer["error"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some(field)), "{body}");
    }
    let (status, body) = h.call(Method::GET, "/v1/mirrors", None).await;
    assert_eq!((status, body.as_array().map(Vec::len)), (StatusCode::OK, Some(1)));
    assert_eq!(h.call(Method::GET, "/v1/mirrors/m1", None).await.1["spec"]["name"], "m1");
    assert_eq!(h.call(Method::DELETE, "/v1/mirrors/m1", None).await.0, StatusCode::NO_CONTENT);
    for method in [Method::GET, Method::DELETE] {
        let (status, body) = h.call(method, "/v1/mirrors/m1", None).await;
        assert_eq!((status, error_code(&body)), (StatusCode::NOT_FOUND, "not_found"));
    }
    h.state.mirrors.shutdown().await;
}

/// `/health` fails, saying why, when a listener stops or the storage writer takes no more writes.
#[tokio::test]
async fn health_fails_when_a_listener_or_the_writer_stops() {
    let h = harness(None).await;
    let devices = h.state.listeners.serving("devices");
    drop(devices);
    let (status, body) = h.call(Method::GET, "/health", None).await;
    assert_eq!(
        (status, &body["status"], &body["listeners"]["devices"]),
        (StatusCode::SERVICE_UNAVAILABLE, &json!("failing"), &json!("stopped"))
    );
    let h = harness(None).await;
    h.state.store.shutdown().await;
    let (status, body) = h.call(Method::GET, "/health", None).await;
    assert_eq!((status, &body["writer"]), (StatusCode::SERVICE_UNAVAILABLE, &json!({"state": "stopped"})), "{body}");
}
