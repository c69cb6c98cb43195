//! The runnable examples of docs/examples/, each run whole by its `run.sh` with this build's
//! `ipvec` and smaller data (`EXAMPLE_SIZE=small`), checked by what it prints: semantic search
//! over Debian's fortunes, retrieval-augmented generation over this repository's docs, and
//! recommendations over Fashion-MNIST. A missing package or model fails the test and says how
//! to install it; the examples never skip. The RAG example's call of a chat model goes to a
//! server on loopback that answers once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    path::{Path, PathBuf},
    process::Command,
};

/// Fails with the install command unless `path` exists.
fn need(path: &str, package: &str) {
    assert!(
        Path::new(path).exists(),
        "{path} is missing: install Debian's {package} package (apt-get install {package}; \
         .ci/run does this)"
    );
}

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/examples")
}

/// Runs `docs/examples/<name>/run.sh` with small data; its standard output.
fn run(name: &str, envs: &[(&str, &str)]) -> String {
    let out = Command::new("bash")
        .arg(examples().join(name).join("run.sh"))
        .env("IPVEC", env!("CARGO_BIN_EXE_ipvec"))
        .env("EXAMPLE_SIZE", "small")
        .env_remove("IPVEC_EMBEDDING_MODEL_DIR")
        .env_remove("OPENAI_BASE_URL")
        .envs(envs.iter().copied())
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{name}:\n{stdout}");
    assert!(
        out.status.success(),
        "{name}/run.sh failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    stdout
}

/// The lines after the one that starts with `start`, up to the next line starting with `? `
/// or `==`.
fn section<'a>(out: &'a str, start: &str) -> Vec<&'a str> {
    out.lines()
        .skip_while(|l| !l.starts_with(start))
        .skip(1)
        .take_while(|l| !l.starts_with("? ") && !l.starts_with("=="))
        .collect()
}

/// The number that follows `label` on the first line holding it.
fn number_after(out: &str, label: &str) -> f64 {
    let line = out
        .lines()
        .find(|l| l.contains(label))
        .unwrap_or_else(|| panic!("no line with {label:?} in\n{out}"));
    let rest = &line[line.find(label).unwrap() + label.len()..];
    let number: String = rest
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    number
        .parse()
        .unwrap_or_else(|_| panic!("no number after {label:?} in {line:?}"))
}

#[test]
fn semantic_search_over_fortunes_answers_questions_in_plain_words() {
    need("/usr/share/games/fortunes/computers", "fortunes");
    let model = common::model_dir();
    let out = run("semantic-search", &[("IPVEC_TEST_MINILM_DIR", &model)]);
    assert!(number_after(&out, "added") >= 500.0, "{out}");
    let computers = section(&out, "? Why do computers never do what I want?");
    assert_eq!(computers.len(), 3, "{out}");
    assert!(computers[0].contains("[computers]"), "{out}");
    let turing = section(&out, "? Can a machine think like a person?");
    assert!(turing[0].contains("machines can think"), "{out}");
    // The filter keeps every hit in its category.
    let filtered = out
        .split("only entries of the work category")
        .nth(1)
        .unwrap();
    let hits: Vec<&str> = filtered
        .lines()
        .filter(|l| l.starts_with("  0.") || l.starts_with("  1."))
        .collect();
    assert!(!hits.is_empty(), "{out}");
    assert!(hits.iter().all(|h| h.contains("[work]")), "{out}");
    assert!(out.contains("new question p50"), "{out}");
}

