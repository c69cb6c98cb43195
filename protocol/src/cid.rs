//! BLAKE3 CIDs: the only kind of CID ipvec makes or stores.
//!
//! A block's CID is `CIDv1(codec, multihash(0x1e, BLAKE3-256(bytes)))`. The 32-byte digest is
//! also the block's iroh-blobs hash, so one store serves IPFS and iroh peers alike.

use ::cid::Cid;
use multihash::Multihash;

use crate::ProtocolError;

/// Multicodec of DAG-CBOR blocks (structure).
pub const DAG_CBOR: u64 = 0x71;
/// Multicodec of raw blocks (packed payloads).
pub const RAW: u64 = 0x55;
/// Multihash code of BLAKE3 with a 32-byte digest.
pub const BLAKE3_256: u64 = 0x1e;

/// The CID of `bytes` stored under `codec`.
pub fn block_cid(codec: u64, bytes: &[u8]) -> Cid {
    cid_from_digest(codec, blake3::hash(bytes).as_bytes())
}

/// The CID for a BLAKE3 digest under `codec`.
pub fn cid_from_digest(codec: u64, digest: &[u8; 32]) -> Cid {
    // A 32-byte digest always fits the 64-byte multihash.
    let mh = Multihash::<64>::wrap(BLAKE3_256, digest).unwrap_or_default();
    Cid::new_v1(codec, mh)
}

/// The BLAKE3 digest inside a CID, after checking it is a CID ipvec can store.
pub fn digest(cid: &Cid) -> Result<[u8; 32], ProtocolError> {
    check_supported(cid)?;
    let mut out = [0u8; 32];
    out.copy_from_slice(cid.hash().digest());
    Ok(out)
}

/// Checks that `cid` is CIDv1, BLAKE3-256, and dag-cbor or raw.
pub fn check_supported(cid: &Cid) -> Result<(), ProtocolError> {
    let unsupported = |reason: &str| ProtocolError::UnsupportedCid {
        cid: cid.to_string(),
        reason: reason.to_string(),
    };
    if cid.version() != ::cid::Version::V1 {
        return Err(unsupported("ipvec stores only CIDv1"));
    }
    if cid.hash().code() != BLAKE3_256 || cid.hash().digest().len() != 32 {
        return Err(unsupported(
            "ipvec stores only BLAKE3-256 (multihash 0x1e) blocks; re-encode the data with BLAKE3",
        ));
    }
    if cid.codec() != DAG_CBOR && cid.codec() != RAW {
        return Err(unsupported(
            "ipvec stores only dag-cbor (0x71) and raw (0x55) blocks",
        ));
    }
    Ok(())
}

/// Checks that `bytes` hash to the digest in `cid`.
pub fn verify_block(cid: &Cid, bytes: &[u8]) -> Result<(), ProtocolError> {
    let expected = digest(cid)?;
    let actual = blake3::hash(bytes);
    if actual.as_bytes() != &expected {
        return Err(ProtocolError::HashMismatch {
            cid: *cid,
            actual: actual.to_hex().to_string(),
        });
    }
    Ok(())
}

/// Parses a CID from its string form, with an error that says what a CID looks like.
pub fn parse_cid(input: &str) -> Result<Cid, ProtocolError> {
    Cid::try_from(input.trim()).map_err(|e| ProtocolError::BadCid {
        input: input.to_string(),
        reason: e.to_string(),
    })
}

/// The name of a codec for people: `dag-cbor`, `raw` or the hex code.
pub fn codec_name(codec: u64) -> String {
    match codec {
        DAG_CBOR => "dag-cbor".to_string(),
        RAW => "raw".to_string(),
        other => format!("0x{other:x}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cid_digest_is_blake3_of_bytes() {
        let cid = block_cid(RAW, b"hello");
        assert_eq!(cid.hash().code(), BLAKE3_256);
        assert_eq!(cid.hash().digest(), blake3::hash(b"hello").as_bytes());
        assert!(verify_block(&cid, b"hello").is_ok());
        assert!(matches!(
            verify_block(&cid, b"hellp"),
            Err(ProtocolError::HashMismatch { .. })
        ));
        let parsed = parse_cid(&cid.to_string()).unwrap();
        assert_eq!(parsed, cid);
    }

    #[test]
    fn rejects_foreign_hashes() {
        // CIDv0 (sha2-256) of the empty directory, as Kubo makes.
        let v0 = parse_cid("QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn").unwrap();
        assert!(matches!(
            check_supported(&v0),
            Err(ProtocolError::UnsupportedCid { .. })
        ));
        assert!(parse_cid("not-a-cid").is_err());
    }
}
