//! The operator's files: `scripts/numa-launch.sh` on fake sysfs trees (one node; two sockets ×
//! two nodes; offline CPUs; no NUMA at all), `scripts/tune-host.sh` on a fake /proc (what it
//! shows, and that it writes nothing), `shellcheck` on the scripts, `systemd-analyze verify` on
//! `deploy/corecast.service`, `deploy/corecast.toml` against `corecast --help` and the real
//! binary, the Containerfile's health check against a real corecast, and the operations
//! guide's sections. The tools come from `scripts/test.sh`; a missing one fails its test with
//! the package to install.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

use support::Server;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repository root")
}

fn read(rel: &str) -> String {
    let path = repo().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// The path of a command on PATH, or a failure naming the Debian package that has it.
fn tool(name: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "`{name}` is not installed: apt-get install {package} (scripts/test.sh installs it)"
            )
        })
}

/// A directory under the system temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(what: &str) -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "corecast-ops-{what}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }

    /// Writes `contents` to `rel`, creating its directories.
    fn write(&self, rel: &str, contents: &str) -> PathBuf {
        let path = self.0.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, contents).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).into_owned()
}

fn describe(what: &str, out: &Output) -> String {
    format!(
        "{what}: {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    )
}

// ---------------------------------------------------------------------------------------------
// numa-launch.sh

/// A fake sysfs tree under a root laid out like `/` (the layout corecast's own topology reader
/// takes from `CORECAST_SYSFS_ROOT`): NUMA nodes with their cpulists, and the online CPUs.
fn fake_sysfs(nodes: &[(usize, &str)], online: Option<&str>) -> TempDir {
    let dir = TempDir::new("sysfs");
    std::fs::create_dir_all(dir.path().join("sys/devices/system/cpu")).unwrap();
    for (node, cpus) in nodes {
        dir.write(
            &format!("sys/devices/system/node/node{node}/cpulist"),
            &format!("{cpus}\n"),
        );
    }
    if !nodes.is_empty() {
        dir.write("sys/devices/system/node/online", "0\n");
    }
    if let Some(online) = online {
        dir.write("sys/devices/system/cpu/online", &format!("{online}\n"));
    }
    dir
}

const BIN: &str = "/opt/corecast/bin/corecast";

fn numa_launch_env(root: &Path, args: &[&str], envs: &[(&str, &str)]) -> Output {
    let script = repo().join("scripts/numa-launch.sh");
    let mut cmd = Command::new(&script);
    cmd.args(args)
        .env("CORECAST_SYSFS_ROOT", root)
        .env_remove("CORECAST_BIN")
        .env_remove("NUMACTL");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output()
        .unwrap_or_else(|e| panic!("run {} (executable?): {e}", script.display()))
}

/// Runs `numa-launch.sh ARGS` on the tree and returns its stdout; it must succeed.
fn numa_launch(root: &Path, args: &[&str]) -> String {
    let out = numa_launch_env(root, args, &[]);
    assert!(out.status.success(), "{}", describe("numa-launch.sh", &out));
    text(&out.stdout)
}

/// Runs `numa-launch.sh ARGS`, which must fail with exit code 2 and a message containing each
/// of `needles` on stderr.
fn numa_launch_fails(root: &Path, args: &[&str], envs: &[(&str, &str)], needles: &[&str]) {
    let out = numa_launch_env(root, args, envs);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        describe("numa-launch.sh should fail", &out)
    );
    let err = text(&out.stderr);
    for needle in needles {
        assert!(err.contains(needle), "stderr lacks {needle:?}:\n{err}");
    }
    assert!(
        text(&out.stdout).lines().all(|l| !l.starts_with("numactl")),
        "printed a command despite the error:\n{}",
        text(&out.stdout)
    );
}

/// The command lines of the output (notes are shell comments).
fn commands(out: &str) -> Vec<&str> {
    out.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .collect()
}

