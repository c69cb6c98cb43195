//! Scenarios: what a run simulates, read from a TOML file (`simulations/scenarios/*.toml`).
//!
//! Every field has a default, so a scenario names only what it changes; an unknown field is an
//! error (a misspelt knob must not silently run the default). Times are in seconds or
//! milliseconds as their names say; fractions are between 0 and 1.

use std::{path::Path, time::Duration};

use ipvec_node::cluster::rebalance::Config;
use serde::{Deserialize, Serialize};

/// Why a scenario cannot be run.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The file could not be read.
    #[error("cannot read scenario {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a scenario.
    #[error("scenario {path} is not valid TOML for a scenario: {source}")]
    Parse {
        /// The file.
        path: String,
        /// Why.
        source: toml::de::Error,
    },
    /// A value is out of its range.
    #[error("scenario field `{field}`: {problem}")]
    Invalid {
        /// The field, dotted.
        field: &'static str,
        /// What is wrong and what is allowed.
        problem: String,
    },
}

/// One simulated network and what happens to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Scenario {
    /// A name for reports.
    pub name: String,
    /// The seed when the command line gives none.
    pub seed: u64,
    /// Nodes at the start, all members of the collection's serving set.
    pub nodes: u32,
    /// Shards of the collection.
    pub shards: u32,
    /// Holders wanted per shard.
    pub replication: u32,
    /// Simulated time, seconds.
    pub duration_s: u64,
    /// The vectors.
    pub data: Data,
    /// The searches.
    pub search: Search,
    /// The network links.
    pub links: Links,
    /// Nodes coming and going.
    pub churn: Churn,
    /// Membership announcements.
    pub membership: Membership,
    /// The DHT's provider records.
    pub dht: Dht,
    /// Moving shards between members.
    pub repair: Repair,
    /// Slow and lying nodes.
    pub faults: Faults,
    /// New versions of the collection.
    pub writes: Writes,
    /// Network partitions, in time order.
    pub partitions: Vec<Partition>,
    /// Nodes that leave for good at set times (their disk lost, nobody replacing them), on
    /// top of any churn.
    pub kills: Vec<Kill>,
    /// The identities placement hashes: by default each node's number and a made-up
    /// collection id; with these, a real collection's id and its members' peer ids, so that
    /// a run places shards as real daemons with those identities do.
    pub identities: Option<Identities>,
}

impl Default for Scenario {
    fn default() -> Self {
        Self {
            name: "default".into(),
            seed: 1,
            nodes: 50,
            shards: 16,
            replication: 3,
            duration_s: 1_800,
            data: Data::default(),
            search: Search::default(),
            links: Links::default(),
            churn: Churn::default(),
            membership: Membership::default(),
            dht: Dht::default(),
            repair: Repair::default(),
            faults: Faults::default(),
            writes: Writes::default(),
            partitions: Vec::new(),
            kills: Vec::new(),
            identities: None,
        }
    }
}

/// Synthetic clustered vectors (see [`crate::data`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Data {
    /// Points in the whole collection.
    pub points: u32,
    /// Dimensions.
    pub dims: u32,
    /// Clusters the points gather around.
    pub clusters: u32,
    /// Hits per search.
    pub k: u32,
}

impl Default for Data {
    fn default() -> Self {
        Self {
            points: 4_000,
            dims: 16,
            clusters: 32,
            k: 10,
        }
    }
}

/// Federated searches, issued by random live nodes at Poisson times.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Search {
    /// Searches over the whole run.
    pub count: u32,
    /// Each search's deadline, milliseconds.
    pub deadline_ms: u64,
    /// A holder's time to search one shard, milliseconds.
    pub service_ms: f64,
}

impl Default for Search {
    fn default() -> Self {
        Self {
            count: 1_000,
            deadline_ms: 2_000,
            service_ms: 1.0,
        }
    }
}

/// Links between nodes: one-way latency from a log-normal distribution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Links {
    /// Median one-way latency, milliseconds.
    pub latency_median_ms: f64,
    /// 99th percentile one-way latency, milliseconds.
    pub latency_p99_ms: f64,
    /// Chance that a packet is lost; streams are reliable (TCP, QUIC), so a loss delays a
    /// message by a retransmission timeout (doubling for each further loss), it does not
    /// drop it.
    pub loss: f64,
    /// The first retransmission timeout, milliseconds.
    pub rto_ms: f64,
    /// Bandwidth of a node's downlink, megabytes per second: the blocks it fetches cross it
    /// one after another.
    pub bandwidth_mb_s: f64,
    /// How long a dial to a dead or unreachable node takes to fail, milliseconds.
    pub dial_timeout_ms: u64,
}

impl Default for Links {
    fn default() -> Self {
        Self {
            latency_median_ms: 30.0,
            latency_p99_ms: 200.0,
            loss: 0.001,
            rto_ms: 200.0,
            bandwidth_mb_s: 10.0,
            dial_timeout_ms: 1_000,
        }
    }
}

