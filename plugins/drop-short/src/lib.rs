//! Drops records whose value is shorter than `min_bytes` (default 1: empty values).
use rill_plugin_sdk::{Config, Emit, Error, Plugin, Record, Transform, transform_plugin};

#[derive(Debug)]
pub struct DropShort {
    min_bytes: usize,
}

impl Plugin for DropShort {
    const NAME: &'static str = "drop-short";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    fn new(config: &Config) -> Result<Self, Error> {
        Ok(DropShort { min_bytes: config.parse("min_bytes")?.unwrap_or(1) })
    }
}

impl Transform for DropShort {
    fn transform(&mut self, record: &Record<'_>, emit: &mut Emit) -> Result<(), Error> {
        if record.value.map_or(0, <[u8]>::len) >= self.min_bytes {
            emit.keep();
        }
        Ok(())
    }
}

transform_plugin!(DropShort);
