//! SPSC ring throughput: the shard-to-shard mesh carries every cross-core message, so its
//! push/pop cost bounds cross-shard fan-out.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use corecast_runtime::spsc;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

/// Push then pop on one thread: the ring's own cost, with no cache-line traffic between cores.
fn same_thread(c: &mut Criterion) {
    let mut g = c.benchmark_group("spsc/same_thread");
    const BATCH: u64 = 1024;
    g.throughput(Throughput::Elements(BATCH));
    g.bench_function("push_pop_1024_u64", |b| {
        let (tx, rx) = spsc::channel::<u64>(4096);
        b.iter(|| {
            for i in 0..BATCH {
                let _ = tx.push(black_box(i));
            }
            for _ in 0..BATCH {
                black_box(rx.pop());
            }
        })
    });
    g.bench_function("push_pop_1024_arc", |b| {
        // What the mesh really carries: a handle to a shared frame.
        let (tx, rx) = spsc::channel::<Arc<[u8]>>(4096);
        let frame: Arc<[u8]> = Arc::from(vec![0u8; 64]);
        b.iter(|| {
            for _ in 0..BATCH {
                let _ = tx.push(frame.clone());
            }
            for _ in 0..BATCH {
                black_box(rx.pop());
            }
        })
    });
    g.finish();
}

/// A producer thread and a consumer thread: messages per second across two cores (on this
/// 2-CPU machine, the two threads are the only load).
fn cross_thread(c: &mut Criterion) {
    let mut g = c.benchmark_group("spsc/cross_thread");
    const MESSAGES: u64 = 1 << 20;
    g.throughput(Throughput::Elements(MESSAGES));
    g.sample_size(10);
    g.bench_function("1Mi_u64_capacity_4096", |b| {
        b.iter_custom(|iters| {
            let mut total = std::time::Duration::ZERO;
            for _ in 0..iters {
                let (tx, rx) = spsc::channel::<u64>(4096);
                let start = Instant::now();
                let consumer = std::thread::spawn(move || {
                    let mut got = 0u64;
                    while got < MESSAGES {
                        match rx.pop() {
                            Some(v) => {
                                black_box(v);
                                got += 1;
                            }
                            None => std::hint::spin_loop(),
                        }
                    }
                });
                for i in 0..MESSAGES {
                    let mut v = i;
                    while let Err(back) = tx.push(v) {
                        v = back;
                        std::hint::spin_loop();
                    }
                }
                consumer.join().expect("consumer thread");
                total += start.elapsed();
            }
            total
        })
    });
    g.finish();
}

criterion_group!(benches, same_thread, cross_thread);
criterion_main!(benches);
