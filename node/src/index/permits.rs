//! A counting semaphore for blocking callers: at most `n` permits out at once.
//!
//! usearch keeps a fixed pool of per-thread search contexts and fails a call that finds none
//! free; [`Permits`] makes callers beyond the pool wait instead.

use std::sync::{Condvar, Mutex, MutexGuard};

/// A fixed number of permits; [`Permits::acquire`] waits while none is free.
#[derive(Debug)]
pub struct Permits {
    free: Mutex<usize>,
    returned: Condvar,
    total: usize,
}

/// One permit, given back when dropped.
#[derive(Debug)]
pub struct Permit<'a> {
    permits: &'a Permits,
}

impl Permits {
    /// `total` permits (at least one).
    pub fn new(total: usize) -> Self {
        let total = total.max(1);
        Self {
            free: Mutex::new(total),
            returned: Condvar::new(),
            total,
        }
    }

    /// The number of permits.
    pub fn total(&self) -> usize {
        self.total
    }

    /// Takes a permit, waiting until one is free.
    pub fn acquire(&self) -> Permit<'_> {
        let mut free = self.lock();
        while *free == 0 {
            free = self
                .returned
                .wait(free)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
        *free -= 1;
        Permit { permits: self }
    }

    // The counter is a plain integer, consistent after any panic: poisoning is ignored.
    fn lock(&self) -> MutexGuard<'_, usize> {
        self.free
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        *self.permits.lock() += 1;
        self.permits.returned.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[test]
    fn never_more_than_total_holders() {
        let permits = Permits::new(3);
        let inside = AtomicUsize::new(0);
        let most = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..12 {
                s.spawn(|| {
                    for _ in 0..200 {
                        let _permit = permits.acquire();
                        let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        std::thread::yield_now();
                        inside.fetch_sub(1, Ordering::SeqCst);
                    }
                });
            }
        });
        assert!(most.load(Ordering::SeqCst) <= 3);
        assert_eq!(*permits.lock(), 3, "every permit came back");
        assert_eq!(Permits::new(0).total(), 1);
    }
}
