//! Length-framed JSON: a 4-byte big-endian length, then that many bytes of JSON. Readers
//! must cope with the header and body arriving in any number of pieces.

use super::ProtoError;
use alloc::vec::Vec;

/// iperf3 3.18+ rejects parameter JSON above 8 KiB; so do we.
pub const MAX_PARAMS_LEN: u32 = 8192;
/// Results have no limit in iperf3, but they carry at most 256 streams plus, with
/// `--get-server-output`, the server's whole JSON document; 16 MiB bounds memory.
pub const MAX_RESULTS_LEN: u32 = 16 * 1024 * 1024;

/// Frames `json` for the wire.
pub fn encode_frame(json: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + json.len());
    out.extend_from_slice(&(json.len() as u32).to_be_bytes());
    out.extend_from_slice(json);
    out
}

/// Incremental reader for one JSON frame.
#[derive(Debug)]
pub struct FrameReader {
    max: u32,
    header: [u8; 4],
    header_len: usize,
    body: Vec<u8>,
    want: usize,
}

impl FrameReader {
    pub fn new(max: u32) -> Self {
        FrameReader { max, header: [0; 4], header_len: 0, body: Vec::new(), want: 0 }
    }

    /// True once any byte of the frame has arrived (used for "partial message" timeouts).
    pub fn started(&self) -> bool {
        self.header_len > 0
    }

    /// Feeds bytes; returns how many were consumed and, once complete, the body.
    /// After `Some(Ok(_))` or `Some(Err(_))` the reader is spent; make a new one.
    pub fn feed(&mut self, input: &[u8]) -> (usize, Option<Result<Vec<u8>, ProtoError>>) {
        let mut used = 0;
        if self.header_len < 4 {
            let n = (4 - self.header_len).min(input.len());
            self.header[self.header_len..self.header_len + n].copy_from_slice(&input[..n]);
            self.header_len += n;
            used += n;
            if self.header_len < 4 {
                return (used, None);
            }
            let len = u32::from_be_bytes(self.header);
            if len == 0 {
                return (used, Some(Err(ProtoError::EmptyFrame)));
            }
            if len > self.max {
                return (used, Some(Err(ProtoError::FrameTooLarge { len, max: self.max })));
            }
            self.want = len as usize;
            self.body.reserve_exact(self.want);
        }
        let n = (self.want - self.body.len()).min(input.len() - used);
        self.body.extend_from_slice(&input[used..used + n]);
        used += n;
        if self.body.len() == self.want { (used, Some(Ok(core::mem::take(&mut self.body)))) } else { (used, None) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The params frame of a captured 3.12 exchange: header 0x00000091.
    const PARAMS: &[u8] = br#"{"tcp":true,"omit":0,"time":2,"num":0,"blockcount":0,"parallel":1,"len":131072,"bandwidth":200000000,"pacing_timer":1000,"client_version":"3.12"}"#;

    #[test]
    fn captured_header_matches() {
        let f = encode_frame(PARAMS);
        assert_eq!(&f[..4], &[0, 0, 0, 0x91]);
        assert_eq!(PARAMS.len(), 145);
    }

    #[test]
    fn reads_byte_by_byte_and_leaves_trailing_bytes() {
        let mut wire = encode_frame(PARAMS);
        wire.push(0x10);
        let mut r = FrameReader::new(MAX_PARAMS_LEN);
        let mut consumed = 0;
        let mut got = None;
        while got.is_none() {
            let (n, out) = r.feed(&wire[consumed..consumed + 1]);
            consumed += n;
            got = out;
        }
        assert_eq!(got.unwrap().unwrap(), PARAMS);
        assert_eq!(&wire[consumed..], &[0x10]);
    }

    #[test]
    fn rejects_empty_and_oversized() {
        let mut r = FrameReader::new(MAX_PARAMS_LEN);
        assert_eq!(r.feed(&[0, 0, 0, 0]).1, Some(Err(ProtoError::EmptyFrame)));
        let mut r = FrameReader::new(MAX_PARAMS_LEN);
        assert_eq!(
            r.feed(&[0, 0, 0x20, 1]).1,
            Some(Err(ProtoError::FrameTooLarge { len: 0x2001, max: MAX_PARAMS_LEN }))
        );
        let mut r = FrameReader::new(MAX_PARAMS_LEN);
        assert!(matches!(r.feed(&[0xff, 0xff, 0xff, 0xff]).1, Some(Err(_))));
    }
}
