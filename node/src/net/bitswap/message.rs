//! Bitswap messages in their protobuf wire form (the `bitswap.message.pb` schema of
//! `/ipfs/bitswap/1.2.0`), encoded and decoded by hand with the limits enforced while
//! reading: a malformed or oversized message is an error, never a panic or an allocation of
//! what a length field claims.
//!
//! ```text
//! Message        { Wantlist wantlist = 1; repeated bytes blocks = 2; repeated Block payload = 3;
//!                  repeated BlockPresence blockPresences = 4; int32 pendingBytes = 5; }
//! Wantlist       { repeated Entry entries = 1; bool full = 2; }
//! Entry          { bytes block = 1 (a CID); int32 priority = 2; bool cancel = 3;
//!                  WantType wantType = 4 (Block = 0, Have = 1); bool sendDontHave = 5; }
//! Block          { bytes prefix = 1 (CID version, codec, hash code, digest length); bytes data = 2; }
//! BlockPresence  { bytes cid = 1; BlockPresenceType type = 2 (Have = 0, DontHave = 1); }
//! ```

use bytes::Bytes;
use cid::Cid;

use crate::store::car::write_varint;

/// Largest message accepted or sent.
pub const MAX_MESSAGE_BYTES: usize = 4 << 20;
/// Largest block accepted.
pub const MAX_BLOCK_BYTES: usize = 2 << 20;

/// A malformed message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed bitswap message: {0}")]
pub struct DecodeError(pub String);

fn bad(what: impl Into<String>) -> DecodeError {
    DecodeError(what.into())
}

/// What a want asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WantType {
    /// The block itself.
    Block,
    /// Whether the peer has it.
    Have,
}

/// One wantlist entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Want {
    /// The wanted CID.
    pub cid: Cid,
    /// Priority (higher first).
    pub priority: i32,
    /// This entry withdraws an earlier want.
    pub cancel: bool,
    /// Block or have.
    pub want_type: WantType,
    /// Answer DONT_HAVE when the block is missing.
    pub send_dont_have: bool,
}

/// A block in a message: its CID prefix and bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload {
    /// CID version, codec, multihash code and digest length, as varints.
    pub prefix: Vec<u8>,
    /// The block (shared with the buffer it was read into or the store it was read from).
    pub data: Bytes,
}

/// A presence answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Presence {
    /// The CID asked about.
    pub cid: Cid,
    /// Whether the sender has it.
    pub have: bool,
}

/// A Bitswap message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Message {
    /// Wants (and cancels).
    pub wants: Vec<Want>,
    /// Whether the wantlist replaces the sender's earlier one.
    pub full: bool,
    /// Blocks sent.
    pub payload: Vec<Payload>,
    /// Presence answers.
    pub presences: Vec<Presence>,
    /// Bytes the sender still has queued for us.
    pub pending_bytes: i32,
}

fn put_key(out: &mut Vec<u8>, field: u32, wire: u8) {
    write_varint(out, (u64::from(field) << 3) | u64::from(wire));
}

