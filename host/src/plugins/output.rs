//! What a plugin returns, checked before the broker uses it: whole, uncompressed v2 batches, each
//! sealed here with its CRC-32C (WebAssembly has no CRC instruction, so plugins leave it at 0).

use rill_core::batch::{self, Batch, BatchHeader, Compression};

use crate::limits::PLUGIN_OUTPUT_BYTES_MAX;

/// Validates a plugin's output (whole uncompressed batches) and computes each batch's CRC.
pub(super) fn seal_output(mut output: Vec<u8>) -> Result<Vec<u8>, String> {
    if output.len() > PLUGIN_OUTPUT_BYTES_MAX {
        return Err(format!("{} bytes, over the {PLUGIN_OUTPUT_BYTES_MAX} a call may return", output.len()));
    }
    let mut at = 0;
    while at < output.len() {
        let header = BatchHeader::decode(&output[at..]).map_err(|e| format!("batch at byte {at}: {e}"))?;
        let len = header.total_len();
        let end = at
            .checked_add(len)
            .filter(|&end| end <= output.len())
            .ok_or_else(|| format!("batch at byte {at} claims {len} bytes, {} are left", output.len() - at))?;
        let one = &mut output[at..end];
        Batch::parse_without_crc(one).map_err(|e| format!("batch at byte {at}: {e}"))?;
        if header.compression().map_err(|e| e.to_string())? != Compression::None {
            return Err(format!("batch at byte {at} is compressed; plugins return uncompressed batches"));
        }
        if header.producer_id != -1 || header.producer_epoch != -1 || header.base_sequence != -1 {
            // A plugin is not the producer of what it returns (the SDK resets these itself; a
            // plugin built without it may pass a stored batch on as it is).
            let mut reset = header;
            (reset.producer_id, reset.producer_epoch, reset.base_sequence) = (-1, -1, -1);
            reset.encode(one).map_err(|e| format!("batch at byte {at}: {e}"))?;
        }
        batch::seal_crc(one).map_err(|e| format!("batch at byte {at}: {e}"))?;
        at = end;
    }
    Ok(output)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rill_core::batch::{BatchParams, RecordSpec, build_vec_without_crc};

    #[test]
    fn output_is_validated_and_sealed() {
        let spec = RecordSpec { timestamp: 1, key: None, value: Some(b"v"), headers: &[] };
        let unsealed = build_vec_without_crc(BatchParams::default(), &[spec, spec]).unwrap();
        let two = [unsealed.clone(), unsealed.clone()].concat();
        let sealed = seal_output(two).unwrap();
        assert_eq!(batch::batches(&sealed).filter(Result::is_ok).count(), 2, "both batches pass the full check");
        assert!(seal_output(unsealed[..unsealed.len() - 1].to_vec()).is_err(), "a cut batch is refused");
        let mut lying = unsealed.clone();
        lying[60] = 7; // records count
        assert!(seal_output(lying).is_err());
        assert_eq!(seal_output(Vec::new()).unwrap(), Vec::<u8>::new(), "no output is a valid answer");
        let params = BatchParams { producer_id: 7, producer_epoch: 1, base_sequence: 3, ..BatchParams::default() };
        let produced = build_vec_without_crc(params, &[spec]).unwrap();
        let sealed = seal_output(produced).unwrap();
        let header = batch::batches(&sealed).next().unwrap().unwrap().header().to_owned();
        assert_eq!((header.producer_id, header.producer_epoch, header.base_sequence), (-1, -1, -1));
    }
}
