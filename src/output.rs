//! Where reports go: stdout, or `--logfile` (appended, as iperf3 does). Reports are flushed
//! as they are written so interval lines appear while the test runs. With `--timestamps`
//! every text line starts with the local time in the given strftime format.

use anyhow::{Context, Result};
use std::ffi::CString;
use std::io::Write;

pub struct Output {
    file: Option<std::fs::File>,
    /// strftime format for `--timestamps` (text output only).
    timestamps: Option<CString>,
    /// The last write ended mid-line: the next one continues it, unstamped.
    mid_line: bool,
}

impl Output {
    pub fn open(logfile: Option<&str>, timestamps: Option<&str>) -> Result<Self> {
        let file = match logfile {
            Some(path) => Some(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .with_context(|| format!("cannot open log file '{path}'"))?,
            ),
            None => None,
        };
        let timestamps =
            timestamps.map(|f| CString::new(f).context("--timestamps: the format contains a NUL byte")).transpose()?;
        Ok(Output { file, timestamps, mid_line: false })
    }

    pub fn write(&mut self, s: &str) -> Result<()> {
        if s.is_empty() {
            return Ok(());
        }
        let text = match &self.timestamps {
            Some(fmt) => netstack::report::time::stamp_lines(s, &local_time(fmt), &mut self.mid_line),
            None => s.to_string(),
        };
        match self.file.as_mut() {
            Some(f) => {
                f.write_all(text.as_bytes()).context("cannot write to the log file")?;
                f.flush().ok();
            }
            None => {
                let mut so = std::io::stdout().lock();
                // A closed stdout (e.g. `| head`) is not worth dying over mid-test.
                let _ = so.write_all(text.as_bytes());
                let _ = so.flush();
            }
        }
        Ok(())
    }
}

/// The local time now, formatted with strftime(3), as iperf3 stamps its lines.
fn local_time(fmt: &CString) -> String {
    let mut buf = [0u8; 256];
    // SAFETY: time(NULL) only returns the time; tm is filled by localtime_r before use.
    let n = unsafe {
        let t = libc::time(std::ptr::null_mut());
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&t, &mut tm).is_null() {
            return String::new();
        }
        libc::strftime(buf.as_mut_ptr().cast(), buf.len(), fmt.as_ptr(), &tm)
    };
    String::from_utf8_lossy(&buf[..n]).into_owned()
}
