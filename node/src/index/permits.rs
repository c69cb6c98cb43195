//! A counting semaphore for blocking callers: at most `n` permits out at once.
//!
//! usearch keeps a fixed pool of per-thread search contexts and fails a call that finds none
//! free; [`Permits`] makes callers beyond the pool wait instead.
//!
//! Every search takes a permit, so giving one back wakes a waiter only when there is one: a
//! condition variable's notify is a system call even with nobody waiting (a futex wake), one
//! per search otherwise.

use std::sync::{Condvar, Mutex, MutexGuard};

/// A fixed number of permits; [`Permits::acquire`] waits while none is free.
#[derive(Debug)]
pub struct Permits {
    state: Mutex<State>,
    returned: Condvar,
    total: usize,
}

/// The permits not taken, and the callers waiting for one.
#[derive(Debug)]
struct State {
    free: usize,
    waiting: usize,
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
            state: Mutex::new(State {
                free: total,
                waiting: 0,
            }),
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
        let mut state = self.lock();
        while state.free == 0 {
            // Counted under the lock before the wait releases it: a permit given back after
            // this point sees the waiter.
            state.waiting += 1;
            state = self
                .returned
                .wait(state)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            state.waiting -= 1;
        }
        state.free -= 1;
        Permit { permits: self }
    }

    // The counters are plain integers, consistent after any panic: poisoning is ignored.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        let mut state = self.permits.lock();
        state.free += 1;
        let wake = state.waiting > 0;
        drop(state);
        if wake {
            self.permits.returned.notify_one();
        }
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
        assert_eq!(permits.lock().free, 3, "every permit came back");
        assert_eq!(permits.lock().waiting, 0, "nobody is left waiting");
        assert_eq!(Permits::new(0).total(), 1);
    }

    /// A caller waiting for the only permit gets it when it comes back (were the waiter not
    /// woken, the join below would never return).
    #[test]
    fn a_permit_given_back_wakes_its_waiter() {
        let permits = Permits::new(1);
        let held = permits.acquire();
        let got = AtomicUsize::new(0);
        std::thread::scope(|s| {
            let waiter = s.spawn(|| {
                let _permit = permits.acquire();
                got.fetch_add(1, Ordering::SeqCst);
            });
            // Give the permit back only once the other thread waits for it.
            while permits.lock().waiting == 0 {
                std::thread::yield_now();
            }
            assert_eq!(got.load(Ordering::SeqCst), 0, "no permit was free");
            drop(held);
            waiter.join().expect("the waiter finished");
        });
        assert_eq!(got.load(Ordering::SeqCst), 1);
        assert_eq!(permits.lock().free, 1);
    }
}
