//! What the follower says while it runs: one line per event on stdout (text, or one JSON
//! object per line with `-o json`), and a progress bar of the changes left on stderr
//! while catching up, only when stderr is a terminal.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::args::Output;

/// Something worth a line.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The destination follows the source now.
    Attached {
        source: String,
        source_service_id: String,
        destination: String,
    },
    /// A database's sync changed state (`catching_up` or `live`).
    State {
        db: String,
        state: &'static str,
        applied_seq: u64,
        head_seq: u64,
    },
    /// A database's sync stopped; the operator must act.
    Stopped {
        db: String,
        code: String,
        message: String,
        seq: u64,
    },
    /// A failure that is tried again.
    Retrying { db: String, error: String },
    /// A database the source created, created on the destination.
    Created { db: String },
    /// A database dropped on the source: dropped on the destination at the cutover.
    Dropped { db: String },
    /// The follower stops.
    Ended { reason: String },
}

impl Event {
    fn text(&self) -> String {
        match self {
            Event::Attached {
                source,
                source_service_id,
                destination,
            } => format!("following {source} (service {source_service_id}) into {destination}: it is in migration mode"),
            Event::State {
                db,
                state,
                applied_seq,
                head_seq,
            } => match *state {
                "live" => format!("{db}: live at seq {applied_seq}"),
                _ => format!("{db}: catching up at seq {applied_seq} of {head_seq}"),
            },
            Event::Stopped {
                db,
                code,
                message,
                seq,
            } => format!("{db}: stopped at seq {seq}: {code}: {message}"),
            Event::Retrying { db, error } => format!("{db}: trying again shortly: {error}"),
            Event::Created { db } => {
                format!("{db}: created here (the source created it), following it from seq 0")
            }
            Event::Dropped { db } => format!(
                "{db}: dropped on the source: it stays here until the cutover, which drops it"
            ),
            Event::Ended { reason } => format!("stopped following: {reason}"),
        }
    }
}

/// Prints events and keeps the progress bar.
pub struct Printer {
    output: Output,
    bar: Option<ProgressBar>,
    /// Per database: (changes left, applied since the start).
    behind: Mutex<HashMap<String, (u64, u64)>>,
}

impl Printer {
    pub fn new(output: Output) -> Printer {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(0);
            bar.set_style(
                ProgressStyle::with_template(
                    "catching up [{bar:30}] {human_pos}/{human_len} changes {per_sec} {msg}",
                )
                .expect("a valid template")
                .progress_chars("=> "),
            );
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Printer {
            output,
            bar,
            behind: Mutex::new(HashMap::new()),
        }
    }

    pub fn event(&self, event: &Event) {
        let line = match self.output {
            Output::Text => event.text(),
            Output::Json => serde_json::to_string(event).expect("events always encode"),
        };
        match &self.bar {
            Some(bar) => bar.suspend(|| println!("{line}")),
            None => println!("{line}"),
        }
    }

    /// Where a database stands, for the progress bar.
    pub fn progress(&self, db: &str, left: u64, applied: u64) {
        let Some(bar) = &self.bar else { return };
        let mut behind = self.behind.lock().expect("progress lock");
        behind.insert(db.to_string(), (left, applied));
        let (left, done) = behind
            .values()
            .fold((0, 0), |(l, d), (left, done)| (l + left, d + done));
        bar.set_length(left + done);
        bar.set_position(done);
        let catching_up = behind.values().filter(|(left, _)| *left > 0).count();
        bar.set_message(format!("{catching_up} database(s) behind"));
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
