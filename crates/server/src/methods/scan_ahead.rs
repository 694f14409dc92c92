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

/// A page is read ahead only after a page of at most this many encoded bytes, and with
/// a budget of at most this many bytes, so that a connection holds little more than it
/// would without read-ahead.
const READ_AHEAD_MAX_BYTES: usize = 1 << 20;

/// The smallest budget a page is read ahead with (twice the page before it, else).
const READ_AHEAD_MIN_BYTES: usize = 64 << 10;

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

/// A page read ahead, with the service-wide permits for its bytes: they are held from
/// before the read starts until the page is dropped, so that reads no call waits for
/// any more still count against the service's limit while they run.
type HeldPage = (ScanPage, OwnedSemaphorePermit);

/// The next page of one connection's last `scan`, being read or read.
struct Ahead {
    /// The call that asks for it.
    args: ScanArgs,
    budget: usize,
    /// `None` when the smaller budget of a read-ahead cut the page short: it is not the
    /// page the call would get.
    page: JoinHandle<Result<Option<HeldPage>, StoreError>>,
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
            Some((page, _permits)) if Some(page.version) == current => {
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
    /// the range goes on, the page was small enough and the service's `permits` (one a
    /// byte) have room for the read-ahead's budget; a page read ahead before and never
    /// asked for is dropped.
    pub(super) fn read_next(
        &self,
        (args, scan): (&ScanArgs, &Scan),
        page: &ScanPage,
        (budget, permits): (usize, &Arc<Semaphore>),
        store: &Store,
        metrics: &Metrics,
    ) {
        let encoded = page.docs.encoded_len();
        let ahead_budget = budget
            .min(READ_AHEAD_MAX_BYTES)
            .min((2 * encoded).max(READ_AHEAD_MIN_BYTES));
        let next = (page.more && encoded <= READ_AHEAD_MAX_BYTES)
            .then(|| u32::try_from(ahead_budget).ok())
            .flatten()
            .and_then(|bytes| permits.clone().try_acquire_many_owned(bytes).ok())
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
                        let page = read_page(&store, &db, &scan, ahead_budget)?;
                        let whole =
                            ahead_budget == budget || !page.more || page.docs.len() == scan.limit;
                        Ok((whole && page.docs.encoded_len() <= ahead_budget)
                            .then_some((page, permit)))
                    }),
                }
            });
        let unused = std::mem::replace(&mut *self.slot.lock().expect("read-ahead lock"), next);
        if unused.is_some() {
            metrics.scan_read_ahead(ReadAheadOutcome::Unused);
        }
    }
}
