//! HTTP/1.x requests (RFC 9112) at the start of a client stream: the request line and the
//! headers a firewall reports (`Host`, `User-Agent`). The body is not read.
//!
//! Lines may end in CRLF or a bare LF (RFC 9112 §2.2 lets a recipient accept both). The header
//! block is capped at [`MAX_HEADER_LEN`] bytes so that a stream that never ends its headers cannot
//! make the reader buffer without bound.

/// Longest request line plus headers that is read.
pub const MAX_HEADER_LEN: usize = 16 * 1024;

/// Methods recognised at the start of a stream (RFC 9110 §9 and PATCH, RFC 5789).
const METHODS: [&[u8]; 9] = [
    b"GET", b"POST", b"HEAD", b"PUT", b"DELETE", b"OPTIONS", b"PATCH", b"CONNECT", b"TRACE",
];

/// Why bytes could not be read as an HTTP request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    /// The stream holds only part of the request head; more bytes may complete it.
    #[error("incomplete HTTP request")]
    Incomplete,
    /// The bytes are not an HTTP/1.x request head.
    #[error("invalid HTTP request at byte {offset}: {reason}")]
    Invalid {
        /// Where in the stream the problem is.
        offset: usize,
        /// What is wrong.
        reason: &'static str,
    },
}

/// The parts of a request head a firewall reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The method, as sent (`GET`, `POST`, ...).
    pub method: String,
    /// The `Host` header; for an absolute-form or CONNECT target without one, the target's host.
    pub host: Option<String>,
    /// The request target as sent (`/index.html`, `http://example.com/`, `example.com:443`).
    pub path: String,
    /// The `User-Agent` header, if present (an empty header gives an empty string).
    pub user_agent: Option<String>,
    /// The minor version: 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
}

/// Whether a stream starts like an HTTP/1.x request: a known method followed by a space.
/// Cheap enough to run on the first payload of every flow.
pub fn looks_like_request(stream: &[u8]) -> bool {
    METHODS
        .iter()
        .any(|method| stream.starts_with(method) && stream.get(method.len()) == Some(&b' '))
}

/// Reads the request head at the start of `stream`.
///
/// Returns [`HttpError::Incomplete`] while the head has not ended and is shorter than
/// [`MAX_HEADER_LEN`]. Text that is not UTF-8 is kept with replacement characters.
pub fn parse_request(stream: &[u8]) -> Result<Request, HttpError> {
    let mut lines = Lines { stream, pos: 0 };
    let (line_start, line) = lines.next_line()?;
    let (method, path, minor_version) = request_line(line, line_start)?;
    let mut host = None;
    let mut user_agent = None;
    loop {
        let (start, line) = lines.next_line()?;
        if line.is_empty() {
            break;
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return Err(HttpError::Invalid {
                offset: start,
                reason: "header line without ':'",
            });
        };
        let (name, value) = line.split_at(colon);
        let value = text(value.get(1..).unwrap_or_default().trim_ascii());
        if name.eq_ignore_ascii_case(b"host") {
            host.get_or_insert(value);
        } else if name.eq_ignore_ascii_case(b"user-agent") {
            user_agent.get_or_insert(value);
        }
    }
    let host = host.or_else(|| target_host(&method, &path));
    Ok(Request {
        method,
        host,
        path,
        user_agent,
        minor_version,
    })
}

/// Splits the head into lines, tracking where each starts.
struct Lines<'a> {
    stream: &'a [u8],
    pos: usize,
}

impl<'a> Lines<'a> {
    /// The next line without its terminator, or `Incomplete` / `Invalid` (head too long).
    fn next_line(&mut self) -> Result<(usize, &'a [u8]), HttpError> {
        let start = self.pos;
        let rest = self.stream.get(start..).unwrap_or_default();
        let window = rest
            .get(..MAX_HEADER_LEN.saturating_sub(start))
            .unwrap_or(rest);
        let Some(newline) = window.iter().position(|&b| b == b'\n') else {
            return if start + window.len() >= MAX_HEADER_LEN {
                Err(HttpError::Invalid {
                    offset: start,
                    reason: "request head too long",
                })
            } else {
                Err(HttpError::Incomplete)
            };
        };
        self.pos = start + newline + 1;
        let line = window.get(..newline).unwrap_or_default();
        Ok((start, line.strip_suffix(b"\r").unwrap_or(line)))
    }
}

/// `METHOD SP request-target SP HTTP/1.x`.
fn request_line(line: &[u8], start: usize) -> Result<(String, String, u8), HttpError> {
    let invalid = |at: usize, reason| HttpError::Invalid {
        offset: start + at,
        reason,
    };
    let mut parts = line.splitn(3, |&b| b == b' ');
    let method = parts.next().unwrap_or_default();
    if method.is_empty() || !method.iter().all(|&b| is_token_char(b)) {
        return Err(invalid(0, "method is not a token"));
    }
    let target = parts.next().unwrap_or_default();
    if target.is_empty() {
        return Err(invalid(method.len(), "no request target"));
    }
    let version_at = method.len() + target.len() + 2;
    let minor_version = match parts.next() {
        Some(b"HTTP/1.1") => 1,
        Some(b"HTTP/1.0") => 0,
        _ => return Err(invalid(version_at, "version is not HTTP/1.0 or HTTP/1.1")),
    };
    Ok((text(method), text(target), minor_version))
}

