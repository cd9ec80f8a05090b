//! DNS names as detectors see them: checked, split into the registrable domain (the part an
//! owner registers, after the Public Suffix List, private section included, so
//! `x.duckdns.org` and `d1a2.cloudfront.net` are each their own) and the subdomain left of it.
//!
//! Names come from hostile sources (queries on the wire, log files): anything that is not a
//! plausible DNS name is refused with `None`, never a panic. The subdomain may hold any printable
//! bytes (DNS labels are arbitrary octets, and tunnels such as iodine's base128 use bytes above
//! 0x7f, which logs print escaped as `\xNN`); the registrable domain must be a host name under a
//! suffix the list knows: a tunnel needs a delegated domain, and names under unknown suffixes
//! (`.local`, `.home`, single labels) are left to other checks.

/// Longest name accepted, in bytes of text: 253 octets on the wire, with room for escapes.
pub const MAX_NAME_LEN: usize = 1024;

/// Longest label accepted, in bytes of text: 63 octets, each possibly escaped as `\xNN`.
pub const MAX_LABEL_LEN: usize = 4 * 63;

/// Longest registrable domain accepted, in bytes (a host name: 253 octets).
const MAX_DOMAIN_LEN: usize = 253;

/// A name split at its registrable domain. Both parts borrow from the name given, in its case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SplitName<'a> {
    /// What is left of the registrable domain, without the dot (`""` for the domain itself).
    pub subdomain: &'a str,
    /// The registrable domain (`example.co.uk`).
    pub registrable: &'a str,
}

/// The registrable domain of `name` (`a.b.example.co.uk.` → `example.co.uk`), in the case it
/// was given; `None` when `name` is not a DNS name under a known public suffix.
pub fn registrable_domain(name: &str) -> Option<&str> {
    split(name).map(|s| s.registrable)
}

/// `name` split into subdomain and registrable domain; `None` as for [`registrable_domain`].
pub fn split(name: &str) -> Option<SplitName<'_>> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return None;
    }
    if !name.split('.').all(label_ok) {
        return None;
    }
    // The registrable domain is at most the last MAX_DOMAIN_LEN bytes; look it up on a lowercase
    // copy of that tail (the list is lowercase) and cut the same length from the original.
    let tail_start = name.len().saturating_sub(MAX_DOMAIN_LEN);
    let tail_start = (tail_start..name.len())
        .find(|&i| {
            name.is_char_boundary(i) && (i == 0 || name.as_bytes().get(i - 1) == Some(&b'.'))
        })
        .unwrap_or(name.len());
    let tail = name.get(tail_start..)?;
    let lower = tail.to_ascii_lowercase();
    let domain = psl::domain(lower.as_bytes())?;
    if !domain.suffix().is_known() {
        return None;
    }
    let len = domain.as_bytes().len();
    let start = name.len().checked_sub(len)?;
    let registrable = name.get(start..)?;
    if !registrable.split('.').all(host_label_ok) {
        return None;
    }
    let subdomain = match start {
        0 => "",
        _ => {
            // The byte before the registrable domain must be the dot between the two parts.
            if name.as_bytes().get(start - 1) != Some(&b'.') {
                return None;
            }
            name.get(..start - 1)?
        }
    };
    Some(SplitName {
        subdomain,
        registrable,
    })
}

/// A label of any part of a name: 1 to [`MAX_LABEL_LEN`] bytes, nothing a resolver would not
/// send (no ASCII control characters, spaces or DEL).
fn label_ok(label: &str) -> bool {
    !label.is_empty()
        && label.len() <= MAX_LABEL_LEN
        && label.bytes().all(|b| b > b' ' && b != 0x7f)
}

/// A label of the registrable domain: a host name label (letters, digits, hyphen; UTF-8 for
/// internationalised suffixes), at most 63 bytes, not starting or ending with a hyphen.
fn host_label_ok(label: &str) -> bool {
    label.len() <= 63
        && !label.starts_with('-')
        && !label.ends_with('-')
        && label.chars().all(|c| c.is_alphanumeric() || c == '-')
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn splits_at_the_public_suffix() {
        let s = split("a.b.Example.CO.uk.").unwrap();
        assert_eq!(s.subdomain, "a.b");
        assert_eq!(s.registrable, "Example.CO.uk");
        assert_eq!(registrable_domain("example.com"), Some("example.com"));
        assert_eq!(split("example.com").unwrap().subdomain, "");
        // Private section: each is its own registrable domain.
        assert_eq!(
            registrable_domain("d1a2b3c4.cloudfront.net"),
            Some("d1a2b3c4.cloudfront.net")
        );
        assert_eq!(
            registrable_domain("1.2.3.4.zen.spamhaus.org"),
            Some("spamhaus.org")
        );
    }

    #[test]
    fn refuses_what_is_not_a_name_under_a_known_suffix() {
        for bad in [
            "",
            ".",
            "com",
            "localhost",
            "_homekit._tcp.local",
            "wpad.home",
            "a..example.com",
            "a b.example.com",
            "exa_mple.com",
            "-x.com",
            "x\u{0}.example.com",
            "1.2.3.4",
        ] {
            assert_eq!(split(bad), None, "{bad:?}");
        }
        assert_eq!(split(&format!("{}.example.com", "a".repeat(300))), None);
        assert_eq!(split(&"a.".repeat(600)), None);
    }

    #[test]
    fn keeps_tunnel_bytes_in_the_subdomain() {
        let s = split(r"\xbc\xfdAbC.t1.example.net").unwrap();
        assert_eq!(s.subdomain, r"\xbc\xfdAbC.t1");
        assert_eq!(s.registrable, "example.net");
        // A long name: the registrable domain is found in its tail.
        let long = format!("{}.tunnel.example.org", vec!["x".repeat(63); 12].join("."));
        assert_eq!(registrable_domain(&long), Some("example.org"));
    }
}
