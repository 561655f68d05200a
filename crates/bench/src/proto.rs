//! The wire protocols the load generator speaks to a broker: Redis pub/sub (RESP2) and NATS.
//! Everything else in the bench (windows, accounting, payloads) is the same for both, so the
//! brokers are compared under the same load.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;

use crate::frames::{parse_nats, parse_push, Push};

/// A broker protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Proto {
    /// Redis pub/sub: SUBSCRIBE / PUBLISH, one integer reply per PUBLISH.
    Resp,
    /// NATS: SUB / PUB with `verbose: false`, so a PUB gets no reply.
    Nats,
}

impl Proto {
    /// Runs the connection handshake on a fresh blocking stream: NATS sends `INFO` first and
    /// expects `CONNECT`; RESP needs nothing.
    pub fn handshake(self, s: &mut TcpStream) -> anyhow::Result<()> {
        if self == Proto::Nats {
            let mut line = String::new();
            BufReader::new(s.try_clone()?).read_line(&mut line)?;
            anyhow::ensure!(
                line.starts_with("INFO "),
                "expected NATS INFO, got {line:?}"
            );
            s.write_all(b"CONNECT {\"verbose\":false,\"pedantic\":false,\"echo\":false}\r\n")?;
        }
        Ok(())
    }

    /// Appends a subscription to `subject` that the broker confirms with one push (RESP: the
    /// subscribe confirmation; NATS: a PONG to the PING sent behind it).
    pub fn subscribe(self, out: &mut Vec<u8>, subject: &str, sid: usize) {
        match self {
            Proto::Resp => {
                let _ = write!(
                    out,
                    "*2\r\n$9\r\nSUBSCRIBE\r\n${}\r\n{subject}\r\n",
                    subject.len()
                );
            }
            Proto::Nats => {
                let _ = write!(out, "SUB {subject} {sid}\r\nPING\r\n");
            }
        }
    }

    /// Appends a publish of `payload` on `subject`.
    pub fn publish(self, out: &mut Vec<u8>, subject: &str, payload: &[u8]) {
        match self {
            Proto::Resp => {
                let _ = write!(
                    out,
                    "*3\r\n$7\r\nPUBLISH\r\n${}\r\n{subject}\r\n${}\r\n",
                    subject.len(),
                    payload.len()
                );
            }
            Proto::Nats => {
                let _ = write!(out, "PUB {subject} {}\r\n", payload.len());
            }
        }
        out.extend_from_slice(payload);
        out.extend_from_slice(b"\r\n");
    }

    /// Whether every publish is answered (RESP's subscriber count).
    pub fn replies_to_publish(self) -> bool {
        self == Proto::Resp
    }

    /// Parses the first complete push a subscriber received.
    pub fn parse(self, buf: &[u8]) -> Result<Option<(usize, Push<'_>)>, String> {
        match self {
            Proto::Resp => parse_push(buf),
            Proto::Nats => parse_nats(buf),
        }
    }

    /// Reads until one complete push has arrived on a blocking stream (a subscription's
    /// confirmation); returns what was read after it.
    pub fn await_confirmation(self, s: &mut TcpStream) -> anyhow::Result<Vec<u8>> {
        let mut buf = Vec::new();
        let mut tmp = [0u8; 512];
        loop {
            let n = s.read(&mut tmp)?;
            anyhow::ensure!(n > 0, "broker closed the connection while subscribing");
            buf.extend_from_slice(&tmp[..n]);
            if let Some((used, _)) = self.parse(&buf).map_err(anyhow::Error::msg)? {
                buf.drain(..used);
                return Ok(buf);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_encodings() {
        let mut out = Vec::new();
        Proto::Resp.publish(&mut out, "bench.0", b"hi");
        assert_eq!(out, b"*3\r\n$7\r\nPUBLISH\r\n$7\r\nbench.0\r\n$2\r\nhi\r\n");
        out.clear();
        Proto::Nats.publish(&mut out, "bench.0", b"hi");
        assert_eq!(out, b"PUB bench.0 2\r\nhi\r\n");
    }

    #[test]
    fn subscribe_encodings() {
        let mut out = Vec::new();
        Proto::Resp.subscribe(&mut out, "bench.1", 7);
        assert_eq!(out, b"*2\r\n$9\r\nSUBSCRIBE\r\n$7\r\nbench.1\r\n");
        out.clear();
        Proto::Nats.subscribe(&mut out, "bench.1", 7);
        assert_eq!(out, b"SUB bench.1 7\r\nPING\r\n");
    }
}
