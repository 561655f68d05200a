//! Publisher connections. Closed loop (default): each publisher keeps at most `window`
//! messages in flight per subscriber of each of its channels, so no broker's output limits
//! ever trip. Open loop (`--rate`): every message has a scheduled send time, carried in the
//! payload, so latency counts from the schedule (no coordinated omission).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::payload::{now_ns, Encoding, Header};
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
    /// Wire protocol.
    pub proto: crate::proto::Proto,
    /// How the payload carries its header (a JSON string for ws/sse subscribers).
    pub encoding: Encoding,
}

/// Publishes until `shared.stop`; returns messages published.
pub fn run(target: SocketAddr, plan: PublisherPlan, shared: Arc<Shared>) -> anyhow::Result<u64> {
    let mut s = TcpStream::connect(target)?;
    s.set_nodelay(true)?;
    plan.proto.handshake(&mut s)?;
    s.set_read_timeout(None)?;
    let counts_replies = plan.proto.replies_to_publish();
    let names: Vec<String> = plan.channels.iter().map(|&c| channel_name(c)).collect();
    let mut seqs = vec![0u64; plan.channels.len()];
    let mut out = Vec::with_capacity(plan.batch * (plan.payload + 64));
    let mut payload = Vec::with_capacity(plan.payload.max(crate::payload::HEADER_LEN));
    // Replies are counted by a reader thread, so writes never wait for a round trip; the
    // writer only pauses when too many replies are outstanding.
    let replied = Arc::new(AtomicU64::new(0));
    let reader = {
        let mut rs = s.try_clone()?;
        let replied = replied.clone();
        std::thread::spawn(move || -> anyhow::Result<()> {
            if counts_replies {
                ReplyCounter::default().run(&mut rs, &replied)
            } else {
                drain_nats(&mut rs)
            }
        })
    };
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
                    let now = now_ns();
                    if due > now {
                        if in_batch > 0 {
                            break;
                        }
                        // One reading of the clock: a second one could already be past `due`.
                        let wait = due - now;
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
                            // Yield rather than block: the subscriber threads share this CPU
                            // and run at once; blocking on a condition variable (as the raw
                            // sender, alone on its CPU, does) added wake-up latency to every
                            // window turn and cost 10–20% of the delivered rate.
                            std::thread::yield_now();
                        }
                        break;
                    }
                    now_ns()
                }
            };
            payload.clear();
            plan.encoding.encode(
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
            plan.proto.publish(&mut out, &names[k], &payload);
            shared.published[c].fetch_add(1, Ordering::AcqRel);
            sent += 1;
            in_batch += 1;
            turn += 1;
        }
        if in_batch == 0 {
            continue;
        }
        s.write_all(&out)?;
        if !counts_replies {
            replied.store(sent, Ordering::Release);
        }
        while sent - replied.load(Ordering::Acquire) > MAX_OUTSTANDING {
            if reader.is_finished() {
                break;
            }
            std::thread::yield_now();
        }
    }
    // Wait for every reply, then end the reader by closing our write side.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while replied.load(Ordering::Acquire) < sent
        && !reader.is_finished()
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(1));
    }
    let _ = s.shutdown(std::net::Shutdown::Both);
    match reader.join() {
        Ok(Ok(())) => {}
        Ok(Err(e)) if replied.load(Ordering::Acquire) < sent => return Err(e),
        Ok(Err(_)) => {}
        Err(_) => anyhow::bail!("reply reader panicked"),
    }
    anyhow::ensure!(replied.load(Ordering::Acquire) >= sent, "missing replies");
    Ok(sent)
}

/// Reads a NATS publisher's connection: `-ERR` ends the run; PONG/INFO/+OK are ignored. (A
/// server PING goes unanswered: servers ping every 2 minutes, longer than any run.)
fn drain_nats(s: &mut TcpStream) -> anyhow::Result<()> {
    let mut tmp = [0u8; 4096];
    let mut buf = Vec::new();
    loop {
        let n = match s.read(&mut tmp) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        };
        buf.extend_from_slice(&tmp[..n]);
        let mut pos = 0;
        while let Some((used, _)) =
            crate::frames::parse_nats(&buf[pos..]).map_err(anyhow::Error::msg)?
        {
            pos += used;
        }
        buf.drain(..pos);
    }
}

/// PUBLISH commands written but not yet answered before the writer pauses.
const MAX_OUTSTANDING: u64 = 16384;

/// Reads `:N\r\n` replies and counts them; any other reply is an error.
#[derive(Default)]
struct ReplyCounter {
    buf: Vec<u8>,
}

impl ReplyCounter {
    fn run(&mut self, s: &mut TcpStream, replied: &AtomicU64) -> anyhow::Result<()> {
        let mut tmp = [0u8; 65536];
        loop {
            let n = match s.read(&mut tmp) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            };
            self.buf.extend_from_slice(&tmp[..n]);
            let mut pos = 0;
            let mut count = 0;
            while let Some(nl) = self.buf[pos..].iter().position(|&b| b == b'\n') {
                let line = &self.buf[pos..pos + nl + 1];
                anyhow::ensure!(
                    line.first() == Some(&b':'),
                    "unexpected reply {:?}",
                    String::from_utf8_lossy(line)
                );
                pos += nl + 1;
                count += 1;
            }
            self.buf.drain(..pos);
            replied.fetch_add(count, Ordering::AcqRel);
        }
    }
}
