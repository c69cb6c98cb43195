//! Searches of some of the held shards (`--shards N`, N > 1): what a peer's federated request
//! naming shards costs. The one index of the held shards lets only their points through; the
//! alternative it replaces is an index of each shard's own, measured here by building one for
//! shard 0 beside it. Recall is against the exact answer among the same shards.

use anyhow::{Context, Result};
use ipvec_node::{
    collection::SearchOptions,
    index::{HnswRuntime, VectorIndex},
};
use ipvec_protocol::{entry::EntryId, manifest::shard_of};

use crate::{
    data::{Dataset, Measure, K},
    engines::{self, Coll, Pass},
    util::Stopwatch,
};

/// The ef values of the subset sweep.
const EFS: [usize; 4] = [16, 32, 64, 128];

/// Ids of each query's hits.
fn ids(hits: &[ipvec_node::collection::SearchHit]) -> Vec<u64> {
    hits.iter()
        .filter_map(|h| match h.id {
            EntryId::Int(n) => Some(n),
            _ => None,
        })
        .collect()
}

async fn pass(
    collection: &Coll,
    queries: &[Vec<f32>],
    options: SearchOptions,
    shards: &[u32],
) -> Result<Pass> {
    let mut out = Vec::with_capacity(queries.len());
    let watch = Stopwatch::start();
    for q in queries {
        out.push(ids(&collection
            .search_shards(q, options, None, Some(shards))
            .await?));
    }
    Ok(Pass {
        timing: watch.stop(),
        ids: out,
    })
}

fn recall(found: &[Vec<u64>], truth: &[Vec<u64>]) -> f64 {
    let hit: usize = found
        .iter()
        .zip(truth)
        .map(|(f, t)| f.iter().filter(|id| t.contains(id)).count())
        .sum();
    hit as f64 / (truth.len() * K) as f64
}

/// Prints recall@10 and QPS of searches of shard 0 and of the first half of the shards, and
/// of shard 0's points in an index of their own.
pub async fn run(
    collection: &Coll,
    data: &Dataset,
    queries: &[Vec<f32>],
    shards: u32,
) -> Result<()> {
    println!("search: some of the shards …");
    let exact = SearchOptions {
        k: K,
        ef: None,
        exact: true,
    };
    let half: Vec<u32> = (0..shards / 2).collect();
    let mut lines = Vec::new();
    for subset in [vec![0u32], half] {
        let truth = pass(collection, queries, exact, &subset).await?.ids;
        for ef in EFS {
            let options = SearchOptions {
                k: K,
                ef: Some(ef),
                exact: false,
            };
            let mut best: Option<Pass> = None;
            for _ in 0..engines::REPEATS {
                let p = pass(collection, queries, options, &subset).await?;
                if best.as_ref().is_none_or(|b| p.timing.wall < b.timing.wall) {
                    best = Some(p);
                }
            }
            let best = best.context("REPEATS is at least one pass")?;
            lines.push(format!(
                "| shards {:?} of {shards}, one index + restriction | {ef} | {:.4} | {:.0} |",
                subset,
                recall(&best.ids, &truth),
                best.qps()
            ));
        }
        if subset.len() == 1 {
            // Shard 0's points in an index of their own, as each shard had before.
            let mut own = engines::raw_index(
                data.dim,
                Measure::L2,
                ipvec_protocol::manifest::Quantization::F32,
                HnswRuntime::default(),
            )?;
            let mut mine = Vec::new();
            for i in 0..data.len() {
                if shard_of(&EntryId::Int(i as u64).to_key()?, shards) == 0 {
                    mine.push(i);
                }
            }
            own.reserve(mine.len())?;
            let watch = Stopwatch::start();
            for &i in &mine {
                own.upsert(i as u64, &data.vector(i))?;
            }
            let built = watch.stop().secs();
            for ef in EFS {
                let p = engines::search_raw_best(&own, queries, ef)?;
                lines.push(format!(
                    "| shard 0 of {shards}, an index of its own | {ef} | {:.4} | {:.0} |",
                    recall(&p.ids, &truth),
                    p.qps()
                ));
            }
            println!(
                "shard 0 alone: {} points, index of its own {:.1} MB (built in {:.1} s); the one index of all {shards} shards {:.1} MB",
                mine.len(),
                own.memory_bytes() as f64 / 1e6,
                built,
                collection.index_memory() as f64 / 1e6
            );
        }
    }
    println!("\n| search | ef | recall@10 | QPS |\n| --- | --: | --: | --: |");
    for line in lines {
        println!("{line}");
    }
    println!();
    Ok(())
}
