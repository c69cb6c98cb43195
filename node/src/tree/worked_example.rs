//! The worked example of docs/format.md, computed here and checked against the document.

use ipld_core::ipld::Ipld;
use ipvec_protocol::{
    cid::{block_cid, DAG_CBOR},
    dagcbor,
    entry::{Entry, EntryId},
    hlc::Hlc,
    node::Node,
};

use super::{
    build,
    chunker::{is_boundary, Shape},
};
use crate::store::{car, MemBlockStore};

const FORMAT_MD: &str = include_str!("../../../docs/format.md");

fn f32s(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// The three entries of the example.
pub(crate) fn example_entries() -> Vec<Entry> {
    let writer = [0x01; 32];
    let hlc = Hlc::new(1_700_000_000_000, 0);
    let meta = Ipld::Map([("tag".to_string(), Ipld::String("a".into()))].into());
    vec![
        Entry::put(
            EntryId::Int(1).to_key().unwrap(),
            f32s(&[1.0, 0.0]),
            Some(meta),
            hlc,
            writer,
        ),
        Entry::tombstone(EntryId::Int(3).to_key().unwrap(), Hlc(hlc.0 + 1), writer),
        Entry::put(
            EntryId::Str("doc-2".into()).to_key().unwrap(),
            f32s(&[0.5, 0.25]),
            None,
            hlc,
            writer,
        ),
    ]
}

fn assert_documented(what: &str, value: &str) {
    if std::env::var_os("IPVEC_PRINT_EXAMPLE").is_some() {
        println!("{what}: {value}");
        return;
    }
    assert!(
        FORMAT_MD.contains(value),
        "docs/format.md must show {what} = {value}"
    );
}

#[tokio::test]
async fn worked_example_matches_the_document() {
    let entries = example_entries();
    let first = dagcbor::encode(&entries[0]).unwrap();
    assert_documented("the first entry's encoding", &hex::encode(&first));
    assert_documented(
        "the first entry's size",
        &format!("({} bytes)", first.len()),
    );
    for e in &entries {
        let b = is_boundary(
            &Shape::STANDARD,
            0,
            &e.id,
            dagcbor::encode(e).unwrap().len(),
        );
        assert!(!b, "no example entry is a boundary");
    }
    let store = MemBlockStore::new();
    let root = build(&store, entries.clone()).await.unwrap();
    let leaf = Node::Leaf(entries).encode().unwrap();
    assert_eq!(root, block_cid(DAG_CBOR, &leaf));
    assert_documented("the root CID", &root.to_string());
    assert_documented("the leaf size", &format!("{} bytes", leaf.len()));
    let empty = build(&store, vec![]).await.unwrap();
    assert_documented("the empty tree's CID", &empty.to_string());
    let mut file = Vec::new();
    car::export(&store, &root, &mut file, |_| {}).await.unwrap();
    assert_documented(
        "the CAR file",
        &hex::encode(&file[..file.len() - leaf.len()]),
    );
    let boundary_hash = {
        let mut h = blake3::Hasher::new();
        h.update(&0u32.to_be_bytes());
        h.update(EntryId::Int(1).to_key().unwrap().as_bytes());
        let d = h.finalize();
        u64::from_le_bytes(d.as_bytes()[..8].try_into().unwrap())
    };
    assert_documented("H(0, key of id 1)", &format!("{boundary_hash:#018x}"));
}
