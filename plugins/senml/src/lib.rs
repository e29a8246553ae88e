//! `senml`: ingests SenML JSON packs (RFC 8428), as many sensors and LwM2M devices publish them
//! over MQTT, as one record per measurement.
//!
//! For each record of a pack, base fields (`bn`, `bt`, `bu`, `bv`, `bs`) are resolved as the RFC
//! says: name = `bn` + `n`, time = `bt` + `t` in seconds (a resolved time below 2^28 is relative to
//! now: the message's receive time), unit = `u` or `bu`, value = `v` + `bv`, sum = `s` + `bs`.
//! Each measurement becomes a record keyed by its full name, whose value is a JSON object with
//! `n`, `u` (when known) and the value (`v`, `vs`, `vb`, `vd` or `s`), stamped with the resolved
//! time in milliseconds, and with the source topic in a `source.topic` header. A measurement
//! with an absolute time also gets a `senml.id` header, `<name>@<time in s>`: a name and a time
//! identify a measurement, so a pack a device sends again yields the same ids, and a bridge with
//! `dedup.record_header = "senml.id"` stores it once. (Relative times count from receipt, so they
//! give no stable id.) A pack that is not
//! a JSON array of objects, a record without a name or a value, or a wrong type is refused with
//! the message's index.

use rill_plugin_sdk::{Config, Error, Ingest, NewRecord, Plugin, SourceMessage, ingest_plugin};
use serde::Deserialize;
use std::borrow::Cow;

/// Below this many seconds a SenML time is relative to now (RFC 8428, section 4.5.3).
const RELATIVE_TIME_LIMIT: f64 = 268_435_456.0;

/// The header naming a measurement with an absolute time: `<name>@<time in seconds>`, the time
/// at full precision.
const ID_HEADER: &[u8] = b"senml.id";

#[derive(Debug)]
pub struct Senml;

impl Plugin for Senml {
    const NAME: &'static str = "senml";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    fn new(_config: &Config) -> Result<Self, Error> {
        Ok(Senml)
    }
}

/// The base fields in force, as they accumulate over a pack.
#[derive(Debug, Default)]
struct Base<'a> {
    name: Cow<'a, str>,
    time: f64,
    unit: Option<Cow<'a, str>>,
    value: f64,
    sum: f64,
}

/// One SenML record as it is written: fields borrowed from the payload where no escape forces a
/// copy, unknown fields ignored. Parsed straight into this (no JSON tree): in Wasm the tree and
/// its allocations cost more than the parsing.
#[derive(Debug, Deserialize)]
struct Entry<'a> {
    #[serde(borrow)]
    bn: Option<Cow<'a, str>>,
    bt: Option<f64>,
    #[serde(borrow)]
    bu: Option<Cow<'a, str>>,
    bv: Option<f64>,
    bs: Option<f64>,
    #[serde(borrow)]
    n: Option<Cow<'a, str>>,
    #[serde(borrow)]
    u: Option<Cow<'a, str>>,
    v: Option<f64>,
    #[serde(borrow)]
    vs: Option<Cow<'a, str>>,
    vb: Option<bool>,
    #[serde(borrow)]
    vd: Option<Cow<'a, str>>,
    s: Option<f64>,
    t: Option<f64>,
}

/// A measurement's value, as the record's JSON gives it.
enum Measured<'a> {
    Number(&'static str, f64),
    Text(&'static str, &'a str),
    Bool(bool),
}

/// Appends `text` as a JSON string (RFC 8259 escapes).
fn push_string(out: &mut Vec<u8>, text: &str) {
    out.push(b'"');
    if !text.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20) {
        out.extend_from_slice(text.as_bytes());
        out.push(b'"');
        return;
    }
    for c in text.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            c if (c as u32) < 0x20 => out.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes()),
            c => {
                let mut buffer = [0; 4];
                out.extend_from_slice(c.encode_utf8(&mut buffer).as_bytes());
            }
        }
    }
    out.push(b'"');
}

