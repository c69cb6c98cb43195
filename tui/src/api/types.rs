//! The JSON the dashboard reads from a node: the node's own API types, from the vocabulary
//! crate ([`ipvec_protocol::api`]). They read answers tolerantly (fields a node may not send
//! have defaults, the metric is text), so the dashboard works with older and newer daemons
//! alike.

pub use ipvec_protocol::api::{
    BreakerStateOut, CollectionInfo, CollectionList, Coverage, ErrorBody, ErrorDetail, Hit, Holder,
    IdInfo, LogLine, NodeInfo, PeerList, PeerOut as Peer, PeerSearches, PointOut, SearchRequest,
    SearchResponse, ShardCoverage, ShardHolders, ShardInfo, ShardMap, StoreInfo,
};

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn node_info_without_the_optional_fields() {
        let node: NodeInfo = serde_json::from_str(
            r#"{"peer_id": "12D3KooW", "version": "0.1.0", "repo": "/r", "collections": 2,
                "store": {"blocks": 3, "bytes": 40}}"#,
        )
        .unwrap();
        assert_eq!(node.store.blocks, 3);
        assert!(node.listen_addresses.is_empty() && node.uptime_secs.is_none());
    }

    #[test]
    fn node_info_with_extra_and_unknown_fields() {
        let node: NodeInfo = serde_json::from_str(
            r#"{"peer_id": "p", "version": "v", "repo": "/r", "collections": 0,
                "store": {"blocks": 0, "bytes": 0}, "uptime_secs": 61,
                "listen_addresses": ["/ip4/127.0.0.1/tcp/4001"], "something_new": true}"#,
        )
        .unwrap();
        assert_eq!(node.uptime_secs, Some(61));
        assert_eq!(node.listen_addresses, ["/ip4/127.0.0.1/tcp/4001"]);
    }

    #[test]
    fn hits_with_integer_and_string_ids() {
        let r: SearchResponse = serde_json::from_str(
            r#"{"hits": [{"id": 7, "score": 0.5, "cid": null, "metadata": null},
                         {"id": "doc-2", "score": 0.25, "cid": "bafy", "metadata": {"a": 1}},
                         {"id": "42", "score": 0.125, "cid": null, "metadata": null}]}"#,
        )
        .unwrap();
        assert_eq!(r.hits[0].id_text(), "7");
        assert_eq!(r.hits[1].id_text(), "doc-2");
        assert_eq!(
            r.hits[2].id_text(),
            "\"42\"",
            "the string id 42 is not the integer 42"
        );
        assert_eq!(r.hits[1].cid.as_deref(), Some("bafy"));
    }

    #[test]
    fn peers_in_the_planned_shape() {
        let p: PeerList = serde_json::from_str(
            r#"{"peers": [{"peer_id": "12D3KooWA", "address": "/ip4/10.0.0.2/tcp/4001",
                "direction": "outbound", "latency_ms": null, "protocols": ["/ipfs/ping/1.0.0"],
                "agent": "ipvec/0.1.0"}]}"#,
        )
        .unwrap();
        assert_eq!(p.peers[0].direction, "outbound");
        assert_eq!(p.peers[0].latency_ms, None);
        assert_eq!(p.peers[0].agent.as_deref(), Some("ipvec/0.1.0"));
    }
}
