//! Sensor nodes wired to one of the gateway's own serial ports (`[[devices.serial]]`): each port
//! is opened at its baud rate (8N1, no flow control, exclusive) and served as one device
//! connection. A port that cannot be opened, or that fails (a USB adapter unplugged, a hangup),
//! is opened again after a doubling wait: the node resends what the gateway did not acknowledge.

use std::path::PathBuf;

use serde::Deserialize;
use tokio::sync::watch;
use tokio_serial::{DataBits, FlowControl, Parity, SerialPortBuilderExt, SerialStream, StopBits};

use super::{Devices, serve_device};
use crate::limits::{DEVICE_SERIAL_PORTS_MAX, SERIAL_BAUD_MAX, SERIAL_REOPEN_FIRST, SERIAL_REOPEN_MAX};

/// One `[[devices.serial]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SerialSpec {
    /// The port's device file (`/dev/ttyUSB0`, `/dev/ttyAMA0`, …).
    pub path: PathBuf,
    /// Bits per second; both ends of the cable must agree.
    #[serde(default = "default_baud")]
    pub baud: u32,
}

/// What the firmware's UARTs run at.
fn default_baud() -> u32 {
    115_200
}

/// Refuses port lists that cannot work: too many, a path given twice, a baud rate out of range.
pub fn check(specs: &[SerialSpec]) -> Result<(), String> {
    if specs.len() > DEVICE_SERIAL_PORTS_MAX {
        return Err(format!("serial: at most {DEVICE_SERIAL_PORTS_MAX} ports"));
    }
    for (i, spec) in specs.iter().enumerate() {
        if spec.path.as_os_str().is_empty() {
            return Err("serial: a port without a path".into());
        }
        if !(1..=SERIAL_BAUD_MAX).contains(&spec.baud) {
            return Err(format!("serial {}: baud must be 1..={SERIAL_BAUD_MAX}", spec.path.display()));
        }
        if specs[..i].iter().any(|other| other.path == spec.path) {
            return Err(format!("serial {}: listed twice", spec.path.display()));
        }
    }
    Ok(())
}

fn open(spec: &SerialSpec) -> tokio_serial::Result<SerialStream> {
    tokio_serial::new(spec.path.to_string_lossy(), spec.baud)
        .data_bits(DataBits::Eight)
        .parity(Parity::None)
        .stop_bits(StopBits::One)
        .flow_control(FlowControl::None)
        .open_native_async()
}

