//! Graph walks on one-byte codes, answers scored on the f32 vectors.
//!
//! An index of f32 vectors under the L2 or cosine metric may keep its graph over codes of one
//! byte a component, a quarter of the bytes each distance reads, and the f32 vectors beside
//! it. A search walks the graph with the query's codes, takes the `ef` best candidates the
//! walk found, and scores them again exactly on the f32 vectors: the answer's scores are
//! exact, and only which points the walk visits depends on the codes. Under L2 the codes are
//! an affine map of the values onto `0..=255`, fitted on the first vectors the index takes
//! (values beyond its range saturate); under cosine they are the i8 codes of the unit vector
//! ([`i8_codes`]).
//!
//! Saved after usearch's graph and before the duplicate map: the magic `ipveccd1`, the coder
//! (`0` unfitted, `1` affine with its offset and step as f32 bits, `2` unit), the number of
//! rows, each row's key and f32 components (little-endian), then the section's length and the
//! magic again.

use std::{
    collections::HashMap,
    hash::{BuildHasherDefault, Hasher},
    io::{Read, Seek, SeekFrom},
    path::Path,
    sync::{OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard},
};

use super::i8_codes;

const MAGIC: &[u8; 8] = b"ipveccd1";

/// Vectors a fit needs to take their range as the codes' range.
pub(super) const FEW: usize = 100;

/// How f32 vectors become codes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Coder {
    /// `round((x − lo) / step)`, saturating at 0 and 255.
    Affine { lo: f32, step: f32 },
    /// The i8 codes of the unit vector.
    Unit,
}

impl Coder {
    /// The affine map whose 256 codes span `values`, the components of `vectors` vectors;
    /// `None` without values. Fewer than [`FEW`] vectors say little of the range later ones
    /// take: the map then spans twice their range, around it.
    pub(super) fn fit(values: impl IntoIterator<Item = f32>, vectors: usize) -> Option<Self> {
        let (mut lo, mut hi) = (f32::INFINITY, f32::NEG_INFINITY);
        for v in values {
            lo = lo.min(v);
            hi = hi.max(v);
        }
        if !(lo.is_finite() && hi.is_finite()) {
            return None;
        }
        if vectors < FEW {
            let half = (hi - lo) / 2.0;
            (lo, hi) = (lo - half, hi + half);
        }
        let step = (hi - lo) / 255.0;
        Some(Coder::Affine {
            lo,
            step: if step.is_normal() { step } else { 1.0 },
        })
    }

    /// The codes of `vector`: bytes for the affine map, i8 codes as bytes for the unit one.
    pub(super) fn encode(&self, vector: &[f32]) -> Vec<u8> {
        match *self {
            Coder::Affine { lo, step } => {
                let scale = 1.0 / step;
                // Clamped first, then rounded half up by truncation: no call to `round`,
                // and the loop vectorises.
                vector
                    .iter()
                    .map(|x| (((x - lo) * scale).clamp(0.0, 255.0) + 0.5) as u8)
                    .collect()
            }
            Coder::Unit => i8_codes(vector).into_iter().map(|c| c as u8).collect(),
        }
    }
}

/// The coder and the f32 vector of every slot.
pub(super) struct Codes {
    /// Set once, by the first vectors the index takes (affine) or when made (unit).
    coder: OnceLock<Coder>,
    rows: RwLock<Rows>,
}

/// f32 vectors by key, in one buffer; freed rows are reused.
#[derive(Default)]
pub(super) struct Rows {
    dimension: usize,
    data: Vec<f32>,
    at: HashMap<u64, usize, BuildHasherDefault<KeyHasher>>,
    free: Vec<usize>,
}

