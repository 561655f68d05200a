//! The table of in-flight operations and the resources each one keeps alive.
//!
//! Every op the driver submits gets an entry here *before* its SQE is queued, holding
//! whatever memory the kernel may read or write for it (a send's batch, a timeout's
//! timespec). The entry is removed only when the op's final CQE — the one without
//! `IORING_CQE_F_MORE` — is reaped, and only then are its resources dropped or pooled. The
//! kernel therefore never holds a pointer to memory that has been freed or moved: the table
//! owns the memory, and the only code that removes entries is [`OpTable::complete`].
//!
//! "Final CQE" is one rule for every op kind: single-shot ops post one CQE without F_MORE;
//! multishot accept/recv set F_MORE on every CQE but the last; SEND_ZC sets F_MORE on its
//! result CQE exactly when a notification CQE (without F_MORE) will follow, so its buffer is
//! held until the notification, or released at the result when none will come.

use io_uring::cqueue;
use io_uring::types::Timespec;
use slab::Slab;

use super::bufs::ProvidedBufs;
use super::send::BatchInner;
use super::token::{self, Decoded, Generations, OpId};
use super::{Completion, Event, OpKind};

/// Idle send batches kept for reuse. Enough for a thousand connections sending at once
/// without allocating; past a burst larger than that, the extra batches are freed.
const BATCH_POOL_MAX: usize = 1024;
/// Idle timespecs kept for reuse (a shard has a handful of timers at most).
const TIMESPEC_POOL_MAX: usize = 64;

/// What an op keeps alive, by kind.
pub(crate) enum OpState<K> {
    Accept,
    Recv,
    /// The batch: the caller's handles, the iovec array and the msghdr the SQE points to.
    Send(Box<BatchInner<K>>),
    /// A one-item batch: the handle whose bytes the SQE points to.
    SendZc(Box<BatchInner<K>>),
    Close,
    /// The timespec the SQE points to.
    Timeout(Box<Timespec>),
}

impl<K> OpState<K> {
    fn kind(&self) -> OpKind {
        match self {
            OpState::Accept => OpKind::Accept,
            OpState::Recv => OpKind::Recv,
            OpState::Send(_) => OpKind::Send,
            OpState::SendZc(_) => OpKind::SendZc,
            OpState::Close => OpKind::Close,
            OpState::Timeout(_) => OpKind::Timeout,
        }
    }
}

/// One in-flight op.
struct Op<K> {
    gen: u32,
    tag: u64,
    state: OpState<K>,
}

/// The in-flight ops plus the pools their resources return to.
pub(crate) struct OpTable<K> {
    ops: Slab<Op<K>>,
    gens: Generations,
    // Boxed on purpose: the kernel is given addresses inside these boxes, which must not
    // change when a box moves between the pool, a `SendBatch` and the op table.
    #[allow(clippy::vec_box)]
    batches: Vec<Box<BatchInner<K>>>,
    #[allow(clippy::vec_box)]
    timespecs: Vec<Box<Timespec>>,
    /// Wake-ups received from peers (swallowed CQEs).
    pub(crate) wakes_received: u64,
    /// A cancel-all request failed with EINVAL (kernel older than 5.19): cancel op by op.
    pub(crate) cancel_all_unsupported: bool,
}

impl<K: AsRef<[u8]>> OpTable<K> {
    pub(crate) fn new() -> Self {
        Self {
            ops: Slab::new(),
            gens: Generations::new(),
            batches: Vec::new(),
            timespecs: Vec::new(),
            wakes_received: 0,
            cancel_all_unsupported: false,
        }
    }

    /// Records an op and returns its id. The caller queues the SQE only after this, with the
    /// id's `user_data`, and with pointers only into `state`'s boxes.
    pub(crate) fn insert(&mut self, tag: u64, state: OpState<K>) -> OpId {
        let gen = self.gens.next();
        let entry = self.ops.vacant_entry();
        let key = u32::try_from(entry.key()).expect("more than 2^32 ops in flight");
        entry.insert(Op { gen, tag, state });
        OpId { key, gen }
    }

    /// Whether `id` names an op that has not completed yet.
    pub(crate) fn contains(&self, id: OpId) -> bool {
        self.ops
            .get(id.key as usize)
            .is_some_and(|op| op.gen == id.gen)
    }

