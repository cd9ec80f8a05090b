//! A `sock_diag` reply and the `/proc` files the process lookup parses, from arbitrary bytes: any
//! answer but a panic is fine, a refusal points inside the input, and what is parsed out holds
//! what the parsers promise.

#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_agent::identity::procfs;
use palisade_agent::identity::sock_diag::{self, SockDiagError};

fuzz_target!(|data: &[u8]| {
    match sock_diag::parse(data) {
        Err(SockDiagError::BadLength { offset, .. } | SockDiagError::Truncated { offset }) => {
            assert!(offset < data.len());
        }
        Err(SockDiagError::UnknownFamily(family)) => assert!(family != 2 && family != 10),
        Ok(_) => {}
    }
    let _ = procfs::parse_stat(data);
    let _ = procfs::parse_status_uid(data);
    if let Some(cmdline) = procfs::parse_cmdline(data) {
        assert!(!cmdline.contains('\0'));
    }
    let cgroup = procfs::parse_cgroup(data);
    if let Some(id) = cgroup.container_id {
        assert!(id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()));
    }
    if let Some(unit) = cgroup.unit {
        assert!(unit.ends_with(".service") || unit.ends_with(".scope"));
    }
    let _ = procfs::socket_inode(data);
    for name in procfs::parse_passwd(data).into_values() {
        assert!(!name.is_empty() && !name.contains(':'));
    }
});
