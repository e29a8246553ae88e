//! `misbehave`: a test fixture. Passes records through until a record's value names a misdeed:
//! - `loop`: spins forever (the broker's fuel budget must stop it);
//! - `alloc`: allocates without end (the broker's memory cap must stop it);
//! - `trap`: panics, which aborts (a trap);
//! - `error`: returns an invalid-input error naming the record;
//! - `retry`: returns a retryable error (as a plugin waiting on something would).

use rill_plugin_sdk::{Config, Emit, Error, Plugin, Record, Transform, transform_plugin};

#[derive(Debug)]
pub struct Misbehave {
    hoard: Vec<Vec<u8>>,
}

impl Plugin for Misbehave {
    const NAME: &'static str = "misbehave";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    fn new(config: &Config) -> Result<Self, Error> {
        if config.get("refuse").is_some() {
            return Err(Error::invalid_input("refused as configured"));
        }
        Ok(Misbehave { hoard: Vec::new() })
    }
}

impl Transform for Misbehave {
    fn transform(&mut self, record: &Record<'_>, emit: &mut Emit) -> Result<(), Error> {
        match record.value {
            Some(b"loop") => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            Some(b"alloc") => loop {
                self.hoard.push(vec![1u8; 1 << 20]);
            },
            Some(b"trap") => panic!("trap on purpose"),
            Some(b"error") => Err(Error::invalid_input("error on purpose")),
            Some(b"retry") => Err(Error::retryable("not ready yet, on purpose")),
            _ => {
                emit.keep();
                Ok(())
            }
        }
    }
}

transform_plugin!(Misbehave);