/// Churn: nodes crash at Poisson times and come back, or leave for good.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Churn {
    /// Fraction of the nodes that go down per simulated hour.
    pub per_hour: f64,
    /// Of those, the fraction that never come back (their disk is lost); the rest restart
    /// with their disk.
    pub leave_fraction: f64,
    /// Shortest time down before a restart, seconds.
    pub down_min_s: u64,
    /// Longest time down before a restart, seconds.
    pub down_max_s: u64,
    /// Whether a node that left for good is replaced by a new empty one at once.
    pub replace: bool,
}

impl Default for Churn {
    fn default() -> Self {
        Self {
            per_hour: 0.0,
            leave_fraction: 0.3,
            down_min_s: 60,
            down_max_s: 1_800,
            replace: true,
        }
    }
}

/// Membership announcements (signed records with an expiry, in the daemon).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Membership {
    /// How often a member announces itself, seconds.
    pub announce_s: u64,
    /// How long an announcement counts, seconds.
    pub ttl_s: u64,
}

impl Default for Membership {
    fn default() -> Self {
        Self {
            announce_s: 30,
            ttl_s: 90,
        }
    }
}

/// Provider records: "this node holds this shard", with an expiry and republishing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Dht {
    /// How long a provider record lives, seconds.
    pub record_ttl_s: u64,
    /// How often a holder republishes its records, seconds.
    pub republish_s: u64,
    /// Sequential hops of a lookup (each a link's latency).
    pub lookup_hops: u32,
}

impl Default for Dht {
    fn default() -> Self {
        Self {
            record_ttl_s: 600,
            republish_s: 300,
            lookup_hops: 3,
        }
    }
}

/// Fetching shards onto the members placement gives them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Repair {
    /// Bytes of one shard's tree.
    pub shard_bytes: u64,
    /// Bytes of one block of it (the tree's leaves; a shard is a root and
    /// `shard_bytes / block_bytes` leaves).
    pub block_bytes: u64,
    /// Fetches one node runs at once.
    pub parallel_fetches: u32,
}

impl Default for Repair {
    fn default() -> Self {
        Self {
            shard_bytes: 8_000_000,
            block_bytes: 250_000,
            parallel_fetches: 2,
        }
    }
}

/// Nodes that are slow or lie.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Fraction of nodes that are slow.
    pub slow_fraction: f64,
    /// How many times slower they search and answer.
    pub slow_factor: f64,
    /// Fraction of nodes that answer searches with forged hits.
    pub forging_fraction: f64,
    /// Fraction of nodes that announce shards and then answer `not_held`.
    pub withholding_fraction: f64,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            slow_fraction: 0.0,
            slow_factor: 10.0,
            forging_fraction: 0.0,
            withholding_fraction: 0.0,
        }
    }
}

/// New versions of the collection: commits that each change one shard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Writes {
    /// Commits per simulated hour.
    pub per_hour: f64,
    /// Bytes of a shard that one commit changes (what a holder fetches to catch up).
    pub delta_bytes: u64,
    /// Writers, each signing heads of its own that every node merges (commits are spread
    /// over them evenly).
    pub writers: u32,
}

impl Default for Writes {
    fn default() -> Self {
        Self {
            per_hour: 0.0,
            delta_bytes: 200_000,
            writers: 1,
        }
    }
}

/// A partition: from `at_s` to `heal_s`, the first `fraction` of the nodes (by number) and
/// the rest cannot reach each other.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Partition {
    /// When it starts, seconds.
    pub at_s: u64,
    /// When it heals, seconds.
    pub heal_s: u64,
    /// The share of nodes on the first side.
    pub fraction: f64,
}

/// A node that leaves for good at a set time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Kill {
    /// When, seconds.
    pub at_s: u64,
    /// Which node, by number (the starting nodes are `0..nodes`).
    pub node: u32,
}

/// Real identities for placement: a collection id (`ipvec collection info`'s `id`) and one
/// peer id (`ipvec id`) per starting node, in node order. Nodes that join later are hashed
/// by their number.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Identities {
    pub collection: String,
    pub peers: Vec<String>,
}

impl Identities {
    /// The collection's id bytes and each peer's, as placement hashes them.
    pub fn bytes(&self) -> Result<(Vec<u8>, Vec<Vec<u8>>), String> {
        let collection = ipvec_protocol::head::key_of_id(&self.collection)
            .map_err(|e| format!("collection {:?}: {e}", self.collection))?
            .to_vec();
        let peers = self
            .peers
            .iter()
            .map(|p| {
                p.parse::<libp2p_identity::PeerId>()
                    .map(|id| id.to_bytes())
                    .map_err(|e| format!("peer {p:?}: {e}"))
            })
            .collect::<Result<_, _>>()?;
        Ok((collection, peers))
    }
}

impl Scenario {
    /// The settings of every node's repair core (`cluster::rebalance`): `replication` holders,
    /// `repair.parallel_fetches` at once, shards announced every `dht.republish_s` and
    /// reports believed for `dht.record_ttl_s`, as provider records are.
    pub fn rebalance_config(&self) -> Config {
        Config {
            replication: self.replication as usize,
            max_fetches: self.repair.parallel_fetches as usize,
            report_ttl: Duration::from_secs(self.dht.record_ttl_s),
            announce_every: Duration::from_secs(self.dht.republish_s),
            ..Config::default()
        }
    }