fn put_bytes(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    put_key(out, field, 2);
    write_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// Bytes a length-delimited field of `len` bytes takes, key and length included.
fn field_len(field: u32, len: usize) -> usize {
    varint_len(u64::from(field) << 3) + varint_len(len as u64) + len
}

fn varint_len(n: u64) -> usize {
    (64 - n.max(1).leading_zeros() as usize).div_ceil(7)
}

fn put_uint(out: &mut Vec<u8>, field: u32, n: u64) {
    if n != 0 {
        put_key(out, field, 0);
        write_varint(out, n);
    }
}

/// The CID prefix of a block: version, codec, multihash code, digest length.
pub fn prefix_of(cid: &Cid) -> Vec<u8> {
    let mut out = Vec::with_capacity(8);
    write_varint(&mut out, cid.version() as u64);
    write_varint(&mut out, cid.codec());
    write_varint(&mut out, cid.hash().code());
    write_varint(&mut out, u64::from(cid.hash().size()));
    out
}

impl Message {
    /// The message's protobuf bytes (without the length prefix of the stream framing).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        if !self.wants.is_empty() || self.full {
            let mut list = Vec::new();
            for want in &self.wants {
                let mut entry = Vec::new();
                put_bytes(&mut entry, 1, &want.cid.to_bytes());
                put_uint(&mut entry, 2, want.priority as u32 as u64);
                put_uint(&mut entry, 3, u64::from(want.cancel));
                put_uint(
                    &mut entry,
                    4,
                    matches!(want.want_type, WantType::Have) as u64,
                );
                put_uint(&mut entry, 5, u64::from(want.send_dont_have));
                put_bytes(&mut list, 1, &entry);
            }
            put_uint(&mut list, 2, u64::from(self.full));
            put_bytes(&mut out, 1, &list);
        }
        for block in &self.payload {
            // Written in place, with the length its two fields will take: a block is copied
            // once, into the message.
            let inner = field_len(1, block.prefix.len()) + field_len(2, block.data.len());
            put_key(&mut out, 3, 2);
            write_varint(&mut out, inner as u64);
            put_bytes(&mut out, 1, &block.prefix);
            put_bytes(&mut out, 2, &block.data);
        }
        for presence in &self.presences {
            let mut p = Vec::new();
            put_bytes(&mut p, 1, &presence.cid.to_bytes());
            put_uint(&mut p, 2, u64::from(!presence.have));
            put_bytes(&mut out, 4, &p);
        }
        put_uint(&mut out, 5, self.pending_bytes as u32 as u64);
        out
    }

    /// Decodes a message, refusing anything malformed or over the limits.
    pub fn decode(bytes: &[u8]) -> Result<Message, DecodeError> {
        Self::decode_shared(&Bytes::copy_from_slice(bytes))
    }

    /// [`Message::decode`] of a buffer its blocks are then slices of, without copying them.
    pub fn decode_shared(shared: &Bytes) -> Result<Message, DecodeError> {
        let bytes: &[u8] = shared;
        if bytes.len() > MAX_MESSAGE_BYTES {
            return Err(bad(format!(
                "{} bytes, over the {MAX_MESSAGE_BYTES}-byte limit",
                bytes.len()
            )));
        }
        let mut message = Message::default();
        let mut reader = Reader::new(bytes);
        while let Some((field, value)) = reader.field()? {
            match (field, value) {
                (1, Value::Bytes(list)) => {
                    let mut list = Reader::new(list);
                    while let Some((field, value)) = list.field()? {
                        match (field, value) {
                            (1, Value::Bytes(entry)) => message.wants.push(decode_want(entry)?),
                            (2, Value::Int(full)) => message.full = full != 0,
                            _ => {}
                        }
                    }
                }
                // Bitswap 1.0.0 blocks (raw bytes, implied CIDv0): not ours to store.
                (2, Value::Bytes(_)) => {}
                (3, Value::Bytes(block)) => {
                    let mut b = Reader::new(block);
                    let mut payload = Payload {
                        prefix: Vec::new(),
                        data: Bytes::new(),
                    };
                    while let Some((field, value)) = b.field()? {
                        match (field, value) {
                            (1, Value::Bytes(p)) => payload.prefix = p.to_vec(),
                            (2, Value::Bytes(d)) => {
                                if d.len() > MAX_BLOCK_BYTES {
                                    return Err(bad(format!(
                                        "a block of {} bytes, over the {MAX_BLOCK_BYTES}-byte limit",
                                        d.len()
                                    )));
                                }
                                payload.data = shared.slice_ref(d);
                            }
                            _ => {}
                        }
                    }
                    message.payload.push(payload);
                }
                (4, Value::Bytes(p)) => {
                    let mut r = Reader::new(p);
                    let mut cid = None;
                    let mut have = true;
                    while let Some((field, value)) = r.field()? {
                        match (field, value) {
                            (1, Value::Bytes(c)) => cid = Some(parse_cid(c)?),
                            (2, Value::Int(t)) => have = t == 0,
                            _ => {}
                        }
                    }
                    let cid = cid.ok_or_else(|| bad("a block presence without a CID"))?;
                    message.presences.push(Presence { cid, have });
                }
                (5, Value::Int(n)) => message.pending_bytes = n as i32,
                // Unknown fields are skipped, as protobuf requires.
                _ => {}
            }
        }
        Ok(message)
    }
}

fn parse_cid(bytes: &[u8]) -> Result<Cid, DecodeError> {
    Cid::try_from(bytes).map_err(|e| bad(format!("bad CID: {e}")))
}

fn decode_want(bytes: &[u8]) -> Result<Want, DecodeError> {
    let mut r = Reader::new(bytes);
    let mut want = Want {
        cid: Cid::default(),
        priority: 1,
        cancel: false,
        want_type: WantType::Block,
        send_dont_have: false,
    };
    let mut cid = None;
    while let Some((field, value)) = r.field()? {
        match (field, value) {
            (1, Value::Bytes(c)) => cid = Some(parse_cid(c)?),
            (2, Value::Int(p)) => want.priority = p as i32,
            (3, Value::Int(c)) => want.cancel = c != 0,
            (4, Value::Int(t)) => {
                want.want_type = if t == 1 {
                    WantType::Have
                } else {
                    WantType::Block
                }
            }
            (5, Value::Int(d)) => want.send_dont_have = d != 0,
            _ => {}
        }
    }
    want.cid = cid.ok_or_else(|| bad("a wantlist entry without a CID"))?;
    Ok(want)
}

