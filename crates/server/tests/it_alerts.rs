//! The Prometheus alert rules in `deploy/` are valid (`promtool check rules`), fire as their
//! unit tests say (`promtool test rules`), and name only metrics the broker exports.

mod support;

use std::path::Path;
use std::process::Command;

use support::*;

fn deploy() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy")
}

fn promtool(args: &[&str]) -> String {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(deploy())
        .output()
        .unwrap_or_else(|e| {
            panic!("promtool is missing ({e}): run scripts/test.sh, which installs it")
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

#[test]
fn alert_rules_check_and_pass_their_unit_tests() {
    let text = promtool(&["check", "rules", "prometheus-alerts.yml"]);
    assert!(text.contains("SUCCESS"), "{text}");
    let text = promtool(&["test", "rules", "prometheus-alerts.test.yml"]);
    assert!(text.contains("SUCCESS"), "{text}");
}

#[test]
fn alert_rules_use_only_exported_metrics() {
    let server = Server::start(1, &[]);
    let (status, metrics) = http_get(server.http, "/metrics");
    assert_eq!(status, 200);
    let rules = std::fs::read_to_string(deploy().join("prometheus-alerts.yml")).unwrap();
    let mut checked = 0;
    for word in rules.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
        if word.starts_with("corecast_") {
            assert!(
                metrics.contains(&format!("\n{word}{{")),
                "the rules use {word}, which /metrics does not export"
            );
            checked += 1;
        }
    }
    assert!(checked >= 6, "only {checked} metric names found");
}
