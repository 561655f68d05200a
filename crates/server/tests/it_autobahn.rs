//! Autobahn|Testsuite against the WebSocket stack: the suite's fuzzing client runs cases
//! 1.* to 7.*, 9.* and 10.* (framing, pings and pongs, reserved bits, opcodes,
//! fragmentation, UTF-8, closing, limits of big and many messages, and auto-fragmentation)
//! against the diagnostic echo route `/ws/echo` (option `ws_echo`), which shares `/ws`'s
//! handshake, decoder, limits, pings and close path. 12.* and 13.* (permessage-deflate) are
//! left out: the extension is declined. Every case must be OK; NON-STRICT is a failure, and
//! only 7.1.6, 7.13.1 and 7.13.2 may be INFORMATIONAL (the suite has no verdict for them).
//!
//! The suite runs only on Python 2.7. `scripts/autobahn-venv.sh` (called by
//! `scripts/test.sh`, and by this test when `wstest` is missing) builds a virtualenv with it
//! at `target/autobahn-venv` (or `$CORECAST_AUTOBAHN_VENV`). Without a Python 2.7
//! interpreter the test fails under CI (`CI=true`) and is skipped elsewhere, saying why.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::Server;

/// The cases that may be INFORMATIONAL: the suite only records what the server did.
const INFORMATIONAL_OK: &[&str] = &["7.1.6", "7.13.1", "7.13.2"];

/// Longest the whole run may take (it takes about half a minute here; 9.* sends messages
/// of up to 16 MiB).
const RUN_TIMEOUT: Duration = Duration::from_secs(15 * 60);

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn venv() -> PathBuf {
    std::env::var_os("CORECAST_AUTOBAHN_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target/autobahn-venv"))
}

/// `wstest` from the virtualenv, running the set-up script first if it is not there.
/// `Err` holds why it is missing.
fn wstest() -> Result<PathBuf, String> {
    let bin = venv().join("bin/wstest");
    if bin.is_file() {
        return Ok(bin);
    }
    let out = Command::new(repo().join("scripts/autobahn-venv.sh"))
        .env("CORECAST_AUTOBAHN_VENV", venv())
        .output()
        .map_err(|e| format!("cannot run scripts/autobahn-venv.sh: {e}"))?;
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if bin.is_file() {
        return Ok(bin);
    }
    Err(format!(
        "no {} after scripts/autobahn-venv.sh ({}):\n{log}",
        bin.display(),
        out.status
    ))
}

