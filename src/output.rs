//! Where reports go: stdout, or `--logfile` (appended, as iperf3 does). Reports are flushed
//! as they are written so interval lines appear while the test runs.

use anyhow::{Context, Result};
use std::io::Write;

pub struct Output {
    file: Option<std::fs::File>,
}

impl Output {
    pub fn open(logfile: Option<&str>, _forceflush: bool) -> Result<Self> {
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
        Ok(Output { file })
    }

    pub fn write(&mut self, s: &str) -> Result<()> {
        if s.is_empty() {
            return Ok(());
        }
        match self.file.as_mut() {
            Some(f) => {
                f.write_all(s.as_bytes()).context("cannot write to the log file")?;
                f.flush().ok();
            }
            None => {
                let mut so = std::io::stdout().lock();
                // A closed stdout (e.g. `| head`) is not worth dying over mid-test.
                let _ = so.write_all(s.as_bytes());
                let _ = so.flush();
            }
        }
        Ok(())
    }
}