    /// Reads and checks a scenario file.
    pub fn load(path: &Path) -> Result<Self, ScenarioError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            path: shown.clone(),
            source,
        })?;
        let scenario: Scenario = toml::from_str(&text).map_err(|source| ScenarioError::Parse {
            path: shown,
            source,
        })?;
        scenario.check()?;
        Ok(scenario)
    }

    /// Checks every range a run relies on.
    pub fn check(&self) -> Result<(), ScenarioError> {
        let invalid = |field, problem: &str| {
            Err(ScenarioError::Invalid {
                field,
                problem: problem.to_string(),
            })
        };
        let fraction = |x: f64| (0.0..=1.0).contains(&x);
        if self.nodes == 0 || self.nodes > 100_000 {
            return invalid("nodes", "must be 1 to 100,000");
        }
        if self.shards == 0 || self.shards > 1_024 {
            return invalid("shards", "must be 1 to 1,024 (the federated search limit)");
        }
        if self.replication == 0 {
            return invalid("replication", "must be at least 1");
        }
        if self.duration_s == 0 {
            return invalid("duration_s", "must be at least 1");
        }
        if self.data.dims == 0 || self.data.clusters == 0 || self.data.k == 0 {
            return invalid("data", "dims, clusters and k must be at least 1");
        }
        if self.data.points < self.shards {
            return invalid("data.points", "must be at least one per shard");
        }
        if !(self.links.latency_median_ms > 0.0
            && self.links.latency_p99_ms >= self.links.latency_median_ms)
        {
            return invalid(
                "links.latency_p99_ms",
                "needs 0 < latency_median_ms <= latency_p99_ms",
            );
        }
        if self.links.rto_ms <= 0.0 || self.links.loss >= 1.0 {
            return invalid("links.rto_ms", "needs rto_ms > 0 and loss < 1");
        }
        if self.links.bandwidth_mb_s <= 0.0 {
            return invalid("links.bandwidth_mb_s", "must be above 0");
        }
        for (field, x) in [
            ("links.loss", self.links.loss),
            ("churn.per_hour", self.churn.per_hour),
            ("churn.leave_fraction", self.churn.leave_fraction),
            ("faults.slow_fraction", self.faults.slow_fraction),
            ("faults.forging_fraction", self.faults.forging_fraction),
            (
                "faults.withholding_fraction",
                self.faults.withholding_fraction,
            ),
        ] {
            if !fraction(x) {
                return invalid(field, "must be between 0 and 1");
            }
        }
        if self.churn.down_min_s > self.churn.down_max_s {
            return invalid("churn.down_min_s", "must not exceed churn.down_max_s");
        }
        if self.membership.announce_s == 0 || self.membership.ttl_s < self.membership.announce_s {
            return invalid(
                "membership.ttl_s",
                "needs 0 < announce_s <= ttl_s (a live member must not expire)",
            );
        }
        if let Err(e) = self.rebalance_config().validate() {
            let problem = format!(
                "{e}: the repair core announces every dht.republish_s and believes a report \
                 for dht.record_ttl_s, so give 0 < republish_s < record_ttl_s and \
                 repair.parallel_fetches >= 1"
            );
            return Err(ScenarioError::Invalid {
                field: "dht / repair",
                problem,
            });
        }
        if self.repair.block_bytes == 0
            || self.repair.shard_bytes / self.repair.block_bytes > 100_000
        {
            return invalid(
                "repair.block_bytes",
                "must be above 0, with at most 100,000 blocks a shard",
            );
        }
        if self.faults.slow_factor < 1.0 {
            return invalid("faults.slow_factor", "must be at least 1");
        }
        if !(1..=64).contains(&self.writes.writers) {
            return invalid("writes.writers", "must be from 1 to 64");
        }
        if self.writes.per_hour < 0.0 {
            return invalid("writes.per_hour", "must not be negative");
        }
        if self.kills.iter().any(|k| k.node >= self.nodes) {
            return invalid(
                "kills",
                "each node must be one of the starting nodes, 0 to nodes - 1",
            );
        }
        if let Some(identities) = &self.identities {
            if identities.peers.len() != self.nodes as usize {
                return invalid("identities.peers", "needs one peer id per starting node");
            }
            if let Err(problem) = identities.bytes() {
                return invalid("identities", &problem);
            }
        }
        for p in &self.partitions {
            if p.heal_s <= p.at_s || !fraction(p.fraction) {
                return invalid(
                    "partitions",
                    "each needs at_s < heal_s and 0 <= fraction <= 1",
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repair_settings_the_repair_core_refuses_are_a_scenario_error() {
        assert!(Scenario::default().check().is_ok());
        let mut sc = Scenario::default();
        sc.dht.republish_s = sc.dht.record_ttl_s;
        let e = sc.check().unwrap_err().to_string();
        assert!(e.contains("republish_s < record_ttl_s"), "{e}");
        let mut sc = Scenario::default();
        sc.repair.parallel_fetches = 0;
        assert!(sc.check().is_err());
    }
}
