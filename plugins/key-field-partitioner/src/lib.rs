//! `key-field-partitioner`: chooses each record's partition from a field of its JSON value (a
//! device id inside the payload, say) with murmur2, as Kafka's default partitioner does with keys,
//! so all of one device's records land in one partition, in order.
//!
//! Config:
//! - `field` (required): a top-level key (`device`) or a JSON pointer (`/meta/device`). A string
//!   is hashed as its UTF-8 bytes, any other JSON value as its JSON text.
//! - `on_missing`: a value without the field goes by its record key (`key`, default: murmur2 of
//!   the key, partition 0 without one), or is refused (`error`).

use rill_plugin_sdk::rill_core::partitioner::partition_for_key;
use rill_plugin_sdk::{Config, Error, Partitioner, Plugin, Record, partitioner_plugin};
use serde_json::Value;

#[derive(Debug)]
pub struct KeyFieldPartitioner {
    pointer: String,
    error_on_missing: bool,
}

impl KeyFieldPartitioner {
    /// The bytes to hash: the field's value, if the record has one.
    fn field_bytes(&self, value: Option<&[u8]>) -> Option<Vec<u8>> {
        let json: Value = serde_json::from_slice(value?).ok()?;
        match json.pointer(&self.pointer)? {
            Value::String(text) => Some(text.as_bytes().to_vec()),
            Value::Null => None,
            other => Some(other.to_string().into_bytes()),
        }
    }
}

impl Plugin for KeyFieldPartitioner {
    const NAME: &'static str = "key-field-partitioner";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    fn new(config: &Config) -> Result<Self, Error> {
        let field = config.require("field")?;
        let pointer = if field.starts_with('/') { field.to_owned() } else { format!("/{field}") };
        let error_on_missing = match config.get("on_missing").unwrap_or("key") {
            "key" => false,
            "error" => true,
            other => return Err(Error::invalid_input(format!("on_missing={other:?}: expected key or error"))),
        };
        Ok(KeyFieldPartitioner { pointer, error_on_missing })
    }
}

impl Partitioner for KeyFieldPartitioner {
    fn partition(&mut self, record: &Record<'_>, partitions: u32) -> Result<u32, Error> {
        let hash_of = |bytes: &[u8]| partition_for_key(bytes, partitions).map_err(|e| Error::fatal(e.to_string()));
        match (self.field_bytes(record.value), record.key) {
            (Some(field), _) => hash_of(&field),
            (None, _) if self.error_on_missing => {
                Err(Error::invalid_input(format!("no {} in the record's JSON value", self.pointer)))
            }
            (None, Some(key)) => hash_of(key),
            (None, None) => Ok(0),
        }
    }
}

partitioner_plugin!(KeyFieldPartitioner);

#[cfg(test)]
mod tests {
    use super::*;
    use rill_plugin_sdk::partition_batches;
    use rill_plugin_sdk::rill_core::batch::{BatchParams, RecordSpec, build_vec};

    fn partitions(entries: &[(&str, &str)], records: &[(Option<&str>, &str)], count: u32) -> Result<Vec<u32>, Error> {
        let mut plugin = KeyFieldPartitioner::new(&Config::new(
            entries.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        ))?;
        let specs: Vec<RecordSpec<'_>> = records
            .iter()
            .map(|(k, v)| RecordSpec {
                timestamp: 1,
                key: k.map(str::as_bytes),
                value: Some(v.as_bytes()),
                headers: &[],
            })
            .collect();
        partition_batches(&mut plugin, &build_vec(BatchParams::default(), &specs).unwrap(), count)
    }

    #[test]
    fn the_field_decides_as_kafka_would_for_that_key() {
        let got = partitions(
            &[("field", "device")],
            &[
                (None, r#"{"device":"gw-7","t":1}"#),
                (Some("x"), r#"{"device":"gw-7","t":2}"#),
                (None, r#"{"device":42}"#),
            ],
            12,
        )
        .unwrap();
        let kafka = |key: &str| partition_for_key(key.as_bytes(), 12).unwrap();
        assert_eq!(got, [kafka("gw-7"), kafka("gw-7"), kafka("42")]);
    }

    #[test]
    fn missing_fields_go_by_key_or_are_refused() {
        let got = partitions(&[("field", "device")], &[(Some("k1"), "{}"), (None, "not json")], 5).unwrap();
        assert_eq!(got, [partition_for_key(b"k1", 5).unwrap(), 0]);
        let refused = partitions(
            &[("field", "device"), ("on_missing", "error")],
            &[(None, r#"{"device":"a"}"#), (None, "{}")],
            5,
        );
        assert_eq!(refused.unwrap_err().record_index, Some(1));
        assert!(partitions(&[], &[], 1).is_err());
    }
}
