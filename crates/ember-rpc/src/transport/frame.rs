//! Length-prefixed frames: a big-endian `u32` body length, then the body.
//!
//! Spark counterpart: `TransportFrameDecoder`. A frame larger than the limit, or one of length
//! zero, is a protocol error that closes the connection (the stream cannot be resynchronised).

use bytes::{Buf, Bytes, BytesMut};

/// Bytes of the length prefix.
pub(crate) const PREFIX_LEN: usize = 4;

/// The most room reserved at a time for the rest of a partly read frame: the buffer grows as
/// the bytes arrive, so a peer that announces a large frame does not pin that much memory
/// before sending it.
pub(crate) const MAX_RESERVE: usize = 64 * 1024;

/// Why a byte stream is not a valid sequence of frames.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum FrameError {
    /// The announced body is larger than the limit.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes (ember.rpc.message.maxSize)")]
    TooLarge { len: usize, max: usize },
    /// A frame with an empty body.
    #[error("empty frame")]
    Empty,
}

/// Splits complete frames off the front of a read buffer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FrameDecoder {
    max: usize,
}

impl FrameDecoder {
    pub(crate) fn new(max: usize) -> Self {
        Self { max }
    }

    /// The next complete frame body, `None` if more bytes are needed, or an error if the
    /// stream is broken. Reserves room in `buf` for more of a partially read frame, at most
    /// [`MAX_RESERVE`] at a time.
    pub(crate) fn decode(&self, buf: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
        if buf.len() < PREFIX_LEN {
            return Ok(None);
        }
        let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        if len == 0 {
            return Err(FrameError::Empty);
        }
        if len > self.max {
            return Err(FrameError::TooLarge { len, max: self.max });
        }
        let total = PREFIX_LEN + len;
        if buf.len() < total {
            buf.reserve((total - buf.len()).min(MAX_RESERVE));
            return Ok(None);
        }
        buf.advance(PREFIX_LEN);
        Ok(Some(buf.split_to(len).freeze()))
    }
}

/// Starts a frame in `out`: a placeholder prefix that [`finish_frame`] fills in.
pub(crate) fn begin_frame(out: &mut Vec<u8>) -> usize {
    let start = out.len();
    out.extend_from_slice(&[0; PREFIX_LEN]);
    start
}

/// Writes the body length of the frame begun at `start`; fails if it exceeds `max`.
pub(crate) fn finish_frame(out: &mut [u8], start: usize, max: usize) -> Result<(), FrameError> {
    let len = out.len() - start - PREFIX_LEN;
    if len > max || len > u32::MAX as usize {
        return Err(FrameError::TooLarge { len, max });
    }
    out[start..start + PREFIX_LEN].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(())
}

/// A whole frame holding `body`.
pub(crate) fn frame(body: &[u8], max: usize) -> Result<Vec<u8>, FrameError> {
    let mut out = Vec::with_capacity(PREFIX_LEN + body.len());
    let start = begin_frame(&mut out);
    out.extend_from_slice(body);
    finish_frame(&mut out, start, max)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn splits_frames_and_waits_for_partial_ones() {
        let dec = FrameDecoder::new(1024);
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&frame(b"hello", 1024).unwrap());
        buf.extend_from_slice(&frame(b"world!", 1024).unwrap()[..7]);
        assert_eq!(dec.decode(&mut buf).unwrap().unwrap(), &b"hello"[..]);
        assert_eq!(dec.decode(&mut buf).unwrap(), None);
        buf.extend_from_slice(b"ld!");
        assert_eq!(dec.decode(&mut buf).unwrap().unwrap(), &b"world!"[..]);
        assert!(buf.is_empty());
    }

    #[test]
    fn rejects_oversized_and_empty_frames() {
        let dec = FrameDecoder::new(4);
        let mut buf = BytesMut::from(&frame(b"hello", 1024).unwrap()[..]);
        assert_eq!(
            dec.decode(&mut buf),
            Err(FrameError::TooLarge { len: 5, max: 4 })
        );
        let mut buf = BytesMut::from(&[0u8, 0, 0, 0][..]);
        assert_eq!(dec.decode(&mut buf), Err(FrameError::Empty));
        assert!(frame(b"hello", 4).is_err());
    }

    #[test]
    fn an_announced_length_is_not_reserved_before_the_bytes_arrive() {
        let max = 128 * 1024 * 1024;
        let dec = FrameDecoder::new(max);
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&(max as u32).to_be_bytes());
        buf.extend_from_slice(&[1; 100]);
        assert_eq!(dec.decode(&mut buf).unwrap(), None);
        assert!(buf.capacity() <= 2 * MAX_RESERVE, "{}", buf.capacity());
    }

    #[test]
    fn a_large_frame_arriving_in_pieces_decodes_whole() {
        let body: Vec<u8> = (0..1_000_000u32).map(|i| i as u8).collect();
        let wire = frame(&body, 1 << 20).unwrap();
        let dec = FrameDecoder::new(1 << 20);
        let mut buf = BytesMut::new();
        let mut out = None;
        for piece in wire.chunks(8 * 1024) {
            assert!(out.is_none(), "decoded before the last byte");
            // As a socket read would: into the room the decoder reserved.
            buf.extend_from_slice(piece);
            out = dec.decode(&mut buf).unwrap();
            assert!(buf.capacity() < 4 * wire.len(), "{}", buf.capacity());
        }
        assert_eq!(out.unwrap(), &body[..]);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..512)) {
            let dec = FrameDecoder::new(256);
            let mut buf = BytesMut::from(&data[..]);
            while let Ok(Some(f)) = dec.decode(&mut buf) {
                prop_assert!(!f.is_empty() && f.len() <= 256);
            }
        }

        #[test]
        fn frames_survive_any_split(bodies in proptest::collection::vec(
            proptest::collection::vec(any::<u8>(), 1..64), 1..8), cut in 0usize..600) {
            let dec = FrameDecoder::new(64);
            let mut wire = Vec::new();
            for b in &bodies { wire.extend_from_slice(&frame(b, 64).unwrap()); }
            let cut = cut.min(wire.len());
            let mut buf = BytesMut::from(&wire[..cut]);
            let mut out = Vec::new();
            while let Some(f) = dec.decode(&mut buf).unwrap() { out.push(f.to_vec()); }
            buf.extend_from_slice(&wire[cut..]);
            while let Some(f) = dec.decode(&mut buf).unwrap() { out.push(f.to_vec()); }
            prop_assert_eq!(out, bodies);
        }
    }
}