#[test]
fn autobahn_testsuite_cases_1_to_10_are_all_ok() {
    let wstest = match wstest() {
        Ok(w) => w,
        Err(why) => {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!(
                    "Autobahn|Testsuite cannot run under CI: {why}\nIt needs a Python 2.7 \
                     interpreter (pyenv's 2.7.18, $CORECAST_PYTHON27 or python2.7 on PATH) \
                     and the packages scripts/autobahn-venv.sh installs."
                );
            }
            eprintln!(
                "\n\n************************************************************\n\
                 SKIPPED it_autobahn: Autobahn|Testsuite is not available.\n{why}\n\
                 It needs Python 2.7 (pyenv 2.7.18 or python2.7); run scripts/test.sh or \
                 scripts/autobahn-venv.sh. Under CI=true this is a failure.\n\
                 ************************************************************\n"
            );
            return;
        }
    };

    // The documented test configuration, all else at its default: the limits it raises for
    // 9.*'s 16 MiB messages (a WebSocket connection holds a frame's header on top of
    // max_unparsed_bytes, so the two limits may be equal).
    let mut server = Server::start_default_shards(&[
        "--ws-echo",
        "--ws-max-message-bytes",
        "20000000",
        "--max-unparsed-bytes",
        "20000000",
        "--max-pending-bytes",
        "40000000",
    ]);
    let dir = std::env::temp_dir().join(format!("corecast-autobahn-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let all: Vec<String> = [
        "1.*", "2.*", "3.*", "4.*", "5.*", "6.*", "7.*", "9.*", "10.*",
    ]
    .map(String::from)
    .to_vec();
    let started = Instant::now();
    let (cases, reports) = run_suite(&wstest, &server, &dir.join("run"), &all);
    let took = started.elapsed();
    assert!(server.alive(), "corecast died; log:\n{}", server.log());

    // Counts per category (the first number of the case id) and behaviour.
    let mut summary: BTreeMap<u32, BTreeMap<String, usize>> = BTreeMap::new();
    for (id, case) in &cases {
        let behavior = case["behavior"].as_str().unwrap_or("?");
        let category: u32 = id.split('.').next().unwrap().parse().unwrap();
        *summary
            .entry(category)
            .or_default()
            .entry(behavior.to_string())
            .or_default() += 1;
    }
    let mut table = String::new();
    for (category, counts) in &summary {
        let counts: Vec<String> = counts.iter().map(|(b, n)| format!("{b} {n}")).collect();
        table.push_str(&format!("  {category}.*: {}\n", counts.join(", ")));
    }
    eprintln!(
        "Autobahn|Testsuite: {} cases in {:.1} s\n{table}",
        cases.len(),
        took.as_secs_f64()
    );
    for category in [1, 2, 3, 4, 5, 6, 7, 9, 10] {
        assert!(
            summary.contains_key(&category),
            "no case of {category}.* ran: {table}"
        );
    }
    assert!(
        cases.len() >= 300,
        "only {} cases ran:\n{table}",
        cases.len()
    );

    // A case that fails is run once more on its own: a few cases wait only 1 s for the
    // server's answer (6.4.* for the 1007, the closing handshake of every case), and on
    // this shared two-CPU machine under others' load (a run taking twice as long) one of
    // them has missed it. A real failure (6.4.3 and 6.4.4 NON-STRICT before the decoder
    // checked frames still arriving) fails both times.
    let first = failures(&cases, &reports);
    let mut failed = Vec::new();
    if !first.is_empty() {
        eprintln!(
            "\n*** Autobahn: {} case(s) not OK in the full run; running them again:\n{}\n",
            first.len(),
            first
                .iter()
                .map(|(_, l)| l.as_str())
                .collect::<Vec<_>>()
                .join("\n")
        );
        let ids: Vec<String> = first.iter().map(|(id, _)| id.clone()).collect();
        let (again, reports) = run_suite(&wstest, &server, &dir.join("retry"), &ids);
        failed = failures(&again, &reports);
        for id in &ids {
            if !again.contains_key(id) {
                failed.push((id.clone(), format!("{id}: not run again")));
            }
        }
    }
    failed.sort_by_key(|(id, _)| {
        id.split('.')
            .map(|n| n.parse::<u32>().unwrap_or(0))
            .collect::<Vec<_>>()
    });
    assert!(
        failed.is_empty(),
        "{} Autobahn case(s) not OK (twice):\n{}\nsummary of the full run:\n{table}",
        failed.len(),
        failed
            .iter()
            .map(|(_, l)| l.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
    // Every frame was decoded (none dropped for want of room in the unparsed input).
    let s = server.stats();
    assert_eq!(s["total"]["input_overflows"], 0, "{s}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs the fuzzing client against the server's `/ws/echo` with `cases` (ids or
/// patterns), its reports under `dir`; returns the agent's cases from `index.json` and
/// the reports folder.
fn run_suite(
    wstest: &Path,
    server: &Server,
    dir: &Path,
    cases: &[String],
) -> (serde_json::Map<String, serde_json::Value>, PathBuf) {
    std::fs::create_dir_all(dir).unwrap();
    let reports = dir.join("reports");
    let spec = serde_json::json!({
        "outdir": reports,
        "servers": [{"agent": "corecast", "url": format!("ws://{}/ws/echo", server.http)}],
        "cases": cases,
        "exclude-cases": ["12.*", "13.*"],
        "exclude-agent-cases": {},
    });
    std::fs::write(dir.join("fuzzingclient.json"), spec.to_string()).unwrap();
    let log_path = dir.join("wstest.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let started = Instant::now();
    let mut child = Command::new(wstest)
        .args(["-m", "fuzzingclient", "-s", "fuzzingclient.json"])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("run wstest");
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if started.elapsed() > RUN_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "wstest ran over {RUN_TIMEOUT:?}; its log:\n{}",
                tail(&log_path)
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        status.success(),
        "wstest failed ({status}):\n{}",
        tail(&log_path)
    );
    let index: serde_json::Value = serde_json::from_slice(
        &std::fs::read(reports.join("index.json")).expect("reports/index.json"),
    )
    .expect("index.json is JSON");
    let cases = index["corecast"]
        .as_object()
        .expect("the agent's cases")
        .clone();
    (cases, reports)
}

/// The cases whose behaviour is not OK (INFORMATIONAL only for [`INFORMATIONAL_OK`]) or
/// whose closing was not OK or INFORMATIONAL: (id, a line saying why).
fn failures(
    cases: &serde_json::Map<String, serde_json::Value>,
    reports: &Path,
) -> Vec<(String, String)> {
    let mut failed = Vec::new();
    for (id, case) in cases {
        let behavior = case["behavior"].as_str().unwrap_or("?");
        let close = case["behaviorClose"].as_str().unwrap_or("?");
        let informational = INFORMATIONAL_OK.contains(&id.as_str());
        let ok = |b: &str| b == "OK" || (b == "INFORMATIONAL" && informational);
        if !ok(behavior) || !(close == "OK" || close == "INFORMATIONAL") {
            failed.push((
                id.clone(),
                format!(
                    "{id}: behavior {behavior}, close {close} (remote close code {}; report {})",
                    case["remoteCloseCode"],
                    reports
                        .join(case["reportfile"].as_str().unwrap_or("?"))
                        .display()
                ),
            ));
        }
    }
    failed
}

/// The last 60 lines of a file.
fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(60)..].join("\n")
}
