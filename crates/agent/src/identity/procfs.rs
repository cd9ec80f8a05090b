//! Parsers for the `/proc` and `/etc` files the identity lookup reads: `stat`, `status`,
//! `cmdline`, `cgroup`, a `fd/<n>` link and `/etc/passwd`. They take bytes and never panic: a
//! file another process controls (its command line, its name in `stat`) is hostile input.

use std::collections::HashMap;

use thiserror::Error;

/// Why a `/proc` file could not be understood.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ProcfsError {
    /// A field the lookup needs is missing.
    #[error("{file}: no {field} field")]
    Missing {
        /// The file, as named in `/proc/<pid>/`.
        file: &'static str,
        /// The field that is not there.
        field: &'static str,
    },
    /// A field is there but does not hold a number.
    #[error("{file}: {field} is not a number")]
    NotANumber {
        /// The file, as named in `/proc/<pid>/`.
        file: &'static str,
        /// The field that is malformed.
        field: &'static str,
    },
}

/// The facts the lookup takes from `/proc/<pid>/stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// Parent process id.
    pub ppid: u32,
    /// Start time in clock ticks since boot: with the pid it names one process, so a new
    /// process that reuses a pid is told apart from the old one.
    pub start_time: u64,
}

/// Parses `/proc/<pid>/stat`. The command name in parentheses may itself hold spaces and
/// parentheses, so fields are counted from the last `)`.
pub fn parse_stat(bytes: &[u8]) -> Result<Stat, ProcfsError> {
    const FILE: &str = "stat";
    let close = bytes
        .iter()
        .rposition(|&b| b == b')')
        .ok_or(ProcfsError::Missing {
            file: FILE,
            field: "comm",
        })?;
    let rest = bytes.get(close.saturating_add(1)..).unwrap_or_default();
    let text = String::from_utf8_lossy(rest);
    // After the name: state (field 3), ppid (4), ..., starttime (22).
    let mut fields = text.split_ascii_whitespace();
    let ppid = fields.nth(1).ok_or(ProcfsError::Missing {
        file: FILE,
        field: "ppid",
    })?;
    let ppid = ppid.parse().map_err(|_| ProcfsError::NotANumber {
        file: FILE,
        field: "ppid",
    })?;
    let start_time = fields.nth(17).ok_or(ProcfsError::Missing {
        file: FILE,
        field: "starttime",
    })?;
    let start_time = start_time.parse().map_err(|_| ProcfsError::NotANumber {
        file: FILE,
        field: "starttime",
    })?;
    Ok(Stat { ppid, start_time })
}

/// Parses the real user id (the first number of the `Uid:` line) from `/proc/<pid>/status`.
pub fn parse_status_uid(bytes: &[u8]) -> Result<u32, ProcfsError> {
    const FILE: &str = "status";
    let text = String::from_utf8_lossy(bytes);
    let line = text
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .ok_or(ProcfsError::Missing {
            file: FILE,
            field: "Uid",
        })?;
    let first = line
        .split_ascii_whitespace()
        .next()
        .ok_or(ProcfsError::Missing {
            file: FILE,
            field: "Uid",
        })?;
    first.parse().map_err(|_| ProcfsError::NotANumber {
        file: FILE,
        field: "Uid",
    })
}

/// Turns `/proc/<pid>/cmdline` (arguments separated and ended by NUL) into one line with the
/// arguments separated by spaces. `None` for an empty command line (kernel threads, zombies).
pub fn parse_cmdline(bytes: &[u8]) -> Option<String> {
    let trimmed = bytes.strip_suffix(&[0]).unwrap_or(bytes);
    if trimmed.is_empty() {
        return None;
    }
    let joined: Vec<u8> = trimmed
        .iter()
        .map(|&b| if b == 0 { b' ' } else { b })
        .collect();
    Some(String::from_utf8_lossy(&joined).into_owned())
}

/// What `/proc/<pid>/cgroup` says about where a process runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cgroup {
    /// The unified (v2) path, or else the `name=systemd` v1 path; `None` when neither is there.
    pub path: Option<String>,
    /// The systemd unit: the last path component that ends in `.service` or `.scope`.
    pub unit: Option<String>,
    /// A container id (64 hex digits) found in any hierarchy's path.
    pub container_id: Option<String>,
}

/// Parses `/proc/<pid>/cgroup` (lines `id:controllers:path`).
pub fn parse_cgroup(bytes: &[u8]) -> Cgroup {
    let text = String::from_utf8_lossy(bytes);
    let mut unified = None;
    let mut systemd = None;
    let mut container_id = None;
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if id == "0" && controllers.is_empty() {
            unified = Some(path);
        } else if controllers == "name=systemd" {
            systemd = Some(path);
        }
        if container_id.is_none() {
            container_id = container_id_in(path);
        }
    }
    let path = unified.or(systemd).map(str::to_owned);
    let unit = path.as_deref().and_then(unit_in);
    Cgroup {
        path,
        unit,
        container_id,
    }
}

/// The systemd unit in a cgroup path: its last component ending in `.service` or `.scope`.
pub fn unit_in(path: &str) -> Option<String> {
    path.rsplit('/')
        .find(|part| part.ends_with(".service") || part.ends_with(".scope"))
        .map(str::to_owned)
}

