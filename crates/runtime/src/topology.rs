//! Where the shards' CPUs sit: NUMA nodes, sockets, cores and SMT siblings, read from sysfs,
//! and the process's memory policy.
//!
//! The reader takes a root directory (`/` on a real host; [`SYSFS_ROOT_ENV`] points it
//! elsewhere) and reads, under it:
//!
//! - `sys/devices/system/node/node*/cpulist`: the NUMA nodes and their CPUs. A kernel without
//!   NUMA has no `node` directory: the machine is then one node 0 holding every CPU;
//! - `sys/devices/system/cpu/online`: CPUs not listed are offline;
//! - `sys/devices/system/cpu/cpu*/topology/{physical_package_id,core_id,thread_siblings_list}`:
//!   socket, core and SMT siblings (absent for an offline CPU).
//!
//! Any of these may be missing; what is missing is reported as unknown (`None`), never
//! guessed. [`SysfsLayout`] writes such trees, so tests (and `CORECAST_SYSFS_ROOT`) can give
//! the reader any layout.
//!
//! [`MemoryPolicy`] is the process's NUMA memory policy (`numactl --membind`, `--interleave`,
//! `--preferred`, or none) and the nodes its cpuset allows.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// The environment variable that points the topology reader at another root than `/`
/// (a directory holding `sys/devices/system/...`).
pub const SYSFS_ROOT_ENV: &str = "CORECAST_SYSFS_ROOT";

/// The root to read the topology from: `$CORECAST_SYSFS_ROOT` if set and non-empty, else `/`.
pub fn sysfs_root_from_env() -> PathBuf {
    match std::env::var_os(SYSFS_ROOT_ENV) {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => PathBuf::from("/"),
    }
}

/// Parses a kernel CPU or node list (`0-3,8,10-11`, as sysfs prints them; an empty list is
/// valid). `None` if the text is not such a list.
pub fn parse_list(text: &str) -> Option<Vec<usize>> {
    let text = text.trim();
    let mut out = BTreeSet::new();
    if text.is_empty() {
        return Some(Vec::new());
    }
    for (lo, hi) in crate::affinity::list_ranges(text)? {
        // A list naming a million CPUs is a broken file, not a machine.
        if hi - lo > 1 << 20 {
            return None;
        }
        out.extend(lo..=hi);
    }
    Some(out.into_iter().collect())
}

/// Formats a sorted list of CPUs or nodes the way the kernel does (`0-3,8`); `-` if empty.
pub fn format_list(items: &[usize]) -> String {
    if items.is_empty() {
        return "-".into();
    }
    let mut sorted = items.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut out = String::new();
    let mut i = 0;
    while i < sorted.len() {
        let mut j = i;
        while j + 1 < sorted.len() && sorted[j + 1] == sorted[j] + 1 {
            j += 1;
        }
        if !out.is_empty() {
            out.push(',');
        }
        if j == i {
            out.push_str(&sorted[i].to_string());
        } else {
            out.push_str(&format!("{}-{}", sorted[i], sorted[j]));
        }
        i = j + 1;
    }
    out
}

/// What sysfs says about one CPU's place in its package.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CpuTopology {
    /// `physical_package_id`: the socket (`None` if absent or negative, as some virtual
    /// machines report).
    pub socket: Option<usize>,
    /// `core_id`: the core within its package.
    pub core: Option<usize>,
    /// `thread_siblings_list`: the CPUs sharing this CPU's core, itself included (empty if
    /// unknown).
    pub siblings: Vec<usize>,
}

/// Where one shard runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardPlace {
    /// The shard's id (its index in the CPU list given to [`Topology::placement`]).
    pub shard: usize,
    /// The CPU it is pinned to.
    pub cpu: usize,
    /// Its NUMA node (`None` if the node lists do not name the CPU).
    pub node: Option<usize>,
    /// Its socket (physical package), if known.
    pub socket: Option<usize>,
    /// Its core within the socket, if known.
    pub core: Option<usize>,
    /// Other shards whose CPUs are SMT siblings of this one (they share a core).
    pub core_shared_with: Vec<usize>,
    /// Whether the CPU is online.
    pub online: bool,
}

/// The host's CPU and NUMA layout, as far as sysfs tells it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Topology {
    /// Node id → its CPUs as listed (ascending). Empty when the kernel has no node directory.
    nodes: BTreeMap<usize, Vec<usize>>,
    /// Whether node directories were found (else: one node 0 holding every CPU).
    numa: bool,
    /// CPU → its topology files, for every `cpuN` directory.
    cpus: BTreeMap<usize, CpuTopology>,
    /// The `online` list, if the file exists.
    online: Option<Vec<usize>>,
}

