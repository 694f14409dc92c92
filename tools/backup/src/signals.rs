//! SIGINT and SIGTERM cancel the work instead of killing the process, so that what it
//! was writing (`DST.partial`, `DIR.restoring`) is removed before it exits. A second
//! signal kills it at once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

/// The cancel flag of the running work, set from the signal handler.
static CANCEL: OnceLock<Arc<AtomicBool>> = OnceLock::new();

extern "C" fn on_signal(signal: libc::c_int) {
    if let Some(flag) = CANCEL.get() {
        flag.store(true, Ordering::SeqCst);
    }
    // SAFETY: signal(2) is async-signal-safe; the next such signal gets the default.
    unsafe { libc::signal(signal, libc::SIG_DFL) };
}

/// Routes SIGINT and SIGTERM to `flag`.
pub fn cancel_on_signals(flag: Arc<AtomicBool>) {
    if CANCEL.set(flag).is_err() {
        return;
    }
    let handler: extern "C" fn(libc::c_int) = on_signal;
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only does async-signal-safe work (an atomic store and
        // signal(2)).
        unsafe { libc::signal(signal, handler as libc::sighandler_t) };
    }
}
