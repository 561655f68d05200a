//! The driver's provided-buffer ring and the [`RecvBuf`] handle a receive completion yields.
//!
//! The kernel picks a free buffer for each multishot receive, so an idle connection owns no
//! read buffer. Ownership of a buffer moves kernel → caller → kernel:
//! - the driver publishes every buffer id in the ring (the kernel may write any published
//!   buffer);
//! - a receive CQE names the buffer the kernel filled; the driver wraps it in a `RecvBuf`, the
//!   only way to read it, and the kernel will not touch it again until it is republished;
//! - dropping the `RecvBuf` queues the id; the driver republishes queued ids before its next
//!   submit.
//!
//! The buffer memory sits behind an `Rc` shared by the driver and every `RecvBuf`, so a
//! handle may outlive the driver (the memory is freed by whichever goes last) and never
//! borrows it: a caller holds a `RecvBuf` while mutating its own state and calling the driver.

use std::cell::RefCell;
use std::fmt;
use std::io;
use std::ops::Deref;
use std::ptr::NonNull;
use std::rc::Rc;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::types::BufRingEntry;
use io_uring::IoUring;

/// The buffers' memory and the ids given back by dropped [`RecvBuf`]s.
struct BufMem {
    base: NonNull<u8>,
    /// Bytes mapped at `base`.
    len: usize,
    buf_size: usize,
    entries: u16,
    /// Ids whose handle was dropped, waiting to be republished. Pre-sized to `entries`: each
    /// id is in at most one place (kernel, a handle, or here), so pushing never allocates.
    returned: RefCell<Vec<u16>>,
}

impl Drop for BufMem {
    fn drop(&mut self) {
        // SAFETY: `base` was mapped in `ProvidedBufs::new` with exactly `len` bytes, and this
        // is the last reference to it (the `Rc` count reached zero, so no `RecvBuf` and no
        // driver remains; a driver whose ops might still write here leaks its reference).
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.len) };
    }
}

/// Bytes of one received chunk, in a provided buffer lent to the caller.
///
/// Reading it needs no borrow of the driver. Dropping it gives the buffer back to the kernel
/// (at the driver's next submit); until then the kernel cannot reuse it, so a caller that
/// holds many `RecvBuf`s makes multishot receives fail with `ENOBUFS` rather than lose data.
pub struct RecvBuf {
    mem: Rc<BufMem>,
    bid: u16,
    len: u32,
}

impl RecvBuf {
    /// The received bytes.
    pub fn as_slice(&self) -> &[u8] {
        let start = self.bid as usize * self.mem.buf_size;
        // SAFETY: `bid < entries` and `len <= buf_size` were checked when the handle was made
        // (`ProvidedBufs::take`), so the range lies inside the allocation, which the `Rc`
        // keeps alive. The kernel wrote these bytes before posting the CQE we read with
        // acquire ordering, and it does not write buffer `bid` again until the id is
        // republished, which happens only after this handle is dropped (ids are republished
        // only from `returned`, filled by `Drop`). No `&mut` to this memory ever exists.
        unsafe { std::slice::from_raw_parts(self.mem.base.as_ptr().add(start), self.len as usize) }
    }

    /// The provided-buffer id (for diagnostics).
    pub fn buffer_id(&self) -> u16 {
        self.bid
    }
}

impl Deref for RecvBuf {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl AsRef<[u8]> for RecvBuf {
    fn as_ref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl Drop for RecvBuf {
    fn drop(&mut self) {
        self.mem.returned.borrow_mut().push(self.bid);
    }
}

impl fmt::Debug for RecvBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecvBuf")
            .field("bid", &self.bid)
            .field("len", &self.len)
            .finish()
    }
}

/// One buffer group registered with one ring: the ring of buffer descriptors the kernel reads
/// (an anonymous mapping, page aligned as the kernel requires) and the buffers.
pub(crate) struct ProvidedBufs {
    ring: NonNull<BufRingEntry>,
    ring_bytes: usize,
    tail: u16,
    group: u16,
    mem: Rc<BufMem>,
    /// Set when the kernel might still use the ring or the buffers: then nothing is freed.
    leaked: bool,
}

impl ProvidedBufs {
    /// Allocates `entries` buffers of `buf_size` bytes (entries: a power of two ≤ 32768) and
    /// registers them as group `group` with `ring`.
    ///
    /// The registration lasts until [`unregister`](Self::unregister) or until the ring is
    /// closed; the owner (the driver) must keep `self` alive until one of those, or
    /// [`leak`](Self::leak) it.
    pub(crate) fn new(
        ring: &IoUring,
        group: u16,
        entries: u16,
        buf_size: usize,
    ) -> io::Result<Self> {
        let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidInput, what.to_string());
        if !entries.is_power_of_two() || entries > 32768 {
            return Err(bad(
                "recv_buffers must be a power of two between 1 and 32768",
            ));
        }
        if buf_size == 0 || buf_size > u32::MAX as usize {
            return Err(bad("recv_buffer_size must be between 1 and 4 GiB - 1"));
        }
        let total = (entries as usize)
            .checked_mul(buf_size)
            .ok_or_else(|| bad("recv_buffers × recv_buffer_size overflows"))?;
        // An anonymous mapping rather than the allocator: its pages stay unbacked until the
        // kernel first writes a receive into them (on this shard's behalf, so on its NUMA
        // node), where an aligned zeroed allocation touched all of them at start-up.
        let ptr = map_anonymous(total)?;
        let base = NonNull::new(ptr.cast::<u8>())
            .ok_or_else(|| io::Error::from(io::ErrorKind::OutOfMemory))?;
        let mem = Rc::new(BufMem {
            base,
            len: total,
            buf_size,
            entries,
            returned: RefCell::new(Vec::with_capacity(entries as usize)),
        });

