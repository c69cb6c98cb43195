//! The dashboard's moving parts: a poller that refreshes from the node every second (and
//! notices when it goes away or comes back), one that refreshes the shard map on screen, a
//! task that follows the node's log stream, one task per search, and the loop that feeds
//! keys and their answers to the [`App`] and redraws. Tasks talk to the loop over one
//! bounded channel.

use std::{path::PathBuf, time::Instant};

use crossterm::event::{Event, EventStream};
use futures::StreamExt;
use tokio::{
    sync::{mpsc, watch},
    task::JoinSet,
    time::{Duration, MissedTickBehavior},
};

use crate::{
    api::{
        client::{http_client, ApiClient, ClientError, Endpoint},
        metrics,
        types::SearchRequest,
    },
    app::{App, PeersState, Query, SearchCall, SearchResult, Snapshot, Update},
    terminal, ui, TuiError,
};

/// How often the dashboard refreshes, and retries when the node is away.
pub const REFRESH: Duration = Duration::from_secs(1);

/// Updates waiting for the loop; producers wait when it is full.
const INBOX: usize = 256;

/// Runs the dashboard on the node at `endpoint` until the user quits.
///
/// `token` goes with every request (needed when the daemon requires one); the dashboard's
/// own log goes to `log_file` (else to a file in the temporary folder).
pub async fn run(
    endpoint: Endpoint,
    token: Option<String>,
    log_file: PathBuf,
) -> Result<(), TuiError> {
    let log_path = crate::logging::init(&log_file);
    tracing::info!(?endpoint, log = ?log_path, "dashboard starting");
    let http = http_client().map_err(TuiError::Http)?;
    let mut app = App::new(endpoint.resolve().unwrap_or_else(|_| endpoint.describe()));
    let (tx, rx) = mpsc::channel(INBOX);
    let (url_tx, url_rx) = watch::channel(None);
    let (shown_tx, shown_rx) = watch::channel(None);
    let mut tasks = JoinSet::new();
    tasks.spawn(poll(
        endpoint,
        http.clone(),
        token.clone(),
        tx.clone(),
        url_tx,
    ));
    tasks.spawn(poll_shard_map(
        http.clone(),
        token.clone(),
        url_rx.clone(),
        shown_rx,
        tx.clone(),
    ));
    tasks.spawn(follow_logs(
        http.clone(),
        token.clone(),
        url_rx.clone(),
        tx.clone(),
    ));
    let result = match terminal::enter() {
        Ok((mut term, _guard)) => {
            let searches = Searches {
                http,
                token,
                url: url_rx,
                tx,
            };
            event_loop(&mut term, &mut app, rx, &searches, &shown_tx).await
        }
        Err(e) => Err(TuiError::Terminal(e)),
    };
    tasks.abort_all();
    match &result {
        Ok(()) => tracing::info!("dashboard closed"),
        Err(e) => tracing::error!(error = %e, "dashboard stopped"),
    }
    result
}

/// What a search task needs.
struct Searches {
    http: reqwest::Client,
    token: Option<String>,
    url: watch::Receiver<Option<String>>,
    tx: mpsc::Sender<Update>,
}

impl Searches {
    fn start(&self, call: SearchCall) {
        let url = self.url.borrow().clone();
        let tx = self.tx.clone();
        let Some(url) = url else {
            let outcome = Err("the daemon is not reachable; try again once it is".to_string());
            let _ = tx.try_send(Update::Searched {
                seq: call.seq,
                outcome,
            });
            return;
        };
        let client = ApiClient::new(self.http.clone(), url, self.token.clone());
        tokio::spawn(async move {
            let seq = call.seq;
            let outcome = search(&client, call).await.map_err(|e| e.to_string());
            let _ = tx.send(Update::Searched { seq, outcome }).await;
        });
    }
}