#[test]
fn rag_over_the_docs_assembles_a_prompt_from_the_passages_that_answer() {
    let model = common::model_dir();
    let out = run("rag", &[("IPVEC_TEST_MINILM_DIR", &model)]);
    assert!(number_after(&out, "added") >= 40.0, "{out}");
    // The question is about the model's folder: embeddings.md answers it first.
    let retrieved = section(&out, "retrieved 4 passages");
    assert!(retrieved[0].contains("embeddings.md"), "{out}");
    let prompt = out.split("== prompt").nth(1).expect("a prompt");
    assert!(prompt.contains("[1] embeddings.md"), "{out}");
    assert!(prompt.contains("model_dir"), "{out}");
    assert!(
        prompt.contains("Question: How do I tell ipvec where the embedding model's files are?"),
        "{out}"
    );

    // With OPENAI_BASE_URL, the prompt goes to the chat completions of that server (here one
    // that answers once and keeps the request), and its answer is printed.
    let (url, request) = chat_server("Name the folder in embedding.model_dir [2].");
    let out = run(
        "rag",
        &[
            ("IPVEC_TEST_MINILM_DIR", &model),
            ("OPENAI_BASE_URL", &url),
            ("OPENAI_API_KEY", "sk-test"),
            ("OPENAI_MODEL", "tiny"),
        ],
    );
    let request = request.join().unwrap();
    assert!(
        request.starts_with("POST /v1/chat/completions HTTP/1.1"),
        "{request}"
    );
    assert!(request.contains("Bearer sk-test"), "{request}");
    let body = json_after_headers(&request);
    assert_eq!(body["model"], "tiny", "{body}");
    let user = body["messages"][1]["content"].as_str().unwrap();
    assert!(user.contains("[1] embeddings.md"), "{user}");
    assert!(
        out.contains("== answer from")
            && out
                .trim_end()
                .ends_with("Name the folder in embedding.model_dir [2]."),
        "{out}"
    );
}

/// A chat completions server on loopback that answers one request with `answer`: its base
/// URL, and a handle that yields the request it read.
fn chat_server(answer: &str) -> (String, std::thread::JoinHandle<String>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let body =
        serde_json::json!({"choices": [{"message": {"role": "assistant", "content": answer}}]})
            .to_string();
    let handle = std::thread::spawn(move || {
        // Not forever: a script that never calls fails the test instead of hanging it.
        listener.set_nonblocking(true).unwrap();
        let started = std::time::Instant::now();
        let mut stream = loop {
            match listener.accept() {
                Ok((stream, _)) => break stream,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    assert!(
                        started.elapsed() < std::time::Duration::from_secs(300),
                        "no chat completions request came"
                    );
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                Err(e) => panic!("{e}"),
            }
        };
        stream.set_nonblocking(false).unwrap();
        let mut request = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            let n = stream.read(&mut buf).unwrap();
            assert!(n > 0, "the request ended early");
            request.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&request).to_string();
            if let Some(end) = text.find("\r\n\r\n") {
                let length: usize = text[..end]
                    .lines()
                    .find_map(|l| {
                        let (name, value) = l.split_once(':')?;
                        name.eq_ignore_ascii_case("content-length")
                            .then(|| value.trim().parse().unwrap())
                    })
                    .unwrap_or(0);
                if request.len() >= end + 4 + length {
                    break;
                }
            }
        }
        write!(
            stream,
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        String::from_utf8(request).unwrap()
    });
    (url, handle)
}

/// The JSON body of an HTTP request read whole.
fn json_after_headers(request: &str) -> serde_json::Value {
    let (_, body) = request.split_once("\r\n\r\n").unwrap();
    serde_json::from_str(body).unwrap()
}

#[test]
fn recommend_over_fashion_mnist_finds_more_like_this_and_a_users_taste() {
    need(
        "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz",
        "dataset-fashion-mnist",
    );
    let out = run("recommend", &[]);
    assert!(number_after(&out, "added") >= 2_000.0, "{out}");
    // Item 0 is an ankle boot; most of its neighbours are too.
    assert!(number_after(&out, "item #0 (Ankle boot):") >= 7.0, "{out}");
    let share = number_after(&out, "in the user's favourite category:");
    assert!(share >= 0.6, "share {share}\n{out}");
    // Filtered recommendations stay in the category and the price range asked.
    let filtered: Vec<&str> = out.lines().filter(|l| l.contains(" priced ")).collect();
    assert_eq!(filtered.len(), 3, "{out}");
    for line in filtered {
        // "  Bag priced 40 to 60: #1616 Bag $65 (0.894), …"
        let (asked, hits) = line.trim().split_once(" priced ").unwrap();
        let (range, hits) = hits.split_once(": ").unwrap();
        let (low, high) = range.split_once(" to ").unwrap();
        let (low, high): (u32, u32) = (low.parse().unwrap(), high.parse().unwrap());
        assert_eq!(hits.split(", ").count(), 3, "{line}");
        for hit in hits.split(", ") {
            assert!(hit.contains(asked), "{line}");
            let price = hit.split('$').nth(1).unwrap().split(' ').next().unwrap();
            let price: u32 = price.parse().unwrap();
            assert!((low..=high).contains(&price), "{line}");
        }
    }
}
