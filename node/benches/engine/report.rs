//! The bench's tables.

use crate::{
    baselines::LibResult,
    data::{self, Exact, Truth},
    engines::{Pass, EF_CONSTRUCTION, M},
    memory::{self, MemoryRow},
    util::{mb_from_kb, print_table, thousands, Timing},
};

/// Prints the machine and the settings.
pub fn machine(data: &data::Dataset, queries: usize) {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "# ipvec engine benchmark ({}, {:?})",
        data.name, data.measure
    );
    println!("machine: {cpu}, {cores} cores; every engine single-threaded");
    println!(
        "HNSW: M = {M}, ef_construction = {EF_CONSTRUCTION}; k = {}; queries = {queries}",
        data::K
    );
}

pub struct IngestRow {
    pub name: String,
    pub secs: f64,
    pub rate: f64,
    /// CPU time over wall time (None when measured in another process).
    pub cores: Option<f64>,
}

impl IngestRow {
    pub fn new(name: &str, timing: Timing, n: usize) -> Self {
        Self {
            name: name.into(),
            secs: timing.secs(),
            rate: n as f64 / timing.secs(),
            cores: Some(timing.cores()),
        }
    }

    pub fn external(name: &str, secs: f64, n: usize) -> Self {
        Self {
            name: name.into(),
            secs,
            rate: n as f64 / secs,
            cores: None,
        }
    }
}

pub fn ingest(rows: &[IngestRow], n: usize) {
    println!("\n## Ingest ({n} vectors, f32)\n");
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.name.clone(),
                format!("{:.2}", r.secs),
                thousands(r.rate),
                r.cores.map_or("–".into(), |c| format!("{c:.2}")),
            ]
        })
        .collect();
    print_table(
        &["engine / phase", "seconds", "vectors/s", "CPU cores used"],
        &table,
    );
    let find = |prefix: &str| rows.iter().find(|r| r.name.starts_with(prefix));
    if let (Some(total), Some(upserts), Some(raw)) = (
        find("ipvec total"),
        find("ipvec upserts"),
        find("usearch raw"),
    ) {
        println!(
            "\nratio ipvec/raw (vectors/s): {:.3} with the checkpoint, {:.3} upserts only (goal ≥ 0.8)",
            total.rate / raw.rate,
            upserts.rate / raw.rate
        );
    }
}

/// Recall of a collection written with its graph inserts on every core.
pub struct CoresRecall {
    pub codes: bool,
    pub ef: usize,
    pub quality: Quality,
}

/// Writes with graph inserts on every core against one thread (issue #20's goal: ≥ 1.7× on
/// two cores), and the recall of the graphs they built against the one-thread collections'.
pub fn on_cores(rows: &[IngestRow], recalls: &[CoresRecall], search: &[SearchRow]) {
    if recalls.is_empty() {
        return;
    }
    println!("\n## Writes with graph inserts on every core (`storage.write_threads`)\n");
    let rate = |name: &str| rows.iter().find(|r| r.name == name).map(|r| r.rate);
    let find = |prefix: &str| rows.iter().find(|r| r.name.starts_with(prefix));
    let baseline = rows
        .iter()
        .filter(|r| r.name.ends_with("(Python)"))
        .map(|r| r.rate)
        .fold(None, |best: Option<f64>, r| {
            Some(best.map_or(r, |b| b.max(r)))
        });
    let mut table = Vec::new();
    for (one_upserts, one_total, prefix) in [
        (
            "ipvec upserts (WAL fsync + index)",
            "ipvec total",
            "ipvec, ",
        ),
        (
            "ipvec on codes, upserts",
            "ipvec on codes, total",
            "ipvec on codes, ",
        ),
    ] {
        for (one, what) in [(one_upserts, "upserts"), (one_total, "total")] {
            let Some(many) = find(&format!("{prefix}{what} on ")) else {
                continue;
            };
            let Some(one) = rate(one) else { continue };
            table.push(vec![
                many.name.clone(),
                thousands(one),
                thousands(many.rate),
                format!("{:.2}×", many.rate / one),
                baseline.map_or("–".into(), |b| format!("{:.2}×", many.rate / b)),
            ]);
        }
    }
    print_table(
        &[
            "writes",
            "one thread, vectors/s",
            "every core, vectors/s",
            "every core / one",
            "every core / faster baseline",
        ],
        &table,
    );
    println!();
    let table: Vec<Vec<String>> = recalls
        .iter()
        .map(|r| {
            let one = search
                .iter()
                .find(|row| row.ef == r.ef)
                .and_then(|row| match r.codes {
                    false => Some(row.ipvec),
                    true => row.codes,
                });
            let [one_recall, one_qps] = Quality::cells(one);
            vec![
                match r.codes {
                    false => "ipvec".into(),
                    true => "ipvec on codes".into(),
                },
                r.ef.to_string(),
                one_recall,
                format!("{:.4}", r.quality.recall),
                one_qps,
                thousands(r.quality.qps),
            ]
        })
        .collect();
    print_table(
        &[
            "collection",
            "ef",
            "recall, written on one thread",
            "recall, written on every core",
            "QPS, written on one thread",
            "QPS, written on every core",
        ],
        &table,
    );
}

