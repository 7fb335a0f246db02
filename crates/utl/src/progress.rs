//! A progress bar for saves and restores of large snapshots, shown only when stderr is a
//! terminal (scripts and logs see nothing of it) and the snapshot is large enough to wait for.

use std::io::IsTerminal;
use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressStyle};

/// Below this, a save or restore is over before a bar would tell anything.
const LARGE_BYTES: u64 = 32 << 20;

/// Progress over a number of bytes known once the work starts.
pub struct Progress {
    what: &'static str,
    bar: Mutex<Option<ProgressBar>>,
}

impl Progress {
    pub fn new(what: &'static str) -> Self {
        Progress { what, bar: Mutex::new(None) }
    }

    /// `done` of `total` bytes so far.
    pub fn update(&self, done: u64, total: u64) {
        let mut bar = self.bar.lock().unwrap_or_else(|p| p.into_inner());
        let bar = bar.get_or_insert_with(|| {
            if total < LARGE_BYTES || !std::io::stderr().is_terminal() {
                return ProgressBar::hidden();
            }
            let b = ProgressBar::new(total);
            if let Ok(style) = ProgressStyle::with_template("{msg} [{bar:40}] {bytes}/{total_bytes} ({eta})") {
                b.set_style(style.progress_chars("=> "));
            }
            b.set_message(self.what);
            b
        });
        bar.set_length(total);
        bar.set_position(done);
    }

    /// Takes the bar off the terminal.
    pub fn finish(&self) {
        if let Some(b) = self.bar.lock().unwrap_or_else(|p| p.into_inner()).take() {
            b.finish_and_clear();
        }
    }
}
