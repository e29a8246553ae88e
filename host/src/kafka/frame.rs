//! Kafka framing: every request and response is an `i32` byte count followed by that many bytes
//! (header, then body).

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::ResponseHeader;
use kafka_protocol::protocol::Encodable;
use tokio::io::{AsyncRead, AsyncReadExt};

/// Why no request frame could be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The client closed the connection between requests.
    #[error("connection closed")]
    Closed,
    #[error("request of {size} bytes is over the limit of {max} (kafka.request_bytes_max)")]
    TooLarge { size: i64, max: usize },
    #[error("request size {0} is negative")]
    Negative(i32),
    #[error("reading a request failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Reads one request frame of at most `max` bytes. The size is checked before anything is
/// allocated, so an oversized or hostile length costs nothing.
pub async fn read_frame<R: AsyncRead + Unpin>(reader: &mut R, max: usize) -> Result<Bytes, FrameError> {
    let mut size = [0u8; 4];
    match reader.read_exact(&mut size).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(FrameError::Closed),
        Err(e) => return Err(e.into()),
    }
    let size = i32::from_be_bytes(size);
    if size < 0 {
        return Err(FrameError::Negative(size));
    }
    if size as usize > max {
        return Err(FrameError::TooLarge { size: i64::from(size), max });
    }
    let mut body = BytesMut::zeroed(size as usize);
    reader.read_exact(&mut body).await?;
    Ok(body.freeze())
}

/// Encodes a whole response frame: size, response header, body.
pub fn encode_response<R: Encodable>(
    correlation_id: i32,
    header_version: i16,
    version: i16,
    body: &R,
) -> Result<BytesMut, String> {
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let mut out = BytesMut::new();
    out.put_i32(0);
    header.encode(&mut out, header_version).map_err(|e| format!("encoding the response header: {e}"))?;
    body.encode(&mut out, version).map_err(|e| format!("encoding the response (v{version}): {e}"))?;
    let size = i32::try_from(out.len() - 4).map_err(|_| "response over 2 GiB".to_owned())?;
    out[..4].copy_from_slice(&size.to_be_bytes());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_are_bounded_before_allocation() {
        let mut ok: &[u8] = &[0, 0, 0, 3, 1, 2, 3];
        assert_eq!(&read_frame(&mut ok, 3).await.unwrap()[..], &[1, 2, 3]);
        let mut big: &[u8] = &[0x7f, 0xff, 0xff, 0xff];
        assert!(matches!(read_frame(&mut big, 1 << 20).await, Err(FrameError::TooLarge { .. })));
        let mut negative: &[u8] = &[0xff, 0xff, 0xff, 0xfe];
        assert!(matches!(read_frame(&mut negative, 1 << 20).await, Err(FrameError::Negative(-2))));
        let mut empty: &[u8] = &[];
        assert!(matches!(read_frame(&mut empty, 10).await, Err(FrameError::Closed)));
        let mut cut: &[u8] = &[0, 0, 0, 5, 1];
        assert!(matches!(read_frame(&mut cut, 10).await, Err(FrameError::Io(_))));
    }
}
