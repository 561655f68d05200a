//! Messages from other shards (and from this one to itself): the mesh side of a shard's
//! turn, each message dispatched to the module that owns its job.

use super::Shard;
use crate::config::limits::{DRAIN_BUDGET, TURN_INPUT_BUDGET_NS};
use crate::delivery::Via;
use crate::msg::{MessageView, ReplyValue, ShardMsg};

impl Shard {
    /// Sends a message to shard `to` (itself included), never blocking: a full ring queues it
    /// in order behind earlier overflow and marks the mesh congested.
    pub(super) fn send_to(&mut self, to: usize, msg: ShardMsg) {
        if self.mesh.send(to, msg, &self.shared.congested) {
            self.counters.ring_full += 1;
        }
    }

    /// Handles this turn's messages from peers (a budget each) and from itself.
    pub(super) fn drain_mesh(&mut self) {
        self.mesh_deferred = false;
        let started_ns = corecast_runtime::clock::now_ns();
        let mut handled = 0u32;
        for from in 0..self.shards {
            if from == self.id {
                continue;
            }
            for _ in 0..DRAIN_BUDGET {
                // Publishes from peers cost pattern matching like local ones. The mesh has a
                // budget of its own, beside the clients' (so heavy client input cannot starve
                // the replies and deliveries peers send): past it the rest stay in the ring
                // for the next turn, and the shard does not sleep meanwhile.
                handled += 1;
                if handled & 15 == 0
                    && corecast_runtime::clock::now_ns().saturating_sub(started_ns)
                        > TURN_INPUT_BUDGET_NS
                {
                    self.mesh_deferred = true;
                    break;
                }
                let Some(msg) = self.mesh.pop(from) else {
                    break;
                };
                self.handle_msg(from, msg);
            }
        }
        while let Some(msg) = self.mesh.pop_local() {
            self.handle_msg(self.id, msg);
        }
    }

    fn handle_msg(&mut self, from: usize, msg: ShardMsg) {
        match msg {
            ShardMsg::Publish {
                ns,
                channel,
                payload,
                ts_ns,
                json,
                reply,
            } => {
                let msg = MessageView {
                    ns,
                    channel: &channel,
                    seq: 0,
                    epoch: 0,
                    payload: &payload,
                    ts_ns,
                    json,
                };
                let (receivers, pos) = self.fanout(msg, Some(&payload));
                if let Some(pending) = reply {
                    self.send_to(
                        from,
                        ShardMsg::Reply {
                            pending,
                            value: ReplyValue::Published { receivers, pos },
                        },
                    );
                }
            }
            ShardMsg::Deliver { msg } => self.deliver_here(msg.view(), Via::Channel),
            ShardMsg::Relay {
                msg,
                pattern,
                forward,
            } => self.relay_message(&msg, pattern, &forward),
            ShardMsg::Forward { to, msg } => self.send_to(usize::from(to), *msg),
            ShardMsg::DeliverPattern { pattern, msg } => {
                self.deliver_here(msg.view(), Via::Pattern(&pattern))
            }
            ShardMsg::SubDelta {
                ns,
                channel,
                delta,
                reply,
            } => {
                self.owned_apply(ns, &channel, from, delta);
                self.ack(from, reply);
            }
            ShardMsg::Join {
                ns,
                channel,
                since,
                reply,
            } => {
                let joined = self.join_owned(ns, &channel, from, since);
                let answer = ShardMsg::Reply {
                    pending: reply,
                    value: ReplyValue::Joined(Box::new(joined)),
                };
                // After the answer, `from` must see exactly the deliveries sequenced after
                // the +1: they may come through a relay, so the answer does too.
                self.send_in_order(from, answer);
            }
            ShardMsg::PatDelta {
                pattern,
                delta,
                reply,
            } => {
                self.patterns.apply(&pattern, from, delta);
                self.ack(from, reply);
            }
            ShardMsg::Query { query, reply } => {
                let value = self.answer(&query);
                self.send_to(
                    from,
                    ShardMsg::Reply {
                        pending: reply,
                        value,
                    },
                );
            }
            ShardMsg::Reply { pending, value } => self.complete(pending, value),
        }
    }

    /// Acknowledges an interest change to the shard that asked, if it holds a reply for it.
    fn ack(&mut self, to: usize, reply: Option<u32>) {
        if let Some(pending) = reply {
            self.send_to(
                to,
                ShardMsg::Reply {
                    pending,
                    value: ReplyValue::Ack,
                },
            );
        }
    }
}