#[test]
fn numa_launch_one_node() {
    let sys = fake_sysfs(&[(0, "0-3")], Some("0-3"));
    let out = numa_launch(
        sys.path(),
        &["--dry-run", "--bin", BIN, "--", "--max-connections", "5"],
    );
    assert_eq!(
        commands(&out),
        [format!(
            "numactl --cpunodebind=0 --localalloc {BIN} --max-connections 5"
        )],
        "{out}"
    );
    assert!(out.contains("up to 4 shards"), "{out}");

    // --nodes names the node explicitly; the result is the same.
    let out = numa_launch(sys.path(), &["--dry-run", "--bin", BIN, "--nodes", "0"]);
    assert_eq!(
        commands(&out),
        [format!("numactl --cpunodebind=0 --localalloc {BIN}")]
    );

    // A kernel without NUMA has no node directories: one node 0 with every online CPU.
    let flat = fake_sysfs(&[], Some("0-7"));
    let out = numa_launch(flat.path(), &["--dry-run", "--bin", BIN]);
    assert_eq!(
        commands(&out),
        [format!("numactl --cpunodebind=0 --localalloc {BIN}")]
    );
    assert!(out.contains("up to 8 shards"), "{out}");

    // Arguments that need quoting come out quoted, so the line can be pasted into a shell.
    let out = numa_launch(
        sys.path(),
        &[
            "--dry-run",
            "--bin",
            BIN,
            "--",
            "--log",
            "info,corecast=debug it's",
        ],
    );
    assert!(
        out.contains(r"--log 'info,corecast=debug it'\''s'"),
        "{out}"
    );
}

/// Two sockets × two nodes, SMT siblings numbered after the first threads as x86 hosts do.
fn two_sockets_four_nodes(online: &str) -> TempDir {
    fake_sysfs(
        &[
            (0, "0-3,16-19"),
            (1, "4-7,20-23"),
            (2, "8-11,24-27"),
            (3, "12-15,28-31"),
        ],
        Some(online),
    )
}

#[test]
fn numa_launch_two_sockets_four_nodes() {
    let sys = two_sockets_four_nodes("0-31");
    let root = sys.path();

    // One corecast over every node: CPU binding with local allocation, never --membind.
    let out = numa_launch(root, &["--dry-run", "--bin", BIN]);
    assert_eq!(
        commands(&out),
        [format!("numactl --cpunodebind=0,1,2,3 --localalloc {BIN}")],
        "{out}"
    );
    assert!(out.contains("up to 32 shards"), "{out}");
    assert!(!out.contains("--membind"), "{out}");

    // The second socket's nodes, as a list or a range.
    for nodes in ["2,3", "2-3", "3,2,3"] {
        let out = numa_launch(root, &["--dry-run", "--bin", BIN, "--nodes", nodes]);
        let want = if nodes.starts_with('3') { "3,2" } else { "2,3" };
        assert_eq!(
            commands(&out),
            [format!("numactl --cpunodebind={want} --localalloc {BIN}")],
            "--nodes {nodes}: {out}"
        );
        assert!(out.contains("up to 16 shards"), "{out}");
    }

    // One corecast per node, each on the base ports + its node number; options after `--` go
    // to every one; the output says channels do not span the processes.
    let out = numa_launch(
        root,
        &[
            "--dry-run",
            "--bin",
            BIN,
            "--per-node",
            "--",
            "--log",
            "debug",
        ],
    );
    let want: Vec<String> = (0..4)
        .map(|n| {
            format!(
                "numactl --cpunodebind={n} --localalloc {BIN} --resp-listen 0.0.0.0:{} \
                 --http-listen 0.0.0.0:{} --log debug &",
                6379 + n,
                8080 + n
            )
        })
        .chain(["wait".to_string()])
        .collect();
    assert_eq!(commands(&out), want, "{out}");
    assert!(
        out.contains("channels do not span processes until a backplane exists"),
        "{out}"
    );
    assert!(out.contains("node 2: CPUs 8-11,24-27 (8 shards)"), "{out}");

    // Chosen nodes, other base ports and host.
    let out = numa_launch(
        root,
        &[
            "--dry-run",
            "--bin",
            BIN,
            "--per-node",
            "--nodes",
            "1,3",
            "--host",
            "127.0.0.1",
            "--resp-port",
            "7000",
            "--http-port",
            "9000",
        ],
    );
    assert_eq!(
        commands(&out),
        [
            format!(
                "numactl --cpunodebind=1 --localalloc {BIN} --resp-listen 127.0.0.1:7001 \
                 --http-listen 127.0.0.1:9001 &"
            ),
            format!(
                "numactl --cpunodebind=3 --localalloc {BIN} --resp-listen 127.0.0.1:7003 \
                 --http-listen 127.0.0.1:9003 &"
            ),
            "wait".to_string(),
        ],
        "{out}"
    );
    // An IPv6 host gets brackets (quoted for the shell).
    let out = numa_launch(
        root,
        &[
            "--dry-run",
            "--bin",
            BIN,
            "--per-node",
            "--nodes",
            "0",
            "--host",
            "::1",
        ],
    );
    assert!(
        out.contains("--resp-listen '[::1]:6379' --http-listen '[::1]:8080'"),
        "{out}"
    );
}

