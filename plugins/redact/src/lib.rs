//! `redact`: removes configured fields from JSON record values, so data such as a device's
//! location never leaves the gateway. Other fields keep their order.
//!
//! Config:
//! - `fields` (required): comma-separated top-level keys (`lat,lon`) or JSON pointers
//!   (`/device/location`).
//! - `on_invalid`: a value that is not a JSON object is passed on unchanged (`keep`, default),
//!   dropped (`drop`), or refused (`error`: the batch goes to the dead-letter topic).

use rill_plugin_sdk::{Config, Emit, Error, Plugin, Record, Transform, transform_plugin};
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OnInvalid {
    Keep,
    Drop,
    Error,
}

#[derive(Debug)]
pub struct Redact {
    /// Each field as the path of object keys leading to it.
    paths: Vec<Vec<String>>,
    on_invalid: OnInvalid,
}

/// Removes the field at `path` from `value`; whether anything was removed.
fn remove(value: &mut Value, path: &[String]) -> bool {
    match path {
        [] => false,
        [last] => value.as_object_mut().is_some_and(|object| object.shift_remove(last).is_some()),
        [first, rest @ ..] => value.get_mut(first.as_str()).is_some_and(|inner| remove(inner, rest)),
    }
}

/// `lat` → ["lat"]; `/device/location` → ["device", "location"] (JSON pointer escapes `~1`, `~0`).
fn parse_path(field: &str) -> Result<Vec<String>, Error> {
    let field = field.trim();
    if field.is_empty() || field == "/" {
        return Err(Error::invalid_input("an empty field in fields"));
    }
    Ok(match field.strip_prefix('/') {
        Some(pointer) => pointer.split('/').map(|part| part.replace("~1", "/").replace("~0", "~")).collect(),
        None => vec![field.to_owned()],
    })
}

impl Plugin for Redact {
    const NAME: &'static str = "redact";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    fn new(config: &Config) -> Result<Self, Error> {
        let paths = config.require("fields")?.split(',').map(parse_path).collect::<Result<Vec<_>, _>>()?;
        let on_invalid = match config.get("on_invalid").unwrap_or("keep") {
            "keep" => OnInvalid::Keep,
            "drop" => OnInvalid::Drop,
            "error" => OnInvalid::Error,
            other => return Err(Error::invalid_input(format!("on_invalid={other:?}: expected keep, drop or error"))),
        };
        Ok(Redact { paths, on_invalid })
    }
}

impl Transform for Redact {
    fn transform(&mut self, record: &Record<'_>, emit: &mut Emit) -> Result<(), Error> {
        let parsed = record.value.and_then(|v| serde_json::from_slice::<Value>(v).ok()).filter(Value::is_object);
        let Some(mut value) = parsed else {
            return match self.on_invalid {
                OnInvalid::Keep => {
                    emit.keep();
                    Ok(())
                }
                OnInvalid::Drop => Ok(()),
                OnInvalid::Error => Err(Error::invalid_input("the value is not a JSON object")),
            };
        };
        let mut changed = false;
        for path in &self.paths {
            changed |= remove(&mut value, path);
        }
        if !changed {
            emit.keep();
            return Ok(());
        }
        let mut redacted = record.to_new();
        redacted.value = Some(serde_json::to_vec(&value).map_err(|e| Error::fatal(e.to_string()))?);
        emit.push(redacted);
        Ok(())
    }
}

transform_plugin!(Redact);

#[cfg(test)]
mod tests {
    use super::*;
    use rill_plugin_sdk::rill_core::batch::{Batch, BatchParams, RecordSpec, build_vec, seal_crc};
    use rill_plugin_sdk::transform_batches;

    fn run(entries: &[(&str, &str)], values: &[&str]) -> Result<Vec<String>, Error> {
        let mut plugin =
            Redact::new(&Config::new(entries.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()))?;
        let specs: Vec<RecordSpec<'_>> = values
            .iter()
            .map(|v| RecordSpec { timestamp: 5, key: None, value: Some(v.as_bytes()), headers: &[] })
            .collect();
        let mut output = transform_batches(&mut plugin, &build_vec(BatchParams::default(), &specs).unwrap())?;
        if output.is_empty() {
            return Ok(Vec::new());
        }
        seal_crc(&mut output).unwrap();
        let batch = Batch::parse(&output).unwrap();
        Ok(batch.records().unwrap().map(|r| String::from_utf8(r.unwrap().value.unwrap().to_vec()).unwrap()).collect())
    }

    #[test]
    fn fields_are_removed_and_the_rest_keeps_its_order() {
        let out = run(
            &[("fields", "lat,lon,/device/serial")],
            &[r#"{"t":21.5,"lat":1,"lon":2,"device":{"serial":"x","model":"m"}}"#, r#"{"t":1}"#],
        )
        .unwrap();
        assert_eq!(out, [r#"{"t":21.5,"device":{"model":"m"}}"#, r#"{"t":1}"#]);
    }

    #[test]
    fn invalid_values_follow_the_policy() {
        assert_eq!(run(&[("fields", "a")], &["plain text"]).unwrap(), ["plain text"]);
        assert!(run(&[("fields", "a"), ("on_invalid", "drop")], &["[1]"]).unwrap().is_empty());
        assert_eq!(run(&[("fields", "a"), ("on_invalid", "error")], &["{}", "7"]).unwrap_err().record_index, Some(1));
        assert!(run(&[("fields", "a,,b")], &[]).is_err());
        assert!(run(&[], &[]).is_err());
    }
}
