//! The Linux process lookup: `NETLINK_SOCK_DIAG` turns a connection into its socket's inode and
//! user id, a warm index turns the inode into a pid, and a per-process cache turns the pid into
//! a [`Process`].

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs;
use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use netlink_sys::{Socket, SocketAddr as NetlinkAddr, protocols::NETLINK_SOCK_DIAG};
use palisade_proto::Protocol;
use thiserror::Error;

use crate::flow::FlowKey;
use crate::identity::exe_hash::{ExeHashes, FileVersion};
use crate::identity::procfs;
use crate::identity::sock_diag::{
    self, DiagSocket, IPPROTO_TCP, IPPROTO_UDP, Message, Query, SockDiagError,
};
use crate::process::{Process, ProcessLookup};

/// Why a lookup could not ask the kernel.
#[derive(Debug, Error)]
pub enum IdentityError {
    /// The netlink socket could not be opened, or sending or receiving on it failed.
    #[error("sock_diag netlink socket: {0}")]
    Netlink(#[source] io::Error),
    /// The kernel refused the request (an errno other than "no such socket").
    #[error("sock_diag request refused: errno {0}")]
    Refused(i32),
    /// The kernel's reply could not be parsed.
    #[error("sock_diag reply: {0}")]
    Reply(#[from] SockDiagError),
}

/// Counters of what lookups found and how, for metrics and for judging the caches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LookupStats {
    /// The socket's inode was in the index: no `/proc` scan.
    pub index_hits: u64,
    /// The inode was not in the index (or its owner had gone): `/proc` was scanned.
    pub index_misses: u64,
    /// Processes whose descriptor tables were read while scanning.
    pub processes_scanned: u64,
    /// No socket matched the flow.
    pub no_socket: u64,
    /// The socket exists but no process holds it any longer: answered from the cache, or with
    /// the socket's user id alone.
    pub ownerless: u64,
    /// Requests that failed (netlink errors, unreadable replies).
    pub errors: u64,
}

/// The Linux [`ProcessLookup`].
///
/// What it cannot attribute: a socket that is already gone when the lookup runs (a UDP sender
/// or a non-blocking TCP connect whose process closed the socket or exited before the first
/// packet was looked at) gives `None`; a socket that still exists but is in no process's
/// descriptor table (the owner exited, leaving an orphaned TCP socket) gives the last process
/// seen holding it, or else a [`Process`] with pid 0 carrying only the socket's user; sockets in
/// other network namespaces (containers with their own network) are not found from the host's
/// namespace; ICMP gives `None`.
pub struct ProcIdentity {
    netlink: Socket,
    seq: u32,
    recv_buf: Vec<u8>,
    proc_root: PathBuf,
    /// Socket inode → the process that held it when `/proc` was last scanned.
    sockets: HashMap<u64, Owner>,
    /// Socket cookie → the process a lookup attributed it to: answers for the socket after
    /// its owner exits (the kernel then reports inode 0).
    attributed: HashMap<u64, Owner>,
    /// (pid, start time) → what was read about the process; kept after it exits.
    processes: HashMap<(u32, u64), Cached>,
    /// Pids that owned recent connections, most recent first.
    recent: VecDeque<u32>,
    hashes: ExeHashes,
    /// This process: its own connections are never decided, so its executable (tens of
    /// megabytes, hundreds in a debug build) is never hashed, which would hold up the lookups
    /// queued behind it.
    own_pid: u32,
    users: Users,
    tick: u64,
    stats: LookupStats,
}

impl ProcIdentity {
    /// Opens the `NETLINK_SOCK_DIAG` socket; reads `/proc` and `/etc/passwd` as lookups need.
    pub fn new() -> Result<ProcIdentity, IdentityError> {
        let mut netlink = Socket::new(NETLINK_SOCK_DIAG).map_err(IdentityError::Netlink)?;
        netlink.bind_auto().map_err(IdentityError::Netlink)?;
        netlink
            .connect(&NetlinkAddr::new(0, 0))
            .map_err(IdentityError::Netlink)?;
        Ok(ProcIdentity {
            netlink,
            seq: 0,
            recv_buf: Vec::with_capacity(RECV_BUF),
            proc_root: PathBuf::from("/proc"),
            sockets: HashMap::new(),
            attributed: HashMap::new(),
            processes: HashMap::new(),
            recent: VecDeque::with_capacity(RECENT),
            hashes: ExeHashes::default(),
            own_pid: std::process::id(),
            users: Users::new(PathBuf::from("/etc/passwd")),
            tick: 0,
            stats: LookupStats::default(),
        })
    }

