//! Work that can wait a moment — writes, commits, index builds — on threads that give the CPU
//! to searches first.
//!
//! A node that writes and searches at once shares a few cores between the two. Searches are
//! short and someone waits on each; a batch of HNSW inserts or a commit is long and its client
//! waits for the whole. So background work runs on a pool of its own whose threads have a
//! lower scheduling priority (`storage.background_nice`, 10 by default; on Linux the thread's
//! nice value): when both want a core, the search runs and the write waits; when the cores are
//! free, writes run at full speed. Nothing else differs between the pools.

use std::sync::{
    atomic::{AtomicI32, Ordering},
    OnceLock,
};

use tokio::{runtime::Runtime, task::JoinError};

/// The nice value of the pool's threads (read when each thread starts).
static NICE: AtomicI32 = AtomicI32::new(10);
static POOL: OnceLock<Option<Runtime>> = OnceLock::new();

/// Sets the background threads' nice value (0 to 19; 0 gives them the searches' priority).
/// Threads already started keep theirs, so the daemon calls this before any work.
pub fn set_nice(nice: i32) {
    NICE.store(nice.clamp(0, 19), Ordering::Relaxed);
}

/// The pool's runtime, whose blocking threads do the work (its one worker thread idles); the
/// caller's runtime if the pool could not start (work then runs at the searches' priority).
pub fn handle() -> tokio::runtime::Handle {
    let pool = POOL.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("ipvec-background")
            .on_thread_start(|| lower_priority(NICE.load(Ordering::Relaxed)))
            .enable_all()
            .build()
            .inspect_err(|e| tracing::error!(error = %e, "cannot start the background thread pool; writes run beside searches"))
            .ok()
    });
    match pool {
        Some(pool) => pool.handle().clone(),
        None => tokio::runtime::Handle::current(),
    }
}

/// Runs `work` on a background thread.
pub async fn run<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, JoinError> {
    handle().spawn_blocking(work).await
}

/// The calling thread's nice value becomes `nice` (raising it needs no privilege).
fn lower_priority(nice: i32) {
    #[cfg(target_os = "linux")]
    if nice != 0 {
        // On Linux a thread id names the one thread to PRIO_PROCESS.
        let thread = rustix::thread::gettid();
        if let Err(e) = rustix::process::setpriority_process(Some(thread), nice) {
            tracing::debug!(error = %e, "cannot lower a background thread's priority");
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = nice;
}

/// The calling thread's nice value (Linux; `None` elsewhere or when it cannot be read).
pub fn current_nice() -> Option<i32> {
    #[cfg(target_os = "linux")]
    return rustix::process::getpriority_process(Some(rustix::thread::gettid())).ok();
    #[cfg(not(target_os = "linux"))]
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn background_work_runs_at_a_lower_priority_than_its_caller() {
        let caller = current_nice().expect("this test runs on Linux");
        let background = run(current_nice).await.unwrap().unwrap();
        // The nice value is absolute: a caller already nicer than the pool keeps its own.
        assert_eq!(background, caller.max(NICE.load(Ordering::Relaxed)));
        assert!(background > caller || caller >= 10);
    }
}
