//! Process-wide set-up the binary needs before shards start: the open-files limit and the
//! stop signals. Here rather than in the binary so that only this crate holds `unsafe`.

/// The open-files limit after [`raise_open_files_limit`].
#[derive(Debug, Clone, Copy)]
pub struct OpenFilesLimit {
    /// The soft limit now in force.
    pub soft: u64,
    /// The hard limit.
    pub hard: u64,
}

/// Raises the soft open-files limit to the hard one (capped by `fs.nr_open`), as nats-server
/// and Go programs do: every connection is a descriptor, and the usual soft default (1024)
/// would stop a broker far below its connection limit. `None` if the limit cannot be read.
pub fn raise_open_files_limit() -> Option<OpenFilesLimit> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes only the local struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return None;
    }
    if lim.rlim_cur < lim.rlim_max {
        // An infinite hard limit is not a valid soft one for NOFILE; fs.nr_open is the ceiling.
        let ceiling = std::fs::read_to_string("/proc/sys/fs/nr_open")
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .unwrap_or(1 << 20);
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max.min(ceiling),
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit only reads the local struct it is given.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim = raised;
        }
    }
    Some(OpenFilesLimit {
        soft: lim.rlim_cur,
        hard: lim.rlim_max,
    })
}

/// SIGINT and SIGTERM (stop) and SIGHUP (reload the configuration), blocked in the calling
/// thread (and so in every thread it starts afterwards), to be taken only by
/// [`Signals::wait`]: no signal handler runs at an arbitrary point of a shard's loop.
/// SIGPIPE is ignored outright (sends use MSG_NOSIGNAL; this covers anything else).
pub struct Signals {
    set: libc::sigset_t,
}

impl Signals {
    /// Blocks the signals; call before any shard thread starts.
    pub fn block() -> Self {
        // SAFETY: an all-zero sigset_t is a valid value to initialise with sigemptyset; the
        // calls only touch this local set and the calling thread's mask.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_IGN);
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGINT);
            libc::sigaddset(&mut set, libc::SIGTERM);
            libc::sigaddset(&mut set, libc::SIGHUP);
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            Self { set }
        }
    }

    /// Whether `sig` (from [`Signals::wait`]) asks for a reload rather than a stop.
    pub fn is_reload(sig: i32) -> bool {
        sig == libc::SIGHUP
    }

    /// Waits up to `timeout_ms` for one of the signals; returns its number.
    pub fn wait(&self, timeout_ms: u64) -> Option<i32> {
        let tick = libc::timespec {
            tv_sec: (timeout_ms / 1000) as libc::time_t,
            tv_nsec: ((timeout_ms % 1000) * 1_000_000) as libc::c_long,
        };
        // SAFETY: `set` was initialised in `block`; no siginfo is requested.
        let sig = unsafe { libc::sigtimedwait(&self.set, std::ptr::null_mut(), &tick) };
        (sig > 0).then_some(sig)
    }
}
