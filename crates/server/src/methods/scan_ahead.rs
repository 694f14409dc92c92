//! `scan` pages, and the next one read ahead on each connection. A client that reads a
//! range page after page (`Client::scan_pages`, `cairn-sync`'s digests) asks for the
//! next page once the previous one has reached it, so without read-ahead the service
//! waits while a page travels and is decoded, and the client waits while the next one
//! is read. After answering a page that has `more`, the connection therefore reads the
//! next one (the same range and limit, after the page's last key) on a blocking thread
//! at once. When that call comes, the page read ahead is served if nothing was
//! committed since it was read (its snapshot's version is the store's current one);
//! otherwise it is read again. Either way a page holds what a snapshot opened after its
//! call arrived holds. `cairn_scan_read_ahead_total` counts the pages read ahead by
//! outcome.

use std::sync::{Arc, Mutex};

use cairn_proto::methods::ScanArgs;
use cairn_proto::pages::Entries;
use cairn_store::{Scan, StateVersion, Store, StoreError};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

use crate::ops::metrics::{Metrics, ReadAheadOutcome};

/// A page is read ahead only after a page of at most this many encoded bytes, and kept
/// only if it is no larger, so that a connection holds little more than it would
/// without read-ahead; and all connections together hold at most as many pages as
/// `Shared::scan_read_ahead` has permits.
const READ_AHEAD_MAX_BYTES: usize = 1 << 20;

/// A page of `scan`, encoded from the snapshot it was read in.
pub(super) struct ScanPage {
    pub docs: Entries,
    pub more: bool,
    /// The key of the page's last document (empty for an empty page).
    last_key: String,
    version: StateVersion,
}

/// Reads one page of `scan` in database `db` of `store` (blocking: run it on a blocking
/// thread), its answer at most `budget` bytes of keys and values.
pub(super) fn read_page(
    store: &Store,
    db: &str,
    scan: &Scan,
    budget: usize,
) -> Result<ScanPage, StoreError> {
    let snapshot = store.snapshot()?;
    let mut docs = Entries::new();
    let mut last_key = String::new();
    let more = snapshot.database(db)?.scan_page(scan, budget, |doc| {
        docs.push_doc(doc.key, doc.rev, doc.value);
        last_key.clear();
        last_key.push_str(doc.key);
    })?;
    Ok(ScanPage {
        docs,
        more,
        last_key,
        version: snapshot.version()?,
    })
}

/// The next page of one connection's last `scan`, being read or read.
struct Ahead {
    /// The call that asks for it.
    args: ScanArgs,
    budget: usize,
    /// `None` when the page read was larger than a page read ahead may be.
    page: JoinHandle<Result<Option<ScanPage>, StoreError>>,
    /// The service-wide permit the page holds.
    _permit: OwnedSemaphorePermit,
}

/// One connection's read-ahead: at most one page.
#[derive(Default)]
pub struct ScanAhead {
    slot: Mutex<Option<Ahead>>,
}

impl ScanAhead {
    /// The page read ahead for the call `args` with `budget`, if it is the call the page
    /// was read for and nothing was committed to `store` since it was read.
    pub(super) async fn take(
        &self,
        args: &ScanArgs,
        budget: usize,
        store: &Store,
        metrics: &Metrics,
    ) -> Option<ScanPage> {
        let ahead = {
            let mut slot = self.slot.lock().expect("read-ahead lock");
            if !slot
                .as_ref()
                .is_some_and(|a| a.args == *args && a.budget == budget)
            {
                return None;
            }
            slot.take()?
        };
        let page = ahead.page.await.ok().and_then(Result::ok).flatten();
        let current = store.snapshot().and_then(|s| s.version()).ok();
        match page {
            Some(page) if Some(page.version) == current => {
                metrics.scan_read_ahead(ReadAheadOutcome::Used);
                Some(page)
            }
            _ => {
                metrics.scan_read_ahead(ReadAheadOutcome::Stale);
                None
            }
        }
    }

    /// Starts reading the page after `page`, the answer to `args` (read as `scan`), if
    /// the range goes on, the page was small enough and one of the service's
    /// `permits` is free; a page read ahead before and never asked for is dropped.
    pub(super) fn read_next(
        &self,
        (args, scan): (&ScanArgs, &Scan),
        page: &ScanPage,
        (budget, permits): (usize, &Arc<Semaphore>),
        store: &Store,
        metrics: &Metrics,
    ) {
        let next = (page.more && page.docs.encoded_len() <= READ_AHEAD_MAX_BYTES)
            .then(|| permits.clone().try_acquire_owned().ok())
            .flatten()
            .map(|permit| {
                let after = Some(page.last_key.clone());
                let (store, db) = (store.clone(), args.db.clone());
                let scan = Scan {
                    after: after.clone(),
                    ..scan.clone()
                };
                Ahead {
                    args: ScanArgs {
                        after,
                        ..args.clone()
                    },
                    budget,
                    page: tokio::task::spawn_blocking(move || {
                        let page = read_page(&store, &db, &scan, budget)?;
                        Ok((page.docs.encoded_len() <= READ_AHEAD_MAX_BYTES).then_some(page))
                    }),
                    _permit: permit,
                }
            });
        let unused = std::mem::replace(&mut *self.slot.lock().expect("read-ahead lock"), next);
        if unused.is_some() {
            metrics.scan_read_ahead(ReadAheadOutcome::Unused);
        }
    }
}
