//! Wake-ups for change feeds: the store's commit hook publishes each database's last
//! seq on a `watch` channel; longpoll and continuous feeds wait on it instead of polling.
//! The journal's newest seq is published the same way, for the mirrors' streams.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use cairn_store::{DatabaseCommit, Store};
use tokio::sync::watch;

/// The newest state of one database: its last seq, or `None` once it was dropped.
pub type DatabaseState = Option<u64>;

/// One watch channel per database that anyone waited on or wrote to.
#[derive(Clone)]
pub struct Feeds {
    channels: Arc<Mutex<HashMap<String, watch::Sender<DatabaseState>>>>,
    journal: watch::Sender<u64>,
}

impl Default for Feeds {
    fn default() -> Self {
        Feeds {
            channels: Arc::default(),
            journal: watch::Sender::new(0),
        }
    }
}

impl Feeds {
    /// Feeds these channels from `store`'s commits (a restored store is attached anew).
    pub fn attach(&self, store: &Store) {
        let publisher = self.clone();
        store.set_commit_hook(Arc::new(move |commits: &[DatabaseCommit]| {
            publisher.publish(commits)
        }));
        let journal = self.journal.clone();
        store.set_journal_hook(Arc::new(move |head| {
            journal.send_replace(head);
        }));
    }

    /// A receiver that sees the journal's newest seq after every commit that added to it.
    pub fn journal(&self) -> watch::Receiver<u64> {
        self.journal.subscribe()
    }

    fn publish(&self, commits: &[DatabaseCommit]) {
        let mut channels = self.channels.lock().expect("feeds lock");
        for commit in commits {
            match channels.get(&commit.name) {
                Some(sender) => {
                    sender.send_replace(commit.last_seq);
                }
                None => {
                    channels.insert(commit.name.clone(), watch::Sender::new(commit.last_seq));
                }
            }
        }
        // Forget the channels of dropped databases once nobody listens; a live database
        // keeps its one channel.
        channels.retain(|_, sender| sender.receiver_count() > 0 || sender.borrow().is_some());
    }

    /// A receiver that sees every later commit of `db`; `current` seeds a new channel.
    pub fn subscribe(&self, db: &str, current: DatabaseState) -> watch::Receiver<DatabaseState> {
        let mut channels = self.channels.lock().expect("feeds lock");
        channels
            .entry(db.to_string())
            .or_insert_with(|| watch::Sender::new(current))
            .subscribe()
    }
}
