//! What the MQTT broker's session for a client id is subscribed to, as far as Rill knows.
//!
//! A persistent session keeps its subscriptions: a bridge removed and added again with the same
//! client id and other filters finds the session present, and subscribing only when it is not
//! would leave the old filters in force and the new ones unsubscribed. So the filters are noted
//! (per broker URL and client id, as the session is the broker's) once the broker grants them,
//! and a present session whose filters differ is unsubscribed from the old ones and subscribed
//! again. (Subscribing again makes the broker send retained messages again.)

use crate::storage::{AppendError, DocumentWrite, Store};

/// The storage kind, named `<broker URL> <client id>`.
pub const KIND: &str = "mqtt-session";

/// Filters with their QoS, sorted.
pub(super) type Filters = Vec<(String, u8)>;

pub(super) fn sorted(mut filters: Filters) -> Filters {
    filters.sort();
    filters
}

/// The filters last granted to the session `key` names; `None` when not known.
pub(super) fn granted(store: &Store, key: &str) -> Option<Filters> {
    let document = store.resource(KIND, key).ok()??;
    serde_json::from_slice(&document).ok()
}

/// Notes that the session `key` names is subscribed to `filters`.
pub(super) async fn note_granted(store: &Store, key: &str, filters: &Filters) -> Result<(), AppendError> {
    let write = DocumentWrite {
        kind: KIND.to_owned(),
        name: key.to_owned(),
        document: Some(serde_json::to_vec(filters).expect("filters encode")),
    };
    store.write_documents(vec![write]).await
}

/// What to do on connecting: the filters to subscribe to and those to unsubscribe from.
pub(super) fn plan(session_present: bool, wanted: &Filters, granted: Option<&Filters>) -> (Filters, Vec<String>) {
    match granted {
        Some(granted) if session_present && granted == wanted => (Vec::new(), Vec::new()),
        Some(granted) if session_present => {
            let gone = granted.iter().filter(|(f, _)| !wanted.iter().any(|(w, _)| w == f)).map(|(f, _)| f.clone());
            (wanted.clone(), gone.collect())
        }
        // A new session has no subscriptions; a present one we know nothing of gets ours.
        _ => (wanted.clone(), Vec::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscribes_when_the_session_is_new_unknown_or_different() {
        let wanted = sorted(vec![("b/#".into(), 1), ("a/+".into(), 1)]);
        let same = wanted.clone();
        let other = sorted(vec![("a/+".into(), 0), ("old/#".into(), 1)]);
        assert_eq!(plan(true, &wanted, Some(&same)), (vec![], vec![]));
        assert_eq!(plan(false, &wanted, Some(&same)), (wanted.clone(), vec![]));
        assert_eq!(plan(true, &wanted, None), (wanted.clone(), vec![]));
        // QoS changed for a/+ (subscribing again replaces it), old/# is no longer wanted.
        assert_eq!(plan(true, &wanted, Some(&other)), (wanted.clone(), vec!["old/#".to_owned()]));
    }
}