/// A container id in a cgroup path: a component that is, or ends in, 64 hex digits after
/// `docker-`, `libpod-`, `cri-containerd-`, `crio-` or a `/docker/`-style parent, with a
/// `.scope` suffix dropped.
pub fn container_id_in(path: &str) -> Option<String> {
    for part in path.rsplit('/') {
        let part = part.strip_suffix(".scope").unwrap_or(part);
        let candidate = match part.rfind('-') {
            Some(dash) => part.get(dash.saturating_add(1)..).unwrap_or_default(),
            None => part,
        };
        if candidate.len() == 64 && candidate.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Some(candidate.to_ascii_lowercase());
        }
    }
    None
}

/// The inode of a socket from the target of a `/proc/<pid>/fd/<n>` link (`socket:[12345]`),
/// `None` for any other kind of file.
pub fn socket_inode(link: &[u8]) -> Option<u64> {
    let digits = link.strip_prefix(b"socket:[")?.strip_suffix(b"]")?;
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// Parses `/etc/passwd` into user id → user name. Malformed lines are skipped; the first entry
/// for a user id wins, as `getpwuid` does.
pub fn parse_passwd(bytes: &[u8]) -> HashMap<u32, String> {
    let text = String::from_utf8_lossy(bytes);
    let mut users = HashMap::new();
    for line in text.lines() {
        let mut fields = line.split(':');
        let (Some(name), Some(_password), Some(uid)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        if name.is_empty() || name.starts_with('#') {
            continue;
        }
        if let Ok(uid) = uid.parse::<u32>() {
            users.entry(uid).or_insert_with(|| name.to_owned());
        }
    }
    users
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_counts_fields_after_the_last_parenthesis() {
        let stat =
            b"4242 (evil) 0 1 (x) S 17 4242 4242 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 987654 0 0";
        assert_eq!(
            parse_stat(stat),
            Ok(Stat {
                ppid: 17,
                start_time: 987654
            })
        );
    }

    #[test]
    fn stat_rejects_truncated_and_garbage() {
        assert!(parse_stat(b"12 (sh) S 1 2 3").is_err());
        assert!(parse_stat(b"no parenthesis").is_err());
        assert!(parse_stat(b"1 (a) S x").is_err());
    }

    #[test]
    fn status_gives_the_real_uid() {
        let status = b"Name:\tcurl\nPPid:\t1\nUid:\t1000\t0\t0\t0\nGid:\t1000\t1000\t1000\t1000\n";
        assert_eq!(parse_status_uid(status), Ok(1000));
        assert!(parse_status_uid(b"Name:\tx\n").is_err());
        assert!(parse_status_uid(b"Uid:\tabc\n").is_err());
    }

    #[test]
    fn cmdline_joins_arguments_with_spaces() {
        assert_eq!(
            parse_cmdline(b"curl\0-s\0https://x\0").as_deref(),
            Some("curl -s https://x")
        );
        assert_eq!(parse_cmdline(b"").as_deref(), None);
        assert_eq!(parse_cmdline(b"\0").as_deref(), None);
    }

    #[test]
    fn cgroup_v2_service_unit() {
        let cgroup = parse_cgroup(b"0::/system.slice/nginx.service\n");
        assert_eq!(cgroup.path.as_deref(), Some("/system.slice/nginx.service"));
        assert_eq!(cgroup.unit.as_deref(), Some("nginx.service"));
        assert_eq!(cgroup.container_id, None);
    }

    #[test]
    fn cgroup_container_ids_of_each_runtime() {
        let id = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        for path in [
            format!("0::/system.slice/docker-{id}.scope\n"),
            format!("12:cpu:/docker/{id}\n0::/\n"),
            format!("0::/machine.slice/libpod-{id}.scope/container\n"),
            format!("0::/kubepods.slice/kubepods-pod1.slice/cri-containerd-{id}.scope\n"),
        ] {
            assert_eq!(
                parse_cgroup(path.as_bytes()).container_id.as_deref(),
                Some(id),
                "{path}"
            );
        }
        let docker = parse_cgroup(format!("0::/system.slice/docker-{id}.scope\n").as_bytes());
        assert_eq!(docker.unit, Some(format!("docker-{id}.scope")));
    }

    #[test]
    fn cgroup_v1_falls_back_to_the_systemd_hierarchy() {
        let cgroup = parse_cgroup(b"4:memory:/x\n1:name=systemd:/user.slice/session-3.scope\n");
        assert_eq!(cgroup.path.as_deref(), Some("/user.slice/session-3.scope"));
        assert_eq!(cgroup.unit.as_deref(), Some("session-3.scope"));
        assert_eq!(parse_cgroup(b"garbage\n\xff\n"), Cgroup::default());
    }

    #[test]
    fn socket_links() {
        assert_eq!(socket_inode(b"socket:[123456]"), Some(123456));
        assert_eq!(socket_inode(b"/dev/null"), None);
        assert_eq!(socket_inode(b"socket:[]"), None);
        assert_eq!(socket_inode(b"socket:[+1]"), None);
        assert_eq!(socket_inode(b"socket:[99999999999999999999999]"), None);
    }

    #[test]
    fn passwd_maps_uids_to_names() {
        let users = parse_passwd(b"root:x:0:0:root:/root:/bin/bash\nbad line\nalice:x:1000:1000::/home/alice:/bin/sh\nalias:x:0:0::/:/bin/sh\n");
        assert_eq!(users.get(&0).map(String::as_str), Some("root"));
        assert_eq!(users.get(&1000).map(String::as_str), Some("alice"));
        assert_eq!(users.len(), 2);
    }
}
