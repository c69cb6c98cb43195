//! Vectors as stored in tree leaves: little-endian f32, f16, or i8.
//!
//! i8 stores a unit-length vector scaled by 127, so it is offered for the cosine metric only
//! (where length does not matter); f16 keeps about three significant digits for any metric.

use half::f16;
use ipvec_protocol::manifest::{Metric, Quantization};

use super::CollectionError;
use crate::index::{i8_codes, HnswIndex, IndexError, VectorIndex};

/// Checks that `quantization` can represent vectors compared with `metric`.
pub fn check_pairing(metric: Metric, quantization: Quantization) -> Result<(), CollectionError> {
    if quantization == Quantization::I8 && metric != Metric::Cosine {
        return Err(CollectionError::Invalid(
            "i8 quantization stores unit vectors and needs --metric cosine; use f16 or f32 for l2 and dot".into(),
        ));
    }
    Ok(())
}

/// Encodes a vector for storage.
pub fn encode(quantization: Quantization, vector: &[f32]) -> Vec<u8> {
    match quantization {
        Quantization::F32 => vector.iter().flat_map(|v| v.to_le_bytes()).collect(),
        Quantization::F16 => vector
            .iter()
            .flat_map(|v| f16::from_f32(*v).to_le_bytes())
            .collect(),
        Quantization::I8 => i8_codes(vector).into_iter().map(|c| c as u8).collect(),
    }
}

/// Decodes a stored vector back to f32 (i8 vectors come back with length about 1).
pub fn decode(quantization: Quantization, bytes: &[u8]) -> Vec<f32> {
    match quantization {
        Quantization::F32 => bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        Quantization::F16 => bytes
            .chunks_exact(2)
            .map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        Quantization::I8 => bytes.iter().map(|b| f32::from(*b as i8) / 127.0).collect(),
    }
}

/// Adds a stored vector to `index` under `key`: i8 codes exactly as stored (decoding them to
/// f32 would have the index quantize them a second time, losing up to a step per component),
/// f32 and f16 decoded to f32 (which the index holds exactly: f16 → f32 → f16 is lossless).
pub(crate) fn index_stored(
    index: &mut HnswIndex,
    quantization: Quantization,
    key: u64,
    bytes: &[u8],
) -> Result<(), IndexError> {
    match quantization {
        Quantization::I8 => {
            let codes: Vec<i8> = bytes.iter().map(|b| *b as i8).collect();
            index.upsert_i8(key, &codes)
        }
        _ => index.upsert(key, &decode(quantization, bytes)),
    }
}

/// The stored form of the vector `index` holds under `key`, the inverse of [`index_stored`]:
/// exact, since the index holds f32 and f16 vectors losslessly and i8 codes as given.
pub(crate) fn stored_from_index(
    index: &HnswIndex,
    quantization: Quantization,
    key: u64,
) -> Option<Vec<u8>> {
    match quantization {
        Quantization::I8 => Some(index.vector_i8(key)?.into_iter().map(|c| c as u8).collect()),
        _ => Some(encode(quantization, &index.vector(key)?)),
    }
}

/// Bytes a stored vector of `dimension` components takes.
pub fn stored_len(quantization: Quantization, dimension: usize) -> usize {
    quantization.bytes_per_component() * dimension
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrips_within_the_precision_of_each_kind() {
        let v = [0.1f32, -2.5, 3.0, 0.0, 1e-3];
        assert_eq!(decode(Quantization::F32, &encode(Quantization::F32, &v)), v);
        let h = decode(Quantization::F16, &encode(Quantization::F16, &v));
        assert!(
            v.iter()
                .zip(&h)
                .all(|(a, b)| (a - b).abs() <= 2e-3 * a.abs().max(1.0)),
            "{h:?}"
        );
        let q = decode(Quantization::I8, &encode(Quantization::I8, &v));
        let cos = crate::index::score(Metric::Cosine, &v, &q);
        assert!(cos > 0.999, "i8 keeps the direction: cosine {cos}");
        for kind in [Quantization::F32, Quantization::F16, Quantization::I8] {
            assert_eq!(encode(kind, &v).len(), stored_len(kind, v.len()));
        }
        assert!(check_pairing(Metric::L2, Quantization::I8).is_err());
        assert!(check_pairing(Metric::Cosine, Quantization::I8).is_ok());
    }
}
