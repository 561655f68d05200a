//! Glob matching (PSUBSCRIBE patterns against a published channel): the common shapes every
//! PUBLISH pays once per pattern of the shard, the worst cases at the largest sizes we plan
//! to allow (256-byte pattern, 1 KiB channel) and beyond (1 KiB pattern, 64 KiB channel),
//! with the old backtracking matcher beside them, and the cost of compiling at PSUBSCRIBE.

use std::hint::black_box;

use corecast_proto::glob::{glob_match, reference_glob_match, Glob};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

/// `*` then `a` repeated then `b`, `len` bytes in all, with a trailing `*` when `open`.
fn star_run(len: usize, open: bool) -> Vec<u8> {
    let mut p = vec![b'*'];
    p.resize(len - 1 - usize::from(open), b'a');
    p.push(b'b');
    if open {
        p.push(b'*');
    }
    p
}

/// A 256-byte pattern of classes, `?` and `*` groups that `ab…` channels keep half-matching.
fn class_heavy() -> Vec<u8> {
    let mut p = b"*".to_vec();
    while p.len() < 250 {
        p.extend_from_slice(b"[a-b][^c]?[ab]*");
    }
    p.truncate(250);
    p.extend_from_slice(b"[c-d]*");
    p
}

fn common(c: &mut Criterion) {
    let mut g = c.benchmark_group("glob/common");
    for (name, pattern, channel) in [
        ("prefix_hit", &b"news.*"[..], &b"news.tech"[..]),
        ("prefix_miss", b"news.*", b"sport.tech"),
        ("literal", b"news.tech", b"news.tech"),
        ("suffix", b"*.tech", b"news.tech"),
        ("middle", b"*.tech.*", b"eu.news.tech.daily"),
        ("middle_miss", b"*.tech.*", b"eu.news.sport.daily"),
        ("class", b"news.[a-m]?ch", b"news.tech"),
    ] {
        let glob = Glob::compile(pattern);
        g.bench_function(name, |b| b.iter(|| glob.matches(black_box(channel))));
    }
    g.finish();
}

fn worst(c: &mut Criterion) {
    let mut g = c.benchmark_group("glob/worst_256x1024");
    let run = vec![b'a'; 1024];
    let ab = b"ab".repeat(512);
    for (name, pattern, channel) in [
        ("star_run", star_run(256, false), &run),
        ("star_run_open", star_run(256, true), &run),
        (
            "star_a_repeat",
            [b"*a".repeat(127), b"b*".to_vec()].concat(),
            &run,
        ),
        ("class_heavy", class_heavy(), &ab),
    ] {
        assert_eq!(pattern.len(), 256, "{name}");
        let glob = Glob::compile(&pattern);
        assert!(!glob.matches(channel), "{name}");
        g.throughput(Throughput::Bytes(channel.len() as u64));
        g.bench_function(name, |b| b.iter(|| glob.matches(black_box(channel))));
        g.bench_function(format!("{name}/reference"), |b| {
            b.iter(|| reference_glob_match(&pattern, black_box(channel)))
        });
    }
    g.finish();

    let mut g = c.benchmark_group("glob/worst_1Kx64K");
    g.sample_size(10);
    let run = vec![b'a'; 65536];
    for (name, pattern) in [
        ("star_run", star_run(1024, false)),
        ("star_run_open", star_run(1024, true)),
    ] {
        let glob = Glob::compile(&pattern);
        assert!(!glob.matches(&run));
        g.throughput(Throughput::Bytes(run.len() as u64));
        g.bench_function(name, |b| b.iter(|| glob.matches(black_box(&run))));
    }
    let open = star_run(1024, true);
    g.bench_function("star_run_open/reference", |b| {
        b.iter(|| reference_glob_match(&open, black_box(&run)))
    });
    g.finish();
}

fn compile(c: &mut Criterion) {
    let mut g = c.benchmark_group("glob/compile");
    for (name, pattern) in [
        ("news.*", b"news.*".to_vec()),
        ("*.tech.*", b"*.tech.*".to_vec()),
        ("star_run_open_256", star_run(256, true)),
        ("class_heavy_256", class_heavy()),
        ("star_run_open_1K", star_run(1024, true)),
    ] {
        g.bench_function(name, |b| b.iter(|| Glob::compile(black_box(&pattern))));
    }
    // The compile-per-call convenience, as callers that do not keep a Glob pay it.
    g.bench_function("glob_match news.* (compile+match)", |b| {
        b.iter(|| glob_match(black_box(b"news.*"), black_box(b"news.tech")))
    });
    g.bench_function("glob_match *.tech.* (compile+match)", |b| {
        b.iter(|| glob_match(black_box(b"*.tech.*"), black_box(b"eu.news.tech.daily")))
    });
    g.finish();
}

criterion_group!(benches, common, worst, compile);
criterion_main!(benches);
