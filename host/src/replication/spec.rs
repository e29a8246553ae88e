//! What the config file says about replication: `[[mirror]]` on an edge (what to send upstream,
//! where), `[replication]` on an aggregation node (where to listen, whom to accept).

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::limits::{FOLLOWER_PENDING_BYTES_MAX, MIRROR_WINDOW_BYTES_DEFAULT, MIRROR_WINDOW_BYTES_MIN};
use crate::plugins::StageSpec;

/// An edge's mirror: its topics, copied to an aggregation node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MirrorSpec {
    pub name: String,
    /// The aggregation node's replication listener, `host:port`.
    pub upstream: String,
    /// How this edge is known upstream (and the prefix of its copies' names there).
    pub edge_id: String,
    /// The shared secret the aggregation node accepts for `edge_id`. Never shown back.
    pub token: String,
    /// Topic names, or patterns with `*` (any run of characters) and `?` (one character).
    pub topics: Vec<String>,
    /// Batch bytes per second sent upstream (metered links); unlimited when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit_bytes_per_s: Option<u64>,
    /// Bytes sent ahead of the aggregation node's durable acknowledgement.
    #[serde(default = "default_window")]
    pub window_bytes: u64,
    /// A transform plugin that filters or downsamples what goes upstream; the copy keeps the
    /// edge's offsets, with gaps where records were dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<StageSpec>,
}

fn default_window() -> u64 {
    MIRROR_WINDOW_BYTES_DEFAULT
}

/// A field of a spec that is wrong, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidSpec {
    pub field: &'static str,
    pub message: String,
}

impl std::fmt::Display for InvalidSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

fn invalid(field: &'static str, message: impl Into<String>) -> InvalidSpec {
    InvalidSpec { field, message: message.into() }
}

/// Edge ids name copy topics (`<edge-id>.<topic>`), so they use Kafka's topic characters.
fn check_edge_id(field: &'static str, id: &str) -> Result<(), InvalidSpec> {
    let valid =
        !id.is_empty() && id.len() <= 64 && id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'));
    if !valid {
        return Err(invalid(field, format!("{id:?} must be 1-64 characters of [a-zA-Z0-9_-]")));
    }
    Ok(())
}

impl MirrorSpec {
    pub fn check(&self) -> Result<(), InvalidSpec> {
        if self.name.is_empty() || self.name.len() > 64 || self.name.contains('/') {
            return Err(invalid("name", "must be 1-64 characters without '/'"));
        }
        crate::config::parse_host_port(&self.upstream).map_err(|e| invalid("upstream", e))?;
        check_edge_id("edge_id", &self.edge_id)?;
        if self.token.is_empty() {
            return Err(invalid("token", "must not be empty"));
        }
        if self.token.len() > rill_core::limits::REPLICATION_TEXT_BYTES_MAX {
            return Err(invalid("token", "is too long"));
        }
        if self.topics.is_empty() {
            return Err(invalid("topics", "name at least one topic or pattern"));
        }
        for pattern in &self.topics {
            let valid = !pattern.is_empty()
                && pattern.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '*' | '?'));
            if !valid {
                return Err(invalid("topics", format!("{pattern:?} is not a topic name or pattern (* and ?)")));
            }
        }
        if self.rate_limit_bytes_per_s == Some(0) {
            return Err(invalid("rate_limit_bytes_per_s", "must be positive (leave it out for no limit)"));
        }
        // Above what an aggregation node buffers per edge, frames would be dropped and sent again.
        if !(MIRROR_WINDOW_BYTES_MIN..=FOLLOWER_PENDING_BYTES_MAX as u64).contains(&self.window_bytes) {
            return Err(invalid(
                "window_bytes",
                format!("must be {MIRROR_WINDOW_BYTES_MIN}..={FOLLOWER_PENDING_BYTES_MAX}"),
            ));
        }
        Ok(())
    }

    /// Whether the mirror copies `topic`.
    pub fn mirrors(&self, topic: &str) -> bool {
        self.topics.iter().any(|pattern| glob_matches(pattern.as_bytes(), topic.as_bytes()))
    }
}

/// `*` matches any run of characters, `?` any one; everything else itself.
fn glob_matches(pattern: &[u8], text: &[u8]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some((b'*', rest)) => (0..=text.len()).any(|skip| glob_matches(rest, &text[skip..])),
        Some((&c, rest)) => {
            text.split_first().is_some_and(|(&t, text)| (c == b'?' || c == t) && glob_matches(rest, text))
        }
    }
}

