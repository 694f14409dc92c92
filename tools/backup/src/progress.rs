//! The progress bar on stderr, shown only when stderr is a terminal: bytes done of the
//! expected total, the current step, speed and time left. Fed by the store's progress
//! callback.

use std::io::IsTerminal;
use std::time::Duration;

use cairn_store::backup::{BackupControl, BackupProgress};
use indicatif::{ProgressBar, ProgressStyle};

/// A progress bar, or nothing when stderr is not a terminal.
pub struct Bar(Option<ProgressBar>);

impl Bar {
    pub fn new() -> Bar {
        if !std::io::stderr().is_terminal() {
            return Bar(None);
        }
        let bar = ProgressBar::new(0);
        let style = ProgressStyle::with_template(
            "{msg:24} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
        )
        .expect("a valid template")
        .progress_chars("=> ");
        bar.set_style(style);
        bar.enable_steady_tick(Duration::from_millis(200));
        Bar(Some(bar))
    }

    /// `control` with this bar as its progress callback.
    pub fn attach(&self, control: BackupControl) -> BackupControl {
        match &self.0 {
            None => control,
            Some(bar) => {
                let bar = bar.clone();
                control.with_progress(move |p: &BackupProgress| {
                    bar.set_length(p.bytes_total);
                    bar.set_position(p.bytes_done);
                    bar.set_message(p.message.clone());
                })
            }
        }
    }

    /// Removes the bar from the terminal (before the summary or an error is printed).
    pub fn clear(&self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}
