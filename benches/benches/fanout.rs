//! Local fan-out without sockets: one pre-encoded frame handed to N connections' outbound
//! queues, then each queue gathered into an iovec batch and marked sent, as the shard's send
//! path does. This is the per-subscriber cost corecast pays on top of the kernel's.

use std::hint::black_box;

use std::rc::Rc;

use bytes::Bytes;
use corecast_broker::outbound::{Frame, LocalFrame, Outbound, Wire};
use corecast_proto::resp::encode;
use corecast_runtime::SendBatch;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

/// A frame as the shard hands it to its local subscribers.
fn frame(payload_len: usize) -> LocalFrame {
    let mut out = Vec::new();
    encode::push_message(&mut out, b"bench.0", &vec![b'x'; payload_len]);
    Rc::new(Frame {
        bytes: Bytes::from(out),
        ts_ns: 1,
    })
}

/// Queue one frame on every subscriber (a shared-pointer clone each, no copy).
fn enqueue(c: &mut Criterion) {
    let mut g = c.benchmark_group("fanout/enqueue");
    for n in [10usize, 100, 1000] {
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, &n| {
            let mut queues: Vec<Outbound> = (0..n).map(|_| Outbound::default()).collect();
            let f = frame(64);
            b.iter(|| {
                for q in queues.iter_mut() {
                    q.push_shared(&f);
                }
                for q in queues.iter_mut() {
                    q.clear();
                }
            })
        });
    }
    g.finish();
}

/// Queue 16 frames per subscriber, then gather each queue into one send batch, advance it
/// past what a send would have written and release the batch (as the driver does when the
/// send completes): the whole user-space side of a coalesced send.
fn enqueue_gather_advance(c: &mut Criterion) {
    let mut g = c.benchmark_group("fanout/enqueue_gather_advance_16_frames");
    const FRAMES: usize = 16;
    for n in [10usize, 100, 1000] {
        g.throughput(Throughput::Elements((n * FRAMES) as u64));
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, &n| {
            let mut queues: Vec<Outbound> = (0..n).map(|_| Outbound::default()).collect();
            let frames: Vec<LocalFrame> = (0..FRAMES).map(|_| frame(64)).collect();
            let mut batch: SendBatch<Wire> = SendBatch::new();
            b.iter(|| {
                for f in &frames {
                    for q in queues.iter_mut() {
                        q.push_shared(f);
                    }
                }
                for q in queues.iter_mut() {
                    let gathered = q.gather(&mut batch, 1 << 20);
                    black_box(&batch);
                    q.advance(gathered.bytes);
                    batch.clear();
                }
            })
        });
    }
    g.finish();
}

criterion_group!(benches, enqueue, enqueue_gather_advance);
criterion_main!(benches);