/// Keys are the index's own integers (no one chooses them to collide): one multiply spreads
/// them over the table, where SipHash would cost more than the row lookup itself.
#[derive(Default)]
pub(super) struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_u64(&mut self, key: u64) {
        self.0 = (self.0 ^ key).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

impl Codes {
    /// Codes for vectors of `dimension`, affine (L2) or of the unit vector (cosine).
    pub(super) fn new(dimension: usize, unit: bool) -> Self {
        let coder = OnceLock::new();
        if unit {
            let _ = coder.set(Coder::Unit);
        }
        Self {
            coder,
            rows: RwLock::new(Rows {
                dimension,
                ..Rows::default()
            }),
        }
    }

    /// The coder, set by `fit` when it is not set yet.
    pub(super) fn coder(&self, fit: impl FnOnce() -> Coder) -> Coder {
        *self.coder.get_or_init(fit)
    }

    /// The coder, if set.
    pub(super) fn fitted(&self) -> Option<Coder> {
        self.coder.get().copied()
    }

    // Rows hold plain numbers, whole after any panic: poisoning is ignored.
    pub(super) fn rows(&self) -> RwLockReadGuard<'_, Rows> {
        self.rows.read().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn rows_mut(&self) -> RwLockWriteGuard<'_, Rows> {
        self.rows.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends the section to `out`.
    pub(super) fn encode_into(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(MAGIC);
        let put = |out: &mut Vec<u8>, v: u64| out.extend_from_slice(&v.to_le_bytes());
        match self.fitted() {
            None => put(out, 0),
            Some(Coder::Affine { lo, step }) => {
                put(out, 1);
                put(out, u64::from(lo.to_bits()));
                put(out, u64::from(step.to_bits()));
            }
            Some(Coder::Unit) => put(out, 2),
        }
        let rows = self.rows();
        let mut keys: Vec<(u64, usize)> = rows.at.iter().map(|(k, at)| (*k, *at)).collect();
        keys.sort_unstable();
        put(out, keys.len() as u64);
        for (key, _) in &keys {
            put(out, *key);
            if let Some(row) = rows.get(*key) {
                row.iter()
                    .for_each(|x| out.extend_from_slice(&x.to_le_bytes()));
            }
        }
        let length = (out.len() - start) as u64;
        put(out, length);
        out.extend_from_slice(MAGIC);
    }

    /// Reads the section that ends at byte `end` of the file at `path`; `None` when there is
    /// none (an index saved without codes).
    pub(super) fn read_from(
        path: &Path,
        end: u64,
        dimension: usize,
    ) -> Result<Option<Self>, String> {
        let Some(at) = end.checked_sub(16) else {
            return Ok(None);
        };
        let mut file = std::fs::File::open(path).map_err(|e| e.to_string())?;
        let mut tail = [0u8; 16];
        file.seek(SeekFrom::Start(at))
            .and_then(|_| file.read_exact(&mut tail))
            .map_err(|e| e.to_string())?;
        let Some(length) = section_length(&tail, end)? else {
            return Ok(None);
        };
        let mut body = vec![0u8; length as usize];
        file.seek(SeekFrom::Start(at - length))
            .and_then(|_| file.read_exact(&mut body))
            .map_err(|e| e.to_string())?;
        Self::decode(&body, dimension).map(Some)
    }

    /// [`Codes::read_from`] of a file's bytes.
    pub(super) fn read_from_bytes(
        bytes: &[u8],
        end: u64,
        dimension: usize,
    ) -> Result<Option<Self>, String> {
        let end = usize::try_from(end).map_err(|e| e.to_string())?;
        let Some(tail) = end.checked_sub(16).and_then(|at| bytes.get(at..end)) else {
            return Ok(None);
        };
        let Some(length) = section_length(tail, end as u64)? else {
            return Ok(None);
        };
        let length = length as usize;
        Self::decode(&bytes[end - 16 - length..end - 16], dimension).map(Some)
    }

    fn decode(body: &[u8], dimension: usize) -> Result<Self, String> {
        let damaged = || "the f32 vectors beside the codes are damaged".to_string();
        let rest = body.strip_prefix(MAGIC.as_slice()).ok_or_else(damaged)?;
        let mut words = rest
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap_or_default()));
        let mut next = || words.next().ok_or_else(damaged);
        let coder = match next()? {
            0 => None,
            1 => {
                let lo = f32::from_bits(next()? as u32);
                let step = f32::from_bits(next()? as u32);
                if !(lo.is_finite() && step.is_normal()) {
                    return Err(damaged());
                }
                Some(Coder::Affine { lo, step })
            }
            2 => Some(Coder::Unit),
            _ => return Err(damaged()),
        };
        let count = usize::try_from(next()?).map_err(|_| damaged())?;
        let header = 8 * if matches!(coder, Some(Coder::Affine { .. })) {
            5
        } else {
            3
        };
        let row_bytes = 8 + 4 * dimension;
        if count
            .checked_mul(row_bytes)
            .and_then(|n| n.checked_add(header))
            != Some(body.len())
        {
            return Err(damaged());
        }
        let this = Self::new(dimension, false);
        if let Some(coder) = coder {
            let _ = this.coder.set(coder);
        }
        {
            let mut rows = this.rows_mut();
            rows.data.reserve_exact(count * dimension);
            let mut row = Vec::with_capacity(dimension);
            for chunk in body[header..].chunks_exact(row_bytes) {
                let (key, values) = chunk.split_at(8);
                let key = u64::from_le_bytes(key.try_into().map_err(|_| damaged())?);
                row.clear();
                row.extend(
                    values
                        .chunks_exact(4)
                        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
                );
                if rows.at.contains_key(&key) {
                    return Err(damaged());
                }
                rows.insert(key, &row);
            }
        }
        Ok(this)
    }

    pub(super) fn memory_bytes(&self) -> usize {
        let rows = self.rows();
        rows.data.capacity() * 4 + rows.at.capacity() * 17 + rows.free.capacity() * 8
    }
}

