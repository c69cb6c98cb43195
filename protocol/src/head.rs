//! Signed head records: which manifest is a collection's current version.
//!
//! A head is `{collection, seq, manifest, writer, signature}`. The signature is ed25519 by
//! `writer` over `"ipvec-head-v1\0"` followed by the canonical DAG-CBOR of
//! `{collection, seq, manifest, writer}`. Peers keep the head with the highest `seq` whose
//! writer the manifest allows.

use ::cid::Cid;
use libp2p_identity::{ed25519, Keypair, PeerId, PublicKey};
use serde::{Deserialize, Serialize};

use crate::{dagcbor, ProtocolError};

/// Domain separation prefix of head signatures.
pub const HEAD_SIGNING_PREFIX: &[u8] = b"ipvec-head-v1\0";

/// A signed head record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeadRecord {
    /// The collection owner's 32-byte ed25519 public key.
    #[serde(with = "serde_bytes")]
    pub collection: Vec<u8>,
    /// Sequence number; higher wins.
    pub seq: u64,
    /// The manifest of this version.
    pub manifest: Cid,
    /// The signer's 32-byte ed25519 public key.
    #[serde(with = "serde_bytes")]
    pub writer: Vec<u8>,
    /// 64-byte ed25519 signature.
    #[serde(with = "serde_bytes")]
    pub signature: Vec<u8>,
}

#[derive(Serialize)]
struct Unsigned<'a> {
    #[serde(with = "serde_bytes")]
    collection: &'a [u8],
    seq: u64,
    manifest: Cid,
    #[serde(with = "serde_bytes")]
    writer: &'a [u8],
}

/// The 32-byte ed25519 public key of a keypair.
pub fn public_key_bytes(key: &Keypair) -> Result<[u8; 32], ProtocolError> {
    let ed = key
        .clone()
        .try_into_ed25519()
        .map_err(|_| ProtocolError::Signature("ipvec keys must be ed25519".into()))?;
    Ok(ed.public().to_bytes())
}

/// The collection id people pass around: the owner's key as a libp2p peer id (`12D3KooW…`).
pub fn collection_id(owner: &[u8]) -> Result<String, ProtocolError> {
    let key = ed25519_key(owner)?;
    Ok(PeerId::from_public_key(&PublicKey::from(key)).to_string())
}

/// The 32-byte ed25519 public key a key id names: the inverse of [`collection_id`], for the
/// peer ids of ed25519 keys (`12D3KooW…`, what `ipvec id` prints), whose text carries the key.
pub fn key_of_id(id: &str) -> Result<[u8; 32], ProtocolError> {
    let not = |why: &str| {
        ProtocolError::Signature(format!(
            "{id:?} is not a key id ({why}): give the `12D3KooW…` peer id a node's `ipvec id` \
             prints"
        ))
    };
    let peer: PeerId = id
        .parse()
        .map_err(|_| not("it does not parse as a peer id"))?;
    // Ed25519 peer ids inline their key: an identity multihash (code 0, then the length, one
    // byte below 128) of the key's protobuf encoding. Other peer ids are hashes of their key.
    let bytes = peer.to_bytes();
    let inline = match bytes.as_slice() {
        [0, len, key @ ..] if usize::from(*len) == key.len() => key,
        _ => return Err(not("it is the hash of a key, not an ed25519 key")),
    };
    let key = PublicKey::try_decode_protobuf(inline)
        .map_err(|_| not("its key does not decode"))?
        .try_into_ed25519()
        .map_err(|_| not("its key is not ed25519"))?;
    Ok(key.to_bytes())
}

/// The ed25519 public key of 32 bytes.
pub(crate) fn ed25519_key(bytes: &[u8]) -> Result<ed25519::PublicKey, ProtocolError> {
    ed25519::PublicKey::try_from_bytes(bytes)
        .map_err(|e| ProtocolError::Signature(format!("not an ed25519 public key: {e}")))
}

impl HeadRecord {
    fn signing_bytes(&self) -> Result<Vec<u8>, ProtocolError> {
        let body = dagcbor::encode(&Unsigned {
            collection: &self.collection,
            seq: self.seq,
            manifest: self.manifest,
            writer: &self.writer,
        })?;
        let mut out = HEAD_SIGNING_PREFIX.to_vec();
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// Signs a head for `collection` (the owner's public key) with `writer`.
    pub fn sign(
        collection: [u8; 32],
        seq: u64,
        manifest: Cid,
        writer: &Keypair,
    ) -> Result<Self, ProtocolError> {
        let mut head = HeadRecord {
            collection: collection.to_vec(),
            seq,
            manifest,
            writer: public_key_bytes(writer)?.to_vec(),
            signature: Vec::new(),
        };
        let payload = head.signing_bytes()?;
        head.signature = writer
            .sign(&payload)
            .map_err(|e| ProtocolError::Signature(e.to_string()))?;
        Ok(head)
    }

    /// Checks the signature, and that the writer is one of `allowed` (32-byte keys).
    pub fn verify(&self, allowed: &[&[u8]]) -> Result<(), ProtocolError> {
        let key = ed25519_key(&self.writer)?;
        if !key.verify(&self.signing_bytes()?, &self.signature) {
            return Err(ProtocolError::Signature(
                "head signature does not verify".into(),
            ));
        }
        if !allowed.contains(&self.writer.as_slice()) {
            return Err(ProtocolError::Signature(
                "head is signed by a key the manifest does not list as a writer".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cid::{block_cid, DAG_CBOR};

    #[test]
    fn key_ids_name_their_keys_both_ways() {
        let key = Keypair::generate_ed25519();
        let bytes = public_key_bytes(&key).unwrap();
        let id = collection_id(&bytes).unwrap();
        assert_eq!(id, key.public().to_peer_id().to_string());
        assert_eq!(key_of_id(&id).unwrap(), bytes);
        for bad in [
            "",
            "12D3KooW",
            "not a key",
            "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N",
        ] {
            let e = key_of_id(bad).unwrap_err().to_string();
            assert!(e.contains("is not a key id"), "{bad}: {e}");
        }
    }

    #[test]
    fn signed_heads_verify_and_forgeries_do_not() {
        let owner = Keypair::generate_ed25519();
        let other = Keypair::generate_ed25519();
        let owner_pk = public_key_bytes(&owner).unwrap();
        let other_pk = public_key_bytes(&other).unwrap();
        let cid = block_cid(DAG_CBOR, b"manifest");
        let head = HeadRecord::sign(owner_pk, 3, cid, &owner).unwrap();
        head.verify(&[&owner_pk]).unwrap();
        let bytes = dagcbor::encode(&head).unwrap();
        let back: HeadRecord = dagcbor::decode(&bytes).unwrap();
        back.verify(&[&owner_pk]).unwrap();

        let mut bumped = head.clone();
        bumped.seq = 4;
        assert!(
            bumped.verify(&[&owner_pk]).is_err(),
            "changed seq must break the signature"
        );
        let forged = HeadRecord::sign(owner_pk, 5, cid, &other).unwrap();
        assert!(
            forged.verify(&[&owner_pk]).is_err(),
            "a key outside the writer list is refused"
        );
        forged.verify(&[&owner_pk, &other_pk]).unwrap();
        assert!(collection_id(&owner_pk).unwrap().starts_with("12D3KooW"));
    }
}