#[test]
fn numa_launch_offline_cpus_and_memory_only_nodes() {
    // The second socket is offline: `all` means the nodes with online CPUs, and naming an
    // offline node is an error.
    let sys = two_sockets_four_nodes("0-7,16-23");
    let out = numa_launch(sys.path(), &["--dry-run", "--bin", BIN]);
    assert_eq!(
        commands(&out),
        [format!("numactl --cpunodebind=0,1 --localalloc {BIN}")],
        "{out}"
    );
    assert!(out.contains("up to 16 shards"), "{out}");
    numa_launch_fails(
        sys.path(),
        &["--dry-run", "--nodes", "0,2"],
        &[],
        &["node 2 has no online CPUs"],
    );
    // Half of node 1 offline: its shard count says so.
    let sys = two_sockets_four_nodes("0-5,16-21");
    let out = numa_launch(sys.path(), &["--dry-run", "--bin", BIN, "--per-node"]);
    assert!(out.contains("node 1: CPUs 4-7,20-23 (4 shards)"), "{out}");
    assert_eq!(commands(&out).len(), 3, "two nodes and wait: {out}");

    // A memory-only node (CXL memory, or a node whose CPUs are all elsewhere).
    let sys = fake_sysfs(&[(0, "0-3"), (1, "")], Some("0-3"));
    let out = numa_launch(sys.path(), &["--dry-run", "--bin", BIN]);
    assert_eq!(
        commands(&out),
        [format!("numactl --cpunodebind=0 --localalloc {BIN}")]
    );
    numa_launch_fails(
        sys.path(),
        &["--dry-run", "--nodes", "1"],
        &[],
        &["node 1 has no online CPUs"],
    );
}

#[test]
fn numa_launch_errors_are_clear() {
    let sys = two_sockets_four_nodes("0-31");
    let root = sys.path();
    numa_launch_fails(
        root,
        &["--dry-run", "--nodes", "7"],
        &[],
        &["unknown NUMA node 7", "nodes 0,1,2,3"],
    );
    numa_launch_fails(
        root,
        &["--dry-run", "--nodes", "1-5"],
        &[],
        &["unknown NUMA node 4"],
    );
    numa_launch_fails(
        root,
        &["--dry-run", "--nodes", "first"],
        &[],
        &["invalid node list"],
    );
    numa_launch_fails(
        root,
        &["--dry-run", "--shards", "2"],
        &[],
        &["unknown option --shards", "after --"],
    );
    numa_launch_fails(
        root,
        &[
            "--dry-run",
            "--per-node",
            "--",
            "--resp-listen",
            "0.0.0.0:1",
        ],
        &[],
        &["--per-node sets each corecast's listeners", "--resp-port"],
    );
    numa_launch_fails(
        root,
        &["--bin", "/bin/true"],
        &[("NUMACTL", "/nonexistent/numactl")],
        &["numactl not found", "apt-get install numactl", "--dry-run"],
    );
    let missing = TempDir::new("nosys");
    numa_launch_fails(
        missing.path(),
        &["--dry-run"],
        &[],
        &["cannot read the topology"],
    );
}

/// Without --dry-run the script runs numactl with exactly the printed arguments (a fake
/// numactl records them); with --dry-run it runs nothing.
#[test]
fn numa_launch_runs_what_it_prints() {
    let sys = two_sockets_four_nodes("0-31");
    let dir = TempDir::new("fake-numactl");
    let log = dir.path().join("calls");
    let fake = dir.write(
        "numactl",
        &format!("#!/bin/sh\nprintf '%s\\n' \"$*\" >> '{}'\n", log.display()),
    );
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let fake = fake.to_str().unwrap();
    let envs = [("NUMACTL", fake)];

    let out = numa_launch_env(sys.path(), &["--dry-run", "--bin", "/bin/true"], &envs);
    assert!(out.status.success(), "{}", describe("dry run", &out));
    assert!(!log.exists(), "--dry-run ran numactl");

    let out = numa_launch_env(
        sys.path(),
        &["--bin", "/bin/true", "--nodes", "1", "--", "--shards", "2"],
        &envs,
    );
    assert!(out.status.success(), "{}", describe("run", &out));
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "--cpunodebind=1 --localalloc /bin/true --shards 2\n"
    );
    std::fs::remove_file(&log).unwrap();

    let out = numa_launch_env(
        sys.path(),
        &["--bin", "/bin/true", "--per-node", "--nodes", "0,2"],
        &envs,
    );
    assert!(out.status.success(), "{}", describe("run --per-node", &out));
    let calls: BTreeSet<String> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let want: BTreeSet<String> = [
        "--cpunodebind=0 --localalloc /bin/true --resp-listen 0.0.0.0:6379 --http-listen 0.0.0.0:8080",
        "--cpunodebind=2 --localalloc /bin/true --resp-listen 0.0.0.0:6381 --http-listen 0.0.0.0:8082",
    ]
    .into_iter()
    .map(str::to_string)
    .collect();
    assert_eq!(calls, want);

    // A binary that is not there is refused before numactl runs.
    std::fs::remove_file(&log).unwrap();
    numa_launch_fails(
        sys.path(),
        &["--bin", "/nonexistent/corecast"],
        &envs,
        &["/nonexistent/corecast is not executable"],
    );
    assert!(!log.exists());
}

