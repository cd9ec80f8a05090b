//! The values rules match against: text patterns, domain patterns, address blocks, port ranges
//! and regular expressions. Each knows how to read itself from policy text, how to print itself
//! back, and how to test one value; indexes built from many of them live in `index`.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use globset::{GlobBuilder, GlobMatcher};
use regex::{Regex, RegexBuilder};

/// Largest compiled size accepted for one regular expression in a policy.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// An exact string, or a glob when the text contains `*`, `?`, `[` or `{`.
///
/// In globs `*` and `?` do not cross `/`; `**` does.
#[derive(Debug, Clone)]
pub enum TextPattern {
    /// Matches exactly this text.
    Exact(String),
    /// Matches what the glob matches.
    Glob(Glob),
}

/// A compiled glob with its source text.
#[derive(Debug, Clone)]
pub struct Glob {
    source: String,
    matcher: GlobMatcher,
}

impl TextPattern {
    /// Reads a pattern; the error says what is wrong with the glob.
    pub fn parse(text: &str) -> Result<TextPattern, String> {
        if !text.contains(['*', '?', '[', '{']) {
            return Ok(TextPattern::Exact(text.to_owned()));
        }
        let glob = GlobBuilder::new(text)
            .literal_separator(true)
            .build()
            .map_err(|e| format!("invalid glob: {}", e.kind()))?;
        Ok(TextPattern::Glob(Glob {
            source: text.to_owned(),
            matcher: glob.compile_matcher(),
        }))
    }

    /// Whether `value` matches.
    pub fn matches(&self, value: &str) -> bool {
        match self {
            TextPattern::Exact(text) => text == value,
            TextPattern::Glob(glob) => glob.matcher.is_match(value),
        }
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        match self {
            TextPattern::Exact(text) => text,
            TextPattern::Glob(glob) => &glob.source,
        }
    }
}

impl PartialEq for TextPattern {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

/// A domain name pattern.
///
/// `example.com` matches that name only; `*.example.com` matches every name below it but not
/// `example.com` itself; `.example.com` matches `example.com` and every name below it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum DomainPattern {
    /// `example.com`
    Exact(String),
    /// `*.example.com`: strict subdomains.
    Subdomains(String),
    /// `.example.com`: the name and its subdomains.
    Suffix(String),
}

impl DomainPattern {
    /// Reads a pattern, folding it to lower case.
    pub fn parse(text: &str) -> Result<DomainPattern, String> {
        let lower = text.trim_end_matches('.').to_ascii_lowercase();
        let (make, name): (fn(String) -> DomainPattern, &str) =
            if let Some(rest) = lower.strip_prefix("*.") {
                (DomainPattern::Subdomains, rest)
            } else if let Some(rest) = lower.strip_prefix('.') {
                (DomainPattern::Suffix, rest)
            } else {
                (DomainPattern::Exact, &lower)
            };
        check_domain_name(name)?;
        Ok(make(name.to_owned()))
    }

    /// Whether `domain` (lower case, no trailing dot) matches.
    pub fn matches(&self, domain: &str) -> bool {
        match self {
            DomainPattern::Exact(name) => domain == name,
            DomainPattern::Subdomains(name) => is_strict_subdomain(domain, name),
            DomainPattern::Suffix(name) => domain == name || is_strict_subdomain(domain, name),
        }
    }

    /// The name without its `*.` or `.` prefix.
    pub fn name(&self) -> &str {
        match self {
            DomainPattern::Exact(n) | DomainPattern::Subdomains(n) | DomainPattern::Suffix(n) => n,
        }
    }

    /// Whether every name this pattern matches is also matched by `other`.
    pub fn is_covered_by(&self, other: &DomainPattern) -> bool {
        match (self, other) {
            (DomainPattern::Exact(n), _) => other.matches(n),
            (DomainPattern::Subdomains(n), DomainPattern::Subdomains(m))
            | (DomainPattern::Subdomains(n), DomainPattern::Suffix(m)) => {
                n == m || is_strict_subdomain(n, m)
            }
            (DomainPattern::Suffix(n), DomainPattern::Suffix(m)) => {
                n == m || is_strict_subdomain(n, m)
            }
            (DomainPattern::Suffix(n), DomainPattern::Subdomains(m)) => is_strict_subdomain(n, m),
            (_, DomainPattern::Exact(_)) => false,
        }
    }
}

impl fmt::Display for DomainPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DomainPattern::Exact(n) => f.write_str(n),
            DomainPattern::Subdomains(n) => write!(f, "*.{n}"),
            DomainPattern::Suffix(n) => write!(f, ".{n}"),
        }
    }
}

