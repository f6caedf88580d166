//! A panic inside sled (it panics on some damaged files instead of
//! returning an error) becomes a corruption error at the call that hit it
//! ([`engine`], which the sled engine runs every call into sled inside),
//! saying where sled failed, instead of unwinding through the caller with a
//! backtrace. Panics anywhere else are left alone.

use std::cell::{Cell, RefCell};
use std::panic::AssertUnwindSafe;

use crate::store::StoreError;

thread_local! {
    /// True while this thread runs inside [`engine`].
    static GUARDED: Cell<bool> = const { Cell::new(false) };
    /// What the panic hook saw of a panic inside sled on this thread.
    static CAUGHT: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Whether a panic happened in sled's own code.
fn in_engine(file: &str) -> bool {
    file.split(['/', '\\']).any(|c| c.starts_with("sled-"))
}

/// The panic's message and where in sled it happened, short.
fn describe(info: &std::panic::PanicHookInfo<'_>) -> String {
    let payload = info.payload();
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".into());
    match info.location() {
        Some(l) => {
            let file = l.file();
            let from = file
                .split(['/', '\\'])
                .position(|c| c.starts_with("sled-"))
                .map_or(file.to_string(), |i| {
                    file.split(['/', '\\'])
                        .skip(i)
                        .collect::<Vec<_>>()
                        .join("/")
                });
            format!("{message} (in {from}:{})", l.line())
        }
        None => message,
    }
}

/// Installs, once per process, a panic hook that keeps quiet about panics
/// inside sled while a thread is in [`engine`] (they are reported as
/// corruption by it) and hands every other panic to the hook before it.
fn install_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let quiet =
                GUARDED.with(Cell::get) && info.location().is_some_and(|l| in_engine(l.file()));
            if quiet {
                CAUGHT.with(|c| *c.borrow_mut() = Some(describe(info)));
            } else {
                previous(info);
            }
        }));
    });
}

/// Runs `f`, which calls into sled; a panic inside sled becomes
/// [`StoreError::Corrupt`] naming where sled failed, printed nowhere. Any
/// other panic goes on unwinding.
pub(crate) fn engine<T>(f: impl FnOnce() -> Result<T, StoreError>) -> Result<T, StoreError> {
    install_hook();
    CAUGHT.with(|c| c.borrow_mut().take());
    let outer = GUARDED.with(|g| g.replace(true));
    let result = std::panic::catch_unwind(AssertUnwindSafe(f));
    GUARDED.with(|g| g.set(outer));
    match result {
        Ok(r) => r,
        Err(payload) => match CAUGHT.with(|c| c.borrow_mut().take()) {
            Some(what) => Err(StoreError::Corrupt {
                key: crate::store::ENGINE_KEY.into(),
                detail: format!("sled failed reading its files: {what}"),
            }),
            None => std::panic::resume_unwind(payload),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_panics_in_sled_are_engine_failures() {
        assert!(in_engine(
            "/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/sled-0.34.7/src/pagecache/segment.rs"
        ));
        assert!(in_engine("sled-0.34.7/src/tree.rs"));
        assert!(!in_engine("src/store/sled_store.rs"));
        assert!(!in_engine("/work/warden/src/store/guard.rs"));
    }

    #[test]
    fn a_panic_inside_sled_is_corruption_saying_where() {
        // A real panic in sled's code: a subslice past the end.
        let r = engine::<()>(|| {
            let v = sled::IVec::from(&b"ab"[..]);
            let _ = v.subslice(5, 1);
            Ok(())
        });
        match r {
            Err(StoreError::Corrupt { key, detail }) => {
                assert_eq!(key, crate::store::ENGINE_KEY);
                assert!(
                    detail.starts_with("sled failed reading its files: "),
                    "{detail}"
                );
                assert!(detail.contains("(in sled-0.34.7/src/ivec.rs:"), "{detail}");
            }
            other => panic!("{other:?}"),
        }
        // Nothing is left over for the next call.
        assert!(!GUARDED.with(Cell::get));
        assert!(CAUGHT.with(|c| c.borrow().is_none()));
        assert_eq!(engine(|| Ok(7)).unwrap(), 7);
    }

    #[test]
    fn a_panic_outside_sled_keeps_unwinding() {
        let r = std::panic::catch_unwind(|| engine::<()>(|| panic!("a bug, not damage")));
        assert!(r.is_err());
        // The hook was handed back for other threads and calls.
        assert!(!GUARDED.with(Cell::get));
    }
}
