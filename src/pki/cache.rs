//! A cache of successful chain verifications, keyed by the chain's
//! fingerprint (SHA-256 of the exact bytes presented) and the version of
//! the trust bundle that verified it.
//!
//! What it must never do: keep a failure (every rejection is decided again,
//! so a transient one, such as a CRL that had expired until a new one was
//! installed, never sticks), or let a kept verdict be used without its
//! caller re-checking what time can change (validity windows, CRL expiry,
//! revocation; see [`TrustBundle::still_accepts`](super::TrustBundle::still_accepts)).
//!
//! Callers asking for the same key at the same time share one verification:
//! the first runs it, the others wait for its verdict. Memory is bounded by
//! two generations of entries: when the current one fills up it becomes the
//! previous one (dropping the one before), and an entry found in the
//! previous generation moves back to the current one, so chains in use stay
//! while chains seen once age out.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// SHA-256 of the chain as presented, and the trust bundle version.
pub type CacheKey = ([u8; 32], u64);

/// A verification in progress or done: `Some` once one succeeded, `None`
/// when the one that ran failed (that slot is then forgotten).
type Slot<T> = Arc<OnceLock<Option<Arc<T>>>>;

/// Entries per generation; at most twice this many are held.
pub const DEFAULT_CAPACITY: usize = 2048;

pub struct VerificationCache<T> {
    generations: Mutex<Generations<T>>,
    per_generation: usize,
    hits: AtomicU64,
    misses: AtomicU64,
    coalesced: AtomicU64,
}

struct Generations<T> {
    current: HashMap<CacheKey, Slot<T>>,
    previous: HashMap<CacheKey, Slot<T>>,
}

/// Counters since start: `misses` verifications run through the cache,
/// `hits` verdicts reused, `coalesced` callers that waited for another's
/// verification of the same chain.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    pub coalesced: u64,
    pub entries: usize,
}

/// How a [`VerificationCache::get_or_verify`] answer was obtained.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// This call ran the verification.
    Verified,
    /// Kept from an earlier call, or another caller's verification of the
    /// same chain that finished while this one waited.
    Kept,
}