impl Topology {
    /// Reads the layout under `root` (`/` on a real host). Missing files are tolerated and
    /// leave what they would have said unknown; a file that exists but cannot be read or
    /// parsed is an error naming it, as is a root with neither `cpu` nor `node` directories
    /// under `sys/devices/system` (a wrong root, or no sysfs).
    pub fn read(root: &Path) -> io::Result<Topology> {
        let system = root.join("sys/devices/system");
        let node_dir = system.join("node");
        let cpu_dir = system.join("cpu");
        let mut topo = Topology::default();

        let node_entries = numbered_entries(&node_dir, "node")?;
        let cpu_entries = numbered_entries(&cpu_dir, "cpu")?;
        if node_entries.is_none() && cpu_entries.is_none() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("no CPU or NUMA topology under {}", system.display()),
            ));
        }
        if let Some(entries) = node_entries {
            topo.numa = !entries.is_empty();
            for (id, path) in entries {
                let cpus = read_list(&path.join("cpulist"))?.unwrap_or_default();
                topo.nodes.insert(id, cpus);
            }
        }
        topo.online = read_list(&cpu_dir.join("online"))?;
        for (id, path) in cpu_entries.unwrap_or_default() {
            let t = path.join("topology");
            let socket =
                read_int(&t.join("physical_package_id"))?.and_then(|v| usize::try_from(v).ok());
            let core = read_int(&t.join("core_id"))?.and_then(|v| usize::try_from(v).ok());
            let siblings = read_list(&t.join("thread_siblings_list"))?.unwrap_or_default();
            topo.cpus.insert(
                id,
                CpuTopology {
                    socket,
                    core,
                    siblings,
                },
            );
        }
        Ok(topo)
    }

    /// Whether the kernel reported NUMA nodes (node directories exist). Without them the
    /// machine is one node 0 with every CPU.
    pub fn has_numa(&self) -> bool {
        self.numa
    }

    /// The node ids, ascending (`[0]` on a machine without NUMA).
    pub fn nodes(&self) -> Vec<usize> {
        if self.numa {
            self.nodes.keys().copied().collect()
        } else {
            vec![0]
        }
    }

    /// Every CPU the tree names (CPU directories, node lists, the online list), ascending.
    pub fn cpus(&self) -> Vec<usize> {
        let mut all: BTreeSet<usize> = self.cpus.keys().copied().collect();
        all.extend(self.nodes.values().flatten().copied());
        all.extend(self.online.iter().flatten().copied());
        all.into_iter().collect()
    }

    /// The online CPUs of `node`, ascending (without NUMA, node 0 has every online CPU).
    pub fn node_cpus(&self, node: usize) -> Vec<usize> {
        let listed = if self.numa {
            self.nodes.get(&node).cloned().unwrap_or_default()
        } else if node == 0 {
            self.cpus()
        } else {
            Vec::new()
        };
        listed.into_iter().filter(|&c| self.is_online(c)).collect()
    }

    /// The node `cpu` belongs to. Without NUMA every CPU is on node 0; with it, `None` if no
    /// node lists the CPU.
    pub fn node_of(&self, cpu: usize) -> Option<usize> {
        if !self.numa {
            return Some(0);
        }
        self.nodes
            .iter()
            .find(|(_, cpus)| cpus.binary_search(&cpu).is_ok())
            .map(|(&n, _)| n)
    }

    /// The socket (physical package) of `cpu`, if known.
    pub fn socket_of(&self, cpu: usize) -> Option<usize> {
        self.cpus.get(&cpu).and_then(|t| t.socket)
    }

    /// The core id of `cpu` within its socket, if known.
    pub fn core_of(&self, cpu: usize) -> Option<usize> {
        self.cpus.get(&cpu).and_then(|t| t.core)
    }

    /// The online CPUs sharing `cpu`'s core (SMT siblings), itself included; empty if unknown.
    pub fn siblings(&self, cpu: usize) -> Vec<usize> {
        self.cpus
            .get(&cpu)
            .map(|t| {
                t.siblings
                    .iter()
                    .copied()
                    .filter(|&c| self.is_online(c))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The sysfs record of `cpu`, if its directory exists.
    pub fn cpu(&self, cpu: usize) -> Option<&CpuTopology> {
        self.cpus.get(&cpu)
    }

    /// Whether `cpu` is online: listed in `online`, or, if that file is missing, named by
    /// the tree at all.
    pub fn is_online(&self, cpu: usize) -> bool {
        match &self.online {
            Some(list) => list.binary_search(&cpu).is_ok(),
            None => {
                self.cpus.contains_key(&cpu) || self.nodes.values().flatten().any(|&c| c == cpu)
            }
        }
    }

    /// CPUs the tree names that are not online, ascending.
    pub fn offline(&self) -> Vec<usize> {
        self.cpus()
            .into_iter()
            .filter(|&c| !self.is_online(c))
            .collect()
    }

    /// The sockets the tree names, ascending.
    pub fn sockets(&self) -> Vec<usize> {
        let s: BTreeSet<usize> = self.cpus.values().filter_map(|t| t.socket).collect();
        s.into_iter().collect()
    }

    /// Where each shard runs: shard `i` on `cpus[i]`.
    pub fn placement(&self, cpus: &[usize]) -> Vec<ShardPlace> {
        cpus.iter()
            .enumerate()
            .map(|(shard, &cpu)| {
                let siblings = self.siblings(cpu);
                ShardPlace {
                    shard,
                    cpu,
                    node: self.node_of(cpu),
                    socket: self.socket_of(cpu),
                    core: self.core_of(cpu),
                    core_shared_with: cpus
                        .iter()
                        .enumerate()
                        .filter(|&(other, c)| other != shard && siblings.contains(c))
                        .map(|(other, _)| other)
                        .collect(),
                    online: self.is_online(cpu),
                }
            })
            .collect()
    }
}

impl fmt::Display for Topology {
    /// One line: `2 sockets, 4 NUMA nodes (0: 0,4; 1: 1,5; ...), 8 CPUs online, offline: -`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sockets = self.sockets().len();
        if sockets > 0 {
            write!(
                f,
                "{sockets} socket{}, ",
                if sockets == 1 { "" } else { "s" }
            )?;
        }
        if self.numa {
            write!(f, "{} NUMA node", self.nodes.len())?;
            if self.nodes.len() != 1 {
                f.write_str("s")?;
            }
            f.write_str(" (")?;
            for (i, (n, cpus)) in self.nodes.iter().enumerate() {
                if i > 0 {
                    f.write_str("; ")?;
                }
                write!(f, "{n}: {}", format_list(cpus))?;
            }
            f.write_str(")")?;
        } else {
            f.write_str("no NUMA nodes (one node 0)")?;
        }
        let all = self.cpus();
        let online = all.iter().filter(|&&c| self.is_online(c)).count();
        write!(f, ", {online} CPUs online")?;
        let offline = self.offline();
        if !offline.is_empty() {
            write!(f, ", offline: {}", format_list(&offline))?;
        }
        Ok(())
    }
}

/// `dir`'s entries named `<prefix><number>`, by number; `None` if `dir` does not exist.
fn numbered_entries(dir: &Path, prefix: &str) -> io::Result<Option<Vec<(usize, PathBuf)>>> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(annotate(e, dir)),
    };
    let mut out = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| annotate(e, dir))?;
        let name = entry.file_name();
        let Some(num) = name
            .to_str()
            .and_then(|n| n.strip_prefix(prefix))
            .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|n| n.parse::<usize>().ok())
        else {
            continue;
        };
        out.push((num, entry.path()));
    }
    out.sort_unstable_by_key(|(n, _)| *n);
    Ok(Some(out))
}

