//! A safe io_uring driver: the only code in corecast that builds SQEs, encodes `user_data`,
//! enters the kernel or sends MSG_RING wake-ups.
//!
//! # Why a driver
//! An io_uring op hands the kernel raw pointers (a `msghdr`, iovecs, payload bytes, a
//! timespec, provided buffers) that it may use until the op's *final* completion, long after
//! the submitting call returned. The [`Driver`] makes that lifetime a property of types rather
//! than of comments or field order:
//! - every op gets an entry in an op table (module `op`) before its SQE is queued; the entry
//!   owns whatever the kernel may touch (a [`SendBatch`]'s box, a zero-copy buffer, a
//!   timespec) and is removed only when the CQE without `IORING_CQE_F_MORE` is reaped;
//! - received data comes out as an owned [`RecvBuf`] that gives its provided buffer back to the
//!   kernel when dropped, and not before;
//! - [`Driver::shutdown`] (and `Drop`) cancel every in-flight op and wait for the table to
//!   empty before any of that memory is freed; if the kernel does not finish in time, the
//!   memory is leaked rather than freed under it.
//!
//! The caller routes completions with an opaque `tag` it chose per op (the broker packs kind,
//! connection key and generation into it); the driver's own `user_data` encoding
//! (module `token`) stays private.
//!
//! # Cost
//! Built for a hot path of millions of sends per second: submitting an op only writes an SQE
//! (one `io_uring_enter` in [`Driver::enter`] submits them all); op entries, batches and
//! timespecs are pooled so nothing is allocated per op after warm-up; a CQE costs one slab
//! lookup.

mod bufs;
mod op;
mod send;
mod token;

#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use io_uring::types::{self, CancelBuilder, SubmitArgs, Timespec};
use io_uring::{opcode, squeue, EnterFlags, IoUring};

pub use bufs::RecvBuf;
pub use send::{SendBatch, IOV_MAX};
pub use token::OpId;

use bufs::ProvidedBufs;
use op::{OpState, OpTable};

use crate::uring::{RingFeatures, UringBuilder};

/// The provided-buffer group the driver registers (one per ring).
const BUF_GROUP: u16 = 0;
/// How often [`Driver::enter`] retries an `io_uring_enter` that failed with EINTR, EAGAIN or
/// EBUSY before it returns so the caller's loop can drain completions first.
const ENTER_RETRIES: u32 = 4;
/// How long `Drop` waits for in-flight ops to finish after cancelling them.
const DROP_SHUTDOWN_TIMEOUT_MS: u64 = 1000;
/// The longest single wait inside [`Driver::shutdown`]: cancel requests are repeated at least
/// this often, for ops that were not cancellable at the first attempt.
const SHUTDOWN_POLL: Duration = Duration::from_millis(20);

/// Sizes for [`Driver::new`].
#[derive(Debug, Clone, Copy)]
pub struct DriverConfig {
    /// Submission queue entries. Ops pushed while the SQ is full are submitted early (counted
    /// in [`Driver::sq_stalls`]), so this bounds the batch one `enter` carries.
    pub sq_entries: u32,
    /// Completion queue entries: room for bursts of multishot completions between reaps.
    pub cq_entries: u32,
    /// Provided buffers for multishot receives (a power of two, at most 32768): the most
    /// received chunks the caller can hold at once before receives fail with ENOBUFS.
    pub recv_buffers: u16,
    /// Bytes per provided buffer: the largest chunk one receive completion delivers.
    pub recv_buffer_size: usize,
}

impl Default for DriverConfig {
    fn default() -> Self {
        Self {
            sq_entries: 4096,
            cq_entries: 16384,
            recv_buffers: 1024,
            recv_buffer_size: 4096,
        }
    }
}