#[derive(Debug, Clone, Copy)]
pub struct Quality {
    pub recall: f64,
    pub qps: f64,
}

impl Quality {
    pub fn of(exact: &Exact, truth: &Truth, ids: &[Vec<u64>], qps: f64) -> Self {
        Self {
            recall: data::recall(exact, truth, ids),
            qps,
        }
    }

    fn cells(q: Option<Quality>) -> [String; 2] {
        match q {
            Some(q) => [format!("{:.4}", q.recall), thousands(q.qps)],
            None => ["–".into(), "–".into()],
        }
    }
}

pub struct SearchRow {
    pub ef: usize,
    pub ipvec: Quality,
    pub raw: Quality,
    /// QPS of the collection's own HNSW index searched directly (the same answers as `ipvec`).
    pub own_graph: f64,
    /// Raw usearch with its own f32 kernel instead of ipvec's.
    pub raw_own_kernel: Option<Quality>,
    /// ipvec's collection whose graph walks on one-byte codes.
    pub codes: Option<Quality>,
    /// Raw usearch (the HnswIndex wrapper) walking on codes.
    pub raw_codes: Option<Quality>,
    /// The same raw index on codes searched by ipvec's own walk of its graph.
    pub raw_codes_own_walk: Option<Quality>,
    /// QPS of the codes collection's own HNSW index searched directly.
    pub codes_own_graph: Option<f64>,
    pub faiss: Option<Quality>,
    pub hnswlib: Option<Quality>,
}

pub fn search(rows: &[SearchRow], kernel: &str) {
    println!(
        "\n## Search: recall@10 and QPS (one thread; fastest of {} passes over the queries)\n",
        crate::engines::REPEATS
    );
    println!(
        "ipvec and usearch: {kernel} f32 kernel; usearch NK: the same index with usearch's own \
         (NumKong) kernel. usearch is an index built beside the collection; \"its graph\" is \
         the collection's own index searched directly, so ipvec/its graph is the cost of the \
         collection around the same graph. \"usearch codes\" is usearch's graph on codes \
         searched by usearch's walk; \"codes, own walk\" the same graph by ipvec's.\n"
    );
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let mut cells = vec![r.ef.to_string()];
            for q in [
                Some(r.ipvec),
                r.codes,
                Some(r.raw),
                r.raw_codes,
                r.raw_codes_own_walk,
                r.raw_own_kernel,
                r.faiss,
                r.hnswlib,
            ] {
                cells.extend(Quality::cells(q));
            }
            cells.push(format!("{:.2}", r.ipvec.qps / r.raw.qps));
            cells.push(match (r.codes, r.raw_codes) {
                (Some(c), Some(raw)) => format!("{:.2}", c.qps / raw.qps),
                _ => "–".into(),
            });
            cells.push(format!("{:.2}", r.ipvec.qps / r.own_graph));
            cells.push(match (r.codes, r.codes_own_graph) {
                (Some(c), Some(own)) => format!("{:.2}", c.qps / own),
                _ => "–".into(),
            });
            cells
        })
        .collect();
    print_table(
        &[
            "ef",
            "ipvec recall",
            "ipvec QPS",
            "ipvec codes recall",
            "ipvec codes QPS",
            "usearch recall",
            "usearch QPS",
            "usearch codes recall",
            "usearch codes QPS",
            "codes, own walk recall",
            "codes, own walk QPS",
            "usearch NK recall",
            "usearch NK QPS",
            "faiss recall",
            "faiss QPS",
            "hnswlib recall",
            "hnswlib QPS",
            "ipvec/usearch QPS",
            "codes: ipvec/usearch QPS",
            "ipvec/its graph QPS",
            "codes: ipvec/its graph QPS",
        ],
        &table,
    );
}

/// One engine's numbers in a row of the sweep.
type Column = fn(&SearchRow) -> Option<Quality>;