/// A file's text, `None` if it does not exist.
fn read_text(path: &Path) -> io::Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(annotate(e, path)),
    }
}

fn read_list(path: &Path) -> io::Result<Option<Vec<usize>>> {
    match read_text(path)? {
        None => Ok(None),
        Some(text) => parse_list(&text)
            .map(Some)
            .ok_or_else(|| invalid(path, &text, "a CPU list like 0-3,8")),
    }
}

fn read_int(path: &Path) -> io::Result<Option<i64>> {
    match read_text(path)? {
        None => Ok(None),
        Some(text) => text
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| invalid(path, &text, "an integer")),
    }
}

fn annotate(e: io::Error, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

fn invalid(path: &Path, text: &str, expected: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "{}: expected {expected}, found {:?}",
            path.display(),
            text.trim()
        ),
    )
}

/// A NUMA memory policy mode, as get_mempolicy(2) reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyMode {
    /// No policy: each page comes from the node of the CPU that first touches it.
    Default,
    /// `MPOL_LOCAL` (or `MPOL_PREFERRED` with no node): the touching CPU's node, explicitly.
    Local,
    /// `MPOL_PREFERRED`: one node first, others when it is full (`numactl --preferred`).
    Preferred,
    /// `MPOL_PREFERRED_MANY`: these nodes first.
    PreferredMany,
    /// `MPOL_BIND`: only these nodes (`numactl --membind`).
    Bind,
    /// `MPOL_INTERLEAVE`: pages round-robin over these nodes (`numactl --interleave`).
    Interleave,
    /// `MPOL_WEIGHTED_INTERLEAVE`: weighted round-robin over these nodes.
    WeightedInterleave,
    /// A mode this code does not know.
    Other(i32),
}

impl PolicyMode {
    /// From the `mode` get_mempolicy(2) writes (mode flags masked off by the caller).
    pub fn from_raw(mode: i32) -> PolicyMode {
        match mode {
            0 => PolicyMode::Default,
            1 => PolicyMode::Preferred,
            2 => PolicyMode::Bind,
            3 => PolicyMode::Interleave,
            4 => PolicyMode::Local,
            5 => PolicyMode::PreferredMany,
            6 => PolicyMode::WeightedInterleave,
            m => PolicyMode::Other(m),
        }
    }