/// The record value: `{"n":…,"u":…,<field>:…}`, written directly.
fn record_value(name: &str, unit: Option<&str>, measured: &Measured<'_>) -> Result<Vec<u8>, Error> {
    let mut value = Vec::with_capacity(name.len() + 48);
    value.extend_from_slice(b"{\"n\":");
    push_string(&mut value, name);
    if let Some(unit) = unit {
        value.extend_from_slice(b",\"u\":");
        push_string(&mut value, unit);
    }
    let field = match measured {
        Measured::Number(field, _) | Measured::Text(field, _) => field,
        Measured::Bool(_) => "vb",
    };
    value.extend_from_slice(b",\"");
    value.extend_from_slice(field.as_bytes());
    value.extend_from_slice(b"\":");
    match measured {
        // serde_json's number format (ryu), as before.
        Measured::Number(_, number) => {
            value.extend_from_slice(serde_json::to_string(number).map_err(|e| Error::fatal(e.to_string()))?.as_bytes())
        }
        Measured::Text(_, text) => push_string(&mut value, text),
        Measured::Bool(flag) => value.extend_from_slice(if *flag { b"true" } else { b"false" }),
    }
    value.push(b'}');
    Ok(value)
}

impl Ingest for Senml {
    fn ingest(&mut self, message: &SourceMessage<'_>, records: &mut Vec<NewRecord>) -> Result<(), Error> {
        let pack: Vec<Entry<'_>> = serde_json::from_slice(message.payload)
            .map_err(|e| Error::invalid_input(format!("not SenML JSON (a pack is an array of records): {e}")))?;
        let now_s = message.received_ms as f64 / 1000.0;
        let mut base = Base::default();
        for (position, entry) in pack.into_iter().enumerate() {
            let at = |message: String| Error::invalid_input(format!("SenML record {position}: {message}"));
            if let Some(name) = entry.bn {
                base.name = name;
            }
            if let Some(time) = entry.bt {
                base.time = time;
            }
            if let Some(unit) = entry.bu {
                base.unit = Some(unit);
            }
            if let Some(value) = entry.bv {
                base.value = value;
            }
            if let Some(sum) = entry.bs {
                base.sum = sum;
            }
            let name = format!("{}{}", base.name, entry.n.as_deref().unwrap_or(""));
            let measured = if let Some(v) = entry.v {
                Measured::Number("v", v + base.value)
            } else if let Some(vs) = &entry.vs {
                Measured::Text("vs", vs)
            } else if let Some(vb) = entry.vb {
                Measured::Bool(vb)
            } else if let Some(vd) = &entry.vd {
                Measured::Text("vd", vd)
            } else if let Some(s) = entry.s {
                Measured::Number("s", s + base.sum)
            } else if entry.n.is_none() && entry.u.is_none() && entry.t.is_none() {
                // A record of base fields only sets them for the records after it.
                continue;
            } else {
                return Err(at(format!("no value (v, vs, vb, vd or s) for {name}")));
            };
            if name.is_empty() {
                return Err(at("no name (bn + n is empty)".into()));
            }
            let value = record_value(&name, entry.u.as_deref().or(base.unit.as_deref()), &measured)?;
            let mut time = base.time + entry.t.unwrap_or(0.0);
            let absolute = time >= RELATIVE_TIME_LIMIT;
            if !absolute {
                time += now_s;
            }
            let timestamp = (time * 1000.0).round() as i64;
            let mut headers = vec![(b"source.topic".to_vec(), Some(message.topic.as_bytes().to_vec()))];
            if absolute {
                // The time as given, in seconds: two measurements within a millisecond differ.
                headers.push((ID_HEADER.to_vec(), Some(format!("{name}@{time}").into_bytes())));
            }
            records.push(NewRecord { timestamp, key: Some(name.into_bytes()), value: Some(value), headers });
        }
        Ok(())
    }
}

ingest_plugin!(Senml);

#[cfg(test)]
mod tests {
    use super::*;
    use rill_plugin_sdk::ingest_messages;
    use rill_plugin_sdk::rill_core::batch::{Batch, seal_crc};