    /// Number of ops in flight.
    pub(crate) fn len(&self) -> usize {
        self.ops.len()
    }

    /// The `user_data` of every op in flight.
    pub(crate) fn user_datas(&self) -> Vec<u64> {
        self.ops
            .iter()
            .map(|(key, op)| {
                OpId {
                    key: key as u32,
                    gen: op.gen,
                }
                .user_data()
            })
            .collect()
    }

    /// An empty batch box, from the pool when one is idle.
    pub(crate) fn take_batch(&mut self) -> Option<Box<BatchInner<K>>> {
        self.batches.pop()
    }

    /// Gives a batch box (already emptied) back to the pool.
    pub(crate) fn put_batch(&mut self, batch: Box<BatchInner<K>>) {
        if self.batches.len() < BATCH_POOL_MAX {
            self.batches.push(batch);
        }
    }

    /// A boxed timespec holding `ts`, from the pool when one is idle.
    pub(crate) fn timespec(&mut self, ts: Timespec) -> Box<Timespec> {
        match self.timespecs.pop() {
            Some(mut b) => {
                *b = ts;
                b
            }
            None => Box::new(ts),
        }
    }

    /// Handles one CQE: reports it in `out` (unless it is a driver-internal one) and, when it
    /// is the op's final CQE, removes the op and releases what it kept alive.
    pub(crate) fn complete(
        &mut self,
        user_data: u64,
        result: i32,
        flags: u32,
        bufs: &ProvidedBufs,
        out: &mut Vec<Event>,
    ) {
        match token::decode(user_data) {
            Decoded::Op(id) => self.complete_op(id, result, flags, bufs, out),
            Decoded::WakeReceived => self.wakes_received += 1,
            Decoded::Cancel { all } => {
                if all && result == -libc::EINVAL {
                    self.cancel_all_unsupported = true;
                }
            }
            Decoded::WakeSent { peer } => {
                // Success is skipped by the kernel (CQE_SKIP_SUCCESS); anything posted is a
                // wake-up that did not happen, which the caller must raise again.
                if result < 0 {
                    out.push(Event::WakeFailed {
                        peer: peer as usize,
                        error: -result,
                    });
                }
            }
            Decoded::Unknown => {
                tracing::debug!(user_data, result, "completion with a foreign user_data");
            }
        }
    }

    fn complete_op(
        &mut self,
        id: OpId,
        result: i32,
        flags: u32,
        bufs: &ProvidedBufs,
        out: &mut Vec<Event>,
    ) {
        let key = id.key as usize;
        let more = cqueue::more(flags);
        let (tag, kind) = match self.ops.get(key) {
            Some(op) if op.gen == id.gen => (op.tag, op.state.kind()),
            _ => {
                // Cannot come from the kernel for an op of ours (entries outlive their
                // final CQE); only a forged MSG_RING could produce it.
                tracing::error!(key, gen = id.gen, "completion for an unknown op; ignored");
                return;
            }
        };
        let buf = match (kind, cqueue::buffer_select(flags)) {
            (OpKind::Recv, Some(bid)) => bufs.take(bid, result),
            _ => None,
        };
        let notif = kind == OpKind::SendZc && cqueue::notif(flags);
        if !more {
            let op = self.ops.remove(key);
            self.release(op.state);
        }
        out.push(Event::Completion(Completion {
            tag,
            result,
            more,
            notif,
            kind,
            buf,
        }));
    }

    /// Drops an op's handles and pools its boxes. Runs only after the op's final CQE.
    fn release(&mut self, state: OpState<K>) {
        match state {
            OpState::Send(mut batch) | OpState::SendZc(mut batch) => {
                batch.reset();
                self.put_batch(batch);
            }
            OpState::Timeout(ts) => {
                if self.timespecs.len() < TIMESPEC_POOL_MAX {
                    self.timespecs.push(ts);
                }
            }
            OpState::Accept | OpState::Recv | OpState::Close => {}
        }
    }

    /// Forgets every in-flight op without dropping what it keeps alive, for when the kernel
    /// may still use that memory and the driver is going away.
    pub(crate) fn leak_in_flight(&mut self) {
        std::mem::forget(std::mem::take(&mut self.ops));
    }
}
