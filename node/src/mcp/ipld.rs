//! The tools that treat a collection as IPLD content: its DAG laid out for any IPLD tool,
//! brought in by its root, and pinned so that this node keeps and serves it. Each composes
//! operations of [`Operations`](crate::ops::Operations): `collection_info`, `dag_get`,
//! `fetch_collection`, `dag_fetch`, `pin_add`, `id` and `config`.

use std::str::FromStr;

use libp2p_identity::PeerId;
use rmcp::{handler::server::wrapper::Parameters, model::CallToolResult, tool, tool_router};
use serde_json::{json, Value};

use super::{
    params::{CollectionName, IpldImportParams},
    tools::{answer, failed, outcome, IpvecTools},
};
use ipvec_protocol::cid::parse_cid;

/// What `import_collection_from_ipld` was given as a root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Root {
    /// A collection id: the owner key's peer id.
    Collection,
    /// A manifest CID, or the CID of any DAG.
    Dag,
}

impl Root {
    /// Tells a collection id from a CID, or says what each looks like.
    fn of(text: &str) -> Result<Root, String> {
        if PeerId::from_str(text.trim()).is_ok() {
            return Ok(Root::Collection);
        }
        match parse_cid(text) {
            Ok(_) => Ok(Root::Dag),
            Err(e) => Err(format!(
                "{text:?} is neither a collection id (12D3KooW…, as get_collection_cid \
                 answers on the collection's node) nor a manifest CID (bafy…, as \
                 export_collection_to_ipld answers): {e}"
            )),
        }
    }
}

/// The shard root CIDs a manifest links to, from its DAG-JSON (`{"shards": [{"/": CID}]}`).
fn shard_roots(manifest: &Value) -> Option<Vec<String>> {
    manifest["shards"]
        .as_array()?
        .iter()
        .map(|link| link["/"].as_str().map(str::to_string))
        .collect()
}

/// How another node fetches `cid` from this one, reachable at `addresses`.
fn how_to_fetch(cid: &str, addresses: &[String]) -> String {
    match addresses.first() {
        Some(address) => format!(
            "this node serves the DAG over Bitswap (/ipfs/bitswap/1.2.0) while its daemon \
             runs. From an IPFS node such as Kubo: `ipfs swarm connect {address}`, then \
             `ipfs dag get {cid}` or `ipfs pin add {cid}`; from another ipvec node: \
             `ipvec dag fetch {cid} --from {address}`"
        ),
        None => format!(
            "this node is not on the network now: start `ipvec daemon`, which serves pinned \
             DAGs over Bitswap (/ipfs/bitswap/1.2.0) at the addresses `ipvec id` prints; \
             then fetch {cid} from another node through one of them"
        ),
    }
}

