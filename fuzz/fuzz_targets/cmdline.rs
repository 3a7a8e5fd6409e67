//! The kernel command line and the option parser every platform shares: `split_cmdline`, then
//! `Options::parse` and `validate` for the Linux program, `uniperf sim` or the image (byte 0
//! picks which). Invariants: splitting is undone by quoting (words re-quoted and joined split
//! back to the same words); every refusal is a sentence; and the parameters an accepted client
//! command line sends are accepted by our own server's decoder unchanged — the client and the
//! server share one table of limits, so a client must never send what a server refuses.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netstack::options::{Mode, Options, Target, split_cmdline, usage};
use netstack::proto::TestParams;
use netstack::report::Side;

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, line)) = data.split_first() else { return };
    let target = match ctl % 3 {
        0 => Target::Image,
        1 => Target::Tap,
        _ => Target::Sim,
    };
    let line = String::from_utf8_lossy(line);
    let words = match split_cmdline(&line) {
        Ok(w) => w,
        Err(e) => {
            assert!(line.matches('"').count() % 2 == 1, "refused with balanced quotes: {e}");
            return;
        }
    };
    assert!(words.iter().all(|w| !w.contains('"')));
    let quoted: Vec<String> = words.iter().map(|w| format!("\"{w}\"")).collect();
    assert_eq!(split_cmdline(&quoted.join(" ")).as_ref(), Ok(&words), "quoting does not undo splitting");

    let o = match Options::parse(words.iter().map(String::as_str), target) {
        Ok(o) => o,
        Err(e) => {
            assert!(!e.is_empty());
            return;
        }
    };
    if let Err(e) = o.validate() {
        assert!(!e.is_empty());
        return;
    }
    let _ = (o.report_config(Side::Client), o.congestion(), o.idle_timeout(), o.server_address());
    if ctl == 0xff {
        let _ = usage("uniperf", target, "");
    }
    if o.help || o.version || !matches!(o.mode, Some(Mode::Client(_))) {
        return;
    }
    let p = o.to_params();
    let json = p.to_json();
    match TestParams::parse(json.as_bytes()) {
        Ok(got) => assert_eq!(got, p, "the server decodes other parameters than the client meant: {json}"),
        Err((code, why)) => {
            panic!("{words:?} is accepted, but a server refuses its parameters ({code:?}): {why}\n{json}")
        }
    }
    if let Err((code, why)) = p.validate() {
        panic!("{words:?} is accepted, but a server refuses its parameters ({code:?}): {why}");
    }
});