/// The host of an absolute-form (`http://host:port/path`) or authority-form (CONNECT) target.
fn target_host(method: &str, target: &str) -> Option<String> {
    let authority = if method == "CONNECT" {
        target
    } else {
        let (_, rest) = target.split_once("://")?;
        rest.split(['/', '?', '#']).next().unwrap_or(rest)
    };
    let authority = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    let host = if authority.starts_with('[') {
        authority.split_inclusive(']').next().unwrap_or(authority)
    } else {
        authority.split(':').next().unwrap_or(authority)
    };
    (!host.is_empty()).then(|| host.to_owned())
}

/// RFC 9110 §5.6.2 `tchar`.
fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const CURL: &[u8] = b"GET /index.html?q=1 HTTP/1.1\r\nHost: example.com\r\n\
        User-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n";

    #[test]
    fn reads_method_host_path_and_user_agent() {
        let request = parse_request(CURL).unwrap();
        assert_eq!(
            request,
            Request {
                method: "GET".into(),
                host: Some("example.com".into()),
                path: "/index.html?q=1".into(),
                user_agent: Some("curl/8.5.0".into()),
                minor_version: 1,
            }
        );
    }

    #[test]
    fn header_names_are_case_insensitive_and_values_trimmed() {
        let request =
            parse_request(b"POST /api HTTP/1.0\nHOST:  api.example.org \nuser-agent:\n\nbody")
                .unwrap();
        assert_eq!(request.host.as_deref(), Some("api.example.org"));
        assert_eq!(request.user_agent.as_deref(), Some(""));
        assert_eq!(request.minor_version, 0);
    }

    #[test]
    fn the_first_host_header_wins() {
        let request =
            parse_request(b"GET / HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n").unwrap();
        assert_eq!(request.host.as_deref(), Some("a.example"));
    }

    #[test]
    fn host_comes_from_the_target_when_there_is_no_host_header() {
        let proxy =
            parse_request(b"GET http://user@proxy.example:8080/x HTTP/1.1\r\n\r\n").unwrap();
        assert_eq!(proxy.host.as_deref(), Some("proxy.example"));
        let connect = parse_request(b"CONNECT www.example.com:443 HTTP/1.1\r\n\r\n").unwrap();
        assert_eq!(connect.host.as_deref(), Some("www.example.com"));
        assert_eq!(connect.path, "www.example.com:443");
        let v6 = parse_request(b"CONNECT [2001:db8::1]:443 HTTP/1.1\r\n\r\n").unwrap();
        assert_eq!(v6.host.as_deref(), Some("[2001:db8::1]"));
        let none = parse_request(b"GET / HTTP/1.0\r\n\r\n").unwrap();
        assert_eq!(none.host, None);
    }

    #[test]
    fn every_truncation_is_incomplete() {
        for end in 0..CURL.len() {
            assert_eq!(
                parse_request(&CURL[..end]),
                Err(HttpError::Incomplete),
                "at {end}"
            );
        }
    }

    #[test]
    fn malformed_heads_name_the_offset() {
        let cases: [(&[u8], usize, &str); 4] = [
            (b"G(T / HTTP/1.1\r\n\r\n", 0, "method is not a token"),
            (b"GET\r\n\r\n", 3, "no request target"),
            (
                b"GET / HTTP/2.0\r\n\r\n",
                6,
                "version is not HTTP/1.0 or HTTP/1.1",
            ),
            (
                b"GET / HTTP/1.1\r\nHost example.com\r\n\r\n",
                16,
                "header line without ':'",
            ),
        ];
        for (head, offset, reason) in cases {
            assert_eq!(
                parse_request(head),
                Err(HttpError::Invalid { offset, reason })
            );
        }
    }

    #[test]
    fn a_head_that_never_ends_is_refused_at_the_cap() {
        let mut head = b"GET / HTTP/1.1\r\nX: ".to_vec();
        head.resize(MAX_HEADER_LEN - 1, b'a');
        assert_eq!(parse_request(&head), Err(HttpError::Incomplete));
        head.push(b'a');
        assert!(matches!(
            parse_request(&head),
            Err(HttpError::Invalid { offset: 16, .. })
        ));
    }

    #[test]
    fn recognises_requests_by_content() {
        assert!(looks_like_request(CURL));
        assert!(looks_like_request(b"OPTIONS * HTTP/1.1"));
        assert!(!looks_like_request(b"GETX / HTTP/1.1"));
        assert!(!looks_like_request(b"\x16\x03\x01"));
        assert!(!looks_like_request(b"GET"));
    }

    proptest! {
        #[test]
        fn only_a_finished_head_is_read(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            if parse_request(&bytes).is_ok() {
                let ended = bytes.windows(2).any(|w| w == b"\n\n")
                    || bytes.windows(3).any(|w| w == b"\n\r\n");
                prop_assert!(ended);
            }
        }

        #[test]
        fn any_header_value_round_trips(host in "[a-z0-9.-]{1,40}", ua in "[ -~]{0,60}") {
            let head = format!("GET / HTTP/1.1\r\nHost: {host}\r\nUser-Agent: {ua}\r\n\r\n");
            let request = parse_request(head.as_bytes()).unwrap();
            prop_assert_eq!(request.host, Some(host));
            prop_assert_eq!(request.user_agent, Some(ua.trim().to_owned()));
        }
    }
}
