//! `passthrough`: keeps every record. What it costs is the cost of the plugin machinery itself
//! (crossing into WebAssembly, decoding and rebuilding the batch, validating and sealing it), so
//! `rill bench plugins` measures it as the no-op transform.

use rill_plugin_sdk::{Config, Emit, Error, Plugin, Record, Transform, transform_plugin};

#[derive(Debug)]
pub struct Passthrough;

impl Plugin for Passthrough {
    const NAME: &'static str = "passthrough";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    fn new(_config: &Config) -> Result<Self, Error> {
        Ok(Passthrough)
    }
}

impl Transform for Passthrough {
    fn transform(&mut self, _record: &Record<'_>, emit: &mut Emit) -> Result<(), Error> {
        emit.keep();
        Ok(())
    }
}

transform_plugin!(Passthrough);