// ---------------------------------------------------------------------------------------------
// tune-host.sh

/// A fake /proc with a small host's untuned values.
fn fake_proc() -> TempDir {
    let dir = TempDir::new("proc");
    for (key, value) in [
        ("sys/net/core/somaxconn", "128"),
        ("sys/net/ipv4/tcp_max_syn_backlog", "512"),
        ("sys/net/ipv4/tcp_rmem", "4096\t87380\t6291456"),
        ("sys/net/ipv4/tcp_wmem", "4096\t16384\t4194304"),
        ("sys/net/ipv4/tcp_mem", "18000\t24000\t36000"),
        ("sys/net/ipv4/ip_local_port_range", "32768\t60999"),
        ("sys/fs/nr_open", "1048576"),
        ("sys/fs/file-max", "65536"),
        ("sys/kernel/io_uring_disabled", "1"),
    ] {
        dir.write(key, &format!("{value}\n"));
    }
    dir.write(
        "meminfo",
        "MemTotal:       16384000 kB\nMemFree:         8000000 kB\n",
    );
    dir
}

/// Every file under `dir` with its contents and modification time.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (Vec<u8>, std::time::SystemTime)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let meta = std::fs::metadata(&path).unwrap();
                out.insert(
                    path.clone(),
                    (std::fs::read(&path).unwrap(), meta.modified().unwrap()),
                );
            }
        }
    }
    out
}

fn tune_host(proc_root: &Path, args: &[&str]) -> Output {
    let script = repo().join("scripts/tune-host.sh");
    Command::new(&script)
        .args(args)
        .env("CORECAST_PROC_ROOT", proc_root)
        .env_remove("CORECAST_UNIT")
        .env_remove("CORECAST_CONFIG")
        .output()
        .unwrap_or_else(|e| panic!("run {} (executable?): {e}", script.display()))
}

/// The row of `key` in tune-host.sh's table, checked to show `current`, then `proposed`, then
/// `verdict` ("ok", "raise" or "check").
fn assert_row(out: &str, key: &str, current: &str, proposed: &str, verdict: &str) {
    let line = out
        .lines()
        .find(|l| l.split_whitespace().next() == Some(key))
        .unwrap_or_else(|| panic!("no row for {key}:\n{out}"));
    let rest = &line[key.len()..];
    let at_current = rest
        .find(&format!(" {current} "))
        .unwrap_or_else(|| panic!("{key}: current value {current:?} not shown: {line:?}"));
    let after = &rest[at_current + current.len() + 1..];
    let at_proposed = after
        .find(&format!(" {proposed} "))
        .unwrap_or_else(|| panic!("{key}: proposed value {proposed:?} not shown: {line:?}"));
    assert!(
        after[at_proposed + proposed.len() + 1..]
            .trim_start()
            .starts_with(&format!("{verdict}:")),
        "{key}: expected verdict {verdict:?}: {line:?}"
    );
}

