//! Process identity: for every connection, the process behind it (pid, executable and its
//! SHA-256, command line, user, parent, cgroup, systemd unit, container).
//!
//! On Linux, [`ProcIdentity`] asks the kernel (`NETLINK_SOCK_DIAG`) for the socket of the
//! connection's exact ends, which gives the socket's inode and user; a warm index of socket
//! inodes seen in `/proc/<pid>/fd` gives the pid; a cache per process (checked against the
//! process's start time, so a reused pid is never mistaken for the old process) gives the rest.
//! Processes stay cached after they exit, so a connection whose process exits right after
//! opening it is still attributed when its socket survives it.
//!
//! Layout:
//! - [`procfs`]: parsers of `/proc/<pid>/{stat,status,cmdline,cgroup}`, fd links, `/etc/passwd`.
//! - [`sock_diag`]: the `inet_diag` request and the parser of the kernel's replies.
//! - `exe_hash`: SHA-256 of executables, once per device, inode, modification time and size.
//! - `linux`: the lookup itself.

pub mod procfs;
pub mod sock_diag;

#[cfg(target_os = "linux")]
mod exe_hash;
#[cfg(target_os = "linux")]
mod linux;

#[cfg(target_os = "linux")]
pub use linux::{IdentityError, LookupStats, ProcIdentity};