    /// Whether pages are placed where they are first touched (so a shard's memory lands on
    /// its own node).
    pub fn is_local(self) -> bool {
        matches!(self, PolicyMode::Default | PolicyMode::Local)
    }
}

/// The process's memory policy and the memory nodes it may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryPolicy {
    /// The calling thread's policy (shard threads inherit it), `None` if get_mempolicy(2)
    /// failed (a seccomp filter, a kernel without NUMA).
    pub mode: Option<PolicyMode>,
    /// The policy's nodes (empty for the local modes).
    pub nodes: Vec<usize>,
    /// `Mems_allowed_list` of `/proc/self/status`: the nodes the cpuset allows, if readable.
    pub mems_allowed: Option<Vec<usize>>,
}

/// Mode flags get_mempolicy(2) may set above the mode (MPOL_F_STATIC_NODES,
/// MPOL_F_RELATIVE_NODES, MPOL_F_NUMA_BALANCING).
const MPOL_MODE_FLAGS: i32 = (1 << 15) | (1 << 14) | (1 << 13);
/// Bits of the node mask buffer: MAX_NUMNODES is at most 1024 (NODES_SHIFT ≤ 10).
const MASK_BITS: usize = 1024;

impl MemoryPolicy {
    /// The calling thread's policy (call it before starting shards; they inherit it) and
    /// the process's allowed memory nodes.
    pub fn current() -> MemoryPolicy {
        let (mode, nodes) = match get_mempolicy() {
            Some((mode, nodes)) => (Some(mode), nodes),
            None => (None, Vec::new()),
        };
        let mems_allowed = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| mems_allowed_from_status(&s));
        MemoryPolicy {
            mode,
            nodes,
            mems_allowed,
        }
    }

    /// Whether each shard's first-touched memory stays on the shard's node (no policy, or
    /// an explicit local one). `None` if the policy is unknown.
    pub fn is_local(&self) -> Option<bool> {
        self.mode.map(PolicyMode::is_local)
    }

    /// Of `shard_nodes` (each shard's node), those the policy keeps memory away from: for
    /// `bind` and `preferred` policies, nodes not among the policy's nodes, whose shards get
    /// their memory from another node (`numactl --membind=0` with shards on nodes 0 and 1).
    /// Empty for local and interleave policies, and when the policy is unknown.
    pub fn remote_nodes(&self, shard_nodes: &[usize]) -> Vec<usize> {
        let restricting = matches!(
            self.mode,
            Some(PolicyMode::Bind | PolicyMode::Preferred | PolicyMode::PreferredMany)
        );
        if !restricting || self.nodes.is_empty() {
            return Vec::new();
        }
        let mut out: Vec<usize> = shard_nodes
            .iter()
            .copied()
            .filter(|n| !self.nodes.contains(n))
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }
}

impl fmt::Display for MemoryPolicy {
    /// `local (first touch)`, `bind nodes 0`, `interleave nodes 0-3`, ..., then the cpuset's
    /// `; allowed nodes 0-3`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nodes = format_list(&self.nodes);
        match self.mode {
            None => f.write_str("unknown (get_mempolicy failed)")?,
            Some(PolicyMode::Default) => f.write_str("local (default: first touch)")?,
            Some(PolicyMode::Local) => f.write_str("local")?,
            Some(PolicyMode::Preferred) => write!(f, "preferred node {nodes}")?,
            Some(PolicyMode::PreferredMany) => write!(f, "preferred nodes {nodes}")?,
            Some(PolicyMode::Bind) => write!(f, "bind nodes {nodes}")?,
            Some(PolicyMode::Interleave) => write!(f, "interleave nodes {nodes}")?,
            Some(PolicyMode::WeightedInterleave) => write!(f, "weighted interleave nodes {nodes}")?,
            Some(PolicyMode::Other(m)) => write!(f, "mode {m} nodes {nodes}")?,
        }
        if let Some(allowed) = &self.mems_allowed {
            write!(f, "; allowed nodes {}", format_list(allowed))?;
        }
        Ok(())
    }
}

/// The `Mems_allowed_list` of a `/proc/<pid>/status` text.
pub fn mems_allowed_from_status(status: &str) -> Option<Vec<usize>> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Mems_allowed_list:"))
        .and_then(parse_list)
}