async fn event_loop(
    term: &mut terminal::Term,
    app: &mut App,
    mut rx: mpsc::Receiver<Update>,
    searches: &Searches,
    shard_map_shown: &watch::Sender<Option<String>>,
) -> Result<(), TuiError> {
    let mut events = EventStream::new();
    let stop = stop_signal();
    tokio::pin!(stop);
    term.draw(|frame| ui::draw(frame, app))?;
    loop {
        tokio::select! {
            event = events.next() => match event {
                Some(Ok(Event::Key(key))) => {
                    if let Some(call) = app.on_key(key) {
                        tracing::info!(
                            collection = %call.collection,
                            query = %call.text,
                            federated = call.federated,
                            "search"
                        );
                        searches.start(call);
                    }
                    // Opening, closing or leaving a shard map starts or stops its refresh.
                    shard_map_shown.send_if_modified(|shown| {
                        let now = app.shard_map_shown();
                        let changed = shown.as_deref() != now;
                        *shown = now.map(str::to_string);
                        changed
                    });
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(TuiError::Terminal(e)),
                None => return Ok(()),
            },
            update = rx.recv() => {
                let Some(update) = update else { return Ok(()) };
                log_transition(app, &update);
                app.apply(update);
                // Apply whatever else is waiting before drawing once.
                while let Ok(update) = rx.try_recv() {
                    log_transition(app, &update);
                    app.apply(update);
                }
            }
            _ = &mut stop => app.quit = true,
        }
        if app.quit {
            return Ok(());
        }
        // Resizes need nothing else: drawing fits the frame to the terminal's size.
        term.draw(|frame| ui::draw(frame, app))?;
    }
}

/// Logs the node going away and coming back (once each, not at every retry).
fn log_transition(app: &App, update: &Update) {
    use crate::app::Connection;
    match (update, &app.connection) {
        (Update::Unreachable { url, error }, Connection::Up | Connection::Connecting) => {
            tracing::warn!(?url, %error, "daemon unreachable");
        }
        (Update::Snapshot(s), Connection::Down { .. } | Connection::Connecting) => {
            tracing::info!(url = %s.url, peer_id = %s.node.peer_id, "connected");
        }
        _ => {}
    }
}

/// Resolves on SIGTERM or SIGHUP (the terminal went away); never where they cannot be
/// caught.
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let (Ok(mut term), Ok(mut hup)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::hangup()),
        ) {
            tokio::select! {
                _ = term.recv() => {}
                _ = hup.recv() => {}
            }
            return;
        }
    }
    std::future::pending::<()>().await
}

/// Refreshes from the node every [`REFRESH`], telling the loop what it found and the log
/// follower which URL works.
async fn poll(
    endpoint: Endpoint,
    http: reqwest::Client,
    token: Option<String>,
    tx: mpsc::Sender<Update>,
    url_tx: watch::Sender<Option<String>>,
) {
    let start = Instant::now();
    let mut tick = tokio::time::interval(REFRESH);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let update = match endpoint.resolve() {
            Err(e) => Update::Unreachable {
                url: Some(endpoint.describe()),
                error: e.to_string(),
            },
            Ok(url) => {
                let client = ApiClient::new(http.clone(), url.clone(), token.clone());
                match snapshot(&client, start).await {
                    Ok(snapshot) => {
                        url_tx.send_if_modified(|current| {
                            let changed = current.as_deref() != Some(url.as_str());
                            *current = Some(url.clone());
                            changed
                        });
                        Update::Snapshot(Box::new(snapshot))
                    }
                    Err(e) => Update::Unreachable {
                        url: Some(url),
                        error: e.to_string(),
                    },
                }
            }
        };
        if tx.send(update).await.is_err() {
            return;
        }
    }
}

/// One refresh: node, collections, peers and metrics, asked at once.
async fn snapshot(client: &ApiClient, start: Instant) -> Result<Snapshot, ClientError> {
    let (node, id, collections, peers, metrics_text) = tokio::join!(
        client.node(),
        client.id(),
        client.collections(),
        client.peers(),
        client.metrics()
    );
    let node = node?;
    let collections = collections?.collections;
    let peers = match peers {
        Ok(list) => PeersState::Connected(list.peers),
        Err(e) if e.is_not_found() => PeersState::NotAvailable(
            "GET /v1/peers answered 404: peers appear here once the node runs it.".into(),
        ),
        Err(ClientError::Api {
            status: 503,
            message,
            ..
        }) => PeersState::NotAvailable(message),
        Err(e) if e.is_unreachable() => return Err(e),
        Err(e) => PeersState::Failed(e.to_string()),
    };
    Ok(Snapshot {
        url: client.base().to_string(),
        node,
        id: id.ok(),
        collections,
        peers,
        metrics: metrics_text.ok().map(|text| metrics::parse(&text)),
        at_secs: start.elapsed().as_secs_f64(),
    })
}

