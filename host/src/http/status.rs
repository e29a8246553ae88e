//! What the broker is doing, on one screen: `GET /v1/status` (JSON, for `rill status`) and `GET /`
//! (the same as a server-rendered HTML page for people, refreshed every few seconds, with an
//! inline SVG chart of each topic's ingest rate; no script, no front-end build).

use std::fmt::Write as _;

use axum::Router;
use axum::extract::State;
use axum::response::Html;
use axum::routing::get;
use serde::{Deserialize, Serialize};

use super::AppState;
use super::error::ApiError;
use super::groups::{GroupSummary, summaries};
use super::plugins::{PluginArtifact, stored_plugins};
use super::rates::{Rate, history_span};
use super::topics::{PartitionView, partitions, summary_of};

pub fn routes() -> Router<AppState> {
    Router::new().route("/v1/status", get(status_json)).route("/", get(page))
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Status {
    pub ready: bool,
    pub version: String,
    pub uptime_s: u64,
    pub kafka_connections: i64,
    pub topics: Vec<TopicStatus>,
    pub groups: Vec<GroupSummary>,
    pub plugins: Vec<PluginArtifact>,
    #[serde(default)]
    pub pipelines: Vec<crate::pipelines::PipelineView>,
    #[serde(default)]
    pub mqtt: Vec<crate::mqtt::BridgeView>,
    #[serde(default)]
    pub mirrors: Vec<crate::replication::MirrorView>,
    /// The edges an aggregation node accepts (empty elsewhere).
    #[serde(default)]
    pub edges: Vec<crate::replication::cloud::EdgeStatus>,
    /// Sensor nodes heard from (empty when the device listener does not run).
    #[serde(default)]
    pub devices: Vec<crate::devices::DeviceStatus>,
    /// The device listener's serial ports (`[[devices.serial]]`).
    #[serde(default)]
    pub serial_ports: Vec<crate::devices::SerialPortStatus>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct TopicStatus {
    pub name: String,
    pub partitions: u32,
    pub records: u64,
    pub size_bytes: u64,
    /// Over the last sample interval (0 until two samples exist).
    pub records_per_s: f64,
    pub bytes_per_s: f64,
    /// Oldest first, one per sample interval.
    pub rates: Vec<Rate>,
    pub partition_offsets: Vec<PartitionView>,
}

pub fn status(state: &AppState) -> Result<Status, ApiError> {
    let topics = state
        .store
        .topics()
        .iter()
        .map(|topic| {
            let views = partitions(topic);
            let summary = summary_of(topic, &views);
            let rates = state.rates.rates(&topic.name);
            let last = rates.last().copied();
            TopicStatus {
                name: summary.name,
                partitions: summary.partitions,
                records: summary.records,
                size_bytes: summary.size_bytes,
                records_per_s: last.map_or(0.0, |r| r.records_per_s),
                bytes_per_s: last.map_or(0.0, |r| r.bytes_per_s),
                rates,
                partition_offsets: views,
            }
        })
        .collect();
    Ok(Status {
        ready: state.store.is_open() && state.listeners.ready() && state.store.appends_refused().is_none(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        uptime_s: state.started.elapsed().as_secs(),
        kafka_connections: state.metrics.kafka.connections_open(),
        topics,
        groups: summaries(state),
        plugins: stored_plugins(state)?,
        pipelines: state.pipelines.list(),
        mqtt: state.bridges.list(),
        mirrors: state.mirrors.list(),
        edges: state.cloud.as_ref().map(|cloud| cloud.status()).unwrap_or_default(),
        devices: state.devices.as_ref().map(|devices| devices.status()).unwrap_or_default(),
        serial_ports: state.devices.as_ref().map(|devices| devices.listener_status().serial).unwrap_or_default(),
    })
}

async fn status_json(State(state): State<AppState>) -> Result<axum::Json<Status>, ApiError> {
    status(&state).map(axum::Json)
}

async fn page(State(state): State<AppState>) -> Result<Html<String>, ApiError> {
    Ok(Html(render(&status(&state)?)))
}

/// Escapes text for HTML element content and attribute values.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// 1234567 → "1,234,567".
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// 1536 → "1.5 KiB".
pub fn bytes(n: f64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n;
    let mut unit = 0;
    while value >= 1024.0 && unit < units.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{value:.0} {}", units[0]) } else { format!("{value:.1} {}", units[unit]) }
}

/// A small line chart of records/s, scaled to its own maximum.
fn sparkline(rates: &[Rate]) -> String {
    const WIDTH: f64 = 240.0;
    const HEIGHT: f64 = 36.0;
    let span_ms = history_span().as_millis() as f64;
    let mut svg = format!(
        r#"<svg class="chart" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="records per second, last {} minutes">"#,
        (span_ms / 60_000.0).round()
    );
    let max = rates.iter().map(|r| r.records_per_s).fold(0.0, f64::max);
    if let (Some(last), true) = (rates.last(), max > 0.0) {
        let points: Vec<String> = rates
            .iter()
            .map(|r| {
                let x = WIDTH - (last.at_ms - r.at_ms) as f64 / span_ms * WIDTH;
                let y = HEIGHT - 2.0 - r.records_per_s / max * (HEIGHT - 4.0);
                format!("{x:.1},{y:.1}")
            })
            .collect();
        let _ = write!(
            svg,
            r##"<polyline fill="none" stroke="#2a7ab0" stroke-width="1.5" points="{}"/>"##,
            points.join(" ")
        );
        let _ = write!(svg, r#"<title>peak {max:.1} records/s</title>"#);
    } else {
        let _ = write!(svg, r##"<line x1="0" y1="{0}" x2="{WIDTH}" y2="{0}" stroke="#bbb"/>"##, HEIGHT - 2.0);
    }
    svg.push_str("</svg>");
    svg
}

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:1.5rem;color:#222}\
h1{font-size:1.3rem;margin:0 0 .3rem}h2{font-size:1.05rem;margin:1.4rem 0 .4rem}\
table{border-collapse:collapse}th,td{padding:.25rem .7rem;text-align:right;border-bottom:1px solid #e4e4e4}\
th:first-child,td:first-child{text-align:left}.muted{color:#777}.ok{color:#1a7f37}.bad{color:#b3261e}";

/// A titled table of `rows` (cells are HTML, escaped by the caller); without rows, the `empty`
/// sentence (HTML), or nothing at all when there is none.
fn section(html: &mut String, title: &str, id: &str, empty: Option<&str>, columns: &[&str], rows: &[Vec<String>]) {
    if rows.is_empty() {
        if let Some(empty) = empty {
            let _ = write!(html, "<h2>{title}</h2><p class=\"muted\">{empty}</p>");
        }
        return;
    }
    let _ = write!(html, "<h2>{title}</h2><table id=\"{id}\"><tr>");
    for column in columns {
        let _ = write!(html, "<th>{}</th>", escape(column));
    }
    html.push_str("</tr>");
    for row in rows {
        html.push_str("<tr>");
        for cell in row {
            let _ = write!(html, "<td>{cell}</td>");
        }
        html.push_str("</tr>");
    }
    html.push_str("</table>");
}

/// The status page: one HTML document, written top to bottom. Long because it is a template;
/// the sections that repeat (tables, replication) are functions of their own.
pub fn render(status: &Status) -> String {
    let mut html = String::new();
    let _ = write!(
        html,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"5\">\
         <title>Rill status</title><style>{STYLE}</style></head><body>"
    );
    let (class, word) = if status.ready { ("ok", "ready") } else { ("bad", "not ready") };
    let _ = write!(
        html,
        "<h1>Rill {}</h1><p><span class=\"{class}\" id=\"health\">{word}</span> · up {} s · {} Kafka connections</p>",
        escape(&status.version),
        status.uptime_s,
        status.kafka_connections
    );

    let ingest_header = format!("ingest, last {} min", history_span().as_secs() / 60);
    let topics: Vec<Vec<String>> = status
        .topics
        .iter()
        .map(|t| {
            vec![
                escape(&t.name),
                t.partitions.to_string(),
                thousands(t.records),
                bytes(t.size_bytes as f64),
                format!("{:.1}", t.records_per_s),
                bytes(t.bytes_per_s),
                sparkline(&t.rates),
            ]
        })
        .collect();
    let columns = ["topic", "partitions", "records", "size", "records/s", "bytes/s", ingest_header.as_str()];
    section(&mut html, "Topics", "topics", Some("No topics yet."), &columns, &topics);
    let partitions: Vec<Vec<String>> = status
        .topics
        .iter()
        .flat_map(|t| {
            t.partition_offsets.iter().map(|p| {
                vec![
                    escape(&t.name),
                    p.partition.to_string(),
                    thousands(p.log_start_offset),
                    thousands(p.log_end_offset),
                    thousands(p.durable_offset),
                    bytes(p.size_bytes as f64),
                    thousands(p.records_in),
                    thousands(p.records_out),
                ]
            })
        })
        .collect();
    let columns = ["topic", "partition", "log start", "log end", "durable to", "size", "records in", "records out"];
    section(&mut html, "Partitions", "partitions", None, &columns, &partitions);
    let groups: Vec<Vec<String>> = status
        .groups
        .iter()
        .map(|g| vec![escape(&g.group), escape(&g.state), g.members.to_string(), thousands(g.lag)])
        .collect();
    let columns = ["group", "state", "members", "lag (records)"];
    section(&mut html, "Consumer groups", "groups", Some("No consumer groups yet."), &columns, &groups);
    let plugins: Vec<Vec<String>> = status
        .plugins
        .iter()
        .map(|p| {
            let sha = escape(p.sha256.get(..12).unwrap_or(&p.sha256));
            vec![escape(&p.name), escape(&p.version), bytes(p.size_bytes as f64), format!("<code>{sha}</code>")]
        })
        .collect();
    let empty = "No plugins uploaded (<code>rill plugin upload</code>).";
    section(&mut html, "Plugins", "plugins", Some(empty), &["plugin", "version", "size", "sha256"], &plugins);
    let pipelines: Vec<Vec<String>> = status
        .pipelines
        .iter()
        .map(|p| {
            let state = match &p.status.reason {
                Some(reason) => format!("{} — {}", escape(&p.status.state), escape(reason)),
                None => escape(&p.status.state),
            };
            vec![
                escape(&p.spec.name),
                state,
                format!("{} → {}", escape(&p.spec.from), escape(&p.spec.to)),
                escape(&p.status.plugins.join(" → ")),
                thousands(p.status.lag),
                thousands(p.status.counts.records_in),
                thousands(p.status.counts.records_out),
                thousands(p.status.counts.batches_failed),
            ]
        })
        .collect();
    let bridges: Vec<Vec<String>> = status
        .mqtt
        .iter()
        .map(|b| {
            let state = match (&b.status.connected, &b.status.last_error) {
                (true, _) => "connected".to_owned(),
                (false, Some(error)) => format!("disconnected — {}", escape(error)),
                (false, None) => "connecting".to_owned(),
            };
            vec![
                escape(&b.spec.name),
                state,
                escape(&b.spec.url),
                escape(&b.spec.target),
                thousands(b.status.messages_in),
                thousands(b.status.records_out),
                thousands(b.status.messages_dead_lettered),
            ]
        })
        .collect();
    let empty = "No MQTT bridges (<code>[[mqtt]]</code> in the config, or <code>rill mqtt add</code>).";
    let columns = ["bridge", "state", "MQTT broker", "target", "messages in", "records out", "dead-lettered"];
    section(&mut html, "MQTT ingest", "mqtt", Some(empty), &columns, &bridges);
    replication_sections(&mut html, status);
    devices_section(&mut html, status);
    let empty = "No pipelines (<code>rill pipeline create</code>).";
    let columns = ["pipeline", "state", "topics", "plugins", "lag", "records in", "records out", "failed batches"];
    section(&mut html, "Pipelines", "pipelines", Some(empty), &columns, &pipelines);
    let _ = write!(
        html,
        "<p class=\"muted\">Machine-readable: <a href=\"/v1/status\">/v1/status</a> · <a href=\"/metrics\">/metrics</a> · \
         <a href=\"/ready\">/ready</a></p></body></html>"
    );
    html
}

/// Sensor nodes, one row each (only when some were heard from).
fn devices_section(html: &mut String, status: &Status) {
    let rows: Vec<Vec<String>> = status
        .devices
        .iter()
        .map(|d| {
            vec![
                escape(&d.device),
                if d.connections > 0 { "connected".into() } else { "away".into() },
                format!("{:#x} / {}", d.boot, d.last_seq),
                thousands(d.records),
                thousands(d.duplicates),
                thousands(d.gaps),
                thousands(d.refused),
                thousands(d.dropped_by_device),
            ]
        })
        .collect();
    if !rows.is_empty() {
        let columns = [
            "device",
            "link",
            "boot / last sequence",
            "records",
            "repeats",
            "gaps",
            "dead-lettered",
            "dropped on the device",
        ];
        section(html, "Devices (uplink)", "devices", None, &columns, &rows);
    }
    // An operator's first question about a wired node: is the port there?
    let ports: Vec<Vec<String>> = status
        .serial_ports
        .iter()
        .map(|p| {
            vec![
                escape(&p.path),
                p.baud.to_string(),
                if p.open { "open".into() } else { "closed".into() },
                escape(p.last_error.as_deref().unwrap_or("")),
            ]
        })
        .collect();
    if !ports.is_empty() {
        section(html, "Serial ports (devices)", "serial-ports", None, &["port", "baud", "state", "last error"], &ports);
    }
}

/// Mirrors (this node as an edge) and accepted edges (this node as an aggregation node), one row
/// per partition. Long because each row is a list of cells built in column order.
fn replication_sections(html: &mut String, status: &Status) {
    let mut rows = Vec::new();
    for mirror in &status.mirrors {
        let link = match &mirror.status.last_error {
            Some(error) if mirror.status.link != "connected" => {
                format!("{} — {}", escape(&mirror.status.link), escape(error))
            }
            _ => escape(&mirror.status.link),
        };
        let name = match &mirror.status.filter {
            Some(filter) => format!(
                "{} (filter {}: {} records held back)",
                escape(&mirror.spec.name),
                escape(filter),
                thousands(mirror.status.records_filtered)
            ),
            None => escape(&mirror.spec.name),
        };
        if mirror.status.partitions.is_empty() {
            rows.push(vec![
                name.clone(),
                link.clone(),
                escape(&mirror.spec.upstream),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
            ]);
        }
        for p in &mirror.status.partitions {
            let state = match &p.error {
                Some(error) => format!("{} — {}", escape(&p.state), escape(error)),
                None => escape(&p.state),
            };
            rows.push(vec![
                name.clone(),
                link.clone(),
                escape(&mirror.spec.upstream),
                format!("{}/{}", escape(&p.topic), p.partition),
                thousands(p.leader_offset),
                thousands(p.acked_offset),
                format!("{} records, {}, {:.1} s", thousands(p.lag_records), bytes(p.lag_bytes as f64), p.lag_seconds),
                state,
            ]);
        }
    }
    if !rows.is_empty() {
        let columns = ["mirror", "link", "upstream", "partition", "leader offset", "acked offset", "lag", "state"];
        section(html, "Mirrors (edge → cloud)", "mirrors", None, &columns, &rows);
    }
    let mut rows = Vec::new();
    for edge in &status.edges {
        let link = match (edge.connected, &edge.last_error) {
            (true, _) => format!("connected ({})", escape(edge.peer.as_deref().unwrap_or("-"))),
            (false, Some(error)) => format!("disconnected — {}", escape(error)),
            (false, None) => "disconnected".into(),
        };
        for p in &edge.partitions {
            rows.push(vec![
                escape(&edge.edge),
                link.clone(),
                format!("{}/{}", escape(&p.edge_topic), p.partition),
                escape(p.copy_topic.as_deref().unwrap_or("-")),
                thousands(p.durable_end),
                escape(p.stopped.as_deref().unwrap_or("mirroring")),
            ]);
        }
        if edge.partitions.is_empty() {
            rows.push(vec![escape(&edge.edge), link, "-".into(), "-".into(), "-".into(), "-".into()]);
        }
    }
    if !rows.is_empty() {
        let columns = ["edge", "link", "edge partition", "copy", "acknowledged offset", "state"];
        section(html, "Edges (aggregation node)", "edges", None, &columns, &rows);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_text_render_safely() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(bytes(512.0), "512 B");
        assert_eq!(bytes(1536.0), "1.5 KiB");
        assert_eq!(escape("<a href=\"x\">&'"), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;");
        let status = Status {
            ready: true,
            version: "0.1.0".into(),
            uptime_s: 3,
            kafka_connections: 1,
            topics: vec![TopicStatus {
                name: "<script>".into(),
                partitions: 2,
                records: 1500,
                size_bytes: 2048,
                records_per_s: 12.5,
                bytes_per_s: 100.0,
                rates: vec![
                    Rate { at_ms: 0, records_per_s: 1.0, bytes_per_s: 1.0 },
                    Rate { at_ms: 5000, records_per_s: 12.5, bytes_per_s: 100.0 },
                ],
                partition_offsets: vec![],
            }],
            groups: vec![],
            plugins: vec![],
            pipelines: vec![],
            mqtt: vec![],
            mirrors: vec![],
            edges: vec![],
            devices: vec![],
            serial_ports: vec![],
        };
        let html = render(&status);
        assert!(html.contains("&lt;script&gt;") && !html.contains("<script>"), "{html}");
        assert!(!html.contains("Mirrors") && !html.contains("Edges"), "no replication sections without it");
        let mirrored = Status {
            mirrors: vec![crate::replication::MirrorView {
                spec: crate::replication::MirrorSpec {
                    name: "cloud".into(),
                    upstream: "agg:9093".into(),
                    edge_id: "gw-1".into(),
                    token: "********".into(),
                    topics: vec!["sensors".into()],
                    rate_limit_bytes_per_s: None,
                    window_bytes: 1 << 20,
                    filter: None,
                },
                status: crate::replication::MirrorStatus {
                    link: "waiting".into(),
                    last_error: Some("cannot connect to <agg>".into()),
                    partitions: vec![crate::replication::edge::MirrorPartitionStatus {
                        topic: "sensors".into(),
                        partition: 0,
                        leader_offset: 12_000,
                        acked_offset: 10_000,
                        lag_records: 2_000,
                        lag_bytes: 4096,
                        lag_seconds: 1.5,
                        state: "streaming".into(),
                        error: None,
                    }],
                    ..Default::default()
                },
            }],
            ..status
        };
        let html = render(&mirrored);
        assert!(html.contains("cannot connect to &lt;agg&gt;") && html.contains("12,000"), "{html}");
        assert!(html.contains("2,000 records, 4.0 KiB, 1.5 s"), "{html}");
        assert!(html.contains("1,500") && html.contains("2.0 KiB") && html.contains("<polyline"), "{html}");
    }
}