#[test]
fn tune_host_shows_current_and_proposed_values_and_writes_nothing() {
    let proc_root = fake_proc();
    let before = snapshot(proc_root.path());
    let out = tune_host(proc_root.path(), &[]);
    assert!(out.status.success(), "{}", describe("tune-host.sh", &out));
    let out = text(&out.stdout);
    assert!(out.contains("for 100000 connections"), "{out}");

    // tcp_mem: 4/8/16 KiB per connection in pages, under half of the fake 16 GB.
    // SAFETY: sysconf only reads a constant.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u64;
    let per = 1024 * 100_000 / page;
    let tcp_mem = format!("{} {} {}", 4 * per, 8 * per, 16 * per);

    assert_row(&out, "net.core.somaxconn", "128", "4096", "raise");
    assert_row(&out, "net.ipv4.tcp_max_syn_backlog", "512", "4096", "raise");
    assert_row(
        &out,
        "net.ipv4.tcp_rmem",
        "4096 87380 6291456",
        "4096 131072 6291456",
        "raise",
    );
    assert_row(
        &out,
        "net.ipv4.tcp_wmem",
        "4096 16384 4194304",
        "4096 16384 4194304",
        "ok",
    );
    assert_row(
        &out,
        "net.ipv4.tcp_mem",
        "18000 24000 36000",
        &tcp_mem,
        "raise",
    );
    assert_row(
        &out,
        "net.ipv4.ip_local_port_range",
        "32768 60999",
        "10000 65535",
        "raise",
    );
    // The unit's LimitNOFILE (1048576) needs nr_open at least that: the default is enough.
    assert_row(&out, "fs.nr_open", "1048576", "1048576", "ok");
    assert_row(&out, "fs.file-max", "65536", "165792", "raise");
    // A security setting: shown, never changed by the script.
    assert_row(&out, "kernel.io_uring_disabled", "1", "0", "check");

    // Process limits: the shell's and the unit's, and the config's max_connections.
    for needle in [
        "open files (ulimit -n)",
        ">= 100256",
        "LimitNOFILE=1048576",
        "memlock (ulimit -l, KiB)",
        "LimitMEMLOCK=infinity",
        "max_connections (config)",
        "nothing was changed",
        "--apply",
        "deploy/sysctl-corecast.conf",
        "net.core.somaxconn = 4096",
        "fs.file-max = 165792",
    ] {
        assert!(out.contains(needle), "output lacks {needle:?}:\n{out}");
    }
    assert!(
        !out.contains("kernel.io_uring_disabled = "),
        "io_uring_disabled must not be among the sysctl lines:\n{out}"
    );
    assert_eq!(
        before,
        snapshot(proc_root.path()),
        "tune-host.sh wrote to the fake /proc"
    );

    // --apply never writes the live /proc/sys from values read elsewhere.
    let out = tune_host(proc_root.path(), &["--apply"]);
    assert_eq!(out.status.code(), Some(2), "{}", describe("--apply", &out));
    assert!(
        text(&out.stderr).contains("cannot apply values read from CORECAST_PROC_ROOT"),
        "{}",
        describe("--apply", &out)
    );
    assert!(
        !text(&out.stdout).contains("sysctl -w"),
        "{}",
        describe("--apply", &out)
    );
    assert_eq!(before, snapshot(proc_root.path()));
}

#[test]
fn tune_host_scales_with_connections() {
    let proc_root = fake_proc();
    // Kernels before 6.6 have no io_uring_disabled: shown as absent.
    std::fs::remove_file(proc_root.path().join("sys/kernel/io_uring_disabled")).unwrap();
    let out = tune_host(proc_root.path(), &["--connections", "2000000"]);
    assert!(out.status.success(), "{}", describe("tune-host.sh", &out));
    let out = text(&out.stdout);
    // 2,000,000 + 256 descriptors: above nr_open's default and the unit's LimitNOFILE.
    assert_row(&out, "fs.nr_open", "1048576", "2000256", "raise");
    assert_row(&out, "fs.file-max", "65536", "2065792", "raise");
    assert!(
        out.lines()
            .any(|l| l.starts_with("kernel.io_uring_disabled ") && l.contains("(absent)")),
        "{out}"
    );
    let unit_row = out
        .lines()
        .find(|l| l.starts_with("open files (unit)"))
        .unwrap_or_else(|| panic!("no unit row:\n{out}"));
    assert!(unit_row.contains("too low"), "{unit_row}");
    // tcp_mem is capped at half of RAM (16384000 KiB).
    // SAFETY: sysconf only reads a constant.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u64;
    let half = 16_384_000 * 1024 / page / 2;
    let line = out
        .lines()
        .find(|l| l.starts_with("net.ipv4.tcp_mem"))
        .unwrap();
    assert!(line.contains(&format!(" {half} {half} ")), "{line}");

    for bad in ["0", "lots", "-5"] {
        let out = tune_host(proc_root.path(), &["--connections", bad]);
        assert_eq!(out.status.code(), Some(2), "{}", describe(bad, &out));
        assert!(
            text(&out.stderr).contains("--connections"),
            "{}",
            describe(bad, &out)
        );
    }
}

// ---------------------------------------------------------------------------------------------
// shellcheck

#[test]
fn scripts_are_shellcheck_clean() {
    let shellcheck = tool("shellcheck", "shellcheck");
    let scripts: Vec<PathBuf> = std::fs::read_dir(repo().join("scripts"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "sh"))
        .collect();
    for name in ["numa-launch.sh", "tune-host.sh", "test.sh"] {
        assert!(
            scripts.iter().any(|p| p.ends_with(name)),
            "scripts/{name} is missing"
        );
    }
    for script in &scripts {
        let out = Command::new(&shellcheck).arg(script).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            describe(&format!("shellcheck {}", script.display()), &out)
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(script).unwrap().permissions().mode();
        assert!(mode & 0o111 != 0, "{} is not executable", script.display());
    }
}