#[tool_router(router = ipld_router, vis = "pub(super)")]
impl IpvecTools {
    #[tool(
        description = "A collection as IPLD, for walking its DAG with any IPLD tool \
        (`ipvec dag get`, `ipfs dag get`, Helia): `root`, the CID of its current manifest \
        (DAG-CBOR blocks with BLAKE3 hashes); `shards`, the CIDs of its shard roots (each \
        links to its tree); `manifest`, the manifest decoded as DAG-JSON (links written \
        {\"/\": CID}, bytes {\"/\": {\"bytes\": base64}}; `prev` links the previous \
        version). Also the collection id and the version of the signed head naming it."
    )]
    async fn export_collection_to_ipld(
        &self,
        Parameters(params): Parameters<CollectionName>,
    ) -> CallToolResult {
        let info = match self.backend().committed_info(&params.collection).await {
            Ok(info) => info,
            Err(e) => return failed(e),
        };
        let block = match self.ops().dag_get(&info.root).await {
            Ok(block) => block,
            Err(e) => return failed(e),
        };
        let manifest: Value = match serde_json::from_slice(&block) {
            Ok(manifest) => manifest,
            Err(e) => return failed(format!("manifest {} is not JSON: {e}", info.root)),
        };
        let Some(shards) = shard_roots(&manifest) else {
            return failed(format!(
                "manifest {} lists no shard roots; `ipvec dag get {}` shows what it holds",
                info.root, info.root
            ));
        };
        answer(&json!({
            "collection": info.name,
            "id": info.id,
            "version": info.version,
            "root": info.root,
            "shards": shards,
            "manifest": manifest,
        }))
    }

    #[tool(
        description = "Bring a collection in by its root, from the peers at `from`, else \
        from the connected peers or the DHT's providers; blocks this node already has are \
        not fetched again, and every fetched block is checked against its CID. `root` is \
        either a collection id (12D3KooW…): its newest signed head and whole DAG are \
        fetched, pinned, and registered as a read-only replica under `name` (default: its \
        own) that follows new versions; or a manifest CID (bafy…, from \
        export_collection_to_ipld): that version's DAG is fetched and pinned, without a \
        name, as only a signed head registers a collection. Needs the daemon."
    )]
    async fn import_collection_from_ipld(
        &self,
        Parameters(params): Parameters<IpldImportParams>,
    ) -> CallToolResult {
        let root = params.root.trim();
        match Root::of(root) {
            Ok(Root::Collection) => {
                let fetched = self
                    .ops()
                    .fetch_collection(root, params.name, &params.from, None)
                    .await;
                outcome(fetched)
            }
            Ok(Root::Dag) if params.name.is_some() => failed(format!(
                "a manifest CID is pinned as a DAG and not registered under a name (only a \
                 signed head registers a collection): drop `name`, or pass the collection \
                 id instead of {root}"
            )),
            Ok(Root::Dag) => outcome(self.ops().dag_fetch(root, &params.from).await),
            Err(e) => failed(e),
        }
    }

    #[tool(
        description = "Pin a collection's current manifest and its whole DAG (shards, \
        trees, earlier versions) in this node's block store, so garbage collection keeps \
        that version even after the collection moves on, and the daemon serves it to IPFS \
        nodes over Bitswap. Answers the CID pinned, this node's addresses, whether it \
        announces collection roots on the public IPFS DHT, and how to fetch the DAG from \
        another node. `ipvec pin rm CID` removes the pin."
    )]
    async fn pin_collection_to_ipfs(
        &self,
        Parameters(params): Parameters<CollectionName>,
    ) -> CallToolResult {
        let ops = self.ops();
        let info = match self.backend().committed_info(&params.collection).await {
            Ok(info) => info,
            Err(e) => return failed(e),
        };
        let pin = match ops.pin_add(&info.root).await {
            Ok(pin) => pin,
            Err(e) => return failed(e),
        };
        let (id, config) = match (ops.id().await, ops.config().await) {
            (Ok(id), Ok(config)) => (id, config),
            (Err(e), _) | (_, Err(e)) => return failed(e),
        };
        answer(&json!({
            "collection": info.name,
            "version": info.version,
            "cid": pin.cid,
            "pin": pin.name,
            "peer_id": id.peer_id,
            "addresses": id.addresses,
            "announced_on_ipfs_dht": config.p2p.ipfs_dht && !id.addresses.is_empty(),
            "fetch": how_to_fetch(&pin.cid, &id.addresses),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_root_is_a_collection_id_or_a_cid_or_refused() {
        let id = libp2p_identity::Keypair::generate_ed25519()
            .public()
            .to_peer_id()
            .to_string();
        assert_eq!(Root::of(&id), Ok(Root::Collection));
        let cid = ipvec_protocol::cid::block_cid(ipvec_protocol::cid::DAG_CBOR, b"x");
        assert_eq!(Root::of(&cid.to_string()), Ok(Root::Dag));
        let refused = Root::of("bafy-not-a-cid").unwrap_err();
        assert!(refused.contains("collection id"), "{refused}");
        assert!(refused.contains("manifest CID"), "{refused}");
    }

    #[test]
    fn shard_roots_are_the_manifests_links() {
        let manifest = json!({"name": "docs", "shards": [{"/": "bafyA"}, {"/": "bafyB"}]});
        assert_eq!(
            shard_roots(&manifest),
            Some(vec!["bafyA".to_string(), "bafyB".to_string()])
        );
        assert_eq!(shard_roots(&json!({"shards": [{"no": "link"}]})), None);
        assert_eq!(shard_roots(&json!({"name": "docs"})), None);
    }

    #[test]
    fn the_fetch_hint_names_an_address_or_the_daemon() {
        let online = how_to_fetch("bafyX", &["/ip4/127.0.0.1/tcp/4080/p2p/12D3".into()]);
        assert!(online.contains("ipfs swarm connect /ip4/127.0.0.1/tcp/4080/p2p/12D3"));
        assert!(online.contains("ipfs dag get bafyX"));
        let offline = how_to_fetch("bafyX", &[]);
        assert!(offline.contains("ipvec daemon"), "{offline}");
    }
}