        let ring_bytes = entries as usize * std::mem::size_of::<BufRingEntry>();
        let ptr = map_anonymous(ring_bytes)?;
        let mut me = Self {
            ring: NonNull::new(ptr.cast()).expect("mmap never returns null on success"),
            ring_bytes,
            tail: 0,
            group,
            mem,
            leaked: false,
        };
        // SAFETY: the mapping is page aligned and `entries` descriptors long. It stays mapped
        // for as long as `me` lives, and `me` outlives the registration: the driver
        // unregisters the group (or closes the ring) before dropping it once no op can use it,
        // and leaks it otherwise.
        unsafe {
            ring.submitter()
                .register_buf_ring_with_flags(ptr as u64, entries, group, 0)?;
        }
        for bid in 0..entries {
            me.publish(bid);
        }
        me.commit();
        Ok(me)
    }

    /// The buffer group id receive requests name.
    pub(crate) fn group(&self) -> u16 {
        self.group
    }

    /// Wraps buffer `bid`, filled with `res` bytes by a completion, in a handle. A CQE that
    /// selected a buffer but delivered no data (EOF, an error) gives the buffer straight back
    /// and yields nothing.
    pub(crate) fn take(&self, bid: u16, res: i32) -> Option<RecvBuf> {
        if bid >= self.mem.entries {
            tracing::error!(
                bid,
                "completion names a buffer id outside the ring; ignored"
            );
            return None;
        }
        if res <= 0 {
            self.mem.returned.borrow_mut().push(bid);
            return None;
        }
        Some(RecvBuf {
            mem: self.mem.clone(),
            bid,
            len: (res as u32).min(self.mem.buf_size as u32),
        })
    }

    /// Publishes every id whose handle was dropped since the last call. Returns how many.
    pub(crate) fn republish(&mut self) -> usize {
        // Taken out (and put back, keeping its capacity) so that `publish` can borrow `self`.
        let mut returned = std::mem::take(&mut *self.mem.returned.borrow_mut());
        let n = returned.len();
        if n > 0 {
            for &bid in &returned {
                self.publish(bid);
            }
            self.commit();
            returned.clear();
        }
        *self.mem.returned.borrow_mut() = returned;
        n
    }

    /// Ends the registration. Call only when no op can still select a buffer of the group.
    pub(crate) fn unregister(&self, ring: &IoUring) {
        if let Err(e) = ring.submitter().unregister_buf_ring(self.group) {
            tracing::debug!(error = %e, "unregistering the provided-buffer ring failed");
        }
    }

    /// Keeps the descriptor ring mapped and the buffers allocated for the rest of the process,
    /// for when the kernel may still use them.
    pub(crate) fn leak(&mut self) {
        if !self.leaked {
            self.leaked = true;
            std::mem::forget(self.mem.clone());
        }
    }

    fn publish(&mut self, bid: u16) {
        let mask = self.mem.entries - 1;
        let idx = (self.tail & mask) as usize;
        let addr = self.mem.base.as_ptr() as u64 + bid as u64 * self.mem.buf_size as u64;
        // SAFETY: idx < entries, so the slot is inside the mapping. The kernel reads only the
        // descriptors between its head and the committed tail; this slot is at or past the
        // committed tail, so no one else reads or writes it now.
        let entry = unsafe { &mut *self.ring.as_ptr().add(idx) };
        entry.set_addr(addr);
        entry.set_len(self.mem.buf_size as u32);
        entry.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    fn commit(&self) {
        // SAFETY: the ring's tail field overlays the first descriptor's `resv` field, inside
        // the mapping for the ring's whole life, and is 2-byte aligned. The kernel reads it
        // with acquire ordering and never writes it; the release store publishes the
        // descriptors written before it.
        unsafe {
            let tail = BufRingEntry::tail(self.ring.as_ptr()) as *const AtomicU16;
            (*tail).store(self.tail, Ordering::Release);
        }
    }
}

impl Drop for ProvidedBufs {
    fn drop(&mut self) {
        if self.leaked {
            return;
        }
        // SAFETY: the mapping was created in `new` with this length, and the driver drops
        // this value only after the group was unregistered or the ring closed with no op in
        // flight (otherwise it calls `leak` and we returned above).
        unsafe { libc::munmap(self.ring.as_ptr().cast(), self.ring_bytes) };
    }
}

/// A fresh private anonymous read-write mapping of `len` (non-zero) bytes: page aligned,
/// zero, and backed by no memory until first written.
fn map_anonymous(len: usize) -> io::Result<*mut libc::c_void> {
    // SAFETY: a new mapping at an address of the kernel's choosing; no existing memory is
    // affected. The caller owns it and unmaps it with the same length.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    Ok(ptr)
}
