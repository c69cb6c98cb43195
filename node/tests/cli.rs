//! The `ipvec` binary driven as a user would: real processes, real repositories on disk.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
};

struct Repo {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl Repo {
    fn new() -> Repo {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("repo");
        let repo = Repo { _dir: dir, path };
        let out = repo.run(&["init"], None);
        assert!(out.status.success(), "init failed: {}", stderr(&out));
        repo
    }

    fn run(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        run_in(&self.path, args, stdin)
    }

    /// Runs a command that must succeed; returns its stdout.
    fn ok(&self, args: &[&str], stdin: Option<&[u8]>) -> String {
        let out = self.run(args, stdin);
        assert!(
            out.status.success(),
            "ipvec {args:?} failed: {}",
            stderr(&out)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs a command that must fail; returns its stderr.
    fn fails(&self, args: &[&str], stdin: Option<&[u8]>) -> String {
        let out = self.run(args, stdin);
        assert!(!out.status.success(), "ipvec {args:?} should have failed");
        stderr(&out)
    }
}

fn run_in(repo: &Path, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ipvec"))
        .arg("--repo")
        .arg(repo)
        .args(args)
        .env_remove("IPVEC_PATH")
        .env_remove("IPVEC_API")
        .env_remove("IPVEC_API_TOKEN")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input).unwrap();
    }
    drop(child.stdin.take());
    child.wait_with_output().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Puts a two-block DAG; returns (child, root).
fn put_dag(repo: &Repo, pin: bool) -> (String, String) {
    let child = repo
        .ok(&["dag", "put"], Some(br#"{"hello": "world", "n": 1}"#))
        .trim()
        .to_string();
    let doc = format!(
        r#"{{"child": {{"/": "{child}"}}, "tags": ["a", "b"], "bytes": {{"/": {{"bytes": "AQID"}}}}}}"#
    );
    let args: &[&str] = if pin {
        &["dag", "put", "--pin"]
    } else {
        &["dag", "put"]
    };
    let root = repo.ok(args, Some(doc.as_bytes())).trim().to_string();
    (child, root)
}

#[test]
fn dag_put_get_stat_roundtrip() {
    let repo = Repo::new();
    let (child, root) = put_dag(&repo, false);
    assert!(
        child.starts_with("bafyr4i"),
        "dag-cbor + blake3 CIDs start with bafyr4i: {child}"
    );
    let json = repo.ok(&["dag", "get", &root], None);
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(value["child"]["/"], child.as_str());
    assert_eq!(value["tags"], serde_json::json!(["a", "b"]));
    assert_eq!(value["bytes"]["/"]["bytes"], "AQID");
    let stat = repo.ok(&["block", "stat", &child], None);
    assert!(stat.contains("Codec: dag-cbor"), "{stat}");
    let stat: serde_json::Value =
        serde_json::from_str(&repo.ok(&["--json", "block", "stat", &child], None)).unwrap();
    assert_eq!(stat["size"], 16);
    // Putting the same document again gives the same CID.
    let again = repo.ok(&["dag", "put"], Some(br#"{"n": 1, "hello": "world"}"#));
    assert_eq!(again.trim(), child);
}

#[test]
fn pins_keep_dags_through_gc_and_unpinned_blocks_go() {
    let repo = Repo::new();
    let (child, root) = put_dag(&repo, true);
    let orphan = repo
        .ok(&["dag", "put"], Some(br#"{"orphan": true}"#))
        .trim()
        .to_string();
    assert!(repo.ok(&["pin", "ls"], None).contains(&root));
    let gc: serde_json::Value = serde_json::from_str(&repo.ok(&["--json", "gc"], None)).unwrap();
    assert_eq!(gc["removed_blocks"], 1, "only the orphan goes: {gc}");
    assert_eq!(gc["live_blocks"], 2);
    repo.ok(&["dag", "get", &child], None);
    let err = repo.fails(&["dag", "get", &orphan], None);
    assert!(err.contains("not in the local store"), "{err}");

    repo.ok(&["pin", "rm", &root], None);
    let err = repo.fails(&["pin", "rm", &root], None);
    assert!(err.contains("not pinned"), "{err}");
    let gc: serde_json::Value = serde_json::from_str(&repo.ok(&["--json", "gc"], None)).unwrap();
    assert_eq!(gc["removed_blocks"], 2);
    repo.fails(&["dag", "get", &root], None);
    // Pinning a DAG that is not all here is refused.
    let err = repo.fails(&["pin", "add", &root], None);
    assert!(err.contains("import it first"), "{err}");
}

#[test]
fn export_then_import_into_another_repository() {
    let a = Repo::new();
    let (child, root) = put_dag(&a, true);
    let car = a.path.parent().unwrap().join("dag.car");
    a.ok(&["dag", "export", &root, "-o", car.to_str().unwrap()], None);
    // Export to stdout gives the same bytes.
    let stdout = a.run(&["dag", "export", &root], None);
    assert!(stdout.status.success());
    assert_eq!(stdout.stdout, std::fs::read(&car).unwrap());

    let b = Repo::new();
    let out = b.ok(&["dag", "import", car.to_str().unwrap()], None);
    assert!(out.contains(&format!("pinned root {root}")), "{out}");
    assert_eq!(
        b.ok(&["dag", "get", &child], None),
        a.ok(&["dag", "get", &child], None)
    );
    assert!(b.ok(&["pin", "ls"], None).contains(&root));
    let gc: serde_json::Value = serde_json::from_str(&b.ok(&["--json", "gc"], None)).unwrap();
    assert_eq!(gc["removed_blocks"], 0);
}

#[test]
fn bad_car_files_are_rejected_and_leave_nothing_pinned() {
    let a = Repo::new();
    let (_, root) = put_dag(&a, true);
    let dir = a.path.parent().unwrap().to_path_buf();
    let car = dir.join("dag.car");
    a.ok(&["dag", "export", &root, "-o", car.to_str().unwrap()], None);
    let bytes = std::fs::read(&car).unwrap();

    // Flip the last byte: the last block no longer matches its CID.
    let mut corrupt = bytes.clone();
    *corrupt.last_mut().unwrap() ^= 0x01;
    let corrupt_path = dir.join("corrupt.car");
    std::fs::write(&corrupt_path, &corrupt).unwrap();
    // Cut the file inside a block.
    let truncated_path = dir.join("truncated.car");
    std::fs::write(&truncated_path, &bytes[..bytes.len() - 5]).unwrap();
    // Not a CAR at all.
    let garbage_path = dir.join("garbage.car");
    std::fs::write(&garbage_path, b"\x05hello").unwrap();

    let b = Repo::new();
    for (path, expect) in [
        (&corrupt_path, "corrupt"),
        (&truncated_path, "truncated"),
        (&garbage_path, "bad header"),
    ] {
        let err = b.fails(&["dag", "import", path.to_str().unwrap()], None);
        assert!(
            err.contains("invalid CAR file") && err.contains(expect),
            "{expect}: {err}"
        );
    }
    assert_eq!(
        b.ok(&["pin", "ls"], None).trim(),
        "",
        "a failed import pins nothing"
    );
    // Whatever the failed imports stored is garbage.
    let gc: serde_json::Value = serde_json::from_str(&b.ok(&["--json", "gc"], None)).unwrap();
    assert_eq!(gc["live_blocks"], 0);
    let stats: serde_json::Value = serde_json::from_str(&b.ok(&["--json", "gc"], None)).unwrap();
    assert_eq!(stats["removed_blocks"], 0);
}

#[test]
fn errors_say_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nothing-here");
    let out = run_in(&missing, &["pin", "ls"], None);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("run `ipvec init`"),
        "{}",
        stderr(&out)
    );

    let repo = Repo::new();
    let err = repo.fails(&["dag", "get", "not-a-cid"], None);
    assert!(err.contains("not a valid CID"), "{err}");
    let err = repo.fails(
        &[
            "dag",
            "get",
            "QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn",
        ],
        None,
    );
    assert!(err.contains("CIDv1"), "{err}");
    let err = repo.fails(&["dag", "put"], Some(b"{not json"));
    assert!(err.contains("not valid DAG-JSON"), "{err}");
    let err = repo.fails(&["dag", "put"], Some(br#"{"link": {"/": "bafy-nope"}}"#));
    assert!(err.contains("DAG-JSON"), "{err}");
    let err = repo.fails(&["dag", "import", "/no/such/file.car"], None);
    assert!(err.contains("/no/such/file.car"), "{err}");
    let err = repo.fails(&["init"], None);
    assert!(err.contains("already exists"), "{err}");
}

fn jsonl(lines: &[serde_json::Value]) -> String {
    lines
        .iter()
        .map(|l| l.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn collections_from_the_command_line() {
    let repo = Repo::new();
    let dir = repo.path.parent().unwrap().to_path_buf();
    let err = repo.fails(
        &[
            "collection",
            "create",
            "docs",
            "--dim",
            "3",
            "--replication",
            "0",
        ],
        None,
    );
    assert!(
        err.contains("--replication must be between 1 and 20"),
        "{err}"
    );
    repo.ok(
        &[
            "collection",
            "create",
            "docs",
            "--dim",
            "3",
            "--metric",
            "cosine",
        ],
        None,
    );
    let file = dir.join("points.jsonl");
    std::fs::write(
        &file,
        jsonl(&[
            serde_json::json!({"id": 1, "vector": [1.0, 0.0, 0.0], "metadata": {"tag": "a"}}),
            serde_json::json!({"id": "doc-2", "vector": [0.9, 0.1, 0.0], "metadata": {"tag": "b", "n": 2}}),
            serde_json::json!({"id": 3, "vector": [0.0, 1.0, 0.0]}),
        ]),
    )
    .unwrap();
    repo.ok(&["add", "docs", file.to_str().unwrap()], None);
    let text = repo.ok(&["search", "docs", "--vector", "1,0,0", "-k", "2"], None);
    let ids: Vec<&str> = text.lines().map(|l| l.split(' ').next().unwrap()).collect();
    assert_eq!(ids, vec!["1", "doc-2"]);
    let json: serde_json::Value = serde_json::from_str(&repo.ok(
        &["--json", "search", "docs", "--vector", "1,0,0", "-k", "2"],
        None,
    ))
    .unwrap();
    assert_eq!(json["hits"][0]["id"], 1);
    assert_eq!(json["hits"][1]["metadata"]["tag"], "b");
    let leaf = json["hits"][0]["cid"].as_str().unwrap().to_string();
    assert!(repo
        .ok(&["block", "stat", &leaf], None)
        .contains("dag-cbor"));

    let filtered = repo.ok(
        &[
            "search",
            "docs",
            "--vector",
            "1,0,0",
            "--filter",
            r#"{"must": [{"key": "tag", "match": "b"}]}"#,
        ],
        None,
    );
    assert_eq!(
        filtered
            .lines()
            .map(|l| l.split(' ').next().unwrap())
            .collect::<Vec<_>>(),
        vec!["doc-2"]
    );
    let err = repo.fails(
        &[
            "search",
            "docs",
            "--vector",
            "1,0,0",
            "--filter",
            r#"{"must": [{"key": "tag"}]}"#,
        ],
        None,
    );
    assert!(err.contains("invalid filter"), "{err}");

    // Same results reopening with the index cache removed (rebuilt from the tree).
    let info: serde_json::Value =
        serde_json::from_str(&repo.ok(&["--json", "collection", "info", "docs"], None)).unwrap();
    assert_eq!(
        (info["points"].as_u64(), info["dim"].as_u64()),
        (Some(3), Some(3))
    );
    std::fs::remove_dir_all(repo.path.join("collections/docs/index")).unwrap();
    assert_eq!(
        repo.ok(&["search", "docs", "--vector", "1,0,0", "-k", "2"], None),
        text
    );

    repo.ok(&["delete", "docs", "1"], None);
    let after = repo.ok(&["search", "docs", "--vector", "1,0,0", "-k", "1"], None);
    assert!(after.starts_with("doc-2 "), "{after}");
    let err = repo.fails(&["get", "docs", "1"], None);
    assert!(err.contains("no point 1"), "{err}");
    let log = repo.ok(&["collection", "log", "docs"], None);
    assert_eq!(log.lines().count(), 3, "create, add, delete: {log}");

    // Bad input names the problem and changes nothing.
    let bad = dir.join("bad.jsonl");
    std::fs::write(
        &bad,
        jsonl(&[serde_json::json!({"id": 9, "vector": [1.0, 2.0]})]),
    )
    .unwrap();
    let err = repo.fails(&["add", "docs", bad.to_str().unwrap()], None);
    assert!(
        err.contains("2 dimensions") && err.contains("nothing from this batch"),
        "{err}"
    );
    std::fs::write(&bad, "{\"id\": 9, \"vector\": [1, 2, 3]}\nnot json\n").unwrap();
    let err = repo.fails(&["add", "docs", bad.to_str().unwrap()], None);
    assert!(err.contains("line 2"), "{err}");
    let info2: serde_json::Value =
        serde_json::from_str(&repo.ok(&["--json", "collection", "info", "docs"], None)).unwrap();
    assert_eq!(info2["points"], 2);
    let err = repo.fails(&["search", "nope", "--vector", "1,2,3"], None);
    assert!(err.contains("collection list"), "{err}");

    repo.ok(&["collection", "drop", "docs"], None);
    assert_eq!(repo.ok(&["collection", "list"], None).trim(), "");
    let gc: serde_json::Value = serde_json::from_str(&repo.ok(&["--json", "gc"], None)).unwrap();
    assert!(gc["removed_blocks"].as_u64().unwrap() > 0);
    assert_eq!(gc["live_blocks"], 0);
}

#[test]
fn collection_export_import_keeps_root_and_results() {
    let a = Repo::new();
    let dir = a.path.parent().unwrap().to_path_buf();
    a.ok(
        &[
            "collection",
            "create",
            "docs",
            "--dim",
            "4",
            "--metric",
            "l2",
        ],
        None,
    );
    let lines: Vec<serde_json::Value> = (0..300)
        .map(|i| serde_json::json!({"id": i, "vector": [i as f32, (i % 7) as f32, (i % 3) as f32, 1.5], "metadata": {"even": i % 2 == 0}}))
        .collect();
    let file = dir.join("p.jsonl");
    std::fs::write(&file, jsonl(&lines)).unwrap();
    a.ok(
        &["add", "docs", file.to_str().unwrap(), "--batch", "100"],
        None,
    );
    a.ok(&["delete", "docs", "5"], None);
    let car = dir.join("docs.car");
    a.ok(
        &["collection", "export", "docs", "-o", car.to_str().unwrap()],
        None,
    );
    let info_a: serde_json::Value =
        serde_json::from_str(&a.ok(&["--json", "collection", "info", "docs"], None)).unwrap();
    let query = [
        "search",
        "docs",
        "--vector",
        "40,5,1,1.5",
        "-k",
        "5",
        "--filter",
        r#"{"must": [{"key": "even", "match": true}]}"#,
    ];
    let results_a = a.ok(&query, None);

    let b = Repo::new();
    let out: serde_json::Value = serde_json::from_str(&b.ok(
        &["--json", "collection", "import", car.to_str().unwrap()],
        None,
    ))
    .unwrap();
    assert_eq!(out["writable"], false);
    let info_b: serde_json::Value =
        serde_json::from_str(&b.ok(&["--json", "collection", "info", "docs"], None)).unwrap();
    for field in ["root", "id", "points", "dim"] {
        assert_eq!(info_a[field], info_b[field], "{field}");
    }
    assert_eq!(b.ok(&query, None), results_a);
    // History came along.
    assert_eq!(
        b.ok(&["collection", "log", "docs"], None),
        a.ok(&["collection", "log", "docs"], None)
    );
    let err = b.fails(&["delete", "docs", "1"], None);
    assert!(err.contains("read-only"), "{err}");

    // The same export under a second name: dropping one leaves the other whole after gc.
    b.ok(
        &[
            "collection",
            "import",
            car.to_str().unwrap(),
            "--name",
            "copy",
        ],
        None,
    );
    b.ok(&["collection", "drop", "docs"], None);
    b.ok(&["gc"], None);
    assert_eq!(
        b.ok(
            &[
                "search",
                "copy",
                "--vector",
                "40,5,1,1.5",
                "-k",
                "5",
                "--filter",
                r#"{"must": [{"key": "even", "match": true}]}"#
            ],
            None
        ),
        results_a
    );
    b.ok(
        &[
            "search",
            "copy",
            "--vector",
            "1,1,1,1",
            "--at",
            info_a["root"].as_str().unwrap(),
        ],
        None,
    );

    // A plain DAG is not a collection export.
    let plain = a
        .ok(&["dag", "put"], Some(br#"{"x": 1}"#))
        .trim()
        .to_string();
    let plain_car = dir.join("plain.car");
    a.ok(
        &["dag", "export", &plain, "-o", plain_car.to_str().unwrap()],
        None,
    );
    let err = b.fails(&["collection", "import", plain_car.to_str().unwrap()], None);
    assert!(err.contains("not a collection export"), "{err}");
}

/// A collection `docs` of 300 3-d cosine points (ids 0..300) and a query file of 500 rows.
fn repo_with_points() -> (Repo, PathBuf) {
    let repo = Repo::new();
    let dir = repo.path.parent().unwrap().to_path_buf();
    repo.ok(&["collection", "create", "docs", "--dim", "3"], None);
    let lines: Vec<serde_json::Value> = (0..300)
        .map(|i| serde_json::json!({"id": i, "vector": [1.0, (i % 17) as f32, (i % 5) as f32]}))
        .collect();
    let file = dir.join("points.jsonl");
    std::fs::write(&file, jsonl(&lines)).unwrap();
    repo.ok(&["add", "docs", file.to_str().unwrap()], None);
    // .fvecs: each row is its dimension (i32) and its numbers (f32), little-endian.
    let mut queries = Vec::new();
    for i in 0..500 {
        queries.extend_from_slice(&3i32.to_le_bytes());
        for x in [1.0f32, (i % 13) as f32, 2.0] {
            queries.extend_from_slice(&x.to_le_bytes());
        }
    }
    let query_file = dir.join("queries.fvecs");
    std::fs::write(&query_file, queries).unwrap();
    (repo, query_file)
}

/// Runs `ipvec` with its stdout reader gone before it writes (as `ipvec … | head -0`).
fn run_with_stdout_closed(repo: &Path, args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ipvec"))
        .arg("--repo")
        .arg(repo)
        .args(args)
        .env_remove("IPVEC_PATH")
        .env_remove("IPVEC_API")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    child.wait_with_output().unwrap()
}

#[test]
fn a_closed_stdout_ends_every_command_quietly() {
    let (repo, queries) = repo_with_points();
    let (_, root) = put_dag(&repo, true);
    let queries = queries.to_str().unwrap();
    let commands: [&[&str]; 7] = [
        // Long outputs, over a pipe's buffer: the write blocks until the reader has gone.
        &["completion", "bash"],
        &["search", "docs", "--query-file", queries, "-k", "20"],
        &[
            "--json",
            "search",
            "docs",
            "--query-file",
            queries,
            "-k",
            "20",
        ],
        // Short ones.
        &["collection", "log", "docs"],
        &["--json", "collection", "info", "docs"],
        &["dag", "get", &root],
        &["dag", "export", &root],
    ];
    for args in commands {
        let out = run_with_stdout_closed(&repo.path, args);
        assert_eq!(
            (out.status.code(), stderr(&out).as_str()),
            (Some(0), ""),
            "ipvec {args:?} with its stdout closed"
        );
    }
    // The repository was closed cleanly on the way out.
    assert!(repo
        .ok(&["collection", "info", "docs"], None)
        .contains("points:       300"));
}

#[test]
fn completion_scripts_for_every_shell() {
    let repo = Repo::new();
    for (shell, marker) in [
        ("bash", "complete -F _ipvec"),
        ("zsh", "#compdef ipvec"),
        ("fish", "complete -c ipvec"),
        ("powershell", "Register-ArgumentCompleter"),
    ] {
        let script = repo.ok(&["completion", shell], None);
        assert!(script.contains(marker), "{shell}: no {marker:?}");
        assert!(
            script.contains("collection") && script.contains("token"),
            "{shell} completes subcommands and flags"
        );
    }
    let err = repo.fails(&["completion", "cmd.exe"], None);
    assert!(err.contains("bash"), "{err}");
}

#[test]
fn text_output_reads_well() {
    let repo = Repo::new();
    let dir = repo.path.parent().unwrap().to_path_buf();
    repo.ok(&["collection", "create", "docs", "--dim", "2"], None);
    let info = repo.ok(&["collection", "info", "docs"], None);
    assert!(info.contains("metric:       cosine\n"), "{info}");
    assert!(info.contains("quantization: f32\n"), "{info}");
    let list = repo.ok(&["collection", "list"], None);
    assert!(list.contains("\tcosine\t"), "{list}");

    // add names the version that holds the write (committed on the way out, no daemon).
    let file = dir.join("p.jsonl");
    std::fs::write(
        &file,
        jsonl(&[serde_json::json!({"id": 1, "vector": [1.0, 0.5]})]),
    )
    .unwrap();
    let added = repo.ok(&["add", "docs", file.to_str().unwrap()], None);
    let root = repo.ok(&["--json", "collection", "info", "docs"], None);
    let root: serde_json::Value = serde_json::from_str(&root).unwrap();
    let root = root["root"].as_str().unwrap();
    assert!(
        added.contains(&format!("1 points; root {root}")),
        "{added} (current root {root})"
    );

    // Versions with their times as dates (UTC); JSON keeps milliseconds.
    let log = repo.ok(&["collection", "log", "docs"], None);
    assert_eq!(log.lines().count(), 2, "{log}");
    for line in log.lines() {
        let (_, when) = line.split_once("\tupdated ").unwrap();
        let shape: String = when
            .chars()
            .map(|c| if c.is_ascii_digit() { '9' } else { c })
            .collect();
        assert_eq!(shape, "9999-99-99 99:99:99 UTC", "{line}");
    }
    assert!(log.starts_with(root), "newest first: {log}");
    let log: serde_json::Value =
        serde_json::from_str(&repo.ok(&["--json", "collection", "log", "docs"], None)).unwrap();
    assert!(log["versions"][0]["updated"].as_u64().unwrap() > 0);
}

#[test]
fn a_quoted_id_is_a_string_and_digits_an_integer() {
    let repo = Repo::new();
    let dir = repo.path.parent().unwrap().to_path_buf();
    repo.ok(&["collection", "create", "docs", "--dim", "2"], None);
    let file = dir.join("p.jsonl");
    std::fs::write(
        &file,
        jsonl(&[
            serde_json::json!({"id": 42, "vector": [1.0, 0.0]}),
            serde_json::json!({"id": "42", "vector": [0.0, 1.0]}),
            serde_json::json!({"id": "\"q\"", "vector": [0.5, 0.5]}),
        ]),
    )
    .unwrap();
    repo.ok(&["add", "docs", file.to_str().unwrap()], None);
    let vector = |id: &str| {
        let point: serde_json::Value =
            serde_json::from_str(&repo.ok(&["--json", "get", "docs", id], None)).unwrap();
        (point["id"].clone(), point["vector"].clone())
    };
    assert_eq!(
        vector("42"),
        (serde_json::json!(42), serde_json::json!([1.0, 0.0]))
    );
    assert_eq!(
        vector("\"42\""),
        (serde_json::json!("42"), serde_json::json!([0.0, 1.0]))
    );
    assert_eq!(vector(r#""\"q\"""#).0, serde_json::json!("\"q\""));
    // Text output spells ids the way they are typed.
    let text = repo.ok(&["get", "docs", "\"42\""], None);
    assert!(text.starts_with("id: \"42\"\n"), "{text}");
    let hits = repo.ok(&["search", "docs", "--vector", "0,1", "-k", "3"], None);
    let ids: Vec<&str> = hits.lines().map(|l| l.split(' ').next().unwrap()).collect();
    assert_eq!(ids, ["\"42\"", r#""\"q\"""#, "42"], "{hits}");

    let err = repo.fails(&["get", "docs", "\"42"], None);
    assert!(err.contains("not a JSON string"), "{err}");
    let err = repo.fails(&["get", "docs", "99999999999999999999"], None);
    assert!(err.contains("largest integer id"), "{err}");
    let help = repo.ok(&["get", "--help"], None);
    assert!(help.contains("string id 42"), "{help}");

    repo.ok(&["delete", "docs", "\"42\""], None);
    let err = repo.fails(&["get", "docs", "\"42\""], None);
    assert!(err.contains("no point"), "{err}");
    assert_eq!(vector("42").1, serde_json::json!([1.0, 0.0]));
}

#[test]
fn a_remote_cli_sends_its_token() {
    let repo = Repo::new();
    let mut daemon = common::Daemon::start(
        &repo.path,
        &[
            ("IPVEC_API_REQUIRE_TOKEN", "true"),
            // No commit while the test runs: `add` says its write is pending.
            ("IPVEC_STORAGE_COMMIT_INTERVAL_MS", "600000"),
        ],
    );
    let token = daemon.token.clone().unwrap();
    // A CLI elsewhere: no repository of its own, so no keys/api.token to fall back on.
    let elsewhere = repo.path.parent().unwrap().join("elsewhere");
    let api = daemon.url.clone();
    let remote = |args: &[&str], envs: &[(&str, &str)]| {
        let mut all = vec!["--api", api.as_str()];
        all.extend_from_slice(args);
        common::ipvec(&elsewhere, &all, envs)
    };
    let refused = remote(&["collection", "list"], &[]);
    assert!(!refused.status.success());
    assert!(stderr(&refused).contains("token"), "{}", stderr(&refused));
    let with_flag = remote(&["--token", &token, "collection", "list"], &[]);
    assert!(with_flag.status.success(), "{}", stderr(&with_flag));
    let with_env = remote(&["collection", "list"], &[("IPVEC_API_TOKEN", &token)]);
    assert!(with_env.status.success(), "{}", stderr(&with_env));
    // The flag wins over the repository's own token file.
    let wrong = common::ipvec(&repo.path, &["--token", "nope", "collection", "list"], &[]);
    assert!(!wrong.status.success());
    assert!(stderr(&wrong).contains("token"), "{}", stderr(&wrong));

    // Through the daemon: a write waits for its commit, and quoted ids reach string ids.
    let env = [("IPVEC_API_TOKEN", token.as_str())];
    let out = remote(&["collection", "create", "docs", "--dim", "2"], &env);
    assert!(out.status.success(), "{}", stderr(&out));
    let file = repo.path.parent().unwrap().join("p.jsonl");
    std::fs::write(
        &file,
        jsonl(&[
            serde_json::json!({"id": 42, "vector": [1.0, 0.0]}),
            serde_json::json!({"id": "42", "vector": [0.0, 1.0]}),
        ]),
    )
    .unwrap();
    let out = remote(&["add", "docs", file.to_str().unwrap()], &env);
    let added = String::from_utf8(out.stdout).unwrap();
    assert!(
        added.contains("pending in the daemon's log") && added.contains("within 10 min"),
        "{added}"
    );
    for (id, want) in [("42", "[1.0,0.0]"), ("\"42\"", "[0.0,1.0]")] {
        let out = remote(&["--json", "get", "docs", id], &env);
        let point: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(point["vector"].to_string(), want, "{id}");
    }
    let out = remote(&["delete", "docs", "\"42\""], &env);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = remote(&["get", "docs", "42"], &env);
    assert!(out.status.success(), "{}", stderr(&out));
    daemon.stop();
}
