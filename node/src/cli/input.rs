//! Reading points from files: `.npy` (2-D float32/float64), `.fvecs`, and `.jsonl`.

use std::path::Path;

use anyhow::{anyhow, bail, Context};

use crate::{
    api::types::{PointId, PointIn},
    ops::points::parse_point_id,
};

/// Vectors from a `.npy` or `.fvecs` file.
pub fn read_matrix(path: &Path) -> anyhow::Result<Vec<Vec<f32>>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    match path.extension().and_then(|e| e.to_str()) {
        Some("npy") => parse_npy(&bytes)
            .with_context(|| format!("{} is not a 2-D float .npy file", path.display())),
        Some("fvecs") => parse_fvecs(&bytes)
            .with_context(|| format!("{} is not a valid .fvecs file", path.display())),
        _ => bail!("{}: use a .npy, .fvecs or .jsonl file", path.display()),
    }
}

fn parse_npy(bytes: &[u8]) -> anyhow::Result<Vec<Vec<f32>>> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        bail!("missing the NUMPY magic");
    }
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 => {
            if bytes.len() < 12 {
                bail!("truncated header");
            }
            (
                u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
                12,
            )
        }
        v => bail!("unknown .npy version {v}"),
    };
    let header = std::str::from_utf8(
        bytes
            .get(start..start + header_len)
            .ok_or_else(|| anyhow!("truncated header"))?,
    )?;
    let descr = field(header, "descr")?;
    let width = match descr.trim_matches(|c| c == '\'' || c == '"') {
        "<f4" => 4,
        "<f8" => 8,
        other => bail!("dtype {other} is not supported; save the array as float32"),
    };
    if field(header, "fortran_order")?.trim() != "False" {
        bail!("Fortran-ordered arrays are not supported; save with np.ascontiguousarray");
    }
    let shape = field(header, "shape")?;
    let dims: Vec<usize> = shape
        .trim_matches(|c| c == '(' || c == ')')
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().parse::<usize>())
        .collect::<Result<_, _>>()?;
    let [rows, cols] = dims[..] else {
        bail!("the array must be 2-D (rows × dimension), got shape {shape}")
    };
    let data = &bytes[start + header_len..];
    if data.len() != rows * cols * width {
        bail!(
            "data is {} bytes, shape {shape} needs {}",
            data.len(),
            rows * cols * width
        );
    }
    Ok(data
        .chunks_exact(cols * width)
        .map(|row| match width {
            4 => row
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            _ => row
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8])) as f32)
                .collect(),
        })
        .collect())
}

/// The text after `'key':` in a .npy header dict, up to the next top-level comma.
fn field<'a>(header: &'a str, key: &str) -> anyhow::Result<&'a str> {
    let at = header
        .find(&format!("'{key}'"))
        .ok_or_else(|| anyhow!("header has no {key}"))?;
    let rest = &header[at + key.len() + 2..];
    let rest = rest
        .trim_start()
        .strip_prefix(':')
        .ok_or_else(|| anyhow!("bad header near {key}"))?
        .trim_start();
    let end = if rest.starts_with('(') {
        rest.find(')').map(|i| i + 1)
    } else {
        rest.find([',', '}'])
    };
    Ok(&rest[..end.unwrap_or(rest.len())])
}

fn parse_fvecs(bytes: &[u8]) -> anyhow::Result<Vec<Vec<f32>>> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let dim_bytes = bytes
            .get(at..at + 4)
            .ok_or_else(|| anyhow!("truncated at byte {at}"))?;
        let dim = i32::from_le_bytes([dim_bytes[0], dim_bytes[1], dim_bytes[2], dim_bytes[3]]);
        if dim <= 0 {
            bail!("vector {} has dimension {dim}", out.len());
        }
        let body = bytes
            .get(at + 4..at + 4 + 4 * dim as usize)
            .ok_or_else(|| anyhow!("vector {} is truncated", out.len()))?;
        out.push(
            body.chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        );
        at += 4 + 4 * dim as usize;
    }
    Ok(out)
}