/// The body length of the section that the 16-byte `tail` ends, at byte `end`: `None` when
/// the tail is not a section's (no magic), an error when its length cannot be.
fn section_length(tail: &[u8], end: u64) -> Result<Option<u64>, String> {
    let (length, magic) = tail.split_at(8);
    if magic != MAGIC {
        return Ok(None);
    }
    let length = u64::from_le_bytes(length.try_into().map_err(|_| "short tail".to_string())?);
    if length > end - 16 || length < 8 {
        return Err("the f32 vectors beside the codes are damaged".into());
    }
    Ok(Some(length))
}

impl Rows {
    /// The keys that have a vector.
    pub(super) fn keys(&self) -> impl Iterator<Item = u64> + '_ {
        self.at.keys().copied()
    }

    /// The vector of `key`.
    pub(super) fn get(&self, key: u64) -> Option<&[f32]> {
        let at = *self.at.get(&key)?;
        self.data
            .get(at * self.dimension..(at + 1) * self.dimension)
    }

    /// Sets the vector of `key`.
    pub(super) fn insert(&mut self, key: u64, vector: &[f32]) {
        let d = self.dimension;
        let at = match self.at.get(&key) {
            Some(at) => *at,
            None => {
                let at = self.free.pop().unwrap_or_else(|| {
                    self.data.resize(self.data.len() + d, 0.0);
                    self.data.len() / d - 1
                });
                self.at.insert(key, at);
                at
            }
        };
        self.data[at * d..(at + 1) * d].copy_from_slice(&vector[..d]);
    }

    /// Drops the vector of `key`.
    pub(super) fn remove(&mut self, key: u64) {
        if let Some(at) = self.at.remove(&key) {
            self.free.push(at);
        }
    }

    /// Moves the vector of `from` to `to`.
    pub(super) fn rename(&mut self, from: u64, to: u64) {
        if let Some(at) = self.at.remove(&from) {
            if let Some(old) = self.at.insert(to, at) {
                self.free.push(old);
            }
        }
    }

    /// Every key and its vector.
    pub(super) fn iter(&self) -> impl Iterator<Item = (u64, &[f32])> {
        self.at.iter().map(|(key, at)| {
            (
                *key,
                &self.data[at * self.dimension..(at + 1) * self.dimension],
            )
        })
    }
}
