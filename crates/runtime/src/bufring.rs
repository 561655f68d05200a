//! A provided-buffer ring: the kernel picks a free buffer for each multishot receive, so an
//! idle connection owns no read buffer at all and memory per connection stays small.
//!
//! # Safety invariant
//! The ring entries and the buffers are allocated here, registered with one io_uring, and
//! outlive that registration: `BufRing` must be dropped only after the io_uring it was
//! registered with stops using it (the shard drops it after its ring is gone, or unregisters
//! first). A buffer id handed out by a completion is owned by the caller until `recycle`, and
//! only then republished to the kernel.

use std::io;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::types::BufRingEntry;
use io_uring::IoUring;

/// The buffers of one buffer group.
pub struct BufRing {
    ring: *mut BufRingEntry,
    ring_bytes: usize,
    entries: u16,
    buf_size: usize,
    bufs: Vec<u8>,
    tail: u16,
    group: u16,
}

impl BufRing {
    /// Allocates `entries` buffers of `buf_size` bytes (entries: power of two, ≤ 32768) on the
    /// calling thread and registers them as group `group` with `ring`.
    pub fn new(ring: &IoUring, group: u16, entries: u16, buf_size: usize) -> io::Result<Self> {
        if !entries.is_power_of_two()
            || entries > 32768
            || buf_size == 0
            || buf_size > u32::MAX as usize
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "bad buffer ring size",
            ));
        }
        let ring_bytes = entries as usize * std::mem::size_of::<BufRingEntry>();
        // SAFETY: an anonymous private mapping at an address of the kernel's choosing affects
        // no existing memory; checked for MAP_FAILED below.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                ring_bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let mut me = Self {
            ring: ptr.cast(),
            ring_bytes,
            entries,
            buf_size,
            bufs: vec![0u8; entries as usize * buf_size],
            tail: 0,
            group,
        };
        // SAFETY: the mapping is page aligned and `entries` descriptors long, and the buffers
        // it will point to live in `me.bufs`; both live as long as `me`, which by the module
        // invariant outlives the registration (the io_uring stops using it first).
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

    /// The buffer group id to put in receive requests.
    pub fn group(&self) -> u16 {
        self.group
    }

    /// Size of each buffer in bytes.
    pub fn buf_size(&self) -> usize {
        self.buf_size
    }

    /// The first `len` bytes of buffer `bid`, as filled by a completion.
    pub fn get(&self, bid: u16, len: usize) -> &[u8] {
        debug_assert!(bid < self.entries && len <= self.buf_size);
        let start = bid as usize * self.buf_size;
        &self.bufs[start..start + len.min(self.buf_size)]
    }

    /// Gives buffer `bid` back to the kernel.
    pub fn recycle(&mut self, bid: u16) {
        debug_assert!(bid < self.entries);
        self.publish(bid);
        self.commit();
    }

    fn publish(&mut self, bid: u16) {
        let idx = (self.tail & (self.entries - 1)) as usize;
        // SAFETY: idx < entries, so the slot is inside the mapping; the kernel only reads
        // descriptors between its head and the committed tail, and this slot is at or past the
        // committed tail, so nothing else accesses it while we write.
        let entry = unsafe { &mut *self.ring.add(idx) };
        let addr = self.bufs.as_ptr() as u64 + bid as u64 * self.buf_size as u64;
        entry.set_addr(addr);
        entry.set_len(self.buf_size as u32);
        entry.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    fn commit(&self) {
        // SAFETY: the tail overlays a reserved field of the first descriptor, inside the
        // mapping for the ring's whole life and 2-byte aligned; the kernel only reads it
        // (acquire), and the release store publishes the descriptors written before it.
        unsafe {
            let tail = BufRingEntry::tail(self.ring) as *const AtomicU16;
            (*tail).store(self.tail, Ordering::Release);
        }
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: the mapping was created in `new` with this length and is unmapped once; by
        // the module invariant the io_uring no longer uses it.
        unsafe { libc::munmap(self.ring.cast(), self.ring_bytes) };
    }
}