    /// What lookups have found so far.
    pub fn stats(&self) -> LookupStats {
        self.stats
    }

    /// How many executables were read and hashed (the rest came from the hash cache).
    pub fn exe_hashes_computed(&self) -> u64 {
        self.hashes.computed
    }

    /// Reads `/proc` once so that sockets opened before the first lookup are in the index.
    pub fn warm(&mut self) {
        let mut scanned = HashSet::new();
        for (pid, _) in self.list_pids() {
            self.scan_pid(pid, 0, &mut scanned);
        }
    }

    /// Like [`ProcessLookup::lookup`], with the reason when the kernel could not be asked.
    pub fn try_lookup(&mut self, flow: &FlowKey) -> Result<Option<Arc<Process>>, IdentityError> {
        let protocol = match flow.protocol {
            Protocol::Tcp => IPPROTO_TCP,
            Protocol::Udp => IPPROTO_UDP,
            Protocol::Icmp => return Ok(None),
        };
        self.tick = self.tick.saturating_add(1);
        let Some(socket) = self.find_socket(protocol, flow)? else {
            self.stats.no_socket = self.stats.no_socket.saturating_add(1);
            return Ok(None);
        };
        let known = self.attributed.get(&socket.cookie).copied();
        if socket.inode == 0 {
            return Ok(Some(self.ownerless(known, socket.uid)));
        }
        let indexed = self.sockets.get(&socket.inode).copied();
        if let Some(owner) = indexed {
            if self.start_time(owner.pid) == Some(owner.start_time) {
                self.stats.index_hits = self.stats.index_hits.saturating_add(1);
                return Ok(Some(self.answer(owner, &socket)));
            }
            // The process that held it has exited (its pid may name another process by now).
            self.sockets.remove(&socket.inode);
        }
        self.stats.index_misses = self.stats.index_misses.saturating_add(1);
        match self.scan_for(socket.inode, socket.uid) {
            Some(owner) => Ok(Some(self.answer(owner, &socket))),
            None => Ok(Some(self.ownerless(known.or(indexed), socket.uid))),
        }
    }

    /// The answer for a socket no process holds: the process last attributed it, else its user.
    fn ownerless(&mut self, known: Option<Owner>, uid: u32) -> Arc<Process> {
        self.stats.ownerless = self.stats.ownerless.saturating_add(1);
        let last = known.and_then(|owner| self.cached(owner));
        last.unwrap_or_else(|| self.user_only(uid))
    }

    /// The socket behind `flow`, by its exact ends; for UDP, else any socket bound to the
    /// flow's local port (an unconnected socket that sends with `sendto`).
    fn find_socket(
        &mut self,
        protocol: u8,
        flow: &FlowKey,
    ) -> Result<Option<DiagSocket>, IdentityError> {
        // The kernel's UDP lookup reads `src` as the remote end; its TCP lookup as the local one.
        let query = if protocol == IPPROTO_UDP {
            Query::Exact {
                src: flow.remote,
                dst: flow.local,
            }
        } else {
            Query::Exact {
                src: flow.local,
                dst: flow.remote,
            }
        };
        if let Some(socket) = self.exchange(protocol, query)?.into_iter().next() {
            return Ok(Some(socket));
        }
        if protocol != IPPROTO_UDP {
            return Ok(None);
        }
        let mut bound = Vec::new();
        for ipv6 in [false, true] {
            let sockets = self.exchange(protocol, Query::Dump { ipv6 })?;
            bound.extend(
                sockets
                    .into_iter()
                    .filter(|s| s.local.port() == flow.local.port()),
            );
        }
        let exact = bound.iter().find(|s| same_ip(s.local, flow.local)).copied();
        Ok(exact.or_else(|| bound.into_iter().find(|s| s.local.ip().is_unspecified())))
    }

    /// Sends one request and collects the sockets of its reply.
    fn exchange(&mut self, protocol: u8, query: Query) -> Result<Vec<DiagSocket>, IdentityError> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let request = sock_diag::request(seq, protocol, query);
        self.netlink
            .send(&request, 0)
            .map_err(IdentityError::Netlink)?;
        let dump = matches!(query, Query::Dump { .. });
        let mut sockets = Vec::new();
        loop {
            self.recv_buf.clear();
            self.netlink
                .recv(&mut self.recv_buf, 0)
                .map_err(IdentityError::Netlink)?;
            for message in sock_diag::parse(&self.recv_buf)? {
                match message {
                    Message::Socket { seq: s, socket } if s == seq => {
                        sockets.push(socket);
                        if !dump {
                            return Ok(sockets);
                        }
                    }
                    Message::Done { seq: s } if s == seq => return Ok(sockets),
                    // ENOENT: no such socket.
                    Message::Error {
                        seq: s,
                        errno: 0 | 2,
                    } if s == seq => return Ok(sockets),
                    Message::Error { seq: s, errno } if s == seq => {
                        return Err(IdentityError::Refused(errno));
                    }
                    _ => {} // a late reply to an earlier request
                }
            }
        }
    }

