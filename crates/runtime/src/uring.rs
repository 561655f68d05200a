//! Creating a shard's io_uring with the best flags the kernel accepts.
//!
//! SINGLE_ISSUER + DEFER_TASKRUN (6.1+) keep completion work on the shard's own thread at the
//! moment it asks for completions, which is exactly the thread-per-core model; COOP_TASKRUN
//! (5.19+) avoids IPIs. Each is tried in turn and dropped when the kernel says EINVAL.

use io_uring::IoUring;

/// Which optional setup flags the ring was created with (reported in logs and stats).
#[derive(Debug, Clone, Copy, Default)]
pub struct RingFeatures {
    /// IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN.
    pub defer_taskrun: bool,
    /// IORING_SETUP_COOP_TASKRUN.
    pub coop_taskrun: bool,
}

/// Builds a ring for the calling thread.
pub struct UringBuilder {
    /// Submission queue entries.
    pub sq_entries: u32,
    /// Completion queue entries (multishot operations need room for bursts).
    pub cq_entries: u32,
}

impl UringBuilder {
    /// Creates the ring, falling back flag by flag on older kernels.
    pub fn build(&self) -> std::io::Result<(IoUring, RingFeatures)> {
        let attempts: [(bool, bool); 3] = [(true, true), (false, true), (false, false)];
        let mut last_err = None;
        for (defer, coop) in attempts {
            let mut b = IoUring::builder();
            b.setup_cqsize(self.cq_entries).setup_submit_all();
            if defer {
                b.setup_single_issuer().setup_defer_taskrun();
            }
            if coop {
                b.setup_coop_taskrun();
            }
            match b.build(self.sq_entries) {
                Ok(ring) => {
                    return Ok((
                        ring,
                        RingFeatures {
                            defer_taskrun: defer,
                            coop_taskrun: coop,
                        },
                    ))
                }
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => last_err = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last_err.unwrap_or_else(|| std::io::Error::from_raw_os_error(libc::EINVAL)))
    }
}
