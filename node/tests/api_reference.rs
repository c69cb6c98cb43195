//! The book's API reference (docs/api-reference.md) is the OpenAPI document a daemon serves,
//! rendered by docs/openapi_md.py: rendered again here, it must equal the committed page.
//! `IPVEC_UPDATE_API_REFERENCE=1` writes the page instead.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{path::Path, process::Command};

use common::*;

/// The command that writes the page again.
const REGENERATE: &str =
    "IPVEC_UPDATE_API_REFERENCE=1 cargo test -p ipvec-node --test api_reference";

#[test]
fn the_api_reference_page_is_the_openapi_document_the_daemon_serves() {
    let repo = new_repo();
    let daemon = Daemon::start(&repo.path, &[]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (status, document) = runtime.block_on(async {
        let response = daemon
            .request(reqwest::Method::GET, "/openapi.json")
            .send()
            .await
            .unwrap();
        (response.status(), response.text().await.unwrap())
    });
    assert_eq!(status, 200, "{document}");
    let file = repo.path.parent().unwrap().join("openapi.json");
    std::fs::write(&file, &document).unwrap();

    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs");
    let out = Command::new("python3")
        .arg(docs.join("openapi_md.py"))
        .arg(&file)
        .output()
        .expect("python3 runs docs/openapi_md.py: install Python 3");
    assert!(
        out.status.success(),
        "docs/openapi_md.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rendered = String::from_utf8(out.stdout).unwrap();
    let page = docs.join("api-reference.md");
    if std::env::var_os("IPVEC_UPDATE_API_REFERENCE").is_some() {
        std::fs::write(&page, &rendered).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&page).unwrap_or_default();
    if committed != rendered {
        let was: Vec<&str> = committed.lines().collect();
        let is: Vec<&str> = rendered.lines().collect();
        let difference = match (0..was.len().max(is.len())).find(|&i| was.get(i) != is.get(i)) {
            Some(i) => format!(
                "first at line {}: the page has {:?}, the API gives {:?}",
                i + 1,
                was.get(i),
                is.get(i)
            ),
            None => "in their line endings".to_string(),
        };
        panic!(
            "docs/api-reference.md is not the API's OpenAPI document rendered (they differ \
             {difference}); write it again with `{REGENERATE}`, then review and commit it"
        );
    }
}