/// The calling thread's policy mode and nodes, `None` if the call fails.
fn get_mempolicy() -> Option<(PolicyMode, Vec<usize>)> {
    const WORD: usize = libc::c_ulong::BITS as usize;
    let mut mode: libc::c_int = 0;
    let mut mask: [libc::c_ulong; MASK_BITS / WORD] = [0; MASK_BITS / WORD];
    // SAFETY: get_mempolicy(mode, nodemask, maxnode, addr, flags) with flags 0 and a null
    // addr only writes the int behind `mode` and at most ALIGN(maxnode - 1, 64) / 8 bytes
    // behind `nodemask`; maxnode is MASK_BITS + 1, so that is exactly `mask` (128 bytes),
    // and both are live locals for the whole call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_get_mempolicy,
            &mut mode as *mut libc::c_int,
            mask.as_mut_ptr(),
            (MASK_BITS + 1) as libc::c_ulong,
            std::ptr::null_mut::<libc::c_void>(),
            0 as libc::c_ulong,
        )
    };
    if rc != 0 {
        return None;
    }
    let nodes: Vec<usize> = (0..MASK_BITS)
        .filter(|&n| mask[n / WORD] & (1 << (n % WORD)) != 0)
        .collect();
    let mode = match PolicyMode::from_raw(mode & !MPOL_MODE_FLAGS) {
        // MPOL_PREFERRED with an empty mask is how older kernels say "local".
        PolicyMode::Preferred if nodes.is_empty() => PolicyMode::Local,
        m => m,
    };
    Some((mode, nodes))
}

/// A CPU in a [`SysfsLayout`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayoutCpu {
    /// Its number.
    pub cpu: usize,
    /// Its NUMA node.
    pub node: usize,
    /// Its socket.
    pub socket: usize,
    /// Its core id within the socket.
    pub core: usize,
}

/// A CPU/NUMA layout that can be written as a fake sysfs tree, for tests and for trying the
/// broker on a layout the machine does not have (`CORECAST_SYSFS_ROOT`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SysfsLayout {
    /// Every CPU, online or not.
    pub cpus: Vec<LayoutCpu>,
    /// CPUs written as offline: left out of `online`, without a `topology` directory (as the
    /// kernel removes it), still in their node's `cpulist`.
    pub offline: Vec<usize>,
    /// Whether to write `node/node*` directories (a kernel without NUMA has none).
    pub node_dirs: bool,
    /// Node directories to leave out even when `node_dirs` is set.
    pub missing_nodes: Vec<usize>,
}

impl SysfsLayout {
    /// `sockets × nodes_per_socket` nodes of `cores_per_node` cores with `threads` SMT
    /// threads each, numbered as Linux on x86 does: the first thread of every core first
    /// (cpu = core's global index), then the second threads (cpu = cores + core's index).
    /// Two sockets × two nodes × one core × two threads gives node 0 = CPUs 0,4, node 1 =
    /// 1,5, node 2 = 2,6, node 3 = 3,7, sockets {0,1,4,5} and {2,3,6,7}.
    pub fn uniform(
        sockets: usize,
        nodes_per_socket: usize,
        cores_per_node: usize,
        threads: usize,
    ) -> SysfsLayout {
        let cores = sockets * nodes_per_socket * cores_per_node;
        let mut cpus = Vec::with_capacity(cores * threads);
        for t in 0..threads {
            for g in 0..cores {
                let node = g / cores_per_node;
                let socket = node / nodes_per_socket;
                cpus.push(LayoutCpu {
                    cpu: t * cores + g,
                    node,
                    socket,
                    core: g % (nodes_per_socket * cores_per_node),
                });
            }
        }
        SysfsLayout {
            cpus,
            offline: Vec::new(),
            node_dirs: true,
            missing_nodes: Vec::new(),
        }
    }

    /// Writes the tree under `root` (creating `root/sys/devices/system/...`).
    pub fn write(&self, root: &Path) -> io::Result<()> {
        let system = root.join("sys/devices/system");
        let cpu_dir = system.join("cpu");
        std::fs::create_dir_all(&cpu_dir)?;
        let online: Vec<usize> = self
            .cpus
            .iter()
            .map(|c| c.cpu)
            .filter(|c| !self.offline.contains(c))
            .collect();
        std::fs::write(
            cpu_dir.join("online"),
            format!("{}\n", list_or_empty(&online)),
        )?;
        // Entries the reader must skip, as on a real host.
        std::fs::create_dir_all(cpu_dir.join("cpufreq"))?;
        std::fs::write(cpu_dir.join("possible"), "0\n")?;
        for c in &self.cpus {
            let dir = cpu_dir.join(format!("cpu{}", c.cpu));
            std::fs::create_dir_all(&dir)?;
            let is_online = !self.offline.contains(&c.cpu);
            std::fs::write(dir.join("online"), if is_online { "1\n" } else { "0\n" })?;
            if !is_online {
                continue;
            }
            let t = dir.join("topology");
            std::fs::create_dir_all(&t)?;
            std::fs::write(t.join("physical_package_id"), format!("{}\n", c.socket))?;
            std::fs::write(t.join("core_id"), format!("{}\n", c.core))?;
            let siblings: Vec<usize> = self
                .cpus
                .iter()
                .filter(|o| o.socket == c.socket && o.core == c.core)
                .map(|o| o.cpu)
                .filter(|o| !self.offline.contains(o))
                .collect();
            std::fs::write(
                t.join("thread_siblings_list"),
                format!("{}\n", list_or_empty(&siblings)),
            )?;
        }
        if self.node_dirs {
            let node_dir = system.join("node");
            std::fs::create_dir_all(&node_dir)?;
            let nodes: BTreeSet<usize> = self.cpus.iter().map(|c| c.node).collect();
            std::fs::write(
                node_dir.join("online"),
                format!(
                    "{}\n",
                    list_or_empty(&nodes.iter().copied().collect::<Vec<_>>())
                ),
            )?;
            for n in nodes {
                if self.missing_nodes.contains(&n) {
                    continue;
                }
                let dir = node_dir.join(format!("node{n}"));
                std::fs::create_dir_all(&dir)?;
                let cpus: Vec<usize> = self
                    .cpus
                    .iter()
                    .filter(|c| c.node == n)
                    .map(|c| c.cpu)
                    .collect();
                std::fs::write(dir.join("cpulist"), format!("{}\n", list_or_empty(&cpus)))?;
            }
        }
        Ok(())
    }
}