/// Points from a `.jsonl` file (`{"id": …, "vector": […], "metadata": {…}}` a line; in a
/// text collection `"text": "…"` instead of the vector, and the id may be left out: see
/// [`PointId::of_text`]), each with its 1-based line number.
pub fn read_jsonl(path: &Path) -> anyhow::Result<Vec<(usize, PointIn)>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut points = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = || format!("{} line {}", path.display(), i + 1);
        let value: serde_json::Value =
            serde_json::from_str(line).with_context(|| format!("{}: not valid JSON", at()))?;
        let text = match value.get("text") {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(text)) => Some(text.clone()),
            Some(_) => bail!("{}: \"text\" must be a string", at()),
        };
        let id = match (&value["id"], &text) {
            (serde_json::Value::Number(n), _) => PointId::Int(
                n.as_u64()
                    .ok_or_else(|| anyhow!("{}: integer ids must be unsigned", at()))?,
            ),
            (serde_json::Value::String(s), _) => PointId::Str(s.clone()),
            (serde_json::Value::Null, Some(text)) => PointId::of_text(text),
            _ => bail!("{}: \"id\" must be an unsigned integer or a string", at()),
        };
        let vector = match (value.get("vector"), &text) {
            (None, Some(_)) => Vec::new(),
            (vector, _) => vector
                .and_then(|v| v.as_array())
                .ok_or_else(|| {
                    anyhow!(
                        "{}: \"vector\" must be an array of numbers (or, in a text \
                         collection, give \"text\")",
                        at()
                    )
                })?
                .iter()
                .map(|x| x.as_f64().map(|f| f as f32))
                .collect::<Option<Vec<f32>>>()
                .ok_or_else(|| anyhow!("{}: \"vector\" must hold only numbers", at()))?,
        };
        let metadata = match value.get("metadata") {
            None | Some(serde_json::Value::Null) => None,
            Some(m @ serde_json::Value::Object(_)) => Some(m.clone()),
            Some(_) => bail!("{}: \"metadata\" must be a JSON object", at()),
        };
        points.push((
            i + 1,
            PointIn {
                id,
                vector,
                text,
                metadata,
            },
        ));
    }
    Ok(points)
}

/// Ids from a text file, one a line, spelled as on the command line (`"42"` is a string id).
pub fn read_ids(path: &Path) -> anyhow::Result<Vec<PointId>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            parse_point_id(l.trim()).with_context(|| format!("{} line {}", path.display(), i + 1))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn npy(descr: &str, shape: &str, data: &[u8]) -> Vec<u8> {
        let mut header =
            format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
        while (10 + header.len() + 1) % 64 != 0 {
            header.push(' ');
        }
        header.push('\n');
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend_from_slice(&(header.len() as u16).to_le_bytes());
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(data);
        out
    }

    #[test]
    fn reads_npy_and_fvecs() {
        let data: Vec<u8> = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]
            .iter()
            .flat_map(|f| f.to_le_bytes())
            .collect();
        let m = parse_npy(&npy("<f4", "(2, 3)", &data)).unwrap();
        assert_eq!(m, vec![vec![1.0, 2.0, 3.0], vec![4.0, 5.0, 6.0]]);
        assert!(
            parse_npy(&npy("<f4", "(6,)", &data)).is_err(),
            "1-D is refused"
        );
        assert!(parse_npy(&npy("<i4", "(2, 3)", &data)).is_err());
        assert!(
            parse_npy(&npy("<f4", "(3, 3)", &data)).is_err(),
            "size mismatch"
        );
        let mut fvecs = Vec::new();
        for row in &m {
            fvecs.extend_from_slice(&3i32.to_le_bytes());
            fvecs.extend(row.iter().flat_map(|f| f.to_le_bytes()));
        }
        assert_eq!(parse_fvecs(&fvecs).unwrap(), m);
        assert!(parse_fvecs(&fvecs[..fvecs.len() - 2]).is_err());
    }

    #[test]
    fn ids_read_as_typed_and_spelled_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ids.txt");
        std::fs::write(&path, "42\n\"42\"\ndoc-7\n\"\\\"q\\\"\"\n\n007\n").unwrap();
        let ids = read_ids(&path).unwrap();
        let string = |s: &str| PointId::Str(s.to_string());
        assert_eq!(
            ids,
            [
                PointId::Int(42),
                string("42"),
                string("doc-7"),
                string("\"q\""),
                PointId::Int(7)
            ]
        );
        for id in &ids {
            assert_eq!(&parse_point_id(&id.spelled()).unwrap(), id, "{id:?}");
        }
        assert_eq!(ids[1].spelled(), "\"42\"");
        std::fs::write(&path, "1\n\"2\n").unwrap();
        let err = format!("{:#}", read_ids(&path).unwrap_err());
        assert!(
            err.contains("line 2") && err.contains("not a JSON string"),
            "{err}"
        );
    }
}
