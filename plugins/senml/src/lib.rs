//! `senml`: ingests SenML JSON packs (RFC 8428), as many sensors and LwM2M devices publish them
//! over MQTT, as one record per measurement.
//!
//! For each record of a pack, base fields (`bn`, `bt`, `bu`, `bv`, `bs`) are resolved as the RFC
//! says: name = `bn` + `n`, time = `bt` + `t` in seconds (a resolved time below 2^28 is relative to
//! now: the message's receive time), unit = `u` or `bu`, value = `v` + `bv`, sum = `s` + `bs`.
//! Each measurement becomes a record keyed by its full name, whose value is a JSON object with
//! `n`, `u` (when known) and the value (`v`, `vs`, `vb`, `vd` or `s`), stamped with the resolved
//! time in milliseconds, and with the source topic in a `source.topic` header. A measurement
//! with an absolute time also gets a `senml.id` header, `<name>@<time in ms>`: a name and a time
//! identify a measurement, so a pack a device sends again yields the same ids, and a bridge with
//! `dedup.record_header = "senml.id"` stores it once. (Relative times count from receipt, so they
//! give no stable id.) A pack that is not
//! a JSON array of objects, a record without a name or a value, or a wrong type is refused with
//! the message's index.

use rill_plugin_sdk::{Config, Error, Ingest, NewRecord, Plugin, SourceMessage, ingest_plugin};
use serde_json::{Map, Value};

/// Below this many seconds a SenML time is relative to now (RFC 8428, section 4.5.3).
const RELATIVE_TIME_LIMIT: f64 = 268_435_456.0;

/// The header naming a measurement with an absolute time: `<name>@<time in ms>`.
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
struct Base {
    name: String,
    time: f64,
    unit: Option<String>,
    value: f64,
    sum: f64,
}

fn number(record: &Map<String, Value>, field: &str) -> Result<Option<f64>, Error> {
    match record.get(field) {
        None => Ok(None),
        Some(value) => {
            value.as_f64().map(Some).ok_or_else(|| Error::invalid_input(format!("{field} must be a number")))
        }
    }
}

fn text<'a>(record: &'a Map<String, Value>, field: &str) -> Result<Option<&'a str>, Error> {
    match record.get(field) {
        None => Ok(None),
        Some(value) => {
            value.as_str().map(Some).ok_or_else(|| Error::invalid_input(format!("{field} must be a string")))
        }
    }
}

impl Ingest for Senml {
    fn ingest(&mut self, message: &SourceMessage<'_>, records: &mut Vec<NewRecord>) -> Result<(), Error> {
        let pack: Value = serde_json::from_slice(message.payload)
            .map_err(|e| Error::invalid_input(format!("not SenML JSON: {e}")))?;
        let pack = pack.as_array().ok_or_else(|| Error::invalid_input("a SenML pack is a JSON array"))?;
        let now_s = message.received_ms as f64 / 1000.0;
        let mut base = Base::default();
        for (position, entry) in pack.iter().enumerate() {
            let at = |e: Error| Error::invalid_input(format!("SenML record {position}: {}", e.message));
            let entry = entry.as_object().ok_or_else(|| at(Error::invalid_input("not an object")))?;
            if let Some(name) = text(entry, "bn").map_err(at)? {
                base.name = name.to_owned();
            }
            if let Some(time) = number(entry, "bt").map_err(at)? {
                base.time = time;
            }
            if let Some(unit) = text(entry, "bu").map_err(at)? {
                base.unit = Some(unit.to_owned());
            }
            if let Some(value) = number(entry, "bv").map_err(at)? {
                base.value = value;
            }
            if let Some(sum) = number(entry, "bs").map_err(at)? {
                base.sum = sum;
            }
            let name = format!("{}{}", base.name, text(entry, "n").map_err(at)?.unwrap_or(""));
            if name.is_empty() {
                return Err(at(Error::invalid_input("no name (bn + n is empty)")));
            }
            let mut out = Map::new();
            out.insert("n".into(), Value::String(name.clone()));
            if let Some(unit) = text(entry, "u").map_err(at)?.map(str::to_owned).or_else(|| base.unit.clone()) {
                out.insert("u".into(), Value::String(unit));
            }
            let value = if let Some(v) = number(entry, "v").map_err(at)? {
                ("v", serde_json::json!(v + base.value))
            } else if let Some(vs) = text(entry, "vs").map_err(at)? {
                ("vs", Value::String(vs.to_owned()))
            } else if let Some(vb) = entry.get("vb") {
                ("vb", Value::Bool(vb.as_bool().ok_or_else(|| at(Error::invalid_input("vb must be a boolean")))?))
            } else if let Some(vd) = text(entry, "vd").map_err(at)? {
                ("vd", Value::String(vd.to_owned()))
            } else if let Some(s) = number(entry, "s").map_err(at)? {
                ("s", serde_json::json!(s + base.sum))
            } else if entry.keys().all(|k| k.starts_with('b')) {
                // A record of base fields only sets them for the records after it.
                continue;
            } else {
                return Err(at(Error::invalid_input(format!("no value (v, vs, vb, vd or s) for {name}"))));
            };
            out.insert(value.0.into(), value.1);
            let mut time = base.time + number(entry, "t").map_err(at)?.unwrap_or(0.0);
            let absolute = time >= RELATIVE_TIME_LIMIT;
            if !absolute {
                time += now_s;
            }
            let timestamp = (time * 1000.0).round() as i64;
            let mut headers = vec![(b"source.topic".to_vec(), Some(message.topic.as_bytes().to_vec()))];
            if absolute {
                headers.push((ID_HEADER.to_vec(), Some(format!("{name}@{timestamp}").into_bytes())));
            }
            records.push(NewRecord {
                timestamp,
                key: Some(name.into_bytes()),
                value: Some(serde_json::to_vec(&Value::Object(out)).map_err(|e| Error::fatal(e.to_string()))?),
                headers,
            });
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
                Some("dev:temp@1700000000000".into()),
                Some("dev:hum@1699999998000".into()),
                Some("dev:rel@1699999995000".into()),
                None
            ]
        );
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