/// Refreshes the shard map of the collection in `shown` every [`REFRESH`] while there is
/// one, and at once when another one is opened, on the URL the poller last reached.
async fn poll_shard_map(
    http: reqwest::Client,
    token: Option<String>,
    url: watch::Receiver<Option<String>>,
    mut shown: watch::Receiver<Option<String>>,
    tx: mpsc::Sender<Update>,
) {
    let mut tick = tokio::time::interval(REFRESH);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            changed = shown.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
        let Some(collection) = shown.borrow_and_update().clone() else {
            continue;
        };
        let Some(base) = url.borrow().clone() else {
            continue;
        };
        let client = ApiClient::new(http.clone(), base, token.clone());
        let outcome = tokio::select! {
            outcome = client.shard_map(&collection) => outcome.map_err(|e| e.to_string()),
            // Closed, or another one opened: this answer is not wanted any more.
            changed = shown.changed() => {
                if changed.is_err() {
                    return;
                }
                tick.reset_immediately();
                continue;
            }
        };
        if tx
            .send(Update::ShardMap {
                collection,
                outcome,
            })
            .await
            .is_err()
        {
            return;
        }
    }
}

/// Follows `GET /v1/logs` on the URL the poller last reached, reconnecting after
/// [`REFRESH`] whenever the stream fails or ends. It asks for every level the node keeps;
/// the Log view filters.
async fn follow_logs(
    http: reqwest::Client,
    token: Option<String>,
    mut url: watch::Receiver<Option<String>>,
    tx: mpsc::Sender<Update>,
) {
    loop {
        let base = match url.wait_for(Option::is_some).await {
            Ok(current) => current.clone().unwrap_or_default(),
            Err(_) => return,
        };
        let client = ApiClient::new(http.clone(), base, token.clone());
        let down = match client.logs("trace").await {
            Ok(stream) => {
                if tx.send(Update::LogConnected).await.is_err() {
                    return;
                }
                let mut stream = std::pin::pin!(stream);
                let mut down = "the node closed the log stream".to_string();
                while let Some(item) = stream.next().await {
                    match item {
                        Ok(line) => {
                            if tx.send(Update::Log(line)).await.is_err() {
                                return;
                            }
                        }
                        Err(e) => {
                            down = e.to_string();
                            break;
                        }
                    }
                }
                down
            }
            Err(e) => e.to_string(),
        };
        if tx.send(Update::LogDown(down)).await.is_err() {
            return;
        }
        tokio::time::sleep(REFRESH).await;
    }
}

/// Runs one search: looks up the point's vector first for `id:` queries.
async fn search(client: &ApiClient, call: SearchCall) -> Result<SearchResult, ClientError> {
    let start = Instant::now();
    let body = match &call.query {
        Query::Vector(vector) => request(&call, SearchRequest::new(vector.clone())),
        Query::Point(id) => {
            let vector = client.point(&call.collection, id).await?.vector;
            request(&call, SearchRequest::new(vector))
        }
        Query::Text(text) => request(&call, SearchRequest::text(text.clone())),
    };
    let response = client.search(&call.collection, &body).await?;
    Ok(SearchResult {
        collection: call.collection,
        query: call.text,
        hits: response.hits,
        coverage: response.coverage,
        millis: start.elapsed().as_secs_f64() * 1000.0,
    })
}

/// The request body of `call`, searching as `query` does: the node's defaults, but for k
/// and whether to ask the peers.
fn request(call: &SearchCall, query: SearchRequest) -> SearchRequest {
    SearchRequest {
        k: call.k,
        federated: call.federated,
        ..query
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

    use super::*;
    use crate::api::types::CollectionInfo;

    #[test]
    fn the_search_view_mode_reaches_the_request() {
        let mut app = App::new("x");
        app.collections = vec![CollectionInfo {
            name: "docs".into(),
            dim: 2,
            ..CollectionInfo::default()
        }];
        let mut press = |code| app.on_key(KeyEvent::new(code, KeyModifiers::NONE));
        press(KeyCode::Char('4'));
        press(KeyCode::Char('/'));
        press(KeyCode::Char('1'));
        press(KeyCode::Char(','));
        press(KeyCode::Char('0'));
        let local = press(KeyCode::Enter).unwrap();
        let body =
            serde_json::to_value(request(&local, SearchRequest::new(vec![1.0, 0.0]))).unwrap();
        assert_eq!(body["federated"], serde_json::Value::Null, "{body}");
        press(KeyCode::Char('f'));
        press(KeyCode::Enter);
        let federated = press(KeyCode::Enter).unwrap();
        let body = request(&federated, SearchRequest::text("a question"));
        assert_eq!(body.text.as_deref(), Some("a question"));
        assert!(body.federated && !body.verify);
        assert_eq!(body.k, 10);
        assert_eq!(
            serde_json::to_value(&body).unwrap()["federated"],
            serde_json::Value::Bool(true)
        );
    }
}
