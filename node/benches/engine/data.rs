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

/// Base vectors (train) and queries (t10k), as the u8 pixels the files hold.
pub struct Dataset {
    pub dim: usize,
    pub base: Vec<u8>,
    pub labels: Vec<u8>,
    pub queries: Vec<u8>,
}

impl Dataset {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn queries_len(&self) -> usize {
        self.queries.len() / self.dim
    }

    pub fn row(&self, i: usize) -> &[u8] {
        &self.base[i * self.dim..(i + 1) * self.dim]
    }

    pub fn query(&self, i: usize) -> &[u8] {
        &self.queries[i * self.dim..(i + 1) * self.dim]
    }

    /// Every query as f32.
    pub fn queries_f32(&self) -> Vec<Vec<f32>> {
        (0..self.queries_len())
            .map(|i| to_f32(self.query(i)))
            .collect()
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
        dim,
        base,
        labels,
        queries: test,
    })
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

/// Exact distances from the u8 pixels: squared L2 in integers (no rounding at all), or
/// 1 - cosine from integer dot products.
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

impl<'a> Exact<'a> {
    pub fn new(data: &'a Dataset, measure: Measure) -> Self {
        let norms = match measure {
            Measure::L2 => Vec::new(),
            Measure::Cosine => (0..data.len())
                .map(|i| f64::from(dot_u8(data.row(i), data.row(i))).sqrt())
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
        let (query, row) = (self.data.query(q), self.data.row(i));
        match self.measure {
            Measure::L2 => f64::from(l2_u8(query, row)),
            Measure::Cosine => {
                let nq = f64::from(dot_u8(query, query)).sqrt();
                let denom = nq * self.norms[i];
                if denom == 0.0 {
                    1.0
                } else {
                    1.0 - f64::from(dot_u8(query, row)) / denom
                }
            }
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
            name: "50% by id (id % 10 < 5)",
            json: r#"{"must": [{"key": "id_mod10", "range": {"lt": 5}}]}"#,
            accepts: |id, _| id % 10 < 5,
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
        let pixels = data.row(i);
        for (d, out) in base[i * dim..(i + 1) * dim].iter_mut().enumerate() {
            let row = &projection[d * data.dim..(d + 1) * data.dim];
            *out = row
                .iter()
                .zip(pixels)
                .map(|(w, &p)| w * p as f32)
                .sum::<f32>()
                / 255.0;
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
