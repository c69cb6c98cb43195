//! The alert rules of docs/alerts.yml, checked by Prometheus's own `promtool`: the file is
//! valid, and each rule fires on the series of tests/alerts/alerts_test.yml exactly when its
//! trouble has lasted its `for:`, with its annotations rendered. (node/tests/daemon.rs checks
//! that every metric the rules name is one a node exports.)
//!
//! `.ci/run` installs promtool (Debian's `prometheus` package); without it the test fails
//! saying so.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::{Command, Output};

fn promtool(args: &[&str]) -> Output {
    let promtool = std::env::var("IPVEC_TEST_PROMTOOL").unwrap_or_else(|_| "promtool".into());
    Command::new(&promtool)
        .args(args)
        .current_dir(common::workspace())
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "{promtool} cannot run ({e}): run .ci/run, or `apt-get install prometheus` \
                 (or set IPVEC_TEST_PROMTOOL)"
            )
        })
}

#[test]
fn the_alert_rules_are_valid_and_fire_when_they_should() {
    let check = promtool(&["check", "rules", "docs/alerts.yml"]);
    let said = String::from_utf8_lossy(&check.stdout).to_string()
        + &String::from_utf8_lossy(&check.stderr);
    assert!(check.status.success(), "{said}");
    assert!(said.contains("SUCCESS"), "{said}");

    let test = promtool(&["test", "rules", "tests/alerts/alerts_test.yml"]);
    assert!(
        test.status.success(),
        "{}{}",
        String::from_utf8_lossy(&test.stdout),
        String::from_utf8_lossy(&test.stderr)
    );
}