/// Issue #20's goal 1: at recall@10 ≥ 0.95 and ≥ 0.99, each engine's best QPS over the sweep
/// (at any ef that reaches the recall), and ipvec's against the better baseline.
pub fn search_goal(rows: &[SearchRow]) {
    println!("\n## Search at equal recall (best QPS at any ef reaching the recall)\n");
    let engines: [(&str, Column); 7] = [
        ("ipvec", |r| Some(r.ipvec)),
        ("ipvec codes", |r| r.codes),
        ("usearch raw", |r| Some(r.raw)),
        ("usearch raw codes", |r| r.raw_codes),
        ("raw codes, own walk", |r| r.raw_codes_own_walk),
        ("faiss", |r| r.faiss),
        ("hnswlib", |r| r.hnswlib),
    ];
    let best = |of: Column, at: f64| -> Option<(usize, Quality)> {
        rows.iter()
            .filter_map(|r| of(r).map(|q| (r.ef, q)))
            .filter(|(_, q)| q.recall >= at)
            .max_by(|a, b| a.1.qps.total_cmp(&b.1.qps))
    };
    let mut table = Vec::new();
    for at in [0.95, 0.99] {
        let baseline = ["faiss", "hnswlib"]
            .iter()
            .filter_map(|name| engines.iter().find(|e| e.0 == *name))
            .filter_map(|(name, of)| best(*of, at).map(|b| (*name, b.1.qps)))
            .max_by(|a, b| a.1.total_cmp(&b.1));
        for (name, of) in &engines {
            let Some((ef, q)) = best(*of, at) else {
                continue;
            };
            let ratio = match baseline {
                Some((base, qps)) => format!("{:.2}× {base}", q.qps / qps),
                None => "–".into(),
            };
            table.push(vec![
                format!("≥ {at}"),
                name.to_string(),
                ef.to_string(),
                format!("{:.4}", q.recall),
                thousands(q.qps),
                ratio,
            ]);
        }
    }
    print_table(
        &[
            "recall",
            "engine",
            "ef",
            "recall@10",
            "QPS",
            "QPS / best baseline",
        ],
        &table,
    );
}

/// Passes at ef = 64 taken while every point was only in ipvec's write-ahead log.
pub struct Diagnostic {
    pub ipvec_in_log: Pass,
    pub raw: Pass,
}

/// What `Collection::search` adds to the raw index, per query.
pub fn search_diagnostics(rows: &[SearchRow], diagnostic: &Diagnostic) {
    let Some(row) = rows.iter().find(|r| r.ef == 64) else {
        return;
    };
    let ms = |qps: f64| 1e3 / qps;
    let (in_log, raw_then) = (ms(diagnostic.ipvec_in_log.qps()), ms(diagnostic.raw.qps()));
    println!(
        "\nper query at ef = 64, before ipvec's checkpoint (its hits then come from the write-ahead \
         log, no tree lookup): ipvec {in_log:.3} ms, usearch raw {raw_then:.3} ms → the wrapper adds {:.3} ms",
        in_log - raw_then
    );
    println!(
        "after the checkpoint (the sweep above): ipvec {:.3} ms, usearch raw {:.3} ms → resolving the \
         hits' leaf CIDs in the shard tree costs ≈ {:.3} ms per query",
        ms(row.ipvec.qps),
        ms(row.raw.qps),
        ms(row.ipvec.qps) - in_log - (ms(row.raw.qps) - raw_then)
    );
}

pub struct FilterRow {
    pub name: String,
    pub matching: usize,
    pub path: String,
    /// The HNSW candidate list size (`None` for exact scoring).
    pub ef: Option<usize>,
    /// Whether `Collection::search` takes this path by itself.
    pub default: bool,
    pub quality: Quality,
}

impl FilterRow {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        name: &str,
        matching: usize,
        path: &str,
        ef: Option<usize>,
        default: bool,
        exact: &Exact,
        truth: &Truth,
        pass: &Pass,
    ) -> Self {
        Self {
            name: name.into(),
            matching,
            path: path.into(),
            ef,
            default,
            quality: Quality::of(exact, truth, &pass.ids, pass.qps()),
        }
    }
}

