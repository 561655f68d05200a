//! [`SendBatch`]: the buffers of one `sendmsg`, owned by the driver while the kernel reads
//! them.
//!
//! A batch is a boxed, reusable block holding the caller's buffer handles (`K`), the iovec
//! array and the `msghdr`. The caller fills it with handles; [`Driver::send`] builds the
//! iovecs from them at submit time and moves the whole box into the op table, where neither
//! the handles nor the iovec array can be touched, moved or dropped until the op's final
//! completion. The box is then emptied (the handles dropped) and pooled, so after warm-up a
//! send allocates nothing.
//!
//! # Why `K: AsRef<[u8]> + 'static` is enough
//! The iovecs hold the addresses `as_ref` returned at submit time, and the kernel reads them
//! after that borrow of the handle has ended. They stay valid because, while the op is in
//! flight, the handle is neither moved (it sits in the box's item vector, which is not
//! resized), nor mutated (nothing can reach it), nor dropped (the table owns it), and safe
//! code cannot free or change memory it lent out through `&self` without one of those (a
//! `RefCell` cannot lend past its guard). `'static` rules out handles that borrow memory the
//! driver does not keep alive, which matters when in-flight handles are leaked.
//!
//! [`Driver::send`]: super::Driver::send

use std::fmt;

/// Most buffers one batch takes: Linux's `UIO_MAXIOV`. A `sendmsg` with more iovecs fails
/// with `EMSGSIZE`, so the limit is enforced when pushing rather than discovered in a CQE.
pub const IOV_MAX: usize = 1024;

/// Buffers to be written to a socket with one `sendmsg`, in order.
///
/// `K` is the caller's buffer handle (for the broker, a wrapper around a reference-counted
/// frame). Each handle is kept alive, unmoved and untouched from [`Driver::send`] until that
/// send's completion has been reaped, then dropped by the driver. Get batches from
/// [`Driver::batch`] to reuse the allocations of completed ones.
///
/// [`Driver::send`]: super::Driver::send
/// [`Driver::batch`]: super::Driver::batch
pub struct SendBatch<K> {
    pub(crate) inner: Box<BatchInner<K>>,
}

/// The boxed contents of a batch. Boxed so that the `msghdr` and the handles have an address
/// that does not change when the op table that holds them grows.
pub(crate) struct BatchInner<K> {
    /// The handles and the offset of the first byte to send from each.
    items: Vec<(K, usize)>,
    /// Sum of `len - offset` over `items`, as seen when pushed.
    bytes: usize,
    /// Built at submit time from `items`; never resized while the op is in flight.
    iov: Vec<libc::iovec>,
    /// Points at `iov` while the op is in flight.
    msg: libc::msghdr,
}

impl<K> BatchInner<K> {
    fn new() -> Self {
        Self {
            items: Vec::new(),
            bytes: 0,
            iov: Vec::new(),
            msg: empty_msghdr(),
        }
    }

    /// Drops the handles and forgets the iovecs, keeping both allocations for reuse.
    pub(crate) fn reset(&mut self) {
        self.items.clear();
        self.iov.clear();
        self.bytes = 0;
        self.msg = empty_msghdr();
    }
}

impl<K: AsRef<[u8]>> BatchInner<K> {
    /// Builds the iovecs and the `msghdr` for the current items and returns the `msghdr`'s
    /// address. The addresses stay valid for as long as this box lives and is not mutated:
    /// `iov` is not resized afterwards, and each handle sits in `items`' heap buffer, which
    /// does not move either.
    pub(crate) fn prepare_msg(&mut self) -> *const libc::msghdr {
        self.iov.clear();
        self.iov.reserve(self.items.len());
        for (item, offset) in &self.items {
            // `get` rather than indexing: a handle whose length changed since `push` (its
            // `as_ref` is the caller's code) yields an empty iovec instead of a panic.
            let bytes = item.as_ref().get(*offset..).unwrap_or(&[]);
            self.iov.push(libc::iovec {
                iov_base: bytes.as_ptr() as *mut libc::c_void,
                iov_len: bytes.len(),
            });
        }
        self.msg = empty_msghdr();
        self.msg.msg_iov = self.iov.as_mut_ptr();
        self.msg.msg_iovlen = self.iov.len() as _;
        &self.msg
    }

    /// The first item's bytes from its offset, as a pointer and a length capped at
    /// `u32::MAX` (a longer buffer is sent partially, which the completion reports).
    pub(crate) fn first_slice(&self) -> (*const u8, u32) {
        match self.items.first() {
            Some((item, offset)) => {
                let bytes = item.as_ref().get(*offset..).unwrap_or(&[]);
                (bytes.as_ptr(), bytes.len().min(u32::MAX as usize) as u32)
            }
            None => (std::ptr::NonNull::<u8>::dangling().as_ptr(), 0),
        }
    }
}