impl<T> VerificationCache<T> {
    pub fn new(per_generation: usize) -> Self {
        Self {
            generations: Mutex::new(Generations {
                current: HashMap::new(),
                previous: HashMap::new(),
            }),
            per_generation: per_generation.max(1),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            coalesced: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Generations<T>> {
        // A panic while the lock was held leaves two valid maps.
        self.generations
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The slot for `key`, created empty if there is none.
    fn slot(&self, key: CacheKey) -> Slot<T> {
        let mut g = self.lock();
        if let Some(s) = g.current.get(&key) {
            return s.clone();
        }
        let s = g.previous.remove(&key).unwrap_or_default();
        if g.current.len() >= self.per_generation {
            g.previous = std::mem::take(&mut g.current);
        }
        g.current.insert(key, s.clone());
        s
    }

    /// Forgets `key` if it still holds `slot` (a failed verification).
    fn forget(&self, key: &CacheKey, slot: &Slot<T>) {
        let mut g = self.lock();
        let g = &mut *g;
        for map in [&mut g.current, &mut g.previous] {
            if map.get(key).is_some_and(|s| Arc::ptr_eq(s, slot)) {
                map.remove(key);
            }
        }
    }

    /// The kept verdict for `key`, or the one `verify` gives. `verify`'s
    /// `Ok` is kept; its `Err` is returned and never kept. When several
    /// callers ask for one key at once, one runs `verify` and the others
    /// wait for it (blocking: verification is CPU work of well under a
    /// millisecond); if it fails, each of them runs its own.
    pub fn get_or_verify<E>(
        &self,
        key: CacheKey,
        verify: impl FnOnce() -> Result<Arc<T>, E>,
    ) -> Result<(Arc<T>, Source), E> {
        let slot = self.slot(key);
        if let Some(Some(v)) = slot.get() {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Ok((v.clone(), Source::Kept));
        }
        let mut verify = Some(verify);
        let mut failure = None;
        let kept = slot.get_or_init(|| {
            let verify = verify.take()?;
            match verify() {
                Ok(v) => Some(v),
                Err(e) => {
                    failure = Some(e);
                    None
                }
            }
        });
        match (kept, verify) {
            (Some(v), None) => {
                self.misses.fetch_add(1, Ordering::Relaxed);
                Ok((v.clone(), Source::Verified))
            }
            (Some(v), Some(_)) => {
                self.coalesced.fetch_add(1, Ordering::Relaxed);
                Ok((v.clone(), Source::Kept))
            }
            (None, not_run) => {
                self.forget(&key, &slot);
                self.misses.fetch_add(1, Ordering::Relaxed);
                match (failure, not_run) {
                    (Some(e), _) => Err(e),
                    // Another caller's verification failed: decide afresh.
                    (None, Some(verify)) => verify().map(|v| (v, Source::Verified)),
                    // Unreachable: the closure ran, so it either kept a
                    // value or recorded a failure.
                    (None, None) => unreachable_failure(),
                }
            }
        }
    }

    /// Drops every entry (the trust bundle changed).
    pub fn clear(&self) {
        let mut g = self.lock();
        g.current.clear();
        g.previous.clear();
    }

    pub fn stats(&self) -> CacheStats {
        let g = self.lock();
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            coalesced: self.coalesced.load(Ordering::Relaxed),
            entries: g.current.len() + g.previous.len(),
        }
    }
}

#[cold]
fn unreachable_failure<T>() -> T {
    panic!("a verification neither succeeded nor failed")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    fn key(n: u8, version: u64) -> CacheKey {
        ([n; 32], version)
    }

    #[test]
    fn a_success_is_kept_and_a_failure_is_not() {
        let cache = VerificationCache::<u32>::new(16);
        let runs = AtomicUsize::new(0);
        let ok = || {
            runs.fetch_add(1, Ordering::SeqCst);
            Ok::<_, ()>(Arc::new(7))
        };
        assert_eq!(
            cache.get_or_verify(key(1, 1), ok).unwrap().1,
            Source::Verified
        );
        assert_eq!(cache.get_or_verify(key(1, 1), ok).unwrap().1, Source::Kept);
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        // Another bundle version is another key.
        assert_eq!(
            cache.get_or_verify(key(1, 2), ok).unwrap().1,
            Source::Verified
        );

        let fail = || {
            runs.fetch_add(1, Ordering::SeqCst);
            Err::<Arc<u32>, _>("rejected")
        };
        assert_eq!(
            cache.get_or_verify(key(2, 1), fail).unwrap_err(),
            "rejected"
        );
        assert_eq!(
            cache.get_or_verify(key(2, 1), fail).unwrap_err(),
            "rejected"
        );
        assert_eq!(runs.load(Ordering::SeqCst), 4);
        // Once it succeeds it is kept.
        assert_eq!(
            cache.get_or_verify(key(2, 1), ok).unwrap().1,
            Source::Verified
        );
        assert_eq!(
            cache.get_or_verify(key(2, 1), fail).unwrap().1,
            Source::Kept
        );
        let s = cache.stats();
        assert_eq!((s.hits, s.misses, s.entries), (2, 5, 3));
    }

    #[test]
    fn concurrent_callers_share_one_verification() {
        let cache = VerificationCache::<u32>::new(16);
        let runs = AtomicUsize::new(0);
        let barrier = std::sync::Barrier::new(8);
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    barrier.wait();
                    cache
                        .get_or_verify(key(9, 1), || {
                            runs.fetch_add(1, Ordering::SeqCst);
                            std::thread::sleep(std::time::Duration::from_millis(50));
                            Ok::<_, ()>(Arc::new(1))
                        })
                        .unwrap();
                });
            }
        });
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        let s = cache.stats();
        assert_eq!(s.misses, 1);
        assert_eq!(s.hits + s.coalesced, 7);
    }

    #[test]
    fn memory_is_bounded_by_two_generations_and_entries_in_use_stay() {
        let cache = VerificationCache::<u32>::new(4);
        let ok = || Ok::<_, ()>(Arc::new(0));
        for n in 0..50u8 {
            cache.get_or_verify(key(n, 1), ok).unwrap();
            // Chain 0 is in use all along.
            assert_eq!(cache.get_or_verify(key(0, 1), ok).unwrap().1, Source::Kept);
        }
        assert!(cache.stats().entries <= 8);
        cache.clear();
        assert_eq!(cache.stats().entries, 0);
        assert_eq!(
            cache.get_or_verify(key(0, 1), ok).unwrap().1,
            Source::Verified
        );
    }
}
