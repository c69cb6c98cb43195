//! Signed member records: a peer's statement that it helps serve a collection, with what
//! capacity, and which shards it holds at which roots.
//!
//! A record is `{collection, peer, capacity, issued, ttl, state, holds, signature}`. The
//! signature is ed25519 by `peer` over `"ipvec-member-v1\0"` followed by the canonical
//! DAG-CBOR of every other field. Records travel on the collection's member gossip topic;
//! a peer believes one for `ttl` seconds after it arrives, and only if its `issued` is later
//! than the last one it counted from that peer.
//!
//! `state` says where the peer stands: `serving` (placement may give it shards), `leaving`
//! (it gets no placement and hands its shards over, serving them until their new holders
//! have them) or `left` (it holds nothing any more: drop it from the membership now).

use ::cid::Cid;
use libp2p_identity::Keypair;
use serde::{Deserialize, Serialize};

use crate::{
    dagcbor,
    head::{ed25519_key, public_key_bytes},
    ProtocolError,
};

/// Domain separation prefix of member record signatures.
pub const MEMBER_SIGNING_PREFIX: &[u8] = b"ipvec-member-v1\0";
/// Most shards a record may list.
pub const MAX_HELD: usize = 65_536;

/// Where a member stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MemberState {
    /// Serving: placement may give it shards.
    Serving,
    /// Handing its shards over before it leaves.
    Leaving,
    /// Gone: it holds nothing of the collection.
    Left,
}

/// A shard a member holds, at the root it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldShard {
    /// The shard number.
    pub shard: u32,
    /// The CID of the shard's root block (`ShardRoot`) held.
    pub root: Cid,
}

/// A signed member record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberRecord {
    /// The collection owner's 32-byte ed25519 public key.
    #[serde(with = "serde_bytes")]
    pub collection: Vec<u8>,
    /// The member's 32-byte ed25519 public key.
    #[serde(with = "serde_bytes")]
    pub peer: Vec<u8>,
    /// Bytes it offers for the collection (placement weight).
    pub capacity: u64,
    /// When it was issued: milliseconds since the Unix epoch on the member's clock.
    pub issued: u64,
    /// Seconds it holds after it arrives.
    pub ttl: u64,
    /// Where the member stands.
    pub state: MemberState,
    /// The shards it holds, by shard number.
    pub holds: Vec<HeldShard>,
    /// 64-byte ed25519 signature.
    #[serde(with = "serde_bytes")]
    pub signature: Vec<u8>,
}

#[derive(Serialize)]
struct Unsigned<'a> {
    #[serde(with = "serde_bytes")]
    collection: &'a [u8],
    #[serde(with = "serde_bytes")]
    peer: &'a [u8],
    capacity: u64,
    issued: u64,
    ttl: u64,
    state: MemberState,
    holds: &'a [HeldShard],
}

/// What a member states, before it is signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberStatement {
    /// The collection owner's public key.
    pub collection: [u8; 32],
    /// Capacity in bytes.
    pub capacity: u64,
    /// Milliseconds since the Unix epoch.
    pub issued: u64,
    /// Seconds the record holds.
    pub ttl: u64,
    /// Where the member stands.
    pub state: MemberState,
    /// The shards held.
    pub holds: Vec<HeldShard>,
}

impl MemberRecord {
    fn signing_bytes(&self) -> Result<Vec<u8>, ProtocolError> {
        let body = dagcbor::encode(&Unsigned {
            collection: &self.collection,
            peer: &self.peer,
            capacity: self.capacity,
            issued: self.issued,
            ttl: self.ttl,
            state: self.state,
            holds: &self.holds,
        })?;
        let mut out = MEMBER_SIGNING_PREFIX.to_vec();
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// Signs `statement` with the member's key.
    pub fn sign(statement: MemberStatement, member: &Keypair) -> Result<Self, ProtocolError> {
        let mut record = MemberRecord {
            collection: statement.collection.to_vec(),
            peer: public_key_bytes(member)?.to_vec(),
            capacity: statement.capacity,
            issued: statement.issued,
            ttl: statement.ttl,
            state: statement.state,
            holds: statement.holds,
            signature: Vec::new(),
        };
        let payload = record.signing_bytes()?;
        record.signature = member
            .sign(&payload)
            .map_err(|e| ProtocolError::Signature(e.to_string()))?;
        Ok(record)
    }

    /// Checks the signature by `peer`, and that the shards listed are in order, distinct and
    /// at most [`MAX_HELD`].
    pub fn verify(&self) -> Result<(), ProtocolError> {
        let key = ed25519_key(&self.peer)?;
        if !key.verify(&self.signing_bytes()?, &self.signature) {
            return Err(ProtocolError::Signature(
                "member record signature does not verify".into(),
            ));
        }
        if self.holds.len() > MAX_HELD {
            return Err(ProtocolError::Invalid {
                field: "holds",
                reason: format!("{} shards, more than {MAX_HELD}", self.holds.len()),
            });
        }
        if self.holds.windows(2).any(|w| w[0].shard >= w[1].shard) {
            return Err(ProtocolError::Invalid {
                field: "holds",
                reason: "shards must be listed once each, in order".into(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cid::{block_cid, RAW};

    fn statement(holds: Vec<HeldShard>) -> MemberStatement {
        MemberStatement {
            collection: [7; 32],
            capacity: 1 << 30,
            issued: 1_700_000_000_000,
            ttl: 600,
            state: MemberState::Serving,
            holds,
        }
    }

    fn held(shard: u32) -> HeldShard {
        HeldShard {
            shard,
            root: block_cid(RAW, &shard.to_le_bytes()),
        }
    }

    #[test]
    fn a_signed_record_verifies_and_round_trips() {
        let key = Keypair::generate_ed25519();
        let record = MemberRecord::sign(statement(vec![held(0), held(3)]), &key).unwrap();
        record.verify().unwrap();
        let back: MemberRecord = dagcbor::decode(&dagcbor::encode(&record).unwrap()).unwrap();
        assert_eq!(back, record);
        back.verify().unwrap();
        assert_eq!(record.peer, public_key_bytes(&key).unwrap().to_vec());
    }

    #[test]
    fn a_changed_field_or_another_key_fails() {
        let key = Keypair::generate_ed25519();
        let record = MemberRecord::sign(statement(vec![held(1)]), &key).unwrap();
        let mut bigger = record.clone();
        bigger.capacity += 1;
        assert!(bigger.verify().is_err());
        let mut later = record.clone();
        later.issued += 1;
        assert!(later.verify().is_err());
        let mut more = record.clone();
        more.holds.push(held(2));
        assert!(more.verify().is_err());
        let mut leaving = record.clone();
        leaving.state = MemberState::Left;
        assert!(leaving.verify().is_err());
        let mut other = record.clone();
        other.peer = public_key_bytes(&Keypair::generate_ed25519())
            .unwrap()
            .to_vec();
        assert!(other.verify().is_err());
    }

    #[test]
    fn shards_out_of_order_or_twice_are_refused() {
        let key = Keypair::generate_ed25519();
        for holds in [vec![held(2), held(1)], vec![held(1), held(1)]] {
            let record = MemberRecord::sign(statement(holds), &key).unwrap();
            let err = record.verify().unwrap_err().to_string();
            assert!(err.contains("in order"), "{err}");
        }
    }
}
