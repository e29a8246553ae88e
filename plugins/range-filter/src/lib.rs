//! `range-filter`: keeps records whose numeric JSON field lies within a configured range, and drops
//! the others, so out-of-range sensor readings (a disconnected probe reading -127 °C) never leave
//! the gateway.
//!
//! Config:
//! - `field` (required): a top-level key of the record's JSON value (`temperature`), or a JSON
//!   pointer (`/reading/celsius`).
//! - `min`, `max` (at least one): inclusive bounds.
//! - `on_missing`: what to do with a record whose value is not JSON or has no number at `field`:
//!   `drop` (default), `keep`, or `error` (the batch goes to the dead-letter topic, naming the
//!   record).

use rill_plugin_sdk::{Config, Emit, Error, Plugin, Record, Transform, transform_plugin};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OnMissing {
    Drop,
    Keep,
    Error,
}

#[derive(Debug)]
pub struct RangeFilter {
    pointer: String,
    min: f64,
    max: f64,
    on_missing: OnMissing,
}

impl RangeFilter {
    /// The number at the configured field, if the value is JSON and has one.
    fn reading(&self, value: Option<&[u8]>) -> Option<f64> {
        let json: serde_json::Value = serde_json::from_slice(value?).ok()?;
        json.pointer(&self.pointer)?.as_f64()
    }
}

impl Plugin for RangeFilter {
    const NAME: &'static str = "range-filter";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    fn new(config: &Config) -> Result<Self, Error> {
        let field = config.require("field")?;
        let pointer = if field.starts_with('/') { field.to_owned() } else { format!("/{field}") };
        let min: Option<f64> = config.parse("min")?;
        let max: Option<f64> = config.parse("max")?;
        if min.is_none() && max.is_none() {
            return Err(Error::invalid_input("set min, max or both"));
        }
        let (min, max) = (min.unwrap_or(f64::NEG_INFINITY), max.unwrap_or(f64::INFINITY));
        if min > max {
            return Err(Error::invalid_input(format!("min {min} is above max {max}")));
        }
        let on_missing = match config.get("on_missing").unwrap_or("drop") {
            "drop" => OnMissing::Drop,
            "keep" => OnMissing::Keep,
            "error" => OnMissing::Error,
            other => return Err(Error::invalid_input(format!("on_missing={other:?}: expected drop, keep or error"))),
        };
        Ok(RangeFilter { pointer, min, max, on_missing })
    }
}

impl Transform for RangeFilter {
    fn transform(&mut self, record: &Record<'_>, emit: &mut Emit) -> Result<(), Error> {
        match self.reading(record.value) {
            Some(reading) if (self.min..=self.max).contains(&reading) => emit.keep(),
            Some(_) => {}
            None => match self.on_missing {
                OnMissing::Drop => {}
                OnMissing::Keep => emit.keep(),
                OnMissing::Error => {
                    return Err(Error::invalid_input(format!("no number at {} in the record's value", self.pointer)));
                }
            },
        }
        Ok(())
    }
}

transform_plugin!(RangeFilter);

#[cfg(test)]
mod tests {
    use super::*;
    use rill_plugin_sdk::rill_core::batch::{BatchParams, RecordSpec, build_vec};
    use rill_plugin_sdk::transform_batches;

    fn plugin(entries: &[(&str, &str)]) -> Result<RangeFilter, Error> {
        RangeFilter::new(&Config::new(entries.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()))
    }

    fn kept(filter: &mut RangeFilter, values: &[&str]) -> Result<usize, Error> {
        let specs: Vec<RecordSpec<'_>> = values
            .iter()
            .map(|v| RecordSpec { timestamp: 1, key: None, value: Some(v.as_bytes()), headers: &[] })
            .collect();
        let input = build_vec(BatchParams::default(), &specs).unwrap();
        let output = transform_batches(filter, &input)?;
        // Record count of the one output batch (bytes 57..61), or none.
        Ok(output.get(57..61).map_or(0, |b| i32::from_be_bytes(b.try_into().unwrap()) as usize))
    }

    #[test]
    fn keeps_readings_in_range() {
        let mut filter = plugin(&[("field", "celsius"), ("min", "-40"), ("max", "85")]).unwrap();
        let values =
            [r#"{"celsius": 21.5}"#, r#"{"celsius": -127}"#, r#"{"celsius": 85}"#, "not json", r#"{"other": 1}"#];
        assert_eq!(kept(&mut filter, &values).unwrap(), 2);
        let mut nested = plugin(&[("field", "/reading/c"), ("max", "0")]).unwrap();
        assert_eq!(kept(&mut nested, &[r#"{"reading": {"c": -1}}"#, r#"{"reading": {"c": 1}}"#]).unwrap(), 1);
    }

    #[test]
    fn missing_readings_follow_the_policy() {
        let mut keep = plugin(&[("field", "c"), ("min", "0"), ("on_missing", "keep")]).unwrap();
        assert_eq!(kept(&mut keep, &["not json", r#"{"c": 1}"#]).unwrap(), 2);
        let mut error = plugin(&[("field", "c"), ("min", "0"), ("on_missing", "error")]).unwrap();
        assert_eq!(kept(&mut error, &[r#"{"c": 1}"#, "nope"]).unwrap_err().record_index, Some(1));
    }

    #[test]
    fn bad_configs_are_refused() {
        for bad in [
            &[("min", "0")][..],
            &[("field", "c")],
            &[("field", "c"), ("min", "hot")],
            &[("field", "c"), ("min", "5"), ("max", "1")],
            &[("field", "c"), ("min", "0"), ("on_missing", "ignore")],
        ] {
            assert!(plugin(bad).is_err(), "{bad:?}");
        }
    }
}
