//! The `ipvec` binary driven as a user would: real processes, real repositories on disk.

#![allow(clippy::unwrap_used, clippy::expect_used)]

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
    std::fs::remove_file(repo.path.join("collections/docs/index.keys")).unwrap();
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