    /// Scans `/proc/<pid>/fd` for `inode`: first the pids of recent connections, then the
    /// processes of the socket's user, then all others, newest pids first. Every socket seen on
    /// the way goes into the index.
    fn scan_for(&mut self, inode: u64, uid: u32) -> Option<Owner> {
        if self.sockets.len() > INDEX_CAPACITY {
            self.sockets.clear();
        }
        let mut scanned = HashSet::new();
        let recent: Vec<u32> = self.recent.iter().copied().collect();
        for pid in recent {
            if let Some(owner) = self.scan_pid(pid, inode, &mut scanned) {
                return Some(owner);
            }
        }
        let mut pids = self.list_pids();
        pids.sort_by_key(|&(pid, owner)| (owner != Some(uid), std::cmp::Reverse(pid)));
        for (pid, _) in pids {
            if let Some(owner) = self.scan_pid(pid, inode, &mut scanned) {
                return Some(owner);
            }
        }
        None
    }

    /// Records the sockets in `pid`'s descriptor table, from the highest descriptor down to
    /// `inode` if it is there (then the owner is returned), else all of them.
    fn scan_pid(&mut self, pid: u32, inode: u64, scanned: &mut HashSet<u32>) -> Option<Owner> {
        if !scanned.insert(pid) {
            return None;
        }
        let start_time = self.start_time(pid)?;
        let owner = Owner { pid, start_time };
        self.stats.processes_scanned = self.stats.processes_scanned.saturating_add(1);
        let fd_dir = self.pid_path(pid, "fd");
        // A new descriptor takes the lowest free number, which in a table without holes is
        // the highest: read from the top and stop at the socket sought.
        let mut fds: Vec<u32> = fs::read_dir(&fd_dir)
            .ok()?
            .flatten()
            .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
            .collect();
        fds.sort_unstable_by(|a, b| b.cmp(a));
        for fd in fds {
            let Ok(target) = fs::read_link(fd_dir.join(fd.to_string())) else {
                continue;
            };
            if let Some(socket) = procfs::socket_inode(target.as_os_str().as_encoded_bytes()) {
                self.sockets.insert(socket, owner);
                if socket == inode {
                    return Some(owner);
                }
            }
        }
        None
    }

