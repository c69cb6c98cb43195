//! The blocks of a shard tree: leaves hold entries, branches hold links to children.
//!
//! A leaf is `{"level": 0, "entries": [Entry, …]}` and a branch is
//! `{"level": n, "children": [{"cid": CID, "key": bytes, "count": u}, …]}` with `n ≥ 1`, where
//! `key` is the first entry key under the child and `count` the number of entries (tombstones
//! included) under it. Items are strictly increasing by key. See docs/format.md for how node
//! boundaries are chosen.

use ::cid::Cid;
use serde::{Deserialize, Serialize};

use crate::{
    dagcbor::{self, head_len, major, write_head},
    entry::{Entry, EntryKey},
    limits, ProtocolError,
};

/// A link from a branch to a child node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChildRef {
    /// The child's CID (dag-cbor).
    pub cid: Cid,
    /// The first entry key under the child.
    pub key: EntryKey,
    /// Entries under the child, tombstones included.
    pub count: u64,
}

/// A decoded tree node.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    /// Level 0: entries sorted by id.
    Leaf(Vec<Entry>),
    /// Level ≥ 1: children sorted by first key.
    Branch { level: u32, children: Vec<ChildRef> },
}

#[derive(Serialize, Deserialize)]
struct NodeRepr {
    level: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    entries: Option<Vec<Entry>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    children: Option<Vec<ChildRef>>,
}

impl Node {
    /// The node's level: 0 for leaves.
    pub fn level(&self) -> u32 {
        match self {
            Node::Leaf(_) => 0,
            Node::Branch { level, .. } => *level,
        }
    }

    /// Entries under this node, tombstones included.
    pub fn count(&self) -> u64 {
        match self {
            Node::Leaf(entries) => entries.len() as u64,
            Node::Branch { children, .. } => children.iter().map(|c| c.count).sum(),
        }
    }

    /// Encodes the node as canonical DAG-CBOR.
    pub fn encode(&self) -> Result<Vec<u8>, ProtocolError> {
        let repr = match self {
            Node::Leaf(entries) => NodeRepr {
                level: 0,
                entries: Some(entries.clone()),
                children: None,
            },
            Node::Branch { level, children } => NodeRepr {
                level: *level,
                entries: None,
                children: Some(children.clone()),
            },
        };
        dagcbor::encode(&repr)
    }

    /// Decodes a node and checks the schema: shape matches level, keys strictly increase,
    /// branches are not empty. Canonical form is checked where blocks enter the store.
    pub fn decode(bytes: &[u8]) -> Result<Node, ProtocolError> {
        if bytes.len() > limits::MAX_BLOCK_BYTES {
            return Err(ProtocolError::TooLarge {
                what: "tree node",
                actual: bytes.len(),
                limit: limits::MAX_BLOCK_BYTES,
            });
        }
        let repr: NodeRepr = dagcbor::decode_trusted(bytes)?;
        let node = match (repr.level, repr.entries, repr.children) {
            (0, Some(entries), None) => {
                check_increasing(entries.iter().map(|e| &e.id))?;
                Node::Leaf(entries)
            }
            (level, None, Some(children)) if level >= 1 => {
                if children.is_empty() {
                    return Err(ProtocolError::invalid(
                        "children",
                        "a branch has at least one child",
                    ));
                }
                check_increasing(children.iter().map(|c| &c.key))?;
                Node::Branch { level, children }
            }
            _ => {
                return Err(ProtocolError::invalid(
                    "node",
                    "level 0 must hold `entries`, higher levels `children`, never both",
                ))
            }
        };
        Ok(node)
    }
}

fn check_increasing<'a>(keys: impl Iterator<Item = &'a EntryKey>) -> Result<(), ProtocolError> {
    let mut prev: Option<&EntryKey> = None;
    for key in keys {
        if prev.is_some_and(|p| p >= key) {
            return Err(ProtocolError::invalid(
                "node",
                "keys must be strictly increasing",
            ));
        }
        prev = Some(key);
    }
    Ok(())
}