/// Whether `domain` is below `parent` (`a.example.com` is below `example.com`).
pub fn is_strict_subdomain(domain: &str, parent: &str) -> bool {
    domain.len() > parent.len()
        && domain.ends_with(parent)
        && domain.as_bytes().get(domain.len() - parent.len() - 1) == Some(&b'.')
}

fn check_domain_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("empty domain name".into());
    }
    if !name.is_ascii() {
        return Err("write internationalised names in their ASCII (xn--) form".into());
    }
    if name.len() > 253 {
        return Err("domain names are at most 253 characters".into());
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err("empty label (two dots in a row)".into());
        }
        if label.len() > 63 {
            return Err(format!("label {label:?} is longer than 63 characters"));
        }
        if let Some(bad) = label
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
        {
            let hint = if bad == '*' {
                "; `*` is only allowed as `*.` at the start"
            } else {
                ""
            };
            return Err(format!(
                "character {bad:?} is not allowed in a domain name{hint}"
            ));
        }
    }
    Ok(())
}

/// An address block: an IP address with a prefix length. A bare address is a /32 or /128.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Reads `10.0.0.0/8`, `2001:db8::/32` or a bare address. Host bits must be zero.
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let (addr_text, prefix_text) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let addr: IpAddr = addr_text
            .parse()
            .map_err(|_| format!("{addr_text:?} is not an IP address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix_text {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(n) if n <= max => n,
                _ => return Err(format!("prefix length {p:?} is not between 0 and {max}")),
            },
        };
        let cidr = Cidr::from_parts(addr, prefix);
        if cidr.addr != addr {
            return Err(format!(
                "host bits are set; the block is {}/{} (or write the address alone)",
                cidr.addr, cidr.prefix
            ));
        }
        Ok(cidr.canonical())
    }

    fn from_parts(addr: IpAddr, prefix: u8) -> Cidr {
        let addr = match addr {
            IpAddr::V4(v4) => IpAddr::V4(Ipv4Addr::from(u32::from(v4) & mask_v4(prefix))),
            IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask_v6(prefix))),
        };
        Cidr { addr, prefix }
    }

    /// IPv4-mapped IPv6 blocks (`::ffff:10.0.0.0/104`) become the IPv4 block they name, because
    /// connections carry such addresses as IPv4.
    fn canonical(self) -> Cidr {
        match self.addr {
            IpAddr::V6(v6) if self.prefix >= 96 => match v6.to_ipv4_mapped() {
                Some(v4) => Cidr {
                    addr: IpAddr::V4(v4),
                    prefix: self.prefix - 96,
                },
                None => self,
            },
            _ => self,
        }
    }

    /// Whether `ip` is inside the block.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                u32::from(ip) & mask_v4(self.prefix) == u32::from(net)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                u128::from(ip) & mask_v6(self.prefix) == u128::from(net)
            }
            _ => false,
        }
    }

    /// Whether every address of `self` is inside `other`.
    pub fn is_within(&self, other: &Cidr) -> bool {
        self.prefix >= other.prefix && other.contains(self.addr)
    }

    /// This block and every larger block that contains it, largest last.
    pub fn supernets(&self) -> impl Iterator<Item = Cidr> + '_ {
        (0..=self.prefix)
            .rev()
            .map(|prefix| Cidr::from_parts(self.addr, prefix))
    }

    /// The first and last address of the block.
    pub fn range(&self) -> AddrRange {
        match self.addr {
            IpAddr::V4(net) => {
                let start = u32::from(net);
                AddrRange::V4(start, start | !mask_v4(self.prefix))
            }
            IpAddr::V6(net) => {
                let start = u128::from(net);
                AddrRange::V6(start, start | !mask_v6(self.prefix))
            }
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let full = if self.addr.is_ipv4() { 32 } else { 128 };
        if self.prefix == full {
            write!(f, "{}", self.addr)
        } else {
            write!(f, "{}/{}", self.addr, self.prefix)
        }
    }
}

/// The inclusive range of addresses a [`Cidr`] covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddrRange {
    /// IPv4 addresses as integers.
    V4(u32, u32),
    /// IPv6 addresses as integers.
    V6(u128, u128),
}

fn mask_v4(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

fn mask_v6(prefix: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0)
}

/// An inclusive range of ports; a single port is a range of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PortRange {
    /// First port of the range.
    pub from: u16,
    /// Last port of the range.
    pub to: u16,
}

impl PortRange {
    /// Whether `port` is in the range.
    pub fn contains(&self, port: u16) -> bool {
        (self.from..=self.to).contains(&port)
    }

