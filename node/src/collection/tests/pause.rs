//! A test hook: code under test stops at a named point until the test lets it go, so a test can
//! check what else runs meanwhile without sleeping.

use std::sync::{mpsc, Mutex};

/// An armed pause point.
#[derive(Debug)]
pub(crate) struct Pause {
    reached: mpsc::Sender<()>,
    release: mpsc::Receiver<()>,
}

/// The test's side of a pause point.
#[derive(Debug)]
pub(crate) struct Held {
    reached: mpsc::Receiver<()>,
    release: mpsc::Sender<()>,
}

/// Arms `slot`: the next time code passes it, it stops until [`Held::release`].
pub(crate) fn arm(slot: &Mutex<Option<Pause>>) -> Held {
    let (reached_tx, reached_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel();
    *slot.lock().unwrap() = Some(Pause {
        reached: reached_tx,
        release: release_rx,
    });
    Held {
        reached: reached_rx,
        release: release_tx,
    }
}

/// Called by code under test at the pause point: stops there if the slot is armed (once).
pub(crate) fn reached(slot: &Mutex<Option<Pause>>) {
    let pause = slot.lock().unwrap_or_else(|p| p.into_inner()).take();
    if let Some(pause) = pause {
        let _ = pause.reached.send(());
        let _ = pause.release.recv();
    }
}

impl Held {
    /// Waits (on the blocking pool) until the code under test stops at the point.
    pub(crate) async fn wait(self) -> Self {
        tokio::task::spawn_blocking(move || {
            self.reached.recv().unwrap();
            self
        })
        .await
        .unwrap()
    }

    /// Lets the code under test go on.
    pub(crate) fn release(self) {
        let _ = self.release.send(());
    }
}