    /// Every pid in `/proc`, with the user id owning its directory (the process's user).
    fn list_pids(&self) -> Vec<(u32, Option<u32>)> {
        let Ok(entries) = fs::read_dir(&self.proc_root) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|entry| {
                let pid = entry.file_name().to_str()?.parse::<u32>().ok()?;
                Some((pid, entry.metadata().ok().map(|m| m.uid())))
            })
            .collect()
    }

    /// The process for `owner`, read now if it is still running, else as last read; and moved
    /// to the front of the recent list.
    fn answer(&mut self, owner: Owner, socket: &DiagSocket) -> Arc<Process> {
        self.recent.retain(|&pid| pid != owner.pid);
        self.recent.push_front(owner.pid);
        self.recent.truncate(RECENT);
        if self.attributed.len() >= INDEX_CAPACITY {
            self.attributed.clear();
        }
        self.attributed.insert(socket.cookie, owner);
        match self.read_process(owner).or_else(|| self.cached(owner)) {
            Some(process) => process,
            None => self.user_only(socket.uid),
        }
    }

    /// The cached process, refreshed when its executable changed (an `exec` keeps the pid and
    /// the start time).
    fn read_process(&mut self, owner: Owner) -> Option<Arc<Process>> {
        let Owner { pid, start_time } = owner;
        let exe_link = self.pid_path(pid, "exe");
        let version = fs::metadata(&exe_link).ok().map(|m| FileVersion::of(&m));
        let key = (pid, start_time);
        if let Some(cached) = self.processes.get_mut(&key) {
            if cached.exe == version {
                cached.last_used = self.tick;
                return Some(Arc::clone(&cached.process));
            }
        }
        let stat = fs::read(self.pid_path(pid, "stat")).ok()?;
        let stat = procfs::parse_stat(&stat).ok()?;
        if stat.start_time != start_time {
            return None; // the pid now names another process
        }
        let uid = fs::read(self.pid_path(pid, "status"))
            .ok()
            .and_then(|b| procfs::parse_status_uid(&b).ok());
        let cgroup = fs::read(self.pid_path(pid, "cgroup"))
            .map(|b| procfs::parse_cgroup(&b))
            .unwrap_or_default();
        let parent_exe = (stat.ppid != 0)
            .then(|| fs::read_link(self.pid_path(stat.ppid, "exe")).ok())
            .flatten()
            .map(|p| p.to_string_lossy().into_owned());
        let process = Process {
            pid,
            uid,
            user: uid.and_then(|uid| self.users.name(uid)),
            exe: fs::read_link(&exe_link)
                .ok()
                .map(|p| p.to_string_lossy().into_owned()),
            sha256: version
                .filter(|_| pid != self.own_pid)
                .and_then(|v| self.hashes.hash(&exe_link, v).ok()),
            cmdline: fs::read(self.pid_path(pid, "cmdline"))
                .ok()
                .and_then(|b| procfs::parse_cmdline(&b)),
            parent_exe,
            cgroup: cgroup.path,
            unit: cgroup.unit,
            container_id: cgroup.container_id,
        };
        let process = Arc::new(process);
        self.evict();
        self.processes.insert(
            key,
            Cached {
                exe: version,
                process: Arc::clone(&process),
                last_used: self.tick,
            },
        );
        Some(process)
    }

    fn cached(&mut self, owner: Owner) -> Option<Arc<Process>> {
        let cached = self.processes.get_mut(&(owner.pid, owner.start_time))?;
        cached.last_used = self.tick;
        Some(Arc::clone(&cached.process))
    }

    /// Drops the least recently used quarter of the process cache when it is full.
    fn evict(&mut self) {
        if self.processes.len() < PROCESS_CAPACITY {
            return;
        }
        let mut ages: Vec<u64> = self.processes.values().map(|c| c.last_used).collect();
        ages.sort_unstable();
        let cutoff = ages.get(PROCESS_CAPACITY / 4).copied().unwrap_or(u64::MAX);
        self.processes.retain(|_, c| c.last_used > cutoff);
    }

    fn user_only(&mut self, uid: u32) -> Arc<Process> {
        Arc::new(Process {
            pid: 0,
            uid: Some(uid),
            user: self.users.name(uid),
            ..Process::default()
        })
    }

    fn start_time(&self, pid: u32) -> Option<u64> {
        let stat = fs::read(self.pid_path(pid, "stat")).ok()?;
        procfs::parse_stat(&stat).ok().map(|s| s.start_time)
    }

    fn pid_path(&self, pid: u32, file: &str) -> PathBuf {
        let mut path = self.proc_root.join(pid.to_string());
        path.push(file);
        path
    }
}

impl ProcessLookup for ProcIdentity {
    fn lookup(&mut self, flow: &FlowKey) -> Option<Arc<Process>> {
        match self.try_lookup(flow) {
            Ok(process) => process,
            Err(_) => {
                self.stats.errors = self.stats.errors.saturating_add(1);
                None
            }
        }
    }
}

/// Receive buffer for one netlink datagram (dumps come in datagrams of up to 32 KiB).
const RECV_BUF: usize = 64 * 1024;
/// Pids kept in the recent-owner list.
const RECENT: usize = 64;
/// Socket inodes the index holds before it starts over.
const INDEX_CAPACITY: usize = 16 * 1024;
/// Processes the cache holds, exited ones included, before the least recently used go.
const PROCESS_CAPACITY: usize = 4096;

/// A process, named so that a reused pid is not mistaken for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Owner {
    pid: u32,
    start_time: u64,
}

struct Cached {
    exe: Option<FileVersion>,
    process: Arc<Process>,
    last_used: u64,
}

/// User names from `/etc/passwd`, read again when the file changes.
struct Users {
    path: PathBuf,
    version: Option<(i64, i64, u64)>,
    names: HashMap<u32, String>,
}

impl Users {
    fn new(path: PathBuf) -> Users {
        Users {
            path,
            version: None,
            names: HashMap::new(),
        }
    }

    fn name(&mut self, uid: u32) -> Option<String> {
        self.refresh(&self.path.clone());
        self.names.get(&uid).cloned()
    }

    fn refresh(&mut self, path: &Path) {
        let Ok(meta) = fs::metadata(path) else { return };
        let version = Some((meta.mtime(), meta.mtime_nsec(), meta.ino()));
        if version == self.version {
            return;
        }
        if let Ok(bytes) = fs::read(path) {
            self.names = procfs::parse_passwd(&bytes);
            self.version = version;
        }
    }
}

fn same_ip(a: SocketAddr, b: SocketAddr) -> bool {
    a.ip().to_canonical() == b.ip().to_canonical()
}
