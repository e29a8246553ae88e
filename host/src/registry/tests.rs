//! The registry's own behaviour, with a kind made for it ("widgets") over a real store.

use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use super::*;
use crate::storage::{Location, StoreConfig};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct Widget {
    name: String,
    colour: String,
}

fn widget(name: &str, colour: &str) -> Widget {
    Widget { name: name.into(), colour: colour.into() }
}

/// Widgets store a "widget-parts" document beside their spec, and note what they run and stop.
struct Widgets {
    journal: Arc<Mutex<Vec<String>>>,
}

#[derive(Debug, PartialEq, Eq, Serialize)]
struct WidgetView {
    name: String,
    colour: String,
    running: bool,
}

const PARTS: &str = "widget-parts";

impl Kind for Widgets {
    type Spec = Widget;
    type Prepared = String;
    type Running = String;
    type View = WidgetView;

    const KIND: &'static str = "widgets";
    const NOUN: &'static str = "widget";
    const PLURAL: &'static str = "widgets";
    const MAX: usize = 3;

    fn name(spec: &Widget) -> &str {
        &spec.name
    }

    async fn prepare(&self, spec: &mut Widget, others: &[&Widget]) -> Result<String, RegistryError> {
        if spec.colour.is_empty() {
            return Err(RegistryError::invalid("colour", "a widget has a colour"));
        }
        if others.iter().any(|other| other.colour == spec.colour) {
            return Err(RegistryError::Conflict(format!("another widget is {}", spec.colour)));
        }
        spec.colour = spec.colour.to_uppercase();
        Ok(format!("parts of {}", spec.name))
    }

    async fn admit_configured(&self, spec: &mut Widget) -> Result<(), RegistryError> {
        match spec.colour.is_empty() {
            true => Err(RegistryError::invalid("colour", "a widget has a colour")),
            false => Ok(()),
        }
    }

    async fn restore(&self, spec: &Widget) -> Result<String, RegistryError> {
        Ok(format!("restored {}", spec.name))
    }

    fn companions(&self, spec: &Widget, prepared: &String) -> Vec<DocumentWrite> {
        vec![DocumentWrite { kind: PARTS.into(), name: spec.name.clone(), document: Some(prepared.clone().into()) }]
    }

    fn leftovers(&self, name: &str) -> Result<Vec<DocumentWrite>, RegistryError> {
        Ok(vec![DocumentWrite { kind: PARTS.into(), name: name.to_owned(), document: None }])
    }

    fn run(&self, spec: Widget, prepared: String) -> String {
        self.journal.lock().unwrap().push(format!("run {} ({prepared})", spec.name));
        spec.name
    }

    async fn stop(&self, running: String) {
        self.journal.lock().unwrap().push(format!("stop {running}"));
    }

    fn removed(&self, name: &str) {
        self.journal.lock().unwrap().push(format!("removed {name}"));
    }

    fn view(&self, spec: &Widget, running: Option<&String>) -> WidgetView {
        WidgetView { name: spec.name.clone(), colour: spec.colour.clone(), running: running.is_some() }
    }
}

struct Odd;

/// Runs only widgets whose name ends in an odd digit.
impl Placement for Odd {
    fn runs_here(&self, _kind: &str, name: &str) -> bool {
        name.bytes().last().is_some_and(|b| b.is_ascii_digit() && (b - b'0') % 2 == 1)
    }
}

fn open(dir: &tempfile::TempDir) -> Store {
    Store::open(Location::Dir(dir.path().to_owned()), StoreConfig::default()).unwrap()
}

fn registry(store: &Store, placement: impl Placement) -> (Registry<Widgets>, Arc<Mutex<Vec<String>>>) {
    let journal = Arc::new(Mutex::new(Vec::new()));
    let kind = Widgets { journal: Arc::clone(&journal) };
    (Registry::new(kind, Arc::new(store.clone()), Arc::new(placement)), journal)
}

fn taken(journal: &Mutex<Vec<String>>) -> Vec<String> {
    std::mem::take(&mut *journal.lock().unwrap())
}

