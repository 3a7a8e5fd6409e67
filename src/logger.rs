//! The `log` facade's sink on Linux: uniperf's own diagnostics (not iperf3's report, which
//! goes to stdout or `--logfile`) on stderr as `uniperf: …`, warnings and errors named as such.
//! Info and above by default; `-d`/`--debug` adds debug.

use log::{Level, LevelFilter, Log, Metadata, Record};

struct Stderr;

static LOGGER: Stderr = Stderr;

impl Log for Stderr {
    fn enabled(&self, m: &Metadata<'_>) -> bool {
        m.level() <= log::max_level()
    }

    fn log(&self, r: &Record<'_>) {
        if !self.enabled(r.metadata()) {
            return;
        }
        match r.level() {
            Level::Error => eprintln!("uniperf: error - {}", r.args()),
            Level::Warn => eprintln!("uniperf: warning - {}", r.args()),
            Level::Info => eprintln!("uniperf: {}", r.args()),
            Level::Debug | Level::Trace => eprintln!("uniperf: debug: {}: {}", r.target(), r.args()),
        }
    }

    fn flush(&self) {}
}

/// Installs the logger (once per process; later calls only change the level).
pub fn init(debug: bool) {
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(if debug { LevelFilter::Debug } else { LevelFilter::Info });
}