/// Which op a completion belongs to, so a caller (and the driver's own teardown) can tell
/// completions apart without decoding its tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpKind {
    /// [`Driver::accept_multi`]: `result` is an accepted fd the caller now owns.
    Accept,
    /// [`Driver::recv_multi`]: `result` is a byte count (0 = peer closed), bytes in `buf`.
    Recv,
    /// [`Driver::send`]: `result` is the bytes written, possibly fewer than the batch held.
    Send,
    /// [`Driver::send_zc`]: a result CQE, then (if `more`) a notification CQE.
    SendZc,
    /// [`Driver::close`].
    Close,
    /// [`Driver::timeout`]: `result` is `-ETIME` when it fired.
    Timeout,
}

/// One completion of one op, as the caller sees it.
#[derive(Debug)]
pub struct Completion {
    /// The tag the caller gave the op.
    pub tag: u64,
    /// The CQE's result: a count or fd when non-negative, `-errno` otherwise.
    pub result: i32,
    /// `IORING_CQE_F_MORE`: the op will post more completions. When false this was the op's
    /// last completion: its [`OpId`] is stale and its resources have been released.
    pub more: bool,
    /// A SEND_ZC notification: the kernel no longer reads the buffer (which the driver has
    /// now dropped). Callers count zero-copy completions with it; its `result` is 0.
    pub notif: bool,
    /// What kind of op completed.
    pub kind: OpKind,
    /// The received bytes of a receive completion (`None` when `result <= 0`).
    pub buf: Option<RecvBuf>,
}

/// What [`Driver::reap`] reports.
#[derive(Debug)]
pub enum Event {
    /// A completion of one of the caller's ops.
    Completion(Completion),
    /// A wake-up sent with [`Driver::wake`] was not delivered (the MSG_RING failed, e.g. the
    /// peer's ring fd is not a ring any more). Successful wake-ups post nothing on this side,
    /// so this is the only trace of a lost one: the caller must raise the wake-up again (or
    /// otherwise make sure `peer` runs), or the peer may sleep on work it was given.
    WakeFailed {
        /// The peer index given to [`Driver::wake`].
        peer: usize,
        /// The errno of the failure.
        error: i32,
    },
}

/// An io_uring owned by one thread, with its provided-buffer ring and its in-flight ops.
///
/// `K` is the caller's buffer handle for sends (`AsRef<[u8]> + 'static`; the broker wraps an
/// `Rc` frame). The driver is deliberately neither `Send` nor `Sync`: the ring is set up
/// single-issuer with deferred task work, so it must stay on the thread that created it.
///
/// `K` must be `'static` because the driver may have to leak an in-flight op's handles (see
/// `Drop`), and so may a caller with `mem::forget(driver)`: a leaked handle that borrowed
/// memory could not stop that memory being freed while the kernel still reads it.
///
/// See the [module docs](self) for the safety model.
///
/// ```compile_fail,E0277
/// // A driver stays on the thread whose ring it set up.
/// fn assert_send<T: Send>() {}
/// assert_send::<corecast_runtime::Driver<Vec<u8>>>();
/// ```
///
/// ```compile_fail,E0521
/// // Handles may not borrow: the kernel could outlive the borrow.
/// fn make(data: &[u8]) {
///     let (mut d, _) = corecast_runtime::Driver::<&[u8]>::new(Default::default()).unwrap();
///     let mut b = d.batch();
///     b.push(data).unwrap();
///     d.send(0, b, 0);
/// }
/// ```
pub struct Driver<K: AsRef<[u8]> + 'static> {
    ring: IoUring,
    bufs: ProvidedBufs,
    table: OpTable<K>,
    /// SQEs that did not fit in a full SQ (and could not be submitted at once); queued ahead
    /// of the SQ by the next `enter`, in order.
    overflow: VecDeque<squeue::Entry>,
    /// Completions reaped inside the driver (while retrying `enter`, or during shutdown),
    /// handed out first by the next `reap`.
    backlog: Vec<Event>,
    sq_stalls: u64,
    /// A [`Driver::shutdown`] already waited and gave up on the ops left in flight: `Drop`
    /// leaks them at once instead of waiting for them again.
    gave_up: bool,
}

