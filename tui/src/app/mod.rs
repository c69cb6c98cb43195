//! The dashboard's state and how it changes, without a terminal or a socket: the runtime
//! feeds it [`Update`]s (what the node said) and key presses, and carries out the
//! [`SearchCall`]s it returns. Rendering (`crate::ui`) only reads it.

mod history;
mod keys;
mod log;
mod search;
mod shards;
mod stats;

pub use history::History;
pub use log::{LogLevel, LogView, StreamState};
pub use search::{Query, SearchCall, SearchResult, SearchState};
pub use shards::ShardMapView;
pub use stats::Stats;

use crate::api::{
    metrics::MetricsSample,
    types::{CollectionInfo, IdInfo, LogLine, NodeInfo, Peer, ShardMap},
};

/// The views, in tab order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tab {
    /// This node.
    Node,
    /// Connected peers.
    Peers,
    /// Collections and their replication (and one's shard map).
    Collections,
    /// Try a search.
    Search,
    /// The node's log.
    Log,
}

impl Tab {
    /// Every tab, in order.
    pub const ALL: [Tab; 5] = [
        Tab::Node,
        Tab::Peers,
        Tab::Collections,
        Tab::Search,
        Tab::Log,
    ];

    /// Its title.
    pub fn title(self) -> &'static str {
        match self {
            Tab::Node => "Node",
            Tab::Peers => "Peers",
            Tab::Collections => "Collections",
            Tab::Search => "Search",
            Tab::Log => "Log",
        }
    }

    /// Its position, from 0.
    pub fn index(self) -> usize {
        Tab::ALL.iter().position(|t| *t == self).unwrap_or(0)
    }

    fn offset(self, by: isize) -> Tab {
        let n = Tab::ALL.len() as isize;
        Tab::ALL[(self.index() as isize + by).rem_euclid(n) as usize]
    }
}

/// Whether the node answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Connection {
    /// No answer yet.
    Connecting,
    /// The last refresh worked.
    Up,
    /// The last refresh failed; the dashboard keeps trying.
    Down {
        /// Why.
        error: String,
        /// Failed refreshes in a row.
        attempts: u32,
    },
}

/// What the dashboard knows of the node's peers.
#[derive(Debug, Clone, PartialEq)]
pub enum PeersState {
    /// Not asked yet.
    Unknown,
    /// The node has no peer-to-peer layer (`GET /v1/peers` answered 404), or it is not
    /// running (503); why, in the node's words or ours.
    NotAvailable(String),
    /// The node answered with an error.
    Failed(String),
    /// The connected peers.
    Connected(Vec<Peer>),
}

/// The column the Peers view sorts by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerSort {
    /// Peer id.
    PeerId,
    /// Address.
    Address,
    /// Inbound or outbound.
    Direction,
    /// Ping round trip (unknown last).
    Latency,
    /// Answer time to federated searches (unknown last).
    Search,
}

impl PeerSort {
    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            PeerSort::PeerId => "peer id",
            PeerSort::Address => "address",
            PeerSort::Direction => "direction",
            PeerSort::Latency => "latency",
            PeerSort::Search => "search time",
        }
    }

    fn next(self) -> PeerSort {
        match self {
            PeerSort::PeerId => PeerSort::Address,
            PeerSort::Address => PeerSort::Direction,
            PeerSort::Direction => PeerSort::Latency,
            PeerSort::Latency => PeerSort::Search,
            PeerSort::Search => PeerSort::PeerId,
        }
    }
}

/// One refresh: everything the node said, read at `at_secs`.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// The API URL it came from.
    pub url: String,
    /// `GET /v1/node`.
    pub node: NodeInfo,
    /// `GET /v1/id`, if the node has it.
    pub id: Option<IdInfo>,
    /// `GET /v1/collections`.
    pub collections: Vec<CollectionInfo>,
    /// `GET /v1/peers`.
    pub peers: PeersState,
    /// `GET /metrics`, if it answered.
    pub metrics: Option<MetricsSample>,
    /// When, in seconds on a monotonic clock.
    pub at_secs: f64,
}

/// What the runtime tells the dashboard.
#[derive(Debug, Clone, PartialEq)]
pub enum Update {
    /// A refresh worked.
    Snapshot(Box<Snapshot>),
    /// A refresh failed: the node is not reachable.
    Unreachable {
        /// The URL tried, if one was known.
        url: Option<String>,
        /// Why.
        error: String,
    },
    /// A search finished.
    Searched {
        /// The search's number.
        seq: u64,
        /// Its answer, or what went wrong.
        outcome: Result<SearchResult, String>,
    },
    /// The log stream connected (again).
    LogConnected,
    /// A log line.
    Log(LogLine),
    /// The log stream ended or failed.
    LogDown(String),
    /// The node answered about a collection's shard map.
    ShardMap {
        /// The collection asked about.
        collection: String,
        /// The map, or what went wrong.
        outcome: Result<ShardMap, String>,
    },
}

