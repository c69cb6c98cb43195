//! `ipvec search`: one question in words (a text collection's), one vector (`--vector`), or
//! every row of a query file (`--query-file`),
//! sent [`QUERIES_PER_BATCH`] to a request in compact form (`vector_b64`), each answer
//! printed as it comes.

use std::path::Path;

use anyhow::{bail, Context};

use super::{
    backend::Backend,
    input,
    output::{progress_bar, write_line, write_stdout, Output},
    Command,
};
use crate::api::types::{BatchQuery, BatchSearchRequest, Coverage, SearchRequest, SearchResponse};

/// Queries per batch request of `--query-file`: a few hundred make the per-request cost
/// (a round trip, a hand-off to the blocking pool, the read lock) vanish, while one
/// request of 784-d vectors stays around a megabyte.
pub const QUERIES_PER_BATCH: usize = 256;

/// Runs `ipvec search`.
pub async fn run(backend: &Backend, out: &Output, command: Command) -> anyhow::Result<()> {
    let Command::Search {
        name,
        text,
        vector,
        query_file,
        k,
        ef,
        exact,
        at,
        filter,
        federated,
        verify,
        deadline_ms,
        min_coverage,
    } = command
    else {
        bail!("not a search command");
    };
    let filter = filter
        .map(|f| {
            serde_json::from_str::<serde_json::Value>(&f)
                .with_context(|| format!("--filter is not valid JSON: {f}"))
        })
        .transpose()?;
    let options = SearchRequest {
        k,
        ef,
        exact,
        filter,
        at,
        deadline_ms,
        federated,
        verify,
        min_coverage,
        ..SearchRequest::new(Vec::new())
    };
    let one = match (text, vector) {
        (Some(text), None) => Some(SearchRequest {
            text: Some(text),
            ..options.clone()
        }),
        (None, Some(v)) => Some(SearchRequest {
            vector: parse_vector(&v)?,
            ..options.clone()
        }),
        _ => None,
    };
    match (one, query_file) {
        (Some(request), None) => {
            let response = backend
                .ops()
                .search(&name, request)
                .await
                .context("query 0")?;
            print_answer(out, 0, false, &response)
        }
        (None, Some(file)) => search_file(backend, out, &name, &file, &options).await,
        _ => bail!(
            "give exactly one of a question (text collections), --vector \"0.1,0.2,…\" or \
             --query-file FILE (.npy or .fvecs)"
        ),
    }
}

fn parse_vector(text: &str) -> anyhow::Result<Vec<f32>> {
    text.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<f32>()
                .with_context(|| format!("{s:?} in --vector is not a number"))
        })
        .collect()
}

/// Searches every row of `file` with `options`, in batches, printing each answer in order;
/// a progress bar on a terminal when there is more than one batch.
async fn search_file(
    backend: &Backend,
    out: &Output,
    name: &str,
    file: &Path,
    options: &SearchRequest,
) -> anyhow::Result<()> {
    let queries = input::read_matrix(file)?;
    let many = queries.len() > 1;
    let bar = progress_bar(Some(queries.len() as u64), "searching");
    if queries.len() > QUERIES_PER_BATCH {
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{msg} [{bar:30}] {pos}/{len} queries ({per_sec}, {eta})",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
    } else {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let searched = async {
        for (n, chunk) in queries.chunks(QUERIES_PER_BATCH).enumerate() {
            let first = n * QUERIES_PER_BATCH;
            let batch = chunk.iter().map(|q| BatchQuery::compact(q)).collect();
            let request = BatchSearchRequest::with_options(batch, options);
            let answers = backend
                .ops()
                .search_batch(name, request)
                .await
                .with_context(|| {
                    format!(
                        "the batch of queries {first}..{} of {}",
                        first + chunk.len(),
                        file.display()
                    )
                })?;
            if answers.results.len() != chunk.len() {
                bail!(
                    "the batch of queries {first}..{} got {} answers",
                    first + chunk.len(),
                    answers.results.len()
                );
            }
            for (i, response) in answers.results.iter().enumerate() {
                bar.suspend(|| print_answer(out, first + i, many, response))?;
            }
            bar.inc(chunk.len() as u64);
        }
        anyhow::Ok(())
    }
    .await;
    bar.finish_and_clear();
    searched
}

/// Prints the answer to query `i` (as JSON, or as `id score` lines under `# query i` when
/// there are `many`); the first notes on stderr when only some shards were searched.
fn print_answer(
    out: &Output,
    i: usize,
    many: bool,
    response: &SearchResponse,
) -> anyhow::Result<()> {
    if out.json {
        return write_line(super::collection::to_json(response).to_string());
    }
    if let Some(coverage) = response
        .coverage
        .as_ref()
        .filter(|c| !c.complete && c.report.is_empty())
    {
        if i == 0 {
            eprintln!(
                "note: searched shards {} of {}; this node holds only those",
                crate::collection::list_shards(&coverage.searched),
                coverage.shards
            );
        }
    }
    let mut text = String::new();
    if many {
        text += &format!("# query {i}\n");
    }
    for h in &response.hits {
        text += &format!("{} {}\n", h.id.spelled(), h.score);
    }
    if let Some(coverage) = response.coverage.as_ref() {
        if !coverage.report.is_empty() {
            text += &coverage_line(coverage);
        }
    }
    write_stdout(text.as_bytes())
}

/// A federated search's coverage in one line: `# coverage 7/8 shards; missing: shard 3 (…)`.
fn coverage_line(coverage: &Coverage) -> String {
    let mut line = format!(
        "# coverage {}/{} shards",
        coverage.searched.len(),
        coverage.shards
    );
    let hedged = coverage.report.iter().filter(|s| s.hedged).count();
    if hedged > 0 {
        line += &format!(", {hedged} hedged");
    }
    let missing = coverage.missing();
    if !missing.is_empty() {
        line += &format!("; missing: {}", missing.join(", "));
    }
    line + "\n"
}
