//! RESP codec throughput: parsing PUBLISH commands (multibulk and inline) and encoding the
//! `message` push every subscriber receives.

use std::hint::black_box;

use corecast_proto::resp::{encode, parse_command, Args, Limits};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

fn publish_command(payload_len: usize) -> Vec<u8> {
    let payload = vec![b'x'; payload_len];
    let mut out = Vec::new();
    out.extend_from_slice(b"*3\r\n$7\r\nPUBLISH\r\n$7\r\nbench.0\r\n");
    out.extend_from_slice(format!("${payload_len}\r\n").as_bytes());
    out.extend_from_slice(&payload);
    out.extend_from_slice(b"\r\n");
    out
}

/// Parse a pipelined buffer of 256 PUBLISH commands, command after command.
fn parse(c: &mut Criterion) {
    let mut g = c.benchmark_group("resp/parse_publish");
    let limits = Limits::default();
    for payload_len in [64usize, 1024] {
        let one = publish_command(payload_len);
        let input = one.repeat(256);
        g.throughput(Throughput::Bytes(input.len() as u64));
        g.bench_with_input(
            BenchmarkId::from_parameter(payload_len),
            &input,
            |b, input| {
                let mut args = Args::new();
                b.iter(|| {
                    let mut pos = 0;
                    while let Ok(Some(used)) = parse_command(&input[pos..], &limits, &mut args) {
                        black_box(args.get(2));
                        pos += used;
                    }
                    assert_eq!(pos, input.len());
                })
            },
        );
    }
    let inline =
        b"PUBLISH bench.0 hello-world-64-bytes-of-payload-xxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n"
            .repeat(256);
    g.throughput(Throughput::Bytes(inline.len() as u64));
    g.bench_function("inline", |b| {
        let mut args = Args::new();
        b.iter(|| {
            let mut pos = 0;
            while let Ok(Some(used)) = parse_command(&inline[pos..], &limits, &mut args) {
                black_box(args.get(2));
                pos += used;
            }
            assert_eq!(pos, inline.len());
        })
    });
    g.finish();
}

/// Encode the `message` push (done once per published message per wire format).
fn encode_message(c: &mut Criterion) {
    let mut g = c.benchmark_group("resp/encode_message");
    for payload_len in [64usize, 1024] {
        let payload = vec![b'x'; payload_len];
        g.throughput(Throughput::Bytes(
            encode::message_len(7, payload_len) as u64 * 256,
        ));
        g.bench_with_input(
            BenchmarkId::from_parameter(payload_len),
            &payload,
            |b, payload| {
                let mut out = Vec::with_capacity(encode::message_len(7, payload_len) * 256);
                b.iter(|| {
                    out.clear();
                    for _ in 0..256 {
                        encode::push_message(&mut out, b"bench.0", payload);
                    }
                    black_box(&out);
                })
            },
        );
    }
    g.finish();
}

criterion_group!(benches, parse, encode_message);
criterion_main!(benches);