#[tokio::test]
async fn resources_are_checked_stored_run_and_removed_with_what_they_store_beside_them() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let (widgets, journal) = registry(&store, Everywhere);
    let created = widgets.create(widget("w1", "red")).await.unwrap();
    assert_eq!(
        created,
        WidgetView { name: "w1".into(), colour: "RED".into(), running: true },
        "prepare's changes kept"
    );
    assert_eq!(taken(&journal), ["run w1 (parts of w1)"]);
    assert_eq!(store.resource(PARTS, "w1").unwrap().as_deref(), Some(&b"parts of w1"[..]), "stored beside it");

    let refused = [
        (widget("w1", "blue"), "already exists"),
        (widget("w 2", "blue"), "name"),
        (widget("w2", ""), "colour"),
        (widget("w2", "RED"), "another widget is RED"),
    ];
    for (spec, why) in refused {
        let e = widgets.create(spec.clone()).await.expect_err("refused");
        assert!(e.to_string().contains(why), "{spec:?}: {e}");
    }
    assert!(matches!(widgets.create(widget("w1", "blue")).await, Err(RegistryError::AlreadyExists { .. })));
    widgets.create(widget("w2", "green")).await.unwrap();
    widgets.create(widget("w3", "blue")).await.unwrap();
    let e = widgets.create(widget("w4", "pink")).await.expect_err("over MAX");
    assert_eq!(e.to_string(), "a node runs at most 3 widgets");
    assert_eq!(store.resources(Widgets::KIND).unwrap().len(), 3, "nothing refused was stored");
    taken(&journal);

    widgets.remove("w1").await.unwrap();
    assert_eq!(taken(&journal), ["stop w1", "removed w1"]);
    assert_eq!(store.resource(Widgets::KIND, "w1").unwrap(), None);
    assert_eq!(store.resource(PARTS, "w1").unwrap(), None, "what it stored beside it went with it");
    assert!(matches!(widgets.remove("w1").await, Err(RegistryError::NotFound { .. })));
    assert_eq!(widgets.names(), ["w2", "w3"]);

    widgets.shutdown().await;
    let mut stopped = taken(&journal);
    stopped.sort();
    assert_eq!(stopped, ["stop w2", "stop w3"], "shutdown stops every running one");
    store.shutdown().await;
}

#[tokio::test]
async fn stored_resources_run_again_and_configured_ones_replace_them() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let (widgets, _) = registry(&store, Everywhere);
    widgets.create(widget("w1", "red")).await.unwrap();
    widgets.create(widget("w2", "green")).await.unwrap();
    widgets.shutdown().await;
    store.shutdown().await;

    let store = open(&dir);
    let (widgets, journal) = registry(&store, Everywhere);
    // A configured widget that does not pass its check is reported, and keeps no other from
    // starting; a valid one replaces the stored one of its name.
    let configured = [widget("w2", "violet"), widget("w5", "")];
    let e = widgets.start(&configured).await.expect_err("w5 has no colour");
    assert!(e.to_string().contains("colour"), "{e}");
    let mut ran = taken(&journal);
    ran.sort();
    assert_eq!(ran, ["run w1 (restored w1)", "run w2 (restored w2)"]);
    assert_eq!(widgets.get("w2").unwrap().colour, "violet");
    assert_eq!(widgets.get("w5"), None);
    widgets.shutdown().await;
    store.shutdown().await;
}

#[tokio::test]
async fn a_resource_placed_elsewhere_is_stored_and_listed_but_not_run() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let (widgets, journal) = registry(&store, Odd);
    assert!(widgets.create(widget("w1", "red")).await.unwrap().running);
    assert!(!widgets.create(widget("w2", "green")).await.unwrap().running);
    assert_eq!(taken(&journal), ["run w1 (parts of w1)"]);
    assert_eq!(widgets.list().len(), 2);
    assert_eq!(widgets.with_running("w2", |_| ()), None);
    widgets.remove("w2").await.unwrap();
    assert_eq!(taken(&journal), ["removed w2"], "nothing to stop here");
    widgets.shutdown().await;
    store.shutdown().await;

    let store = open(&dir);
    let (widgets, journal) = registry(&store, Odd);
    assert_eq!(widgets.start(&[]).await.unwrap(), 1, "w1 runs here");
    assert_eq!(taken(&journal), ["run w1 (restored w1)"]);
    assert!(!widgets.create(widget("w4", "blue")).await.unwrap().running);
    assert_eq!(widgets.names(), ["w1", "w4"]);
    widgets.shutdown().await;
    store.shutdown().await;
}

#[tokio::test]
async fn a_namesake_starts_without_what_an_earlier_one_left() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    // What a removal cut short by an older version may have left.
    let stale = DocumentWrite { kind: PARTS.into(), name: "w7".into(), document: Some(b"stale".to_vec()) };
    store.write_documents(vec![stale]).await.unwrap();
    let (widgets, _) = registry(&store, Everywhere);
    widgets.create(widget("w7", "red")).await.unwrap();
    assert_eq!(store.resource(PARTS, "w7").unwrap().as_deref(), Some(&b"parts of w7"[..]));
    widgets.shutdown().await;
    store.shutdown().await;
}
