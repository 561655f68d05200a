//! Publisher connections. Closed loop (default): each publisher keeps at most `window`
//! messages in flight per subscriber of each of its channels, so no broker's output limits
//! ever trip. Open loop (`--rate`): every message has a scheduled send time, carried in the
//! payload, so latency counts from the schedule (no coordinated omission).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::payload::{encode, now_ns, Header};
use crate::shared::Shared;
use crate::subscribers::channel_name;

/// How one publisher runs.
pub struct PublisherPlan {
    /// Its index (carried in payloads).
    pub index: u32,
    /// Channels it publishes to, in rotation.
    pub channels: Vec<usize>,
    /// Payload size in bytes.
    pub payload: usize,
    /// Messages in flight per subscriber (closed loop).
    pub window: u64,
    /// Messages per second for this publisher (open loop), if any.
    pub rate: Option<f64>,
    /// Most PUBLISH commands in one write.
    pub batch: usize,
}

/// Publishes until `shared.stop`; returns messages published.
pub fn run(target: SocketAddr, plan: PublisherPlan, shared: Arc<Shared>) -> anyhow::Result<u64> {
    let mut s = TcpStream::connect(target)?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let names: Vec<String> = plan.channels.iter().map(|&c| channel_name(c)).collect();
    let mut seqs = vec![0u64; plan.channels.len()];
    let mut out = Vec::with_capacity(plan.batch * (plan.payload + 64));
    let mut payload = Vec::with_capacity(plan.payload.max(crate::payload::HEADER_LEN));
    let mut replies = ReplyCounter::default();
    let start = now_ns();
    let mut sent: u64 = 0;
    let mut turn = 0usize;
    while !shared.stop.load(Ordering::Acquire) {
        out.clear();
        let mut in_batch = 0;
        for _ in 0..plan.batch {
            let k = turn % plan.channels.len();
            let c = plan.channels[k];
            let ts_ns = match plan.rate {
                Some(rate) => {
                    let due = start + (sent as f64 * 1e9 / rate) as u64;
                    if due > now_ns() {
                        if in_batch > 0 {
                            break;
                        }
                        let wait = due - now_ns();
                        if wait > 200_000 {
                            std::thread::sleep(Duration::from_nanos(wait - 100_000));
                        }
                        while now_ns() < due {
                            std::hint::spin_loop();
                        }
                    }
                    due
                }
                None => {
                    if shared.allowance(c, plan.window) == 0 {
                        turn += 1;
                        if in_batch == 0 && turn.is_multiple_of(plan.channels.len()) {
                            std::thread::yield_now();
                        }
                        break;
                    }
                    now_ns()
                }
            };
            payload.clear();
            encode(
                &mut payload,
                &Header {
                    ts_ns,
                    channel: c as u32,
                    publisher: plan.index,
                    seq: seqs[k],
                },
                plan.payload,
            );
            seqs[k] += 1;
            let name = &names[k];
            write!(
                out,
                "*3\r\n$7\r\nPUBLISH\r\n${}\r\n{}\r\n${}\r\n",
                name.len(),
                name,
                payload.len()
            )?;
            out.extend_from_slice(&payload);
            out.extend_from_slice(b"\r\n");
            shared.published[c].fetch_add(1, Ordering::AcqRel);
            sent += 1;
            in_batch += 1;
            turn += 1;
        }
        if in_batch == 0 {
            continue;
        }
        s.write_all(&out)?;
        replies.expect(in_batch);
        replies.read_all(&mut s)?;
    }
    Ok(sent)
}

/// Reads `:N\r\n` replies (or errors) for the commands written.
#[derive(Default)]
struct ReplyCounter {
    pending: usize,
    buf: Vec<u8>,
}

impl ReplyCounter {
    fn expect(&mut self, n: usize) {
        self.pending += n;
    }

    fn read_all(&mut self, s: &mut TcpStream) -> anyhow::Result<()> {
        let mut tmp = [0u8; 16384];
        while self.pending > 0 {
            let n = s.read(&mut tmp)?;
            anyhow::ensure!(n > 0, "broker closed the publisher connection");
            self.buf.extend_from_slice(&tmp[..n]);
            let mut pos = 0;
            while let Some(nl) = self.buf[pos..].iter().position(|&b| b == b'\n') {
                let line = &self.buf[pos..pos + nl + 1];
                anyhow::ensure!(
                    line.first() == Some(&b':'),
                    "unexpected reply {:?}",
                    String::from_utf8_lossy(line)
                );
                pos += nl + 1;
                self.pending -= 1;
            }
            self.buf.drain(..pos);
        }
        Ok(())
    }
}
