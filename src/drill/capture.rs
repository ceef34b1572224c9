//! Sends the process's standard output to a file for a while.
//!
//! A drill heals through `fix::run_fix`, exactly as `selfheal fix` does, and
//! that session prints its progress on standard output (the terminal sink).
//! The drill keeps each session's transcript in the case's folder instead,
//! so its own table (and `--json`) stay readable. `run_fix` has no other
//! place to send its messages; the day it takes a sink, this module goes.

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, RawFd};
use std::path::Path;

use anyhow::{Context, Result};

/// While alive, file descriptor 1 writes to the file; dropping it restores
/// the previous standard output.
pub struct StdoutTo {
    saved: RawFd,
}

impl StdoutTo {
    pub fn file(path: &Path) -> Result<StdoutTo> {
        let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
        let _ = std::io::stdout().flush();
        // SAFETY: dup and dup2 on valid descriptors only change which file
        // descriptor 1 refers to; no Rust object owns descriptor 1 itself
        // (`std::io::stdout()` writes to it by number). `saved` is a fresh
        // descriptor this value owns and closes in `drop`.
        let saved = unsafe { libc::dup(1) };
        if saved < 0 {
            return Err(std::io::Error::last_os_error()).context("duplicating standard output");
        }
        // SAFETY: as above; `file` stays open until after the call.
        if unsafe { libc::dup2(file.as_raw_fd(), 1) } < 0 {
            let e = std::io::Error::last_os_error();
            // SAFETY: `saved` is ours and not used after this.
            unsafe { libc::close(saved) };
            return Err(e).context("redirecting standard output");
        }
        Ok(StdoutTo { saved })
    }
}

impl Drop for StdoutTo {
    fn drop(&mut self) {
        let _ = std::io::stdout().flush();
        // SAFETY: `saved` is the descriptor `file` duplicated and still owns.
        unsafe {
            libc::dup2(self.saved, 1);
            libc::close(self.saved);
        }
    }
}