/// An all-null `msghdr`.
fn empty_msghdr() -> libc::msghdr {
    // SAFETY: `msghdr` is a C struct of pointers and integers, for which all-zero bytes (null
    // pointers, zero lengths) is a valid value.
    unsafe { std::mem::zeroed() }
}

impl<K: AsRef<[u8]>> SendBatch<K> {
    /// An empty batch with no allocation yet. Prefer [`Driver::batch`], which reuses the
    /// allocations of completed batches.
    ///
    /// [`Driver::batch`]: super::Driver::batch
    pub fn new() -> Self {
        Self {
            inner: Box::new(BatchInner::new()),
        }
    }

    pub(crate) fn from_inner(inner: Box<BatchInner<K>>) -> Self {
        Self { inner }
    }

    /// Appends a whole buffer. Hands it back when the batch already holds [`IOV_MAX`] items,
    /// so the caller keeps it for the next send.
    pub fn push(&mut self, item: K) -> Result<(), K> {
        self.push_from(item, 0)
    }

    /// Appends `item` starting at byte `offset` (the rest of a buffer a previous partial send
    /// began). Hands it back when the batch already holds [`IOV_MAX`] items.
    ///
    /// # Panics
    /// If `offset` is greater than the buffer's length, as slicing would.
    pub fn push_from(&mut self, item: K, offset: usize) -> Result<(), K> {
        if self.inner.items.len() >= IOV_MAX {
            return Err(item);
        }
        let len = item.as_ref().len();
        assert!(
            offset <= len,
            "send offset {offset} is past the end of a {len}-byte buffer"
        );
        self.inner.bytes += len - offset;
        self.inner.items.push((item, offset));
        Ok(())
    }

    /// Number of buffers (iovecs) in the batch.
    pub fn len(&self) -> usize {
        self.inner.items.len()
    }

    /// Whether the batch holds no buffer.
    pub fn is_empty(&self) -> bool {
        self.inner.items.is_empty()
    }

    /// Whether the batch holds [`IOV_MAX`] buffers and refuses more.
    pub fn is_full(&self) -> bool {
        self.inner.items.len() >= IOV_MAX
    }

    /// Bytes the batch would send in full, so the caller can cap a batch's size and account
    /// for a partial send.
    pub fn bytes(&self) -> usize {
        self.inner.bytes
    }

    /// The bytes each item contributes, in order (what the send will write): for callers
    /// that inspect a batch, such as tests of what a queue gathered.
    pub fn slices(&self) -> impl Iterator<Item = &[u8]> {
        self.inner
            .items
            .iter()
            .map(|(item, offset)| item.as_ref().get(*offset..).unwrap_or(&[]))
    }

    /// Drops every buffer, keeping the allocation.
    pub fn clear(&mut self) {
        self.inner.reset();
    }
}

impl<K: AsRef<[u8]>> Default for SendBatch<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K> fmt::Debug for SendBatch<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SendBatch")
            .field("len", &self.inner.items.len())
            .field("bytes", &self.inner.bytes)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_items_and_bytes_and_enforces_iov_max() {
        let mut b = SendBatch::<Vec<u8>>::new();
        b.push(vec![1, 2, 3]).unwrap();
        b.push_from(vec![4, 5, 6, 7], 1).unwrap();
        assert_eq!((b.len(), b.bytes()), (2, 6));
        for _ in 2..IOV_MAX {
            b.push(vec![0]).unwrap();
        }
        assert!(b.is_full());
        assert_eq!(b.push(vec![9]), Err(vec![9]));
        b.clear();
        assert!(b.is_empty());
        assert_eq!(b.bytes(), 0);
    }

    #[test]
    fn the_msghdr_points_at_each_item_from_its_offset() {
        let mut b = SendBatch::<Vec<u8>>::new();
        b.push(b"ab".to_vec()).unwrap();
        b.push_from(b"xyz".to_vec(), 2).unwrap();
        let msg = b.inner.prepare_msg();
        // SAFETY: `msg` points into `b.inner`, alive and unmodified for these reads; its
        // iovecs point into the items, which are alive too.
        let got: Vec<Vec<u8>> = unsafe {
            let msg = &*msg;
            std::slice::from_raw_parts(msg.msg_iov, msg.msg_iovlen)
                .iter()
                .map(|v| std::slice::from_raw_parts(v.iov_base as *const u8, v.iov_len).to_vec())
                .collect()
        };
        assert_eq!(got, vec![b"ab".to_vec(), b"z".to_vec()]);
    }

    #[test]
    #[should_panic(expected = "past the end")]
    fn an_offset_past_the_end_panics() {
        let mut b = SendBatch::<Vec<u8>>::new();
        let _ = b.push_from(vec![1], 2);
    }
}