    /// Whether every port of `self` is in `other`.
    pub fn is_within(&self, other: &PortRange) -> bool {
        other.from <= self.from && self.to <= other.to
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.from == self.to {
            write!(f, "{}", self.from)
        } else {
            write!(f, "{}-{}", self.from, self.to)
        }
    }
}

/// A regular expression with its source text.
#[derive(Debug, Clone)]
pub struct Pattern {
    regex: Regex,
}

impl Pattern {
    /// Compiles a regular expression (Rust `regex` syntax, linear-time matching).
    pub fn parse(text: &str) -> Result<Pattern, String> {
        RegexBuilder::new(text)
            .size_limit(REGEX_SIZE_LIMIT)
            .build()
            .map(|regex| Pattern { regex })
            .map_err(|e| match e {
                regex::Error::Syntax(msg) => format!("invalid regular expression:\n{msg}"),
                regex::Error::CompiledTooBig(_) => "regular expression is too large".to_owned(),
                other => format!("invalid regular expression: {other}"),
            })
    }

    /// Whether the expression matches anywhere in `value`.
    pub fn is_match(&self, value: &str) -> bool {
        self.regex.is_match(value)
    }

    /// The expression as written.
    pub fn as_str(&self) -> &str {
        self.regex.as_str()
    }
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domain_patterns() {
        let exact = DomainPattern::parse("Example.com.").unwrap();
        let sub = DomainPattern::parse("*.example.com").unwrap();
        let suffix = DomainPattern::parse(".example.com").unwrap();
        assert!(exact.matches("example.com") && !exact.matches("a.example.com"));
        assert!(!sub.matches("example.com") && sub.matches("a.b.example.com"));
        assert!(suffix.matches("example.com") && suffix.matches("a.example.com"));
        assert!(!suffix.matches("badexample.com"));
        assert!(DomainPattern::parse("a.*.com").is_err());
        assert!(DomainPattern::parse("bücher.de").is_err());
        assert!(DomainPattern::parse("a..b").is_err());
    }

    #[test]
    fn domain_coverage() {
        let p = |s| DomainPattern::parse(s).unwrap();
        assert!(p("a.example.com").is_covered_by(&p("*.example.com")));
        assert!(!p("example.com").is_covered_by(&p("*.example.com")));
        assert!(p("*.a.example.com").is_covered_by(&p("*.example.com")));
        assert!(p(".a.example.com").is_covered_by(&p("*.example.com")));
        assert!(!p(".example.com").is_covered_by(&p("*.example.com")));
        assert!(p("*.example.com").is_covered_by(&p(".example.com")));
    }

    #[test]
    fn cidrs() {
        let net = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(net.contains("10.200.0.1".parse().unwrap()));
        assert!(!net.contains("11.0.0.1".parse().unwrap()));
        assert!(!net.contains("::1".parse().unwrap()));
        assert!(
            Cidr::parse("10.0.0.1/8")
                .unwrap_err()
                .contains("10.0.0.0/8")
        );
        assert!(Cidr::parse("10.0.0.0/33").is_err());
        assert!(Cidr::parse("10.0.0").is_err());
        let all = Cidr::parse("0.0.0.0/0").unwrap();
        assert_eq!(all.range(), AddrRange::V4(0, u32::MAX));
        let v6 = Cidr::parse("2001:db8::/32").unwrap();
        assert!(v6.contains("2001:db8:1::1".parse().unwrap()));
        assert_eq!(Cidr::parse("::ffff:10.0.0.0/104").unwrap(), net);
        assert!(Cidr::parse("10.1.0.0/16").unwrap().is_within(&net));
        assert_eq!(Cidr::parse("1.2.3.4").unwrap().to_string(), "1.2.3.4");
        let supernets: Vec<String> = Cidr::parse("10.1.0.0/16")
            .unwrap()
            .supernets()
            .map(|c| c.to_string())
            .collect();
        assert_eq!(supernets.len(), 17);
        assert_eq!(supernets[0], "10.1.0.0/16");
        assert_eq!(supernets[8], "10.0.0.0/8");
        assert_eq!(supernets[16], "0.0.0.0/0");
    }

    #[test]
    fn globs_do_not_cross_slashes() {
        let glob = TextPattern::parse("/usr/bin/*").unwrap();
        assert!(glob.matches("/usr/bin/curl"));
        assert!(!glob.matches("/usr/bin/x/curl"));
        let deep = TextPattern::parse("/opt/**/bin/*").unwrap();
        assert!(deep.matches("/opt/a/b/bin/tool"));
        assert!(TextPattern::parse("/usr/[bin").is_err());
    }
}