/// The dashboard's whole state.
#[derive(Debug, Clone)]
pub struct App {
    /// The view shown.
    pub tab: Tab,
    /// Whether the help overlay is open.
    pub help: bool,
    /// Whether the user asked to quit.
    pub quit: bool,
    /// Where the node is (the URL, or the API file while none is known).
    pub target: String,
    /// Whether it answers.
    pub connection: Connection,
    /// The node, as of the last refresh.
    pub node: Option<NodeInfo>,
    /// The node on the network, if it says.
    pub id: Option<IdInfo>,
    /// Its peers.
    pub peers: PeersState,
    /// How the Peers view sorts.
    pub peer_sort: PeerSort,
    /// Whether it sorts descending.
    pub peer_sort_descending: bool,
    /// The peer row selected.
    pub peer_selected: usize,
    /// Its collections.
    pub collections: Vec<CollectionInfo>,
    /// The collection row selected.
    pub collection_selected: usize,
    /// The shard map shown in place of the collections, if one is open.
    pub shard_map: Option<ShardMapView>,
    /// The Search view.
    pub search: SearchState,
    /// The Log view.
    pub log: LogView,
    /// Rates from the node's metrics.
    pub stats: Stats,
}

impl App {
    /// A dashboard for the node at `target` (shown until it answers).
    pub fn new(target: impl Into<String>) -> App {
        App {
            tab: Tab::Node,
            help: false,
            quit: false,
            target: target.into(),
            connection: Connection::Connecting,
            node: None,
            id: None,
            peers: PeersState::Unknown,
            peer_sort: PeerSort::PeerId,
            peer_sort_descending: false,
            peer_selected: 0,
            collections: Vec::new(),
            collection_selected: 0,
            shard_map: None,
            search: SearchState::default(),
            log: LogView::default(),
            stats: Stats::default(),
        }
    }

    /// Applies what the runtime learnt.
    pub fn apply(&mut self, update: Update) {
        match update {
            Update::Snapshot(snapshot) => {
                let Snapshot {
                    url,
                    node,
                    id,
                    collections,
                    peers,
                    metrics,
                    at_secs,
                } = *snapshot;
                self.target = url;
                self.connection = Connection::Up;
                self.node = Some(node);
                self.id = id;
                self.collections = collections;
                self.collection_selected = self
                    .collection_selected
                    .min(self.collections.len().saturating_sub(1));
                self.peers = peers;
                self.peer_selected = self.peer_selected.min(self.peer_count().saturating_sub(1));
                if let Some(sample) = metrics {
                    self.stats.record(at_secs, sample);
                }
            }
            Update::Unreachable { url, error } => {
                if let Some(url) = url {
                    self.target = url;
                }
                let attempts = match &self.connection {
                    Connection::Down { attempts, .. } => attempts + 1,
                    _ => 1,
                };
                self.connection = Connection::Down { error, attempts };
            }
            Update::Searched { seq, outcome } => self.search.answered(seq, outcome),
            Update::LogConnected => self.log.reconnected(),
            Update::Log(line) => self.log.push(line),
            Update::LogDown(error) => self.log.stream = StreamState::Down(error),
            Update::ShardMap {
                collection,
                outcome,
            } => {
                if let Some(view) = &mut self.shard_map {
                    view.answered(&collection, outcome);
                }
            }
        }
    }

    fn peer_count(&self) -> usize {
        match &self.peers {
            PeersState::Connected(peers) => peers.len(),
            _ => 0,
        }
    }

    /// The connected peers in the chosen order.
    pub fn sorted_peers(&self) -> Vec<&Peer> {
        let PeersState::Connected(peers) = &self.peers else {
            return Vec::new();
        };
        let mut sorted: Vec<&Peer> = peers.iter().collect();
        sorted.sort_by(|a, b| {
            let order = match self.peer_sort {
                PeerSort::PeerId => a.peer_id.cmp(&b.peer_id),
                PeerSort::Address => a.address.cmp(&b.address),
                PeerSort::Direction => a.direction.cmp(&b.direction),
                PeerSort::Latency => {
                    let key = |p: &Peer| p.latency_ms.unwrap_or(f64::INFINITY);
                    key(a).total_cmp(&key(b))
                }
                PeerSort::Search => {
                    let key = |p: &Peer| {
                        p.searches
                            .as_ref()
                            .and_then(|s| s.latency_ms)
                            .unwrap_or(f64::INFINITY)
                    };
                    key(a).total_cmp(&key(b))
                }
            };
            let order = order.then_with(|| a.peer_id.cmp(&b.peer_id));
            if self.peer_sort_descending {
                order.reverse()
            } else {
                order
            }
        });
        sorted
    }