enum Value<'a> {
    Int(u64),
    Bytes(&'a [u8]),
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, at: 0 }
    }

    fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut n = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self
                .bytes
                .get(self.at)
                .ok_or_else(|| bad("truncated varint"))?;
            self.at += 1;
            n |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(n);
            }
        }
        Err(bad("varint longer than 64 bits"))
    }

    fn field(&mut self) -> Result<Option<(u32, Value<'a>)>, DecodeError> {
        if self.at == self.bytes.len() {
            return Ok(None);
        }
        let key = self.varint()?;
        let field = u32::try_from(key >> 3).map_err(|_| bad("field number too large"))?;
        let value = match key & 7 {
            0 => Value::Int(self.varint()?),
            1 => {
                self.skip(8)?;
                Value::Int(0)
            }
            2 => {
                let len = usize::try_from(self.varint()?).map_err(|_| bad("length too large"))?;
                let start = self.at;
                self.skip(len)?;
                Value::Bytes(&self.bytes[start..start + len])
            }
            5 => {
                self.skip(4)?;
                Value::Int(0)
            }
            wire => return Err(bad(format!("unsupported wire type {wire}"))),
        };
        Ok(Some((field, value)))
    }

    fn skip(&mut self, n: usize) -> Result<(), DecodeError> {
        if self.bytes.len() - self.at < n {
            return Err(bad("a field runs past the end of the message"));
        }
        self.at += n;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn cid(n: u8) -> Cid {
        ipvec_protocol::cid::block_cid(ipvec_protocol::cid::RAW, &[n])
    }

    #[test]
    fn round_trips_every_field() {
        let message = Message {
            wants: vec![
                Want {
                    cid: cid(1),
                    priority: 5,
                    cancel: false,
                    want_type: WantType::Have,
                    send_dont_have: true,
                },
                Want {
                    cid: cid(2),
                    priority: -3,
                    cancel: true,
                    want_type: WantType::Block,
                    send_dont_have: false,
                },
            ],
            full: true,
            payload: vec![Payload {
                prefix: prefix_of(&cid(3)),
                data: Bytes::from_static(&[3]),
            }],
            presences: vec![
                Presence {
                    cid: cid(4),
                    have: true,
                },
                Presence {
                    cid: cid(5),
                    have: false,
                },
            ],
            pending_bytes: 1234,
        };
        assert_eq!(Message::decode(&message.encode()).unwrap(), message);
        // Blocks whose lengths take one, two and three varint bytes, written in place; a
        // shared decode hands back slices of the buffer it read.
        let blocks: Vec<Payload> = [100usize, 300, 200_000]
            .iter()
            .map(|&n| Payload {
                prefix: prefix_of(&cid(n as u8)),
                data: (0..n).map(|i| i as u8).collect::<Vec<u8>>().into(),
            })
            .collect();
        let message = Message {
            payload: blocks,
            ..Message::default()
        };
        let buffer = Bytes::from(message.encode());
        let decoded = Message::decode_shared(&buffer).unwrap();
        assert_eq!(decoded, message);
        let within = buffer.as_ptr_range();
        assert!(decoded
            .payload
            .iter()
            .all(|p| within.contains(&p.data.as_ptr())));
        for n in [0u64, 1, 127, 128, 16_383, 16_384, u64::MAX] {
            let mut out = Vec::new();
            write_varint(&mut out, n);
            assert_eq!(varint_len(n), out.len(), "{n}");
        }
        // A prefix is what a CID's bytes start with, minus the digest.
        let c = cid(9);
        assert_eq!(
            prefix_of(&c),
            c.to_bytes()[..c.to_bytes().len() - 32].to_vec()
        );
    }

    #[test]
    fn refuses_malformed_and_oversized_messages() {
        let good = Message {
            wants: vec![Want {
                cid: cid(1),
                priority: 1,
                cancel: false,
                want_type: WantType::Block,
                send_dont_have: true,
            }],
            ..Message::default()
        }
        .encode();
        for cut in 1..good.len() {
            assert!(Message::decode(&good[..cut]).is_err(), "cut at {cut}");
        }
        assert!(Message::decode(&[0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f]).is_err());
        assert!(Message::decode(&[0x0b]).is_err(), "wire type 3");
        assert!(Message::decode(&vec![0u8; MAX_MESSAGE_BYTES + 1]).is_err());
        let mut big = Vec::new();
        let mut block = Vec::new();
        put_bytes(&mut block, 2, &vec![0u8; MAX_BLOCK_BYTES + 1]);
        put_bytes(&mut big, 3, &block);
        assert!(Message::decode(&big).is_err());
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = Message::decode(&bytes);
        }
    }
}