/// Serves the port until the node stops, opening it again whenever it fails.
pub(super) async fn keep_open(devices: &Devices, spec: &SerialSpec, mut stopping: watch::Receiver<bool>) {
    let (path, label) = (spec.path.display().to_string(), format!("serial {}", spec.path.display()));
    let mut wait = SERIAL_REOPEN_FIRST;
    // The last failure logged: a port that stays missing is logged once, not every few seconds.
    let mut logged: Option<String> = None;
    loop {
        match open(spec) {
            Ok(port) => {
                tracing::info!(%path, baud = spec.baud, "devices on serial port");
                devices.serial_port(&path, true, None);
                logged = None;
                let opened = tokio::time::Instant::now();
                let result = serve_device(devices, port, &label, stopping.clone()).await;
                // Back to the first wait only after a connection that lasted: one that fails at
                // once (a node speaking for two devices, a partitioner not there yet) is opened
                // again ever more slowly.
                if opened.elapsed() >= SERIAL_REOPEN_MAX {
                    wait = SERIAL_REOPEN_FIRST;
                }
                if *stopping.borrow() {
                    devices.serial_port(&path, false, None);
                    return;
                }
                let why = result.err().map_or_else(|| "hung up".to_owned(), |e| e.to_string());
                tracing::info!(%path, error = %why, "serial port closed; opening it again");
                devices.serial_port(&path, false, Some(why));
            }
            Err(e) => {
                let e = e.to_string();
                devices.serial_port(&path, false, Some(e.clone()));
                if logged.as_ref() != Some(&e) {
                    tracing::warn!(%path, error = %e, "cannot open the serial port; trying again");
                    logged = Some(e);
                }
            }
        }
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = async { drop(stopping.wait_for(|stop| *stop).await) } => return,
        }
        wait = (wait * 2).min(SERIAL_REOPEN_MAX);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rill_core::batch::{BatchParams, RecordSpec, build_vec};
    use rill_core::uplink::{self, Clock, DataFrame, Deframer, Frame, UPLINK_FRAME_BYTES_MAX, UPLINK_WIRE_BYTES_MAX};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_serial::SerialPort;

    use super::*;
    use crate::devices::{DeviceListener, DevicesSection};
    use crate::storage::{Location, Store, StoreConfig};

    fn spec(path: &str, baud: u32) -> SerialSpec {
        SerialSpec { path: path.into(), baud }
    }

    #[test]
    fn port_lists_that_cannot_work_are_refused() {
        assert!(check(&[spec("/dev/ttyUSB0", 115_200), spec("/dev/ttyUSB1", 9_600)]).is_ok());
        assert!(check(&[spec("/dev/ttyUSB0", 115_200), spec("/dev/ttyUSB0", 9_600)]).unwrap_err().contains("twice"));
        assert!(check(&[spec("/dev/ttyUSB0", 0)]).unwrap_err().contains("baud"));
        assert!(check(&[spec("", 115_200)]).is_err());
        let many: Vec<SerialSpec> =
            (0..=DEVICE_SERIAL_PORTS_MAX).map(|i| spec(&format!("/dev/tty{i}"), 9_600)).collect();
        assert!(check(&many).is_err());
    }

    /// A node on the far end of a pseudo-terminal: its frame is stored and acknowledged over the
    /// same line.
    #[tokio::test]
    async fn a_node_on_a_serial_port_is_stored_and_acknowledged() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(Location::Dir(dir.path().to_owned()), StoreConfig::default()).unwrap();
        let (mut node_end, gateway_end) = tokio_serial::SerialStream::pair().unwrap();
        let path = gateway_end.name().expect("a pty has a name");
        // The listener opens the port by its path, as it would /dev/ttyUSB0.
        drop(gateway_end);
        let section = DevicesSection {
            topic: "sensors".into(),
            serial: vec![SerialSpec { path: path.into(), baud: 115_200 }],
            ..DevicesSection::default()
        };
        let runtime = crate::plugins::PluginRuntime::new().unwrap();
        let catalog = crate::plugins::PluginCatalog::new(runtime, store.clone(), None);
        let listener = DeviceListener::bind(store.clone(), section, catalog).await.unwrap();
        let (stop, stopping) = watch::channel(false);
        let running = tokio::spawn(listener.run(stopping));

        let spec = RecordSpec { timestamp: 1_000, key: Some(b"t"), value: Some(b"21.5"), headers: &[] };
        let batch = build_vec(BatchParams::default(), &[spec, spec]).unwrap();
        let frame = Frame::Data(DataFrame {
            device: "node-7",
            boot: 3,
            seq: 0,
            prev: None,
            dropped: 0,
            clock: Clock::Wall,
            sent_at: 1_000,
            batch: &batch,
        });
        let (mut scratch, mut wire) = (vec![0u8; UPLINK_FRAME_BYTES_MAX], vec![0u8; UPLINK_WIRE_BYTES_MAX]);
        let len = uplink::encode(&frame, &mut scratch, &mut wire).unwrap();
        // The port may take a moment to open: the node sends again until it hears an answer, as
        // the firmware does.
        let mut deframer = Deframer::new(vec![0u8; 64]);
        let mut answer = None;
        for _ in 0..50 {
            node_end.write_all(&wire[..len]).await.unwrap();
            let mut buf = [0u8; 64];
            if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(200), node_end.read(&mut buf)).await {
                deframer.feed(&buf[..n], |frame| {
                    if let Ok(Frame::Ack { boot, seq }) = frame {
                        answer = Some((boot, seq));
                    }
                });
            }
            if answer.is_some() {
                break;
            }
        }
        assert_eq!(answer, Some((3, 0)), "acknowledged over the serial line");
        let read = store.read("sensors", 0, 0, 1 << 20).unwrap();
        // As the node built it, but for the leader epoch the broker stamps (bytes 12..16, which
        // the CRC does not cover).
        assert_eq!((read.records.len(), &read.records[16..]), (batch.len(), &batch[16..]), "stored as built");

        stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(10), running).await.expect("the listener stops").unwrap();
    }
}