    /// The collection whose shard map the runtime should refresh: the open one, while it
    /// is on screen.
    pub fn shard_map_shown(&self) -> Option<&str> {
        match (&self.shard_map, self.tab) {
            (Some(view), Tab::Collections) => Some(&view.collection),
            _ => None,
        }
    }

    /// The collection the Search view searches: the chosen one, else the first.
    pub fn search_collection(&self) -> Option<&CollectionInfo> {
        self.search
            .collection
            .as_ref()
            .and_then(|name| self.collections.iter().find(|c| &c.name == name))
            .or_else(|| self.collections.first())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(collections: &[&str]) -> Update {
        Update::Snapshot(Box::new(Snapshot {
            url: "http://127.0.0.1:5080".into(),
            node: NodeInfo::default(),
            id: None,
            collections: collections
                .iter()
                .map(|name| CollectionInfo {
                    name: name.to_string(),
                    dim: 3,
                    ..CollectionInfo::default()
                })
                .collect(),
            peers: PeersState::NotAvailable("404".into()),
            metrics: None,
            at_secs: 0.0,
        }))
    }

    #[test]
    fn the_connection_goes_down_and_comes_back() {
        let mut app = App::new("/repo/api");
        app.apply(snapshot(&["a"]));
        assert_eq!(app.connection, Connection::Up);
        for _ in 0..2 {
            app.apply(Update::Unreachable {
                url: None,
                error: "connection refused".into(),
            });
        }
        assert_eq!(
            app.connection,
            Connection::Down {
                error: "connection refused".into(),
                attempts: 2
            }
        );
        // What was known stays on screen under the banner.
        assert_eq!(app.collections.len(), 1);
        app.apply(snapshot(&["a"]));
        assert_eq!(app.connection, Connection::Up);
    }

    #[test]
    fn selections_stay_inside_shrinking_lists() {
        let mut app = App::new("x");
        app.apply(snapshot(&["a", "b", "c"]));
        app.collection_selected = 2;
        app.apply(snapshot(&["a"]));
        assert_eq!(app.collection_selected, 0);
    }

    #[test]
    fn peers_sort_by_latency_unknown_last() {
        let mut app = App::new("x");
        let peer = |id: &str, latency: Option<f64>| Peer {
            peer_id: id.into(),
            latency_ms: latency,
            ..Peer::default()
        };
        app.peers = PeersState::Connected(vec![
            peer("a", None),
            peer("b", Some(30.0)),
            peer("c", Some(2.0)),
        ]);
        app.peer_sort = PeerSort::Latency;
        let ids: Vec<_> = app
            .sorted_peers()
            .iter()
            .map(|p| p.peer_id.as_str())
            .collect();
        assert_eq!(ids, ["c", "b", "a"]);
        app.peer_sort_descending = true;
        let ids: Vec<_> = app
            .sorted_peers()
            .iter()
            .map(|p| p.peer_id.as_str())
            .collect();
        assert_eq!(ids, ["a", "b", "c"]);
    }

    #[test]
    fn peers_sort_by_search_time_unasked_last() {
        use crate::api::types::PeerSearches;
        let mut app = App::new("x");
        let peer = |id: &str, latency: Option<f64>| Peer {
            peer_id: id.into(),
            // Ping times in the other order: they do not count here.
            latency_ms: latency.map(|ms| 100.0 - ms),
            searches: latency.map(|ms| PeerSearches {
                latency_ms: Some(ms),
                ..PeerSearches::default()
            }),
            ..Peer::default()
        };
        app.peers = PeersState::Connected(vec![
            peer("a", None),
            peer("b", Some(30.0)),
            peer("c", Some(2.0)),
        ]);
        for _ in 0..4 {
            app.peer_sort = app.peer_sort.next();
        }
        assert_eq!(app.peer_sort, PeerSort::Search);
        let ids: Vec<_> = app
            .sorted_peers()
            .iter()
            .map(|p| p.peer_id.as_str())
            .collect();
        assert_eq!(ids, ["c", "b", "a"]);
        assert_eq!(app.peer_sort.next(), PeerSort::PeerId);
    }
}