impl<K: AsRef<[u8]> + 'static> Driver<K> {
    /// Creates the ring on the calling thread with the best flags the kernel accepts (see
    /// [`UringBuilder`]) and registers `cfg.recv_buffers` provided buffers. Returns the flags
    /// the ring got, for logs.
    pub fn new(cfg: DriverConfig) -> io::Result<(Self, RingFeatures)> {
        let (ring, features) = UringBuilder {
            sq_entries: cfg.sq_entries,
            cq_entries: cfg.cq_entries,
        }
        .build()?;
        let bufs = ProvidedBufs::new(&ring, BUF_GROUP, cfg.recv_buffers, cfg.recv_buffer_size)?;
        let driver = Self {
            ring,
            bufs,
            table: OpTable::new(),
            overflow: VecDeque::new(),
            backlog: Vec::new(),
            sq_stalls: 0,
            gave_up: false,
        };
        Ok((driver, features))
    }

    /// The ring's fd, which peers pass to [`Driver::wake`] to wake this driver.
    pub fn ring_fd(&self) -> RawFd {
        self.ring.as_raw_fd()
    }

    /// An empty batch for [`Driver::send`], reusing the allocation of a completed one when
    /// possible so that a send allocates nothing after warm-up.
    pub fn batch(&mut self) -> SendBatch<K> {
        match self.table.take_batch() {
            Some(inner) => SendBatch::from_inner(inner),
            None => SendBatch::new(),
        }
    }

    /// Gives back a batch the caller decided not to send, so its allocation is reused.
    pub fn recycle(&mut self, mut batch: SendBatch<K>) {
        batch.clear();
        self.table.put_batch(batch.inner);
    }

    /// Arms a multishot accept on a listening socket. Each completion's `result` is a new
    /// connection's fd (owned by the caller from then on) or `-errno`; the op ends with a
    /// completion whose `more` is false (after an error, a cancel, or the socket's shutdown),
    /// and the caller re-arms if it still wants connections.
    pub fn accept_multi(&mut self, listener_fd: RawFd, tag: u64) -> OpId {
        let id = self.table.insert(tag, OpState::Accept);
        let e = opcode::AcceptMulti::new(types::Fd(listener_fd))
            .flags(libc::SOCK_CLOEXEC)
            .build()
            .user_data(id.user_data());
        // SAFETY: an accept without an address buffer carries no pointer.
        unsafe { self.push(e) };
        id
    }

    /// Arms a multishot receive on a socket, with buffers picked by the kernel from the
    /// driver's provided-buffer ring. Each completion with `result > 0` carries a
    /// [`RecvBuf`]; `result == 0` means the peer closed; the op ends with a completion whose
    /// `more` is false (EOF, an error, a cancel, or `-ENOBUFS` when the caller holds every
    /// buffer) and the caller re-arms if it wants more.
    pub fn recv_multi(&mut self, fd: RawFd, tag: u64) -> OpId {
        let id = self.table.insert(tag, OpState::Recv);
        let e = opcode::RecvMulti::new(types::Fd(fd), self.bufs.group())
            .build()
            .user_data(id.user_data());
        // SAFETY: the SQE names a buffer group, not a pointer; the group's ring and buffers
        // live in `self.bufs`, which outlives every op (see `Drop`).
        unsafe { self.push(e) };
        id
    }

    /// Sends the batch's buffers in order with one `sendmsg(MSG_NOSIGNAL)`. The completion's
    /// `result` is the bytes written (possibly fewer than [`SendBatch::bytes`]: the caller
    /// resubmits the rest) or `-errno`. The batch's handles are dropped, and its allocation
    /// pooled, when that completion is reaped.
    pub fn send(&mut self, fd: RawFd, batch: SendBatch<K>, tag: u64) -> OpId {
        let mut inner = batch.inner;
        let msg = inner.prepare_msg();
        let id = self.table.insert(tag, OpState::Send(inner));
        let e = opcode::SendMsg::new(types::Fd(fd), msg)
            .flags(libc::MSG_NOSIGNAL as u32)
            .build()
            .user_data(id.user_data());
        // SAFETY: `msg` points into the batch box now owned by op `id`'s table entry; its
        // iovecs point into the same box's iovec array and, through the handles stored in
        // the box, at the bytes to send. Moving the box into the table did not move its heap
        // contents, and the entry keeps them alive and untouched until the op's final CQE is
        // reaped (only `OpTable::complete` removes entries).
        unsafe { self.push(e) };
        id
    }

    /// Sends `buf[offset..]` with IORING_OP_SEND_ZC (the kernel reads the pages in place
    /// instead of copying them). The first completion has the result; if its `more` is set,
    /// a second one with `notif` set follows when the kernel no longer needs the bytes, and
    /// only then is `buf` dropped.
    ///
    /// # Panics
    /// If `offset` is greater than the buffer's length.
    pub fn send_zc(&mut self, fd: RawFd, buf: K, offset: usize, tag: u64) -> OpId {
        let mut batch = self.batch();
        if batch.push_from(buf, offset).is_err() {
            unreachable!("an empty batch takes an item");
        }
        let inner = batch.inner;
        let (ptr, len) = inner.first_slice();
        let id = self.table.insert(tag, OpState::SendZc(inner));
        let e = opcode::SendZc::new(types::Fd(fd), ptr, len)
            .flags(libc::MSG_NOSIGNAL)
            .build()
            .user_data(id.user_data());
        // SAFETY: `ptr..ptr + len` lies in the bytes of the handle stored in the box now
        // owned by op `id`'s table entry; the entry keeps the handle alive, unmoved and
        // untouched until the op's final CQE (the notification, or the only CQE when no
        // notification follows) is reaped.
        unsafe { self.push(e) };
        id
    }

    /// Closes `fd` asynchronously (IORING_OP_CLOSE). The caller must own `fd` and use it for
    /// nothing else afterwards, exactly as with `close(2)`.
    pub fn close(&mut self, fd: RawFd, tag: u64) -> OpId {
        let id = self.table.insert(tag, OpState::Close);
        let e = opcode::Close::new(types::Fd(fd))
            .build()
            .user_data(id.user_data());
        // SAFETY: a close carries no pointer.
        unsafe { self.push(e) };
        id
    }

    /// A one-shot timer: completes with `-ETIME` after `ns` nanoseconds (or `-ECANCELED`).
    /// The timespec lives in the op's table entry.
    pub fn timeout(&mut self, ns: u64, tag: u64) -> OpId {
        let ts = Timespec::new()
            .sec(ns / 1_000_000_000)
            .nsec((ns % 1_000_000_000) as u32);
        let ts = self.table.timespec(ts);
        let ptr: *const Timespec = &*ts;
        let id = self.table.insert(tag, OpState::Timeout(ts));
        let e = opcode::Timeout::new(ptr).build().user_data(id.user_data());
        // SAFETY: `ptr` points into the box now owned by op `id`'s table entry, which keeps
        // it alive and unmoved until the op's final CQE is reaped.
        unsafe { self.push(e) };
        id
    }

    /// Asks the kernel to cancel `op` (IORING_OP_ASYNC_CANCEL of its `user_data`). The op
    /// still ends with its own final completion (usually `-ECANCELED`), which is when its
    /// resources are released; the cancel request's own completion is swallowed. Returns
    /// false, and does nothing, when `op` has already completed: a stale id never cancels a
    /// later op that reuses its slot.
    pub fn cancel(&mut self, op: OpId) -> bool {
        if !self.table.contains(op) {
            return false;
        }
        let e = opcode::AsyncCancel::new(op.user_data())
            .build()
            .user_data(token::CANCEL_ONE);
        // SAFETY: a cancel carries no pointer.
        unsafe { self.push(e) };
        true
    }

    /// Whether `op` has not posted its final completion yet.
    pub fn is_in_flight(&self, op: OpId) -> bool {
        self.table.contains(op)
    }

    /// Wakes the driver whose ring fd is `peer_ring_fd` (IORING_OP_MSG_RING): a CQE appears
    /// in its ring, ending its `enter` wait, and its driver swallows it. Success posts nothing
    /// here (CQE_SKIP_SUCCESS); a failure comes back from [`Driver::reap`] as
    /// [`Event::WakeFailed`] naming `peer`, so a lost wake-up is never silent.
    ///
    /// # Panics
    /// If `peer` does not fit in 32 bits.
    pub fn wake(&mut self, peer_ring_fd: RawFd, peer: usize) {
        let peer = u32::try_from(peer).expect("peer index fits in 32 bits");
        let e = opcode::MsgRingData::new(types::Fd(peer_ring_fd), 0, token::WAKE_RECEIVED, None)
            .build()
            .flags(squeue::Flags::SKIP_SUCCESS)
            .user_data(token::wake_sent(peer));
        // SAFETY: MSG_RING with IORING_MSG_DATA carries only integers.
        unsafe { self.push(e) };
    }

    /// Submits every queued op and waits until at least `wait_for` completions are ready
    /// (0: just submit and run deferred task work, which needs GETEVENTS on a DEFER_TASKRUN
    /// ring). Buffers whose [`RecvBuf`] was dropped are given back to the kernel first.
    ///
    /// EINTR, EAGAIN and EBUSY are not errors here: on EAGAIN/EBUSY (usually an overflowed
    /// CQ) the completions already posted are reaped into the driver's backlog, and the call
    /// is retried a few times without waiting; then it returns `Ok` so the caller drains
    /// completions with [`Driver::reap`] and comes back. Other errors are returned.
    pub fn enter(&mut self, wait_for: u32) -> io::Result<()> {
        self.enter_inner(wait_for, None)
    }

    /// [`Driver::enter`] that waits at most `timeout` for the completions.
    pub fn enter_timeout(&mut self, wait_for: u32, timeout: Duration) -> io::Result<()> {
        self.enter_inner(wait_for, Some(&Timespec::from(timeout)))
    }

    /// Submits every queued op and runs up to about `task_work` items of deferred completion
    /// work without waiting.
    ///
    /// Since Linux 6.13 an `io_uring_enter` on a `DEFER_TASKRUN` ring runs at most 20 items
    /// of deferred work per pass unless it is asked to wait for more completions, and every
    /// readiness of a socket (an accepted connection, a request's bytes, a peer's FIN) is
    /// such an item. A shard that enters with 0 under a burst of 15,000 reconnects then
    /// spends one turn (a system call, a flush of sends) per 20-40 items, and a `/healthz`
    /// request waits behind all of them. Asking for `task_work` completions with a zero
    /// timeout lets one call run that many (it returns `ETIME`, not an error, when fewer
    /// were posted).
    pub fn enter_drain(&mut self, task_work: u32) -> io::Result<()> {
        self.enter_inner(task_work, Some(&Timespec::new()))
    }

    /// Appends the completions ready now to `out` and returns how many it appended. Ops whose
    /// final completion is among them are removed from the table and their resources released
    /// (batches emptied and pooled, zero-copy buffers dropped) before this returns.
    /// Driver-internal completions (wake-ups received, cancel requests, successful wake-ups)
    /// are consumed silently.
    pub fn reap(&mut self, out: &mut Vec<Event>) -> usize {
        let before = out.len();
        out.append(&mut self.backlog);
        let Self {
            ring, table, bufs, ..
        } = self;
        for cqe in ring.completion() {
            table.complete(cqe.user_data(), cqe.result(), cqe.flags(), bufs, out);
        }
        out.len() - before
    }

    /// Cancels every in-flight op and waits, at most `timeout_ms`, until each has posted its
    /// final completion. Returns true when none is left in flight.
    ///
    /// Completions reaped meanwhile are kept for the next [`Driver::reap`] (accepted fds,
    /// final send results). The driver stays usable, but this is meant for the end of its
    /// life: `Drop` calls it too (unless a shutdown already gave up, so a caller's deadline
    /// is not followed by another wait), and when ops remain in flight after the deadline,
    /// leaks their memory (and the buffer ring) instead of freeing memory the kernel may
    /// still use.
    pub fn shutdown(&mut self, timeout_ms: u64) -> bool {
        let deadline = Instant::now() + Duration::from_millis(timeout_ms);
        loop {
            if self.table.len() == 0 {
                return true;
            }
            self.cancel_everything();
            let now = Instant::now();
            if now >= deadline {
                tracing::warn!(
                    in_flight = self.table.len(),
                    timeout_ms,
                    "io_uring ops still in flight at the shutdown deadline"
                );
                self.gave_up = true;
                return false;
            }
            let wait = (deadline - now).min(SHUTDOWN_POLL);
            if let Err(e) = self.enter_inner(1, Some(&Timespec::from(wait))) {
                tracing::warn!(error = %e, "io_uring_enter failed during shutdown");
                return false;
            }
            self.reap_into_backlog();
        }
    }

    /// SQEs that found the submission queue full and forced an early submit: a sign that
    /// `sq_entries` is too small for the load.
    pub fn sq_stalls(&self) -> u64 {
        self.sq_stalls
    }

    /// Wake-ups received from peers since creation (their CQEs are not reported by `reap`).
    pub fn wakes_received(&self) -> u64 {
        self.table.wakes_received
    }

    /// Ops that have not posted their final completion.
    pub fn in_flight(&self) -> usize {
        self.table.len()
    }

    /// Queues an SQE. When the SQ is full, submits what it holds (counted in `sq_stalls`) and
    /// retries; if that fails too, keeps the entry in `overflow` for the next `enter`, so this
    /// never blocks, spins or loses an op.
    ///
    /// # Safety
    /// Every pointer in `entry` must point into memory that stays valid and unmoved until the
    /// op's final CQE: memory owned by the op's table entry (inserted before this call) or by
    /// the driver itself for its whole life.
    unsafe fn push(&mut self, entry: squeue::Entry) {
        if self.overflow.is_empty() {
            // SAFETY: the caller guarantees the entry's pointers (this function's contract).
            if unsafe { self.ring.submission().push(&entry) }.is_ok() {
                return;
            }
            self.sq_stalls += 1;
            self.bufs.republish();
            match self.ring.submit() {
                // SAFETY: as above.
                Ok(_) if unsafe { self.ring.submission().push(&entry) }.is_ok() => return,
                Ok(_) => {}
                Err(e) => tracing::debug!(error = %e, "submit with a full SQ failed; deferring"),
            }
        }
        self.overflow.push_back(entry);
    }

    /// Moves queued overflow entries into the SQ while it has room.
    fn flush_overflow(&mut self) {
        if self.overflow.is_empty() {
            return;
        }
        let mut sq = self.ring.submission();
        while let Some(e) = self.overflow.front() {
            // SAFETY: every entry in `overflow` was queued by `push`, whose caller guaranteed
            // its pointers for the life of the op; the op has not completed (it was never
            // submitted).
            if unsafe { sq.push(e) }.is_err() {
                break;
            }
            self.overflow.pop_front();
        }
    }

    fn enter_inner(&mut self, mut wait_for: u32, timeout: Option<&Timespec>) -> io::Result<()> {
        self.bufs.republish();
        if !self.backlog.is_empty() {
            wait_for = 0;
        }
        let mut failures = 0;
        loop {
            self.flush_overflow();
            let to_submit = self.ring.submission().len() as u32;
            let submitter = self.ring.submitter();
            let flags = EnterFlags::GETEVENTS;
            let res = match timeout {
                // SAFETY: no extended argument is passed.
                None => unsafe {
                    submitter.enter::<libc::sigset_t>(to_submit, wait_for, flags.bits(), None)
                },
                Some(ts) => {
                    let args = SubmitArgs::new().timespec(ts);
                    // SAFETY: EXT_ARG with a `SubmitArgs` (a transparent
                    // `io_uring_getevents_arg`) whose timespec outlives the call.
                    unsafe {
                        submitter.enter(
                            to_submit,
                            wait_for,
                            (flags | EnterFlags::EXT_ARG).bits(),
                            Some(&args),
                        )
                    }
                }
            };
            match res {
                Ok(_) => {
                    if self.overflow.is_empty() || to_submit == 0 {
                        return Ok(());
                    }
                    // More ops were queued than the SQ holds: submit the rest, without
                    // waiting again. Each round submits a full SQ, so this ends.
                    wait_for = 0;
                }
                Err(e) => match e.raw_os_error() {
                    Some(libc::ETIME) if timeout.is_some() => return Ok(()),
                    Some(errno @ (libc::EINTR | libc::EAGAIN | libc::EBUSY)) => {
                        if errno != libc::EINTR {
                            self.reap_into_backlog();
                        }
                        if !self.backlog.is_empty() {
                            wait_for = 0;
                        }
                        failures += 1;
                        if failures >= ENTER_RETRIES {
                            tracing::debug!(
                                error = %e,
                                "io_uring_enter keeps failing; returning to drain completions"
                            );
                            return Ok(());
                        }
                    }
                    _ => return Err(e),
                },
            }
        }
    }

    /// Reaps ready completions into the backlog (for `reap` to hand out later).
    fn reap_into_backlog(&mut self) {
        let Self {
            ring,
            table,
            bufs,
            backlog,
            ..
        } = self;
        for cqe in ring.completion() {
            table.complete(cqe.user_data(), cqe.result(), cqe.flags(), bufs, backlog);
        }
    }

    /// Queues a cancel of every in-flight op: one cancel-any request, or one per op on
    /// kernels without IORING_ASYNC_CANCEL_ANY.
    fn cancel_everything(&mut self) {
        if self.table.cancel_all_unsupported {
            for user_data in self.table.user_datas() {
                let e = opcode::AsyncCancel::new(user_data)
                    .build()
                    .user_data(token::CANCEL_ONE);
                // SAFETY: a cancel carries no pointer.
                unsafe { self.push(e) };
            }
        } else {
            let e = opcode::AsyncCancel2::new(CancelBuilder::any())
                .build()
                .user_data(token::CANCEL_ALL);
            // SAFETY: a cancel carries no pointer.
            unsafe { self.push(e) };
        }
    }
}