/// The aggregation node's side: `[replication]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReplicationSection {
    /// Where edges connect (`--replication-listen`). The listener runs when `edges` accepts any.
    pub listen: SocketAddr,
    /// The copy of an edge's topic: `{edge}` and `{topic}` are replaced.
    pub copy_topic: String,
    /// What a new incarnation of an edge's topic (its data dir wiped or replaced) gets.
    pub on_new_incarnation: NewIncarnation,
    /// The edges accepted, with their tokens.
    pub edges: Vec<AcceptedEdge>,
}

impl Default for ReplicationSection {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 9093)),
            copy_topic: "{edge}.{topic}".into(),
            on_new_incarnation: NewIncarnation::NewTopic,
            edges: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum NewIncarnation {
    /// A new copy topic, `<copy>.<first 8 hex digits of the new incarnation>`; the old copy stays
    /// as it is.
    NewTopic,
    /// Stop mirroring the topic until an operator deletes or renames the old copy.
    Stop,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcceptedEdge {
    pub id: String,
    pub token: String,
}

impl ReplicationSection {
    pub fn check(&self) -> Result<(), InvalidSpec> {
        let placeholders_ok = self.copy_topic.contains("{edge}") && self.copy_topic.contains("{topic}");
        let sample = self.copy_name("edge", "topic");
        if !placeholders_ok || crate::storage::topic::validate_topic_name(&sample).is_err() {
            return Err(invalid(
                "copy_topic",
                format!("{:?} must hold {{edge}} and {{topic}} and make a valid topic name", self.copy_topic),
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for edge in &self.edges {
            check_edge_id("edges.id", &edge.id)?;
            if edge.token.is_empty() {
                return Err(invalid("edges.token", format!("edge {:?} has an empty token", edge.id)));
            }
            if !seen.insert(&edge.id) {
                return Err(invalid("edges.id", format!("{:?} is listed twice", edge.id)));
            }
        }
        Ok(())
    }

    /// The copy topic of `edge`'s `topic`.
    pub fn copy_name(&self, edge: &str, topic: &str) -> String {
        self.copy_topic.replace("{edge}", edge).replace("{topic}", topic)
    }

    /// Whether `token` is `edge`'s.
    pub fn accepts(&self, edge: &str, token: &str) -> bool {
        self.edges.iter().any(|accepted| accepted.id == edge && constant_time_eq(&accepted.token, token))
    }
}

/// Compares secrets without stopping at the first difference.
fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> MirrorSpec {
        MirrorSpec {
            name: "cloud".into(),
            upstream: "cloud.example:9093".into(),
            edge_id: "gw-1".into(),
            token: "t".into(),
            topics: vec!["sensors".into(), "alerts.*".into(), "log-?".into()],
            rate_limit_bytes_per_s: None,
            window_bytes: MIRROR_WINDOW_BYTES_DEFAULT,
            filter: None,
        }
    }

    #[test]
    fn topics_match_names_and_patterns() {
        let spec = spec();
        assert!(spec.check().is_ok());
        for topic in ["sensors", "alerts.", "alerts.fire", "log-1"] {
            assert!(spec.mirrors(topic), "{topic}");
        }
        for topic in ["sensors2", "alerts", "log-12", "xsensors"] {
            assert!(!spec.mirrors(topic), "{topic}");
        }
    }

    #[test]
    fn bad_specs_name_their_field() {
        let field = |change: fn(&mut MirrorSpec)| {
            let mut spec = spec();
            change(&mut spec);
            spec.check().unwrap_err().field
        };
        assert_eq!(field(|s| s.upstream = "nowhere".into()), "upstream");
        assert_eq!(field(|s| s.edge_id = "gw 1".into()), "edge_id");
        assert_eq!(field(|s| s.token.clear()), "token");
        assert_eq!(field(|s| s.topics = vec!["a b".into()]), "topics");
        assert_eq!(field(|s| s.topics.clear()), "topics");
        assert_eq!(field(|s| s.rate_limit_bytes_per_s = Some(0)), "rate_limit_bytes_per_s");
        assert_eq!(field(|s| s.window_bytes = 1), "window_bytes");
    }

    #[test]
    fn the_aggregation_node_names_copies_and_checks_tokens() {
        let section = ReplicationSection {
            edges: vec![AcceptedEdge { id: "gw-1".into(), token: "secret".into() }],
            ..ReplicationSection::default()
        };
        assert!(section.check().is_ok());
        assert_eq!(section.copy_name("gw-1", "sensors"), "gw-1.sensors");
        assert!(section.accepts("gw-1", "secret"));
        assert!(!section.accepts("gw-1", "secreT") && !section.accepts("gw-2", "secret"));
        let bad = ReplicationSection { copy_topic: "{edge}".into(), ..ReplicationSection::default() };
        assert_eq!(bad.check().unwrap_err().field, "copy_topic");
    }
}
