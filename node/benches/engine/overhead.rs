//! `--overhead ROUNDS`: the cost of a collection around its own graph (issue #20, "Per-query
//! overhead"), measured apart from the rest of the bench.
//!
//! The sweep's column "ipvec/its graph" compares the fastest of a few passes of each, and on a
//! guest whose speed moves between seconds one lucky pass decides it (in one run the codes
//! collection read 0.86 at ef 16, and 1.24 at ef 512). Here the collection and its own index
//! searched directly take many passes in turns, the first of each pair alternating, and the
//! ratio is taken four ways: over the summed times of every pass, as the median of the
//! rounds' ratios, of the fastest passes, and over the summed CPU times (equal to the wall
//! times' when the difference is work, not waiting).

use anyhow::Result;
use ipvec_protocol::manifest::Quantization;

use crate::{
    data::Dataset,
    engines::{self, Coll, Pass},
};

/// The ef values measured.
const EFS: [usize; 3] = [16, 64, 256];

/// Writes an f32 collection and one on codes, then measures each against its graph.
pub async fn run(data: &Dataset, dir: &std::path::Path, rounds: usize) -> Result<()> {
    let queries = data.queries_f32();
    println!(
        "\n## A collection against its own graph ({rounds} rounds in turns, {} queries a pass)\n",
        queries.len()
    );
    println!("| collection | ef | collection QPS (median) | graph QPS (median) | summed times | median of rounds | fastest passes | summed CPU times |");
    println!("| --- | --: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for (name, codes) in [("f32", false), ("codes", true)] {
        let (_store, mut collection) = engines::create(
            &dir.join(name),
            data.dim,
            data.measure,
            Quantization::F32,
            1,
            codes,
        )
        .await?;
        engines::upsert_all(&mut collection, data).await?;
        engines::checkpoint(&mut collection).await?;
        // Warm both paths, and let a graph on codes lay itself out for its walk.
        engines::search_ipvec(&collection, &queries, 64, None).await?;
        engines::search_raw(collection.hnsw(), &queries, 64)?;
        for ef in EFS {
            let rounds = measure(&collection, &queries, ef, rounds).await?;
            println!("{}", rounds.row(name, ef));
        }
    }
    Ok(())
}

/// Both paths' passes, round by round.
struct Rounds {
    collection: Vec<f64>,
    graph: Vec<f64>,
    /// CPU seconds of every pass, summed: (collection, graph).
    cpu: (f64, f64),
    queries: usize,
}

async fn measure(
    collection: &Coll,
    queries: &[Vec<f32>],
    ef: usize,
    rounds: usize,
) -> Result<Rounds> {
    let mut measured = Rounds {
        collection: Vec::with_capacity(rounds),
        graph: Vec::with_capacity(rounds),
        cpu: (0.0, 0.0),
        queries: queries.len(),
    };
    for round in 0..rounds {
        let (c, g): (Pass, Pass) = if round % 2 == 0 {
            let c = engines::search_ipvec(collection, queries, ef, None).await?;
            (c, engines::search_raw(collection.hnsw(), queries, ef)?)
        } else {
            let g = engines::search_raw(collection.hnsw(), queries, ef)?;
            (
                engines::search_ipvec(collection, queries, ef, None).await?,
                g,
            )
        };
        measured.collection.push(c.timing.secs());
        measured.graph.push(g.timing.secs());
        measured.cpu.0 += c.timing.cpu;
        measured.cpu.1 += g.timing.cpu;
    }
    Ok(measured)
}

impl Rounds {
    /// A table row: median QPS, and the collection's speed as a share of its graph's four ways.
    fn row(&self, name: &str, ef: usize) -> String {
        let sum = |v: &[f64]| v.iter().sum::<f64>();
        let min = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
        let ratios: Vec<f64> = self
            .collection
            .iter()
            .zip(&self.graph)
            .map(|(c, g)| g / c)
            .collect();
        let qps = |v: &[f64]| self.queries as f64 / median(v);
        format!(
            "| {name} | {ef} | {:.0} | {:.0} | {:.3} | {:.3} | {:.3} | {:.3} |",
            qps(&self.collection),
            qps(&self.graph),
            sum(&self.graph) / sum(&self.collection),
            median(&ratios),
            min(&self.graph) / min(&self.collection),
            self.cpu.1 / self.cpu.0,
        )
    }
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}
