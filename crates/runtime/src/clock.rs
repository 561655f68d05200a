//! A monotonic nanosecond clock that is comparable across threads (CLOCK_MONOTONIC), so a
//! timestamp taken on the publisher's shard can be subtracted on the subscriber's shard.

/// Nanoseconds since an arbitrary, system-wide fixed point.
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a live, writable timespec the call fills; CLOCK_MONOTONIC always exists
    // on Linux, so the call cannot fail and leave it unset (it starts zeroed anyway).
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}
