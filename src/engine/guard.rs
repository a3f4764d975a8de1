//! The panic guard: a bug that panics while one rule evaluates one record must become an error
//! record for that rule (stage `panic`), never a dead worker or a stalled pipeline.
//!
//! [`catch`] runs a closure and turns a panic into its message. [`install_hook`] replaces the
//! default panic hook (which prints a backtrace to stderr for every panic) by one that logs the
//! panic once through `tracing` and remembers where it happened, so the error record says where
//! the bug is: `attempt to negate with overflow (at src/rule/expr.rs:120:9)`.

use std::any::Any;
use std::cell::RefCell;
use std::panic::{self, AssertUnwindSafe};

thread_local! {
    /// Where the last panic on this thread happened (set by the hook of [`install_hook`]).
    static LAST_LOCATION: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Runs `f`; a panic inside it is caught and returned as its message (with its location when
/// [`install_hook`] was called).
///
/// The closure must leave nothing half-done that the caller relies on: the engine truncates the
/// output records a panicking rule may have appended.
pub fn catch<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    panic::catch_unwind(AssertUnwindSafe(f)).map_err(|payload| {
        let msg = panic_text(&*payload);
        match LAST_LOCATION.with(|l| l.borrow_mut().take()) {
            Some(at) => format!("{msg} (at {at})"),
            None => msg.to_string(),
        }
    })
}

/// The message of a panic's payload (`panic!` gives a `&str` or a `String`).
pub fn panic_text(payload: &(dyn Any + Send)) -> &str {
    match (payload.downcast_ref::<&str>(), payload.downcast_ref::<String>()) {
        (Some(s), _) => s,
        (None, Some(s)) => s,
        (None, None) => "panic with a non-text payload",
    }
}

/// Installs a panic hook that logs every panic as one `tracing` error (thread, message,
/// location) instead of printing a backtrace, and records the location for [`catch`]. Set once
/// by the binary at start; tests keep the default hook.
pub fn install_hook() {
    panic::set_hook(Box::new(|info| {
        let at = info.location().map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()));
        let msg = panic_text(info.payload());
        let thread = std::thread::current();
        tracing::error!(thread = thread.name().unwrap_or("unnamed"), message = msg, location = at.as_deref().unwrap_or("unknown"), "panic");
        LAST_LOCATION.with(|l| *l.borrow_mut() = at);
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_its_message() {
        assert_eq!(catch(|| 1 + 1), Ok(2));
        let e = catch(|| -> i32 { panic!("boom {}", 7) }).unwrap_err();
        assert!(e.starts_with("boom 7"), "{e}");
        let e = catch(|| -> i32 { std::panic::panic_any(5u8) }).unwrap_err();
        assert!(e.starts_with("panic with a non-text payload"), "{e}");
        // An arithmetic overflow on user data is the kind of bug the guard is for.
        let (a, b) = (std::hint::black_box(i64::MIN), std::hint::black_box(-1i64));
        let e = catch(|| a % b).unwrap_err();
        assert!(e.contains("overflow"), "{e}");
    }
}