/// As sysfs writes a list: empty text for an empty list.
fn list_or_empty(items: &[usize]) -> String {
    if items.is_empty() {
        String::new()
    } else {
        format_list(items)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A directory removed when dropped.
    struct TempRoot(PathBuf);

    impl TempRoot {
        fn new() -> TempRoot {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let p = std::env::temp_dir().join(format!(
                "corecast-topology-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p).unwrap();
            TempRoot(p)
        }
    }

    impl Drop for TempRoot {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn read(layout: &SysfsLayout) -> Topology {
        let root = TempRoot::new();
        layout.write(&root.0).unwrap();
        Topology::read(&root.0).unwrap()
    }

    #[test]
    fn lists_parse_and_format_like_the_kernel() {
        assert_eq!(
            parse_list("0-3,8,10-11\n"),
            Some(vec![0, 1, 2, 3, 8, 10, 11])
        );
        assert_eq!(parse_list("\n"), Some(vec![]));
        assert_eq!(parse_list("5"), Some(vec![5]));
        assert_eq!(parse_list("3-1"), None);
        assert_eq!(parse_list("x"), None);
        assert_eq!(parse_list("0-"), None);
        assert_eq!(format_list(&[0, 1, 2, 3, 8, 10, 11]), "0-3,8,10-11");
        assert_eq!(format_list(&[4, 0]), "0,4");
        assert_eq!(format_list(&[]), "-");
    }

    #[test]
    fn one_node() {
        let t = read(&SysfsLayout::uniform(1, 1, 4, 1));
        assert!(t.has_numa());
        assert_eq!(t.nodes(), vec![0]);
        assert_eq!(t.node_cpus(0), vec![0, 1, 2, 3]);
        assert_eq!(t.cpus(), vec![0, 1, 2, 3]);
        for c in 0..4 {
            assert_eq!(t.node_of(c), Some(0));
            assert_eq!(t.socket_of(c), Some(0));
            assert_eq!(t.core_of(c), Some(c));
            assert_eq!(t.siblings(c), vec![c]);
        }
        assert_eq!(t.node_of(4), None, "a CPU no node lists");
        let places = t.placement(&[0, 1, 2, 3]);
        assert!(places.iter().all(|p| p.node == Some(0) && p.online));
        assert!(places.iter().all(|p| p.core_shared_with.is_empty()));
        assert_eq!(
            t.to_string(),
            "1 socket, 1 NUMA node (0: 0-3), 4 CPUs online"
        );
    }

    #[test]
    fn two_sockets_two_nodes_each_with_smt_siblings() {
        let t = read(&SysfsLayout::uniform(2, 2, 1, 2));
        assert_eq!(t.nodes(), vec![0, 1, 2, 3]);
        assert_eq!(t.sockets(), vec![0, 1]);
        assert_eq!(t.node_cpus(0), vec![0, 4]);
        assert_eq!(t.node_cpus(3), vec![3, 7]);
        assert_eq!(
            (0..8).map(|c| t.node_of(c).unwrap()).collect::<Vec<_>>(),
            vec![0, 1, 2, 3, 0, 1, 2, 3]
        );
        assert_eq!(
            (0..8).map(|c| t.socket_of(c).unwrap()).collect::<Vec<_>>(),
            vec![0, 0, 1, 1, 0, 0, 1, 1]
        );
        assert_eq!(t.siblings(1), vec![1, 5]);
        assert_eq!(t.siblings(5), vec![1, 5]);
        assert_eq!(t.core_of(6), Some(0));
        assert_eq!(t.core_of(3), Some(1));
        let places = t.placement(&(0..8).collect::<Vec<_>>());
        assert_eq!(places[2].node, Some(2));
        assert_eq!(places[2].socket, Some(1));
        assert_eq!(
            places[2].core_shared_with,
            vec![6],
            "cpu 6 is cpu 2's sibling"
        );
        assert_eq!(places[6].core_shared_with, vec![2]);
        assert_eq!(
            t.to_string(),
            "2 sockets, 4 NUMA nodes (0: 0,4; 1: 1,5; 2: 2,6; 3: 3,7), 8 CPUs online"
        );
    }

    #[test]
    fn shard_cpus_spread_over_nodes() {
        // A mask that takes one thread of each core (no SMT sharing) and skips node 1.
        let t = read(&SysfsLayout::uniform(2, 2, 2, 2));
        assert_eq!(t.node_cpus(1), vec![2, 3, 10, 11]);
        let cpus = [0, 1, 4, 5, 6, 7];
        let places = t.placement(&cpus);
        assert_eq!(
            places.iter().map(|p| p.shard).collect::<Vec<_>>(),
            vec![0, 1, 2, 3, 4, 5]
        );
        assert_eq!(
            places.iter().map(|p| p.node.unwrap()).collect::<Vec<_>>(),
            vec![0, 0, 2, 2, 3, 3]
        );
        assert_eq!(
            places.iter().map(|p| p.socket.unwrap()).collect::<Vec<_>>(),
            vec![0, 0, 1, 1, 1, 1]
        );
        assert!(places.iter().all(|p| p.core_shared_with.is_empty()));
        // Both threads of core 0 of socket 0: the two shards share a core.
        let places = t.placement(&[0, 8, 1]);
        assert_eq!(places[0].core_shared_with, vec![1]);
        assert_eq!(places[1].core_shared_with, vec![0]);
        assert!(places[2].core_shared_with.is_empty());
    }

    #[test]
    fn offline_cpus_are_not_online_and_have_no_topology() {
        let mut layout = SysfsLayout::uniform(2, 2, 1, 2);
        layout.offline = vec![5, 6];
        let t = read(&layout);
        assert_eq!(t.offline(), vec![5, 6]);
        assert!(!t.is_online(5) && t.is_online(4));
        assert_eq!(t.node_cpus(1), vec![1], "cpu 5 is offline");
        assert_eq!(t.node_of(5), Some(1), "still listed on its node");
        assert_eq!(t.socket_of(5), None, "no topology directory");
        assert_eq!(t.siblings(1), vec![1], "the offline sibling is left out");
        let places = t.placement(&[1, 5]);
        assert!(places[0].online && !places[1].online);
        assert!(
            t.to_string().ends_with("6 CPUs online, offline: 5-6"),
            "{t}"
        );
    }

    #[test]
    fn no_node_directory_means_one_node_with_every_cpu() {
        let mut layout = SysfsLayout::uniform(1, 1, 2, 2);
        layout.node_dirs = false;
        let t = read(&layout);
        assert!(!t.has_numa());
        assert_eq!(t.nodes(), vec![0]);
        assert_eq!(t.node_cpus(0), vec![0, 1, 2, 3]);
        assert_eq!(t.node_cpus(1), Vec::<usize>::new());
        assert_eq!(t.node_of(3), Some(0));
        assert_eq!(t.node_of(99), Some(0), "no NUMA: all memory is node 0");
        assert_eq!(t.siblings(0), vec![0, 2]);
        assert!(t.to_string().starts_with("1 socket, no NUMA nodes"), "{t}");
    }

    #[test]
    fn a_missing_node_directory_leaves_its_cpus_unknown() {
        let mut layout = SysfsLayout::uniform(2, 2, 1, 2);
        layout.missing_nodes = vec![1];
        let t = read(&layout);
        assert_eq!(t.nodes(), vec![0, 2, 3]);
        assert_eq!(t.node_of(1), None);
        assert_eq!(t.node_of(5), None);
        assert_eq!(t.node_of(2), Some(2));
        assert_eq!(t.socket_of(1), Some(0), "the socket is still known");
        let places = t.placement(&[0, 1]);
        assert_eq!((places[0].node, places[1].node), (Some(0), None));
    }

    #[test]
    fn missing_files_are_tolerated_and_broken_ones_named() {
        let root = TempRoot::new();
        // Only CPU directories, no online list, no topology files, no nodes.
        for c in 0..2 {
            std::fs::create_dir_all(root.0.join(format!("sys/devices/system/cpu/cpu{c}"))).unwrap();
        }
        let t = Topology::read(&root.0).unwrap();
        assert_eq!(t.cpus(), vec![0, 1]);
        assert!(
            t.is_online(1),
            "without an online list every named CPU counts"
        );
        assert_eq!(t.node_of(1), Some(0));
        assert_eq!(t.socket_of(1), None);
        assert!(t.siblings(1).is_empty());

        // A node directory without a cpulist: a memory-only node with no CPUs.
        std::fs::create_dir_all(root.0.join("sys/devices/system/node/node0")).unwrap();
        let t = Topology::read(&root.0).unwrap();
        assert!(t.has_numa());
        assert_eq!(t.node_cpus(0), Vec::<usize>::new());
        assert_eq!(t.node_of(0), None);

        // A package id of -1 (some virtual machines) is unknown, not an error.
        let topo = root.0.join("sys/devices/system/cpu/cpu0/topology");
        std::fs::create_dir_all(&topo).unwrap();
        std::fs::write(topo.join("physical_package_id"), "-1\n").unwrap();
        assert_eq!(Topology::read(&root.0).unwrap().socket_of(0), None);

        std::fs::write(topo.join("thread_siblings_list"), "zero\n").unwrap();
        let err = Topology::read(&root.0).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("thread_siblings_list"), "{err}");

        let empty = TempRoot::new();
        let err = Topology::read(&empty.0).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn reads_this_host() {
        // Whatever the machine is, the real tree reads and names every CPU this process
        // may run on.
        let Ok(t) = Topology::read(Path::new("/")) else {
            return; // no sysfs (some containers)
        };
        for c in crate::affinity::process_cpus().unwrap() {
            assert!(t.is_online(c), "cpu {c} runs this process");
        }
    }

    #[test]
    fn memory_policy_status_and_display() {
        let status = "Name:\tx\nCpus_allowed_list:\t0-7\nMems_allowed:\t00000003\n\
                      Mems_allowed_list:\t0-1\nvoluntary_ctxt_switches:\t1\n";
        assert_eq!(mems_allowed_from_status(status), Some(vec![0, 1]));
        assert_eq!(mems_allowed_from_status("Name:\tx\n"), None);

        let p = |mode, nodes: Vec<usize>| MemoryPolicy {
            mode,
            nodes,
            mems_allowed: Some(vec![0, 1, 2, 3]),
        };
        let local = p(Some(PolicyMode::Default), vec![]);
        assert_eq!(
            local.to_string(),
            "local (default: first touch); allowed nodes 0-3"
        );
        assert_eq!(local.is_local(), Some(true));
        assert!(local.remote_nodes(&[0, 1]).is_empty());

        let bind = p(Some(PolicyMode::Bind), vec![0]);
        assert_eq!(bind.to_string(), "bind nodes 0; allowed nodes 0-3");
        assert_eq!(bind.is_local(), Some(false));
        assert_eq!(bind.remote_nodes(&[0, 0, 1, 3, 1]), vec![1, 3]);

        let inter = p(Some(PolicyMode::Interleave), vec![0, 1, 2, 3]);
        assert_eq!(inter.to_string(), "interleave nodes 0-3; allowed nodes 0-3");
        assert!(inter.remote_nodes(&[0, 1]).is_empty());

        let unknown = MemoryPolicy {
            mode: None,
            nodes: vec![],
            mems_allowed: None,
        };
        assert_eq!(unknown.to_string(), "unknown (get_mempolicy failed)");
        assert_eq!(unknown.is_local(), None);

        assert_eq!(PolicyMode::from_raw(3), PolicyMode::Interleave);
        assert_eq!(PolicyMode::from_raw(9), PolicyMode::Other(9));
    }

    #[test]
    fn a_policy_set_on_a_thread_reads_back() {
        // Memory policy is per thread: set one on a thread of our own and read it there.
        let got = std::thread::spawn(|| {
            let mut out = Vec::new();
            for (mode, name) in [(3, "interleave"), (2, "bind")] {
                let mask: libc::c_ulong = 1; // node 0, which every NUMA kernel has
                                             // SAFETY: set_mempolicy(mode, nodemask, maxnode) reads maxnode - 1 = 64 bits
                                             // behind `nodemask`: exactly the live local `mask`. It changes only this
                                             // test thread's policy.
                let rc = unsafe {
                    libc::syscall(
                        libc::SYS_set_mempolicy,
                        mode as libc::c_int,
                        &mask as *const libc::c_ulong,
                        (libc::c_ulong::BITS + 1) as libc::c_ulong,
                    )
                };
                if rc != 0 {
                    return None; // no NUMA in this kernel, or a seccomp filter
                }
                out.push((name, MemoryPolicy::current()));
            }
            Some(out)
        })
        .join()
        .unwrap();
        let Some(got) = got else { return };
        let (_, interleave) = &got[0];
        assert_eq!(interleave.mode, Some(PolicyMode::Interleave));
        assert_eq!(interleave.nodes, vec![0]);
        assert!(interleave.to_string().starts_with("interleave nodes 0"));
        let (_, bind) = &got[1];
        assert_eq!(bind.mode, Some(PolicyMode::Bind));
        assert_eq!(bind.nodes, vec![0]);
        assert_eq!(bind.remote_nodes(&[0, 1]), vec![1]);
        // This thread's own policy is untouched.
        assert_ne!(MemoryPolicy::current().mode, Some(PolicyMode::Bind));
    }

    #[test]
    fn this_process_policy_reads() {
        // Under `cargo test` nobody set a policy, unless the test runs under numactl; either
        // way the call must not fail on a NUMA kernel and the allowed list must parse.
        let p = MemoryPolicy::current();
        if let Some(allowed) = &p.mems_allowed {
            assert!(!allowed.is_empty());
        }
        if let Some(mode) = p.mode {
            if mode.is_local() {
                assert!(p.nodes.is_empty(), "{p}");
            }
        }
    }
}
