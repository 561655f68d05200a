//! The `raw` ideal broker: accepts the subscribers itself and writes pre-encoded frames to
//! them from one pinned thread, coalesced per connection, under the same window. It stands in
//! for the best any broker could do on this machine's loopback.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::payload::{encode, now_ns, Header};
use crate::shared::Shared;
use crate::subscribers::channel_name;

/// What the raw sender serves: the same knobs the publishers get, plus its CPU.
pub struct RawPlan {
    /// Subscriber connections to accept before sending.
    pub subscribers: usize,
    /// Channels; subscriber `bench.N` gets channel `N % channels`.
    pub channels: usize,
    /// Payload size in bytes.
    pub payload: usize,
    /// Messages in flight per subscriber (closed loop).
    pub window: u64,
    /// Messages per second in total (open loop), if any.
    pub rate: Option<f64>,
    /// CPU to pin the sender thread to, if any.
    pub cpu: Option<usize>,
}

/// A bound raw broker, ready to accept `subscribers` connections.
pub struct RawBroker {
    listener: TcpListener,
}

impl RawBroker {
    /// Binds on an ephemeral loopback port.
    pub fn bind() -> anyhow::Result<Self> {
        Ok(Self {
            listener: TcpListener::bind("127.0.0.1:0")?,
        })
    }

    /// Where subscribers connect.
    pub fn addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.listener.local_addr()?)
    }

    /// Accepts `subscribers` connections (answering their SUBSCRIBE), then sends until stop;
    /// returns messages sent per channel in total and the open sockets.
    pub fn run(self, plan: RawPlan, shared: Arc<Shared>) -> anyhow::Result<(u64, Vec<TcpStream>)> {
        let RawPlan {
            subscribers,
            channels,
            payload,
            window,
            rate,
            cpu,
        } = plan;
        if let Some(cpu) = cpu {
            core_affinity::set_for_current(core_affinity::CoreId { id: cpu });
        }
        let mut by_channel: Vec<Vec<TcpStream>> = (0..channels).map(|_| Vec::new()).collect();
        for _ in 0..subscribers {
            let (mut s, _) = self.listener.accept()?;
            s.set_nodelay(true)?;
            s.set_read_timeout(Some(Duration::from_secs(10)))?;
            let mut buf = Vec::new();
            let mut tmp = [0u8; 256];
            let name = loop {
                let n = s.read(&mut tmp)?;
                anyhow::ensure!(n > 0, "subscriber left");
                buf.extend_from_slice(&tmp[..n]);
                let text = String::from_utf8_lossy(&buf).to_string();
                let parts: Vec<&str> = text.split("\r\n").collect();
                if parts.len() >= 5 && !parts[4].is_empty() {
                    break parts[4].to_string();
                }
            };
            let c: usize = name.trim_start_matches("bench.").parse()?;
            write!(
                s,
                "*3\r\n$9\r\nsubscribe\r\n${}\r\n{}\r\n:1\r\n",
                name.len(),
                name
            )?;
            by_channel[c % channels].push(s);
        }
        let names: Vec<String> = (0..channels).map(channel_name).collect();
        let active: Vec<usize> = (0..channels)
            .filter(|&c| !by_channel[c].is_empty())
            .collect();
        let mut seqs = vec![0u64; channels];
        let mut frames = Vec::new();
        let mut payload_buf = Vec::new();
        let mut sent = 0u64;
        let start = now_ns();
        while !shared.stop.load(Ordering::Acquire) {
            if let Some(rate) = rate {
                // Open loop: one message per tick, stamped with its scheduled time.
                let due = start + (sent as f64 * 1e9 / rate) as u64;
                loop {
                    // One reading of the clock per step: a second one could be past `due`.
                    let now = now_ns();
                    if now >= due {
                        break;
                    }
                    if due - now > 200_000 {
                        std::thread::sleep(Duration::from_micros(100));
                    } else {
                        std::hint::spin_loop();
                    }
                }
                let c = sent as usize % channels;
                frames.clear();
                payload_buf.clear();
                encode(
                    &mut payload_buf,
                    &Header {
                        ts_ns: due,
                        channel: c as u32,
                        publisher: 0,
                        seq: seqs[c],
                    },
                    payload,
                );
                seqs[c] += 1;
                write!(
                    frames,
                    "*3\r\n$7\r\nmessage\r\n${}\r\n{}\r\n${}\r\n",
                    names[c].len(),
                    names[c],
                    payload_buf.len()
                )?;
                frames.extend_from_slice(&payload_buf);
                frames.extend_from_slice(b"\r\n");
                shared.published[c].fetch_add(1, Ordering::AcqRel);
                sent += 1;
                for s in &mut by_channel[c] {
                    if s.write_all(&frames).is_err() && shared.stop.load(Ordering::Acquire) {
                        break;
                    }
                }
                continue;
            }
            let mut idle = true;
            for c in 0..channels {
                if by_channel[c].is_empty() {
                    continue;
                }
                let n = shared.allowance(c, window).min(64);
                if n == 0 {
                    continue;
                }
                idle = false;
                frames.clear();
                for _ in 0..n {
                    payload_buf.clear();
                    encode(
                        &mut payload_buf,
                        &Header {
                            ts_ns: now_ns(),
                            channel: c as u32,
                            publisher: 0,
                            seq: seqs[c],
                        },
                        payload,
                    );
                    seqs[c] += 1;
                    write!(
                        frames,
                        "*3\r\n$7\r\nmessage\r\n${}\r\n{}\r\n${}\r\n",
                        names[c].len(),
                        names[c],
                        payload_buf.len()
                    )?;
                    frames.extend_from_slice(&payload_buf);
                    frames.extend_from_slice(b"\r\n");
                }
                shared.published[c].fetch_add(n, Ordering::AcqRel);
                sent += n;
                for s in &mut by_channel[c] {
                    if let Err(e) = s.write_all(&frames) {
                        // Subscribers that have everything may hang up once stop is set.
                        if shared.stop.load(Ordering::Acquire) {
                            return Ok((sent, by_channel.into_iter().flatten().collect()));
                        }
                        return Err(e.into());
                    }
                }
            }
            if idle {
                // Sleep until a subscriber thread moves the window, so the sender's CPU use
                // (reported by scripts/compare.py) is work, not spinning.
                shared.wait_for_window(&active, window);
            }
        }
        // The sockets go back to the caller, which closes them once the subscribers have
        // drained, so nobody sees a reset mid-stream.
        Ok((sent, by_channel.into_iter().flatten().collect()))
    }
}
