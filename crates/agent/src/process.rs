//! The application behind a connection, as the agent reports it, and the interface that finds
//! it. The Linux lookup lives in [`crate::identity`]; another operating system supplies its own
//! [`ProcessLookup`].

use std::sync::Arc;

use palisade_proto::Connection;

use crate::flow::FlowKey;

/// A process and the facts a policy can match on. Fields the lookup could not read are `None`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Process {
    /// Process id; 0 when the socket's owner was gone before it could be found, and then only
    /// `uid` and `user` (the socket's) are known.
    pub pid: u32,
    /// Numeric user id the process runs as.
    pub uid: Option<u32>,
    /// Name of that user.
    pub user: Option<String>,
    /// Absolute path of the executable.
    pub exe: Option<String>,
    /// SHA-256 of the executable, lowercase hex.
    pub sha256: Option<String>,
    /// Command line, arguments separated by spaces.
    pub cmdline: Option<String>,
    /// Executable path of the parent process.
    pub parent_exe: Option<String>,
    /// The process's cgroup path.
    pub cgroup: Option<String>,
    /// The systemd unit it belongs to.
    pub unit: Option<String>,
    /// The container it runs in.
    pub container_id: Option<String>,
}

impl Process {
    /// Copies the process's facts into the connection a policy decides.
    pub fn fill(&self, conn: &mut Connection) {
        conn.app_path.clone_from(&self.exe);
        conn.app_sha256.clone_from(&self.sha256);
        conn.cmdline.clone_from(&self.cmdline);
        conn.user.clone_from(&self.user);
        conn.uid = self.uid;
        conn.parent_path.clone_from(&self.parent_exe);
        conn.cgroup.clone_from(&self.cgroup);
        conn.unit.clone_from(&self.unit);
        conn.container_id.clone_from(&self.container_id);
    }
}

/// Finds the process that owns a connection's local socket.
pub trait ProcessLookup: Send {
    /// The process behind `flow`, or `None` when no process owns it (any longer).
    fn lookup(&mut self, flow: &FlowKey) -> Option<Arc<Process>>;
}
