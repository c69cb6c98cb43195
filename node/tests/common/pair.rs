//! Two daemons most peer-to-peer tests start from: a writer A with a filled collection, and a
//! node B that knows A as its bootstrap peer.

use serde_json::Value;

use super::*;

/// Creates collection `name` (4-d, L2) in `repo` and adds points `0..n` to it.
pub fn filled_collection(repo: &std::path::Path, name: &str, n: u64) {
    filled_collection_with(repo, name, n, &[]);
}

/// [`filled_collection`] with more `collection create` flags.
pub fn filled_collection_with(repo: &std::path::Path, name: &str, n: u64, flags: &[&str]) {
    let mut create = vec!["collection", "create", name, "--dim", "4", "--metric", "l2"];
    create.extend_from_slice(flags);
    ok(repo, &create);
    let file = repo.parent().unwrap().join(format!("{name}.jsonl"));
    std::fs::write(&file, points_jsonl(0..n)).unwrap();
    ok(repo, &["add", name, file.to_str().unwrap()]);
}

/// A writer A serving collection `films` (points `0..2000`, more `collection create` flags),
/// and a node B that knows A only as its bootstrap peer, connected to it.
pub struct WriterAndPeer {
    pub a: TestRepo,
    pub _da: Daemon,
    /// A's `collection info films`.
    pub info_a: Value,
    /// The collection id.
    pub id: String,
    pub addr_a: String,
    pub b: TestRepo,
    pub db: Daemon,
}

pub fn writer_and_peer(flags: &[&str]) -> WriterAndPeer {
    let a = new_repo();
    filled_collection_with(&a.path, "films", 2_000, flags);
    let da = Daemon::start(&a.path, &[]);
    let info_a = json_of(&ok(&a.path, &["--json", "collection", "info", "films"]));
    let id = info_a["id"].as_str().unwrap().to_string();
    let addr_a = address_of(&a.path);
    let b = new_repo();
    let db = Daemon::start_with(&b.path, &[], &["--bootstrap", &addr_a]);
    eventually("B connected", || !peers_of(&b.path).is_empty());
    WriterAndPeer {
        a,
        _da: da,
        info_a,
        id,
        addr_a,
        b,
        db,
    }
}