// ---------------------------------------------------------------------------------------------
// the systemd unit

/// The unit's `Key=Value` lines that are not comments.
fn unit_settings(unit: &str) -> Vec<(String, String)> {
    unit.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.starts_with('[') && !l.is_empty())
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// `systemd-analyze verify` on `unit` (with ExecStart pointing at the built binary, which
/// verify requires to exist): it must succeed and say nothing about the unit.
fn verify_unit(unit: &str, what: &str) {
    let analyze = tool("systemd-analyze", "systemd");
    let bin = env!("CARGO_BIN_EXE_corecast");
    assert!(
        unit.contains("ExecStart=/usr/local/bin/corecast "),
        "{what}: ExecStart moved"
    );
    let unit = unit.replace(
        "ExecStart=/usr/local/bin/corecast ",
        &format!("ExecStart={bin} "),
    );
    let dir = TempDir::new("unit");
    let path = dir.write("corecast.service", &unit);
    let out = Command::new(&analyze)
        .arg("verify")
        .arg(&path)
        .env("SYSTEMD_LOG_COLOR", "0")
        .output()
        .unwrap();
    let complaints: Vec<String> = text(&out.stderr)
        .lines()
        .chain(text(&out.stdout).lines())
        .filter(|l| l.contains("corecast"))
        .map(str::to_string)
        .collect();
    assert!(
        out.status.success() && complaints.is_empty(),
        "{what}: {}",
        describe("systemd-analyze verify", &out)
    );
}

#[test]
fn systemd_unit_is_hardened_and_verifies() {
    let unit = read("deploy/corecast.service");
    verify_unit(&unit, "deploy/corecast.service");

    let settings = unit_settings(&unit);
    let get = |key: &str| -> Vec<&str> {
        settings
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    for (key, value) in [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("DynamicUser", "yes"),
        ("User", "corecast"),
        ("CapabilityBoundingSet", ""),
        ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
        ("LimitMEMLOCK", "infinity"),
    ] {
        assert_eq!(get(key), [value], "{key}= in deploy/corecast.service");
    }
    let nofile: u64 = get("LimitNOFILE")[0]
        .parse()
        .expect("LimitNOFILE is a number");
    assert!(
        nofile >= 100_256,
        "LimitNOFILE {nofile} cannot hold 100K connections"
    );
    assert!(
        nofile <= 1 << 20,
        "LimitNOFILE {nofile} is above the kernel's default fs.nr_open (1048576): the unit would not start on a default host"
    );
    // io_uring must stay allowed: no syscall filter that denies it (or its group).
    for filter in get("SystemCallFilter") {
        let deny = filter.starts_with('~');
        assert!(
            !(deny && (filter.contains("io_uring") || filter.contains("@aio"))),
            "SystemCallFilter={filter} blocks io_uring"
        );
        assert!(
            deny || filter.contains("@system-service") || filter.contains("@aio"),
            "SystemCallFilter={filter} does not allow io_uring"
        );
    }
    for needle in ["io_uring_setup", "CPUAffinity=", "NUMAPolicy=", "NUMAMask="] {
        assert!(unit.contains(needle), "the unit's comments lack {needle}");
    }

    // Each commented example block (CPUAffinity/NUMA recipes, the syscall filter) verifies
    // when uncommented.
    let mut blocks: Vec<Vec<String>> = Vec::new();
    let mut current: Vec<String> = Vec::new();
    for line in unit.lines() {
        let example = line.strip_prefix("#   ").filter(|l| {
            l.split_once('=')
                .is_some_and(|(k, _)| !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric()))
        });
        match example {
            Some(l) => current.push(l.to_string()),
            None if !current.is_empty() => blocks.push(std::mem::take(&mut current)),
            None => {}
        }
    }
    let keys: BTreeSet<&str> = blocks
        .iter()
        .flatten()
        .filter_map(|l| l.split_once('=').map(|(k, _)| k))
        .collect();
    for key in ["CPUAffinity", "NUMAPolicy", "NUMAMask", "SystemCallFilter"] {
        assert!(
            keys.contains(key),
            "no commented {key}= example in the unit"
        );
    }
    for block in &blocks {
        let enabled = unit.replacen(
            "\n[Install]",
            &format!("\n{}\n\n[Install]", block.join("\n")),
            1,
        );
        verify_unit(&enabled, &format!("the unit with {block:?}"));
    }
}

// ---------------------------------------------------------------------------------------------
// the example configuration

