//! A simulated thermometer: QEMU's board has no sensor. Each value names the boot and the
//! reading's number, so whoever reads the topic can tell a lost or repeated reading.

use core::fmt::Write;

use rill_node::{Measurement, Sensor, Value};

#[derive(Debug)]
pub struct SimulatedThermometer {
    boot: u32,
    n: u32,
}

impl SimulatedThermometer {
    pub fn new(boot: u32) -> Self {
        SimulatedThermometer { boot, n: 0 }
    }
}

impl Sensor for SimulatedThermometer {
    async fn measure(&mut self) -> Measurement {
        // A saw tooth between 20.00 and 24.95 °C.
        let centi = 2_000 + (self.n % 100) * 5;
        let mut text = heapless::String::<{ rill_node::READING_VALUE_BYTES_MAX }>::new();
        // At most 50 bytes (two u32 in full) in READING_VALUE_BYTES_MAX (64): cannot fail.
        let _ = write!(text, r#"{{"boot":{},"n":{},"celsius":{}.{:02}}}"#, self.boot, self.n, centi / 100, centi % 100);
        self.n = self.n.wrapping_add(1);
        Measurement { key: "temperature", value: Value::from_slice(text.as_bytes()).unwrap_or_default() }
    }
}
