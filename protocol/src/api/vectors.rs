//! Vectors in compact form: `vector_b64`, the base64 (standard alphabet, padding optional)
//! of the vector's components as little-endian IEEE 754 f32, four bytes each. A 784-d vector
//! is 4,184 characters this way against about 8,000 as JSON numbers, and reading it back
//! parses no decimal text.

use base64::{
    alphabet,
    engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig},
    Engine,
};

/// Standard alphabet; written with padding, read with or without it.
const B64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Why a request's vector cannot be read. Its dimension and finiteness are checked later,
/// against the collection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VectorError {
    /// `vector_b64` is not base64.
    #[error(
        "vector_b64 is not valid base64 ({0}); send the base64 (standard alphabet, RFC 4648 \
         section 4) of the components as little-endian f32"
    )]
    Base64(String),
    /// `vector_b64` decodes to a length that is not a whole number of f32s.
    #[error(
        "vector_b64 decodes to {0} bytes, not a multiple of 4: each component is one \
         little-endian f32 of 4 bytes"
    )]
    Length(usize),
    /// Both `vector` and `vector_b64` are given.
    #[error(
        "give the vector once: as `vector` (numbers), as `vector_b64` or as `text` (text \
         collections), not two of them"
    )]
    Both,
    /// Neither is given.
    #[error(
        "no vector: give `vector` (numbers), `vector_b64` (base64 of little-endian f32) or, \
         in a text collection, `text`"
    )]
    Missing,
}

/// `vector` as `vector_b64`.
pub fn encode_b64(vector: &[f32]) -> String {
    let bytes: Vec<u8> = vector.iter().flat_map(|x| x.to_le_bytes()).collect();
    B64.encode(bytes)
}

/// The vector a `vector_b64` holds. NaN and infinities are read as they are (the search
/// refuses them, naming the component).
pub fn decode_b64(text: &str) -> Result<Vec<f32>, VectorError> {
    let bytes = B64
        .decode(text)
        .map_err(|e| VectorError::Base64(e.to_string()))?;
    if bytes.len() % 4 != 0 {
        return Err(VectorError::Length(bytes.len()));
    }
    Ok(bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

/// The one vector a request gives, as numbers (`vector`, empty when left out) or in
/// compact form (`vector_b64`).
pub fn vector_of(vector: Vec<f32>, b64: Option<&str>) -> Result<Vec<f32>, VectorError> {
    match (vector.is_empty(), b64) {
        (true, Some(text)) => decode_b64(text),
        (false, Some(_)) => Err(VectorError::Both),
        (false, None) => Ok(vector),
        (true, None) => Err(VectorError::Missing),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn known_bytes() {
        // 1.0 = 00 00 80 3f, -2.0 = 00 00 00 c0 (little-endian).
        assert_eq!(encode_b64(&[1.0, -2.0]), "AACAPwAAAMA=");
        assert_eq!(decode_b64("AACAPwAAAMA=").unwrap(), [1.0, -2.0]);
        assert_eq!(decode_b64("AACAPwAAAMA").unwrap(), [1.0, -2.0], "unpadded");
        assert_eq!(decode_b64("").unwrap(), Vec::<f32>::new());
    }

    #[test]
    fn bad_input_says_what_is_wrong() {
        assert!(matches!(
            decode_b64("AAC*PwAA"),
            Err(VectorError::Base64(_))
        ));
        assert!(matches!(decode_b64("A"), Err(VectorError::Base64(_))));
        // Six bytes: one f32 and a half.
        assert_eq!(decode_b64("AACAPwAA"), Err(VectorError::Length(6)));
        let nan = encode_b64(&[f32::NAN]);
        assert!(
            decode_b64(&nan).unwrap()[0].is_nan(),
            "NaN is the search's to refuse"
        );
        assert_eq!(
            vector_of(vec![1.0], Some("AACAPw==")),
            Err(VectorError::Both)
        );
        assert_eq!(vector_of(vec![], None), Err(VectorError::Missing));
        assert_eq!(vector_of(vec![], Some("AACAPw==")).unwrap(), [1.0]);
        assert_eq!(vector_of(vec![3.0], None).unwrap(), [3.0]);
    }

    proptest! {
        /// Every f32 bit pattern survives the round trip, NaN payloads included.
        #[test]
        fn round_trip_keeps_every_bit(bits in proptest::collection::vec(any::<u32>(), 0..64)) {
            let vector: Vec<f32> = bits.iter().map(|b| f32::from_bits(*b)).collect();
            let back = decode_b64(&encode_b64(&vector)).unwrap();
            let back: Vec<u32> = back.iter().map(|x| x.to_bits()).collect();
            prop_assert_eq!(back, bits);
        }
    }
}