    fn message(payload: &str) -> SourceMessage<'_> {
        SourceMessage {
            payload: payload.as_bytes(),
            topic: "sensors/greenhouse",
            qos: 1,
            retained: false,
            properties: &[],
            received_ms: 1_700_000_000_000,
        }
    }

    /// (key, value, timestamp) of every record produced.
    fn records(payloads: &[&str]) -> Result<Vec<(String, String, i64)>, Error> {
        let messages: Vec<SourceMessage<'_>> = payloads.iter().map(|p| message(p)).collect();
        let mut output = ingest_messages(&mut Senml, &messages)?;
        if output.is_empty() {
            return Ok(Vec::new());
        }
        seal_crc(&mut output).unwrap();
        let batch = Batch::parse(&output).unwrap();
        let base = batch.header().base_timestamp;
        Ok(batch
            .records()
            .unwrap()
            .map(|r| {
                let r = r.unwrap();
                let text = |b: Option<&[u8]>| String::from_utf8(b.unwrap().to_vec()).unwrap();
                (text(r.key), text(r.value), r.timestamp(base))
            })
            .collect())
    }

    #[test]
    fn the_rfc_example_resolves_base_fields() {
        // RFC 8428, section 5.1.2 (multiple data points), shortened.
        let pack = r#"[
            {"bn":"urn:dev:ow:10e2073a01080063:","bt":1.320067464e+09,"bu":"%RH","v":21.2},
            {"t":10,"v":21.3},
            {"n":"temp","u":"Cel","t":20,"v":23.1}
        ]"#;
        let got = records(&[pack]).unwrap();
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].0, "urn:dev:ow:10e2073a01080063:");
        assert_eq!(got[0].1, r#"{"n":"urn:dev:ow:10e2073a01080063:","u":"%RH","v":21.2}"#);
        assert_eq!(got[0].2, 1_320_067_464_000);
        assert_eq!(got[1].2, 1_320_067_474_000);
        assert_eq!(got[2].0, "urn:dev:ow:10e2073a01080063:temp");
        assert_eq!(got[2].1, r#"{"n":"urn:dev:ow:10e2073a01080063:temp","u":"Cel","v":23.1}"#);
    }

    #[test]
    fn relative_times_count_from_receipt_and_values_of_every_kind() {
        let got =
            records(&[r#"[{"n":"door","vb":true,"t":-5},{"n":"fw","vs":"1.2"},{"n":"rain","s":3,"bs":1}]"#]).unwrap();
        assert_eq!(got[0], ("door".into(), r#"{"n":"door","vb":true}"#.into(), 1_699_999_995_000));
        assert_eq!(got[1].1, r#"{"n":"fw","vs":"1.2"}"#);
        assert_eq!(got[2].1, r#"{"n":"rain","s":4.0}"#);
    }

    #[test]
    fn measurements_with_absolute_times_carry_their_id() {
        let messages = [
            message(r#"[{"bn":"dev:","bt":1.7e9,"n":"temp","v":1},{"n":"hum","t":-2,"v":2},{"n":"rel","t":-5,"v":3}]"#),
            message(r#"[{"n":"late","t":-5,"v":4}]"#),
            // Sampled faster than a millisecond: still told apart.
            message(r#"[{"bn":"acc","bt":1.7e9,"t":0.0001,"v":5},{"t":0.0004,"v":6}]"#),
        ];
        let mut output = ingest_messages(&mut Senml, &messages).unwrap();
        seal_crc(&mut output).unwrap();
        let batch = Batch::parse(&output).unwrap();
        let ids: Vec<Option<String>> = batch
            .records()
            .unwrap()
            .map(|r| {
                let r = r.unwrap();
                r.headers().find(|h| h.key == ID_HEADER).map(|h| String::from_utf8(h.value.unwrap().to_vec()).unwrap())
            })
            .collect();
        // The base time stays in force for the pack; the last message's time is relative.
        assert_eq!(
            ids,
            [
                Some("dev:temp@1700000000".into()),
                Some("dev:hum@1699999998".into()),
                Some("dev:rel@1699999995".into()),
                None,
                Some("acc@1700000000.0001".into()),
                Some("acc@1700000000.0004".into()),
            ]
        );
    }

    #[test]
    fn names_and_texts_are_escaped_as_json() {
        let got = records(&[r#"[{"bn":"dev\"1\\","n":"x\ny","vs":"a\u0001b","u":"°C"}]"#]).unwrap();
        let value: serde_json::Value = serde_json::from_str(&got[0].1).unwrap();
        assert_eq!(value["n"], "dev\"1\\x\ny");
        assert_eq!(value["vs"], "a\u{1}b");
        assert_eq!(value["u"], "°C");
        assert_eq!(got[0].0, "dev\"1\\x\ny");
    }

    #[test]
    fn malformed_packs_are_refused_naming_the_message() {
        let good = r#"[{"n":"a","v":1}]"#;
        for bad in ["{}", "not json", r#"[{"v":1}]"#, r#"[{"n":"a"}]"#, r#"[{"n":"a","v":"x"}]"#, "[1]"] {
            let error = records(&[good, bad]).unwrap_err();
            assert_eq!(error.record_index, Some(1), "{bad}: {error}");
        }
        assert!(records(&["[]"]).unwrap().is_empty());
    }
}