/// Most bytes the framing around a node's items can take.
pub const NODE_FRAME_MAX: usize = 32;

/// Frames already-encoded items into a node block; the result equals [`Node::encode`].
///
/// Building a tree encodes each item once and sizes nodes exactly with this framing.
pub fn frame_node(level: u32, items: &[&[u8]]) -> Vec<u8> {
    let body: usize = items.iter().map(|i| i.len()).sum();
    let mut out = Vec::with_capacity(body + NODE_FRAME_MAX);
    out.push(0xa2); // map of two pairs
    out.push(0x65); // text(5)
    out.extend_from_slice(b"level");
    write_head(major::UNSIGNED, u64::from(level), &mut out);
    if level == 0 {
        out.push(0x67);
        out.extend_from_slice(b"entries");
    } else {
        out.push(0x68);
        out.extend_from_slice(b"children");
    }
    write_head(major::ARRAY, items.len() as u64, &mut out);
    for item in items {
        out.extend_from_slice(item);
    }
    out
}

/// Exact size of the framing [`frame_node`] puts around `n` items at `level`.
pub fn frame_len(level: u32, n: usize) -> usize {
    1 + 6 + head_len(u64::from(level)) + if level == 0 { 8 } else { 9 } + head_len(n as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{cid::block_cid, entry::EntryId, hlc::Hlc};

    fn entry(n: u64) -> Entry {
        Entry::put(
            EntryId::Int(n).to_key().unwrap(),
            vec![1, 2, 3, 4],
            None,
            Hlc(n),
            [7; 32],
        )
    }

    #[test]
    fn framing_matches_serde_encoding() {
        for n in [0usize, 1, 23, 24, 300] {
            let entries: Vec<Entry> = (0..n as u64).map(entry).collect();
            let items: Vec<Vec<u8>> = entries
                .iter()
                .map(|e| e.encode_checked().unwrap())
                .collect();
            let refs: Vec<&[u8]> = items.iter().map(|i| i.as_slice()).collect();
            let framed = frame_node(0, &refs);
            assert_eq!(
                framed,
                Node::Leaf(entries.clone()).encode().unwrap(),
                "n = {n}"
            );
            assert_eq!(
                framed.len(),
                frame_len(0, n) + items.iter().map(Vec::len).sum::<usize>()
            );
            assert_eq!(Node::decode(&framed).unwrap(), Node::Leaf(entries));
        }
        let children: Vec<ChildRef> = (0..30)
            .map(|i| ChildRef {
                cid: block_cid(0x71, &[i]),
                key: EntryId::Int(u64::from(i)).to_key().unwrap(),
                count: 5,
            })
            .collect();
        let items: Vec<Vec<u8>> = children
            .iter()
            .map(|c| dagcbor::encode(c).unwrap())
            .collect();
        let refs: Vec<&[u8]> = items.iter().map(|i| i.as_slice()).collect();
        let node = Node::Branch {
            level: 300,
            children,
        };
        assert_eq!(frame_node(300, &refs), node.encode().unwrap());
        assert_eq!(Node::decode(&node.encode().unwrap()).unwrap().count(), 150);
    }

    #[test]
    fn rejects_unsorted_or_misshapen_nodes() {
        let bad = Node::Leaf(vec![entry(2), entry(1)]).encode().unwrap();
        assert!(Node::decode(&bad).is_err());
        let dup = Node::Leaf(vec![entry(1), entry(1)]).encode().unwrap();
        assert!(Node::decode(&dup).is_err());
        let empty_branch = Node::Branch {
            level: 1,
            children: vec![],
        }
        .encode()
        .unwrap();
        assert!(Node::decode(&empty_branch).is_err());
        let level0_branch = Node::Branch {
            level: 0,
            children: vec![],
        }
        .encode()
        .unwrap();
        assert!(Node::decode(&level0_branch).is_err());
    }
}