/// `corecast --help`: each long option (but --help, --version) with its help text.
fn help_options() -> BTreeMap<String, String> {
    let out = Command::new(env!("CARGO_BIN_EXE_corecast"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        describe("corecast --help", &out)
    );
    let help = text(&out.stdout);
    let mut options = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in help.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with('-') {
            current = trimmed
                .split_whitespace()
                .find_map(|w| w.strip_prefix("--"))
                .map(|w| w.trim_end_matches(',').to_string());
            if let Some(name) = &current {
                options.insert(name.clone(), String::new());
            }
        } else if let Some(name) = &current {
            let doc = options.get_mut(name).unwrap();
            doc.push_str(trimmed);
            doc.push(' ');
        }
    }
    options.remove("help");
    options.remove("version");
    assert!(
        options.len() >= 19,
        "only {} options in --help:\n{help}",
        options.len()
    );
    options
}

#[test]
fn example_config_has_every_option_with_its_default_and_starts() {
    let options = help_options();
    let text = read("deploy/corecast.toml");

    // Keys set in the file, and keys shown commented out (`# key = value`) because their
    // default is "not set" or derived from another key.
    let table: toml::Table = toml::from_str(&text).expect("deploy/corecast.toml is valid TOML");
    let key_of = |line: &str| -> Option<String> {
        let (k, _) = line.split_once('=')?;
        let k = k.trim();
        (!k.is_empty()
            && k.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
        .then(|| k.to_string())
    };
    let lines: Vec<&str> = text.lines().collect();
    let mut keys = BTreeSet::new();
    for (i, line) in lines.iter().enumerate() {
        let key = match line.strip_prefix("# ") {
            Some(rest) => key_of(rest),
            None if !line.starts_with('#') => key_of(line),
            None => None,
        };
        let Some(key) = key else { continue };
        // Each key has its one-line reason right above it.
        let above = if i > 0 { lines[i - 1] } else { "" };
        assert!(
            above.starts_with("# ") && key_of(&above[2..]).is_none(),
            "deploy/corecast.toml: `{key}` has no comment line above it"
        );
        assert!(
            keys.insert(key.clone()),
            "deploy/corecast.toml: `{key}` appears twice"
        );
    }
    for key in table.keys() {
        assert!(
            keys.contains(key),
            "`{key}` parsed but not found line by line"
        );
    }

    let want: BTreeSet<String> = options
        .keys()
        .filter(|o| *o != "config")
        .map(|o| o.replace('-', "_"))
        .collect();
    let missing: Vec<_> = want.difference(&keys).collect();
    let extra: Vec<_> = keys.difference(&want).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "deploy/corecast.toml is out of step with `corecast --help`: options without a key \
         {missing:?}, keys without an option {extra:?}"
    );

    // Set keys hold the default `--help` states ([default: X]).
    for (key, value) in &table {
        let doc = &options[&key.replace('_', "-")];
        let Some(default) = doc.split("[default: ").nth(1) else {
            continue;
        };
        let default = default.split([',', ']']).next().unwrap().trim();
        if default.contains(' ') || default == "empty" {
            continue;
        }
        let shown = match value {
            toml::Value::String(s) => s.clone(),
            toml::Value::Integer(i) => i.to_string(),
            other => panic!("{key} = {other}: expected a string or an integer"),
        };
        assert_eq!(
            shown, default,
            "deploy/corecast.toml: {key} is not the default"
        );
    }
    assert_eq!(table["resp_listen"].as_str(), Some("0.0.0.0:6379"));
    assert_eq!(table["http_listen"].as_str(), Some("0.0.0.0:8080"));

    // corecast accepts the file; the listen flags win over its addresses. One shard keeps the
    // test light on big machines (the file leaves the count to the affinity mask).
    let config = repo().join("deploy/corecast.toml");
    let mut server = Server::start(1, &["--config", config.to_str().unwrap()]);
    assert!(server.resp.ip().is_loopback() && server.http.ip().is_loopback());
    assert_eq!(
        support::http_get(server.http, "/healthz"),
        (200, "ok\n".to_string())
    );
    let status = server.terminate().expect("corecast stops on SIGTERM");
    assert!(
        status.success(),
        "corecast exited with {status}:\n{}",
        server.log()
    );
}

// ---------------------------------------------------------------------------------------------
// the Containerfile

/// The Containerfile's instructions, continuation lines joined, comments dropped.
fn instructions(file: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in file.lines() {
        let t = line.trim();
        if t.starts_with('#') || (t.is_empty() && current.is_empty()) {
            continue;
        }
        match t.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part);
                current.push(' ');
            }
            None => {
                current.push_str(t);
                out.push(std::mem::take(&mut current));
            }
        }
    }
    out
}

