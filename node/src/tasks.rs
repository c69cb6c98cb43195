//! Who owns a background task, and what stops it.
//!
//! Every task the node starts is spawned into a [`Tasks`]: a `JoinSet` that holds the tasks
//! (dropping it aborts them) and a `CancellationToken` that asks them to stop. A task spawned
//! with [`Tasks::spawn`] is dropped at its next await point once the token is cancelled; one
//! spawned with [`Tasks::spawn_finishing`] is left to end by itself (it watches the token or
//! ends when what it serves goes away) and is aborted only when [`Tasks::shutdown`]'s bound
//! runs out. Finished tasks are reaped whenever another is spawned, so the set holds only
//! running ones.

use std::{future::Future, sync::Mutex, time::Duration};

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Background tasks with one owner and one way to stop them.
#[derive(Debug)]
pub struct Tasks {
    token: CancellationToken,
    set: Mutex<JoinSet<()>>,
}

/// How a [`Tasks::shutdown`] went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stopped {
    /// Tasks that ended within the bound.
    pub ended: usize,
    /// Tasks still running when the bound ran out, aborted.
    pub aborted: usize,
}

impl Tasks {
    /// An empty set whose tasks stop when `token` is cancelled.
    pub fn new(token: CancellationToken) -> Self {
        Self {
            token,
            set: Mutex::new(JoinSet::new()),
        }
    }

    /// The token that stops these tasks.
    pub fn token(&self) -> &CancellationToken {
        &self.token
    }

    /// Runs `task` until it ends or the token is cancelled; `false` (and `task` never runs)
    /// once the token is cancelled.
    pub fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) -> bool {
        let token = self.token.clone();
        self.spawn_finishing(async move {
            token.run_until_cancelled(task).await;
        })
    }

    /// Runs `task` to its end (it must watch the token or end by itself soon after); `false`
    /// (and `task` never runs) once the token is cancelled.
    pub fn spawn_finishing(&self, task: impl Future<Output = ()> + Send + 'static) -> bool {
        let mut set = self.set.lock().unwrap_or_else(|p| p.into_inner());
        // Checked under the lock: a shutdown cancels, then takes the set under it.
        if self.token.is_cancelled() {
            return false;
        }
        while let Some(done) = set.try_join_next() {
            log_failure(done);
        }
        set.spawn(task);
        true
    }

    /// Tasks running (or finished and not yet reaped).
    pub fn len(&self) -> usize {
        self.set.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether no task runs.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Cancels the token and waits up to `bound` for every task to end; those still running
    /// then are aborted. Tasks that the waited ones spawn meanwhile are refused.
    pub async fn shutdown(&self, bound: Duration) -> Stopped {
        self.token.cancel();
        let mut set = std::mem::take(&mut *self.set.lock().unwrap_or_else(|p| p.into_inner()));
        let mut ended = 0;
        let waited = tokio::time::timeout(bound, async {
            while let Some(done) = set.join_next().await {
                log_failure(done);
                ended += 1;
            }
        })
        .await;
        let aborted = set.len();
        if waited.is_err() {
            tracing::warn!(
                aborted,
                seconds = bound.as_secs_f64(),
                "tasks still running after the shutdown bound; aborting them"
            );
            set.shutdown().await;
        }
        Stopped { ended, aborted }
    }
}

fn log_failure(done: Result<(), tokio::task::JoinError>) {
    if let Err(e) = done {
        if e.is_panic() {
            tracing::error!(error = %e, "a background task panicked");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn shutdown_stops_cancellable_tasks_and_aborts_stragglers() {
        let tasks = Tasks::new(CancellationToken::new());
        assert!(tasks.spawn(std::future::pending()));
        // A task that ignores the token: aborted once the bound runs out.
        assert!(tasks.spawn_finishing(std::future::pending()));
        let token = tasks.token().clone();
        assert!(tasks.spawn_finishing(async move { token.cancelled().await }));
        assert_eq!(tasks.len(), 3);
        let stopped = tasks.shutdown(Duration::from_secs(2)).await;
        assert_eq!(
            stopped,
            Stopped {
                ended: 2,
                aborted: 1
            }
        );
        assert!(tasks.is_empty());
        assert!(!tasks.spawn(async {}), "a stopped set takes no new task");
    }

    #[tokio::test]
    async fn finished_tasks_are_reaped() {
        let tasks = Tasks::new(CancellationToken::new());
        for _ in 0..100 {
            let (tx, rx) = tokio::sync::oneshot::channel();
            tasks.spawn(async move {
                let _ = tx.send(());
            });
            let _ = rx.await;
            tokio::task::yield_now().await;
        }
        assert!(tasks.len() <= 2, "{} tasks kept", tasks.len());
    }
}
