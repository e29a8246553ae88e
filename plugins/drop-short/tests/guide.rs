//! The author guide (`plugins/README.md`) shows this crate's whole source: the two must not drift
//! apart, and the plugin must do what the guide says.

use drop_short::DropShort;
use rill_plugin_sdk::rill_core::batch::{Batch, BatchParams, RecordSpec, build_vec};
use rill_plugin_sdk::{Config, Plugin, transform_batches};

#[test]
fn the_guide_shows_this_source() {
    let guide = include_str!("../../README.md");
    let start = guide.find("   ```rust\n").expect("the guide has a Rust block") + "   ```rust\n".len();
    let end = start + guide[start..].find("   ```\n").expect("the block ends");
    let shown: String = guide[start..end].lines().map(|line| format!("{}\n", line.get(3..).unwrap_or(""))).collect();
    assert_eq!(shown, include_str!("../src/lib.rs"), "update plugins/README.md or src/lib.rs");
}

#[test]
fn short_values_are_dropped() {
    let config = Config::new(vec![("min_bytes".to_owned(), "3".to_owned())]);
    let mut plugin = DropShort::new(&config).unwrap();
    let values: [&[u8]; 4] = [b"a", b"abcd", b"", b"xyz"];
    let specs: Vec<RecordSpec<'_>> =
        values.iter().map(|v| RecordSpec { timestamp: 1, key: None, value: Some(v), headers: &[] }).collect();
    let output = transform_batches(&mut plugin, &build_vec(BatchParams::default(), &specs).unwrap()).unwrap();
    // One batch out, its CRC left for the broker to compute.
    let batch = Batch::parse_without_crc(&output).unwrap();
    let kept: Vec<Vec<u8>> = batch.records().unwrap().map(|r| r.unwrap().value.unwrap().to_vec()).collect();
    assert_eq!(kept, [b"abcd".to_vec(), b"xyz".to_vec()]);
    let refused = DropShort::new(&Config::new(vec![("min_bytes".to_owned(), "many".to_owned())]));
    assert!(refused.is_err(), "a bad number is refused");
}
