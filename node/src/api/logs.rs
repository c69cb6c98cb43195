//! The node's recent log events, for `GET /v1/logs` (server-sent events): a `tracing` layer
//! keeps the last [`KEEP`] events and hands new ones to live subscribers. The binary installs
//! the layer beside its stderr output; the feed is process-wide, like the subscriber.

use std::{
    collections::VecDeque,
    fmt::Write as _,
    sync::{Mutex, OnceLock},
    time::{SystemTime, UNIX_EPOCH},
};

pub use ipvec_protocol::api::LogLine;
use tokio::sync::broadcast;
use tracing::{field::Field, Event, Level, Subscriber};
use tracing_subscriber::{layer::Context, Layer};

/// Events kept for subscribers that join late.
pub const KEEP: usize = 500;

/// The process-wide feed.
#[derive(Debug)]
pub struct LogFeed {
    recent: Mutex<VecDeque<LogLine>>,
    live: broadcast::Sender<LogLine>,
}

/// The feed of this process.
pub fn feed() -> &'static LogFeed {
    static FEED: OnceLock<LogFeed> = OnceLock::new();
    FEED.get_or_init(|| LogFeed {
        recent: Mutex::new(VecDeque::with_capacity(KEEP)),
        live: broadcast::channel(1024).0,
    })
}

impl LogFeed {
    /// The kept events, oldest first, and a receiver of those that follow.
    pub fn subscribe(&self) -> (Vec<LogLine>, broadcast::Receiver<LogLine>) {
        let recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        // Subscribing under the lock: no event falls between the two.
        let live = self.live.subscribe();
        (recent.iter().cloned().collect(), live)
    }

    fn push(&self, line: LogLine) {
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        if recent.len() == KEEP {
            recent.pop_front();
        }
        recent.push_back(line.clone());
        let _ = self.live.send(line);
    }
}

/// The `tracing` layer that fills [`feed`].
#[derive(Debug, Default)]
pub struct FeedLayer;

#[derive(Default)]
struct Visitor {
    message: String,
    fields: String,
}

impl tracing::field::Visit for Visitor {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            if !self.fields.is_empty() {
                self.fields.push(' ');
            }
            let _ = write!(self.fields, "{}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            self.record_debug(field, &value);
        }
    }
}

impl<S: Subscriber> Layer<S> for FeedLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut visitor = Visitor::default();
        event.record(&mut visitor);
        let meta = event.metadata();
        feed().push(LogLine {
            time_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0),
            level: meta.level().to_string(),
            target: meta.target().to_string(),
            message: visitor.message,
            fields: visitor.fields,
        });
    }
}

/// Whether `line` is at least as severe as `least` (error > warn > info > debug > trace).
pub fn at_least(line: &LogLine, least: Level) -> bool {
    line.level
        .parse::<Level>()
        .map(|level| level <= least)
        .unwrap_or(true)
}

#[cfg(test)]
mod tests {
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    #[test]
    fn events_reach_the_feed_with_their_fields() {
        let subscriber = tracing_subscriber::registry().with(FeedLayer);
        let (_, mut live) = feed().subscribe();
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(collection = "c", points = 3, "collection open");
        });
        let line = loop {
            let line = live.try_recv().unwrap();
            if line.message == "collection open" {
                break line;
            }
        };
        assert_eq!(line.level, "WARN");
        assert!(line.fields.contains("collection=\"c\"") && line.fields.contains("points=3"));
        assert!(at_least(&line, Level::INFO));
        assert!(!at_least(&line, Level::ERROR));
        let (recent, _) = feed().subscribe();
        assert!(recent.iter().any(|l| l.message == "collection open"));
    }
}
