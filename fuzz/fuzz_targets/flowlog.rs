//! The flow-log readers: a whole log in CSV (with its header, possibly a newer schema's with
//! columns in another order) or JSON Lines, as `uniperf plot`/`collect` read it, and the header
//! line of an upload to `uniperf collect`. Invariants: a log that reads back is written by the
//! one row writer, in both formats, to text that reads back to the same rows (so the writer's
//! fixed-size row buffer holds every value the reader accepts); an upload header round-trips.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netstack::flowlog::ship::ShipHeader;
use netstack::flowlog::{Format, RowWriter, parse_log};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };

    if let Ok(h) = ShipHeader::parse(text.lines().next().unwrap_or("")) {
        let line = h.to_line();
        assert_eq!(ShipHeader::parse(&line).as_ref(), Ok(&h), "upload header round trip: {line}");
    }

    let rows = match parse_log(text) {
        Ok(rows) => rows,
        Err(e) => {
            assert!(e.starts_with("line "), "{e}");
            return;
        }
    };
    for format in [Format::Csv, Format::Jsonl] {
        let mut w = RowWriter::new(format);
        let mut out = Vec::new();
        w.header(&mut out);
        for r in &rows {
            w.write(r, &mut out);
        }
        let written = std::str::from_utf8(&out).expect("the row writer wrote UTF-8");
        let again = parse_log(written).unwrap_or_else(|e| panic!("{format:?}: our own log is refused: {e}\n{written}"));
        assert_eq!(again, rows, "{format:?}: read(write(rows)) != rows");
    }
});
