//! The progress bar on stderr, shown only when stderr is a terminal: documents moved of
//! the source's, the database under way, the rate and the time left.

use std::io::IsTerminal;
use std::time::Duration;

use cairn_store::migrate::Progress;
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
            "{msg:28} [{bar:30}] {human_pos}/{human_len} documents {per_sec} eta {eta}",
        )
        .expect("a valid template")
        .progress_chars("=> ");
        bar.set_style(style);
        bar.enable_steady_tick(Duration::from_millis(200));
        Bar(Some(bar))
    }

    /// Shows where the migration stands.
    pub fn show(&self, progress: &Progress) {
        if let Some(bar) = &self.0 {
            bar.set_length(progress.documents);
            bar.set_position(progress.documents_done);
            bar.set_message(format!(
                "{} ({}/{})",
                progress.database,
                progress.databases_done + 1,
                progress.databases
            ));
        }
    }

    /// Removes the bar from the terminal (before the summary or an error is printed).
    pub fn clear(&self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}