#[test]
fn containerfile_is_multi_stage_non_root_and_its_health_check_works() {
    let file = read("deploy/Containerfile");
    let ins = instructions(&file);
    let has = |prefix: &str| ins.iter().any(|i| i.starts_with(prefix));
    assert!(has("FROM rust:bookworm AS "), "builder stage: {ins:#?}");
    assert!(has("FROM debian:bookworm-slim"), "runtime stage: {ins:#?}");
    assert!(
        ins.iter().any(|i| i.starts_with("RUN ")
            && i.contains("cargo build --release")
            && i.contains("-p corecast-server")),
        "{ins:#?}"
    );
    let user = ins
        .iter()
        .rev()
        .find_map(|i| i.strip_prefix("USER "))
        .expect("a USER instruction");
    assert!(
        !user.starts_with("root") && !user.starts_with('0'),
        "the image runs as {user}"
    );
    assert!(has("EXPOSE 6379 8080"), "{ins:#?}");
    for needle in [
        "io_uring_setup",
        "io_uring_enter",
        "io_uring_register",
        "seccomp=unconfined",
        "memlock=-1",
    ] {
        assert!(
            file.contains(needle),
            "the Containerfile's notes lack {needle}"
        );
    }
    // What it copies exists, and holds every workspace member.
    for i in ins
        .iter()
        .filter(|i| i.starts_with("COPY ") && !i.contains("--from"))
    {
        let words: Vec<&str> = i.split_whitespace().collect();
        for src in &words[1..words.len() - 1] {
            assert!(
                repo().join(src).exists(),
                "COPY source {src} does not exist"
            );
        }
    }
    let copied: Vec<&str> = ins
        .iter()
        .filter(|i| i.starts_with("COPY ") && !i.contains("--from"))
        .flat_map(|i| {
            let words: Vec<&str> = i.split_whitespace().collect();
            words[1..words.len() - 1].to_vec()
        })
        .collect();
    let manifest: toml::Table = toml::from_str(&read("Cargo.toml")).unwrap();
    for member in manifest["workspace"]["members"].as_array().unwrap() {
        let member = member.as_str().unwrap();
        assert!(
            copied
                .iter()
                .any(|c| member == *c || member.starts_with(&format!("{c}/"))),
            "workspace member {member} is not copied into the build stage"
        );
    }

    // The health check, run as the container would, against a real corecast.
    let check = ins
        .iter()
        .find_map(|i| i.strip_prefix("HEALTHCHECK "))
        .expect("a HEALTHCHECK");
    let argv: Vec<String> = serde_json::from_str(
        check
            .split_once("CMD ")
            .expect("HEALTHCHECK ... CMD [...]")
            .1
            .trim(),
    )
    .expect("HEALTHCHECK CMD in exec form");
    assert!(
        argv.iter()
            .any(|a| a.contains(":8080") || a.contains("/8080")),
        "{argv:?}"
    );
    let run = |port: u16| {
        let argv: Vec<String> = argv
            .iter()
            .map(|a| a.replace("8080", &port.to_string()))
            .collect();
        let mut child = Command::new(&argv[0])
            .args(&argv[1..])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Docker gives it --timeout=3s; a check that hangs fails.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status.success();
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    };
    let server = Server::start(1, &[]);
    assert!(
        run(server.http.port()),
        "the health check fails on a healthy corecast"
    );
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    assert!(
        !run(closed),
        "the health check passes with nothing listening"
    );
    assert!(
        !run(server.resp.port()),
        "the health check passes on the RESP port"
    );
}

// ---------------------------------------------------------------------------------------------
// the operations guide

#[test]
fn operations_guide_has_sizing_pinning_and_tuning() {
    let doc = read("docs/operations.md");
    for needle in [
        "## Sizing",
        "## Pinning and NUMA",
        "## Host tuning",
        "A WebSocket subscriber costs",
        "scripts/numa-launch.sh",
        "scripts/tune-host.sh",
        "deploy/sysctl-corecast.conf",
        "fs.nr_open",
        "LimitNOFILE",
        "LimitMEMLOCK",
        "CPUAffinity",
        "NUMAPolicy",
        "taskset",
        "--localalloc",
    ] {
        assert!(doc.contains(needle), "docs/operations.md lacks {needle:?}");
    }
    // run-numa.sh became numa-launch.sh: nothing may still point at it.
    for rel in [
        "README.md",
        "docs/operations.md",
        "docs/architecture.md",
        "docs/benchmarks.md",
    ] {
        assert!(
            !read(rel).contains("run-numa"),
            "{rel} still mentions run-numa.sh"
        );
    }
    assert!(!repo().join("scripts/run-numa.sh").exists());
}
