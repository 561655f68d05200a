//! Which CPUs the shards run on: the process affinity mask (so `taskset`/`numactl` decide),
//! optionally narrowed by `--cores` or `--shards`.

use thiserror::Error;

/// Why a CPU selection could not be honoured.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum AffinityError {
    /// The `--cores` text is not a list like `0,2-5`.
    #[error("invalid core list {0:?}: expected e.g. 0,2-5")]
    BadList(String),
    /// A named CPU is not in the process affinity mask.
    #[error("cpu {0} is not in this process's affinity mask {1:?}")]
    NotAllowed(usize, Vec<usize>),
    /// More shards were asked for than CPUs are allowed.
    #[error("{0} shards requested but only {1} cpus are in the affinity mask")]
    TooManyShards(usize, usize),
    /// sched_getaffinity failed.
    #[error("cannot read the affinity mask: {0}")]
    Sys(String),
}

/// The CPUs in this process's affinity mask, ascending.
pub fn process_cpus() -> Result<Vec<usize>, AffinityError> {
    // SAFETY: cpu_set_t is a plain bit array, for which all-zero (the empty set) is valid.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a live, writable cpu_set_t and the size passed is exactly its size, so
    // the kernel writes only inside it; pid 0 is the calling thread.
    let rc =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if rc != 0 {
        return Err(AffinityError::Sys(
            std::io::Error::last_os_error().to_string(),
        ));
    }
    Ok((0..libc::CPU_SETSIZE as usize)
        // SAFETY: CPU_ISSET only reads bit `c` of `set`, and `c < CPU_SETSIZE` keeps it inside.
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
        .collect())
}

/// Parses `0,2-5` into `[0, 2, 3, 4, 5]` (deduplicated, in the order given).
pub fn parse_core_list(text: &str) -> Result<Vec<usize>, AffinityError> {
    let bad = || AffinityError::BadList(text.to_string());
    let mut cpus = Vec::new();
    for (lo, hi) in list_ranges(text).ok_or_else(bad)? {
        if hi >= libc::CPU_SETSIZE as usize {
            return Err(bad());
        }
        for c in lo..=hi {
            if !cpus.contains(&c) {
                cpus.push(c);
            }
        }
    }
    Ok(cpus)
}

/// The ranges of a CPU or node list in the kernel's syntax (`0,2-5`: parts split by commas,
/// each a number or `lo-hi` with `lo <= hi`), in the order given; `None` for anything else,
/// an empty part included. Both `--cores` and the lists sysfs prints are read with it.
pub(crate) fn list_ranges(text: &str) -> Option<Vec<(usize, usize)>> {
    text.split(',')
        .map(str::trim)
        .map(|part| {
            let (lo, hi) = match part.split_once('-') {
                Some((a, b)) => (a.trim().parse().ok()?, b.trim().parse().ok()?),
                None => {
                    let c: usize = part.parse().ok()?;
                    (c, c)
                }
            };
            (lo <= hi).then_some((lo, hi))
        })
        .collect()
}

/// Chooses the CPUs for the shards: `cores` if given (each must be allowed), else the first
/// `shards` allowed CPUs, else all allowed CPUs.
pub fn select_cpus(
    allowed: &[usize],
    cores: Option<&[usize]>,
    shards: Option<usize>,
) -> Result<Vec<usize>, AffinityError> {
    let mut chosen = match cores {
        Some(list) => {
            for c in list {
                if !allowed.contains(c) {
                    return Err(AffinityError::NotAllowed(*c, allowed.to_vec()));
                }
            }
            list.to_vec()
        }
        None => allowed.to_vec(),
    };
    if let Some(n) = shards {
        if n > chosen.len() {
            return Err(AffinityError::TooManyShards(n, chosen.len()));
        }
        chosen.truncate(n);
    }
    Ok(chosen)
}

/// Pins the calling thread to `cpu`. Returns false if the kernel refused.
pub fn pin_current_thread(cpu: usize) -> bool {
    core_affinity::set_for_current(core_affinity::CoreId { id: cpu })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lists_and_ranges() {
        assert_eq!(parse_core_list("0,2-4").unwrap(), vec![0, 2, 3, 4]);
        assert_eq!(parse_core_list("3").unwrap(), vec![3]);
        assert!(parse_core_list("4-2").is_err());
        assert!(parse_core_list("a").is_err());
        assert!(parse_core_list("").is_err());
    }

    #[test]
    fn selection_respects_mask_and_count() {
        let allowed = [0, 1, 2, 3];
        assert_eq!(select_cpus(&allowed, None, Some(2)).unwrap(), vec![0, 1]);
        assert_eq!(
            select_cpus(&allowed, Some(&[3, 1]), None).unwrap(),
            vec![3, 1]
        );
        assert!(select_cpus(&allowed, Some(&[7]), None).is_err());
        assert!(select_cpus(&allowed, None, Some(9)).is_err());
    }
}
