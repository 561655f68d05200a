//! Completions from the driver, dispatched by the tag each operation was given, and the
//! wake-ups of sleeping peers this turn's mesh pushes call for.

use corecast_runtime::{Completion, Event};

use super::{token, Shard};

impl Shard {
    /// Takes every available completion and dispatches it.
    pub(super) fn reap(&mut self) -> usize {
        let mut events = std::mem::take(&mut self.events);
        let reaped = self.io.reap(&mut events);
        for event in events.drain(..) {
            match event {
                Event::Completion(Completion {
                    tag,
                    result,
                    more,
                    notif,
                    buf,
                    ..
                }) => {
                    let (kind, key, gen) = token::split(tag);
                    let key = key as usize;
                    match kind {
                        token::ACCEPT => self.on_accept(key, result, more),
                        token::RECV => self.on_recv(key, gen, result, more, buf),
                        token::SEND => self.on_send(key, gen, result),
                        token::SEND_ZC => self.on_send_zc(key, gen, result, notif),
                        token::CLOSE => self.on_closed(key, gen),
                        token::TIMER => self.on_timer(),
                        _ => {}
                    }
                }
                Event::WakeFailed { peer, error } => {
                    // The peer's sleep flag was already swapped off: without a retry it
                    // would sleep until its timer.
                    tracing::debug!(shard = self.id, peer, error, "wake-up failed; retrying");
                    self.counters.wake_failures += 1;
                    self.mesh.rewake(peer);
                }
            }
        }
        self.events = events;
        reaped
    }

    /// Wakes the peers this turn pushed to that may be asleep (MSG_RING).
    pub(super) fn send_wakes(&mut self) {
        let Self { mesh, io, .. } = self;
        mesh.wakes(|peer, ring_fd| io.wake(ring_fd, peer));
    }
}
