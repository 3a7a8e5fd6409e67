//! The capture reader of `uniperf flowlog --pcap` (classic pcap and pcapng through pcap-file,
//! our link-layer unwrapping and pcapng time-stamp arithmetic) and the whole conversion behind
//! it: frames to IPv4 to the flow tracker to log rows. Invariants: no frame is longer than the
//! file; every refusal is an error naming what was wrong; the log the conversion writes reads
//! back with `parse_log` to exactly as many rows as it says it wrote.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netstack::flowlog::{Format, parse_log};
use std::io::Cursor;
use uniperf::flowlog_cmd::{CaptureReader, FlowlogArgs, convert_from};

fuzz_target!(|data: &[u8]| {
    let mut frames = 0usize;
    let read = CaptureReader::new(Cursor::new(data)).and_then(|r| {
        r.for_each_frame(|f| {
            assert!(f.data.len() <= data.len(), "a {}-byte frame in a {}-byte file", f.data.len(), data.len());
            frames += 1;
            Ok(())
        })
    });
    if let Err(e) = &read {
        assert!(!format!("{e:#}").is_empty());
    }

    // The conversion, in a format and sampling the file's length picks.
    let args = FlowlogArgs {
        pcap: String::new(),
        output: None,
        format: Some(if data.len() % 2 == 0 { Format::Csv } else { Format::Jsonl }),
        local: None,
        interval_ms: (data.len() % 3 == 0).then_some(100),
        abs_time: data.len() % 5 == 0,
    };
    let mut out = Vec::new();
    match convert_from(&args, || CaptureReader::new(Cursor::new(data)), &mut out) {
        Ok(conv) => {
            assert!(read.is_ok(), "the conversion read a file the reader refuses");
            assert_eq!(conv.records, frames as u64);
            let text = std::str::from_utf8(&out).expect("the log is UTF-8");
            let rows = parse_log(text).unwrap_or_else(|e| panic!("the converted log is refused: {e}\n{text}"));
            assert_eq!(rows.len() as u64, conv.samples);
            let _ = uniperf::flowlog_cmd::summary_text(&conv);
        }
        Err(e) => assert!(!format!("{e:#}").is_empty()),
    }
});
