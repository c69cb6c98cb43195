//! Long operations in flight (upserts, imports, exports, gc) and how far each got, for
//! `GET /v1/jobs`. A job is registered when it starts and leaves the list when its
//! [`JobHandle`] is dropped, however the operation ends.

use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Instant,
};

use ipvec_protocol::api::Job;

#[derive(Debug)]
struct Entry {
    kind: &'static str,
    target: String,
    unit: &'static str,
    total: Option<u64>,
    done: Arc<AtomicU64>,
    started: Instant,
}

/// The registry of running jobs.
#[derive(Debug, Default, Clone)]
pub struct Jobs {
    inner: Arc<Mutex<(u64, BTreeMap<u64, Entry>)>>,
}

/// A running job: report progress with [`JobHandle::set`]; dropping it ends the job.
#[derive(Debug)]
pub struct JobHandle {
    jobs: Jobs,
    id: u64,
    done: Arc<AtomicU64>,
}

impl JobHandle {
    /// Sets how many units are done.
    pub fn set(&self, done: u64) {
        self.done.store(done, Ordering::Relaxed);
    }
}

impl Drop for JobHandle {
    fn drop(&mut self) {
        if let Ok(mut inner) = self.jobs.inner.lock() {
            inner.1.remove(&self.id);
        }
    }
}

impl Jobs {
    /// Registers a job.
    pub fn start(
        &self,
        kind: &'static str,
        target: impl Into<String>,
        unit: &'static str,
        total: Option<u64>,
    ) -> JobHandle {
        let done = Arc::new(AtomicU64::new(0));
        let mut id = 0;
        if let Ok(mut inner) = self.inner.lock() {
            inner.0 += 1;
            id = inner.0;
            inner.1.insert(
                id,
                Entry {
                    kind,
                    target: target.into(),
                    unit,
                    total,
                    done: done.clone(),
                    started: Instant::now(),
                },
            );
        }
        JobHandle {
            jobs: self.clone(),
            id,
            done,
        }
    }

    /// The running jobs, oldest first.
    pub fn list(&self) -> Vec<Job> {
        let Ok(inner) = self.inner.lock() else {
            return Vec::new();
        };
        inner
            .1
            .iter()
            .map(|(id, e)| Job {
                id: *id,
                kind: e.kind.to_string(),
                target: e.target.clone(),
                done: e.done.load(Ordering::Relaxed),
                total: e.total,
                unit: e.unit.to_string(),
                elapsed_ms: e.started.elapsed().as_millis() as u64,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_report_progress_and_leave_when_dropped() {
        let jobs = Jobs::default();
        let a = jobs.start("import", "file.car", "bytes", Some(100));
        let b = jobs.start("gc", "", "blocks", None);
        a.set(40);
        let list = jobs.list();
        assert_eq!(list.len(), 2);
        assert_eq!((list[0].kind.as_str(), list[0].done), ("import", 40));
        assert_eq!(list[1].total, None);
        drop(a);
        let list = jobs.list();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].kind, "gc");
        drop(b);
        assert!(jobs.list().is_empty());
    }
}