impl<K: AsRef<[u8]> + 'static> Drop for Driver<K> {
    /// Tears down in the only safe order: cancel every in-flight op and reap until the op
    /// table is empty, and only then let the ring, the buffer ring, the buffers and the
    /// pooled batches go. If the kernel has not finished by the deadline, the in-flight ops'
    /// resources and the buffers are leaked (`mem::forget`), never freed under it.
    fn drop(&mut self) {
        // After a shutdown that gave up, the kernel had its chance: waiting again would only
        // delay the caller (a process exit) by another DROP_SHUTDOWN_TIMEOUT_MS.
        let clean =
            self.table.len() == 0 || (!self.gave_up && self.shutdown(DROP_SHUTDOWN_TIMEOUT_MS));
        for event in self.backlog.drain(..) {
            // An accepted connection nobody will see: close it rather than leak the fd.
            if let Event::Completion(Completion {
                kind: OpKind::Accept,
                result,
                ..
            }) = event
            {
                if result >= 0 {
                    crate::listener::close_fd(result);
                }
            }
        }
        if clean {
            self.bufs.unregister(&self.ring);
        } else {
            tracing::error!(
                in_flight = self.table.len(),
                "closing an io_uring with ops in flight; leaking their buffers"
            );
            self.table.leak_in_flight();
            self.bufs.leak();
        }
        // The fields drop after this: the ring (its fd closed; no op of ours is left in it,
        // or their memory is leaked), then the buffer ring and the pools.
    }
}
