//! The error type of the protocol crate.

use ::cid::Cid;

/// Everything that can be wrong with bytes, CIDs or records handed to this crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// The CID is not one ipvec can store (wrong version, hash or digest length).
    #[error("unsupported CID {cid}: {reason}")]
    UnsupportedCid { cid: String, reason: String },
    /// A string could not be parsed as a CID.
    #[error("{input:?} is not a valid CID ({reason}); CIDs look like bafyr4i…")]
    BadCid { input: String, reason: String },
    /// The bytes do not hash to the CID that names them.
    #[error("block {cid} is corrupt: its bytes hash to {actual}, not to the digest in the CID")]
    HashMismatch { cid: Cid, actual: String },
    /// The bytes are not valid DAG-CBOR or do not fit the expected schema.
    #[error("invalid DAG-CBOR: {0}")]
    Decode(String),
    /// The bytes decode but are not in the one canonical DAG-CBOR form.
    #[error("non-canonical DAG-CBOR (re-encoding gives different bytes); encoders must sort map keys by length then bytes, use shortest integers and 64-bit floats")]
    NotCanonical,
    /// A value could not be encoded (for example a NaN float in metadata).
    #[error("cannot encode as DAG-CBOR: {0}")]
    Encode(String),
    /// A value breaks a documented limit.
    #[error("{what} is {actual} bytes, over the limit of {limit} bytes")]
    TooLarge {
        what: &'static str,
        actual: usize,
        limit: usize,
    },
    /// A field holds a value the schema does not allow.
    #[error("invalid {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    /// A signature does not verify, or the signer is not allowed.
    #[error("bad signature: {0}")]
    Signature(String),
}

impl ProtocolError {
    pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Self::Invalid {
            field,
            reason: reason.into(),
        }
    }
}