/// The filtered searches, each against the unfiltered search of the same collection: its best
/// QPS at any ef reaching recall ≥ 0.95 in the sweep (issue #20's goal 4 asks for ≥ 0.5×).
pub fn filtered(rows: &[FilterRow], eval_costs: &[(String, f64)], search: &[SearchRow]) {
    println!("\n## Filtered search (ipvec, exact filtered ground truth; goal recall ≥ 0.95)\n");
    let unfiltered = search
        .iter()
        .filter(|r| r.ipvec.recall >= 0.95)
        .max_by(|a, b| a.ipvec.qps.total_cmp(&b.ipvec.qps));
    if let Some(u) = unfiltered {
        println!(
            "unfiltered, the same collection: {} QPS at ef {} (recall@10 {:.4}), the best at \
             recall ≥ 0.95\n",
            thousands(u.ipvec.qps),
            u.ef,
            u.ipvec.recall
        );
    }
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let ratio = unfiltered.map_or("–".into(), |u| {
                format!("{:.2}", r.quality.qps / u.ipvec.qps)
            });
            vec![
                r.name.clone(),
                thousands(r.matching as f64),
                r.path.clone(),
                if r.default { "yes" } else { "" }.into(),
                r.ef.map_or("–".into(), |ef| ef.to_string()),
                format!("{:.4}", r.quality.recall),
                thousands(r.quality.qps),
                ratio,
            ]
        })
        .collect();
    print_table(
        &[
            "filter",
            "matching",
            "path",
            "default",
            "ef",
            "recall@10",
            "QPS",
            "× unfiltered",
        ],
        &table,
    );
    println!(
        "\nfilter evaluation over every point into a bitset (the first search with a filter after \
         a write; later ones reuse the set), allowed::evaluate:"
    );
    for (name, secs) in eval_costs {
        println!("- {name}: {:.2} ms per query", secs * 1e3);
    }
}

/// Peak memory of a Python baseline process.
pub fn python_memory(result: &LibResult) {
    println!(
        "  {}: build {:.1} s; VmRSS after loading the data {:.0} MB, VmHWM {:.0} MB",
        result.lib,
        result.build_s,
        mb_from_kb(result.rss_after_load_kb),
        mb_from_kb(result.hwm_kb)
    );
}

pub fn memory(rows: &[MemoryRow], python: &[LibResult]) {
    if rows.is_empty() && python.is_empty() {
        return;
    }
    println!(
        "\n## Memory per storage quantization (one process each; recall@10 and QPS at ef = {})\n",
        memory::EF
    );
    let mb = |kb: u64| format!("{:.0}", mb_from_kb(kb));
    let mut table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.kind.clone(),
                r.metric.clone(),
                mb(r.hwm_kb),
                mb(r.hwm_kb.saturating_sub(r.rss_after_load_kb)),
                format!("{:.0}", r.index_bytes as f64 / 1e6),
                format!("{:.1}", r.build_s),
                format!("{:.4}", r.recall),
                thousands(r.qps),
            ]
        })
        .collect();
    for p in python {
        table.push(vec![
            format!("{} (Python, f32)", p.lib),
            "l2".into(),
            mb(p.hwm_kb),
            mb(p.hwm_kb.saturating_sub(p.rss_after_load_kb)),
            "–".into(),
            format!("{:.1}", p.build_s),
            "see above".into(),
            "see above".into(),
        ]);
    }
    print_table(
        &[
            "configuration",
            "metric",
            "VmHWM MB",
            "VmHWM − data MB",
            "usearch index MB",
            "build s",
            "recall@10",
            "QPS",
        ],
        &table,
    );
    println!(
        "\n\"VmHWM − data\" is the peak above the RSS right after loading the data: the Rust children \
         hold the pixels as u8 (47 MB) and convert one batch at a time; the Python processes hold the \
         base as f32 (188 MB). usearch index MB is usearch's own memory_usage()."
    );
    for r in rows.iter().filter(|r| r.kind.starts_with("ipvec")) {
        println!(
            "\n{} memory by phase (MB; RSS = anonymous + file-backed; the Rust heap is what ipvec's \
             Rust code holds, counted by the bench's allocator: usearch's C++ allocations are not \
             in it):\n",
            r.kind
        );
        let table: Vec<Vec<String>> = r
            .phases
            .iter()
            .map(|p| {
                vec![
                    p.phase.clone(),
                    mb(p.rss_anon_kb),
                    mb(p.rss_file_kb),
                    mb(p.hwm_kb),
                    mb(p.heap_kb),
                    mb(p.heap_peak_kb),
                ]
            })
            .collect();
        print_table(
            &[
                "after",
                "RssAnon",
                "RssFile",
                "VmHWM so far",
                "Rust heap",
                "Rust heap peak so far",
            ],
            &table,
        );
    }
}
