//! Request path normalisation: the one canonical form that routes match and the upstream receives.
//!
//! Only unreserved characters are percent-decoded (once), other escapes are upper-cased, runs of
//! `/` collapse, dot segments are removed after decoding (RFC 3986 §5.2.4), and anything that
//! could be read two ways (encoded `/`, `\` or NUL, control bytes, `..` above the root) is refused.

use std::borrow::Cow;

/// Why a path was refused. Messages are user-facing and never echo the path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// The path does not start with `/` (this includes the `*` of `OPTIONS *`).
    #[error("path must start with '/'")]
    NotAbsolute,
    /// `%2F` would be a `/` to some upstreams and not to others.
    #[error("encoded '/' in path is not allowed")]
    EncodedSlash,
    /// `%5C` is a separator on some upstreams.
    #[error("encoded '\\' in path is not allowed")]
    EncodedBackslash,
    /// `%00` truncates paths in some upstreams.
    #[error("encoded NUL in path is not allowed")]
    EncodedNul,
    /// A raw byte below 0x20 or 0x7F.
    #[error("control character in path is not allowed")]
    ControlCharacter,
    /// A raw `\`.
    #[error("'\\' in path is not allowed")]
    Backslash,
    /// A raw `?` or `#`: the query and fragment are never part of the path.
    #[error("'?' or '#' in path is not allowed")]
    QueryOrFragment,
    /// A raw byte of 0x80 or above.
    #[error("non-ASCII byte in path is not allowed")]
    NonAscii,
    /// A `%` not followed by two hex digits.
    #[error("malformed percent-escape in path")]
    MalformedEscape,
    /// A `..` segment that would climb above the root.
    #[error("'..' in path climbs above the root")]
    AboveRoot,
    /// `.;x` or `..;x`: servlet containers strip the `;` parameter and then treat the segment
    /// as a dot segment, so the upstream would see a different path than the routes did.
    #[error("dot segment with a ';' parameter in path is not allowed")]
    DotParameter,
}

/// Normalises a request path (no query string): returns `Borrowed` when already normal.
pub fn normalize(path: &str) -> Result<Cow<'_, str>, PathError> {
    if !path.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    check_raw_bytes(path.as_bytes())?;
    if is_plainly_normal(path.as_bytes()) {
        return Ok(Cow::Borrowed(path));
    }
    let normal = rebuild(path)?;
    if normal == path {
        Ok(Cow::Borrowed(path))
    } else {
        Ok(Cow::Owned(normal))
    }
}

/// Refuses raw bytes that no well-formed path contains.
fn check_raw_bytes(bytes: &[u8]) -> Result<(), PathError> {
    for &b in bytes {
        match b {
            0x80.. => return Err(PathError::NonAscii),
            0..0x20 | 0x7f => return Err(PathError::ControlCharacter),
            b'\\' => return Err(PathError::Backslash),
            b'?' | b'#' => return Err(PathError::QueryOrFragment),
            _ => {}
        }
    }
    Ok(())
}

/// The fast path: no escapes, no empty segments, no segment starting with `.`.
fn is_plainly_normal(bytes: &[u8]) -> bool {
    !bytes.contains(&b'%') && !bytes.windows(2).any(|w| w == b"//" || w == b"/.")
}

/// Decodes each segment and resolves empty and dot segments into the canonical form.
fn rebuild(path: &str) -> Result<String, PathError> {
    let mut out = String::with_capacity(path.len());
    // Where each output segment's leading `/` sits, so `..` can truncate back to it.
    let mut starts: Vec<usize> = Vec::new();
    let mut segment = String::new();
    let mut ends_as_directory = false;
    // The path starts with `/`, so the first piece is always empty.
    for raw in path.split('/').skip(1) {
        segment.clear();
        decode_segment(raw, &mut segment)?;
        ends_as_directory = matches!(segment.as_str(), "" | "." | "..");
        if let Some((head, _)) = segment.split_once(';')
            && matches!(head, "." | "..")
        {
            return Err(PathError::DotParameter);
        }
        match segment.as_str() {
            "" | "." => {}
            ".." => {
                let start = starts.pop().ok_or(PathError::AboveRoot)?;
                out.truncate(start);
            }
            name => {
                starts.push(out.len());
                out.push('/');
                out.push_str(name);
            }
        }
    }
    if out.is_empty() || ends_as_directory {
        out.push('/');
    }
    Ok(out)
}

/// Appends `raw` to `out`, decoding unreserved escapes and upper-casing the others.
fn decode_segment(raw: &str, out: &mut String) -> Result<(), PathError> {
    let mut bytes = raw.bytes();
    while let Some(b) = bytes.next() {
        if b != b'%' {
            out.push(char::from(b));
            continue;
        }
        let hi = bytes.next().and_then(hex_value);
        let lo = bytes.next().and_then(hex_value);
        let (Some(hi), Some(lo)) = (hi, lo) else {
            return Err(PathError::MalformedEscape);
        };
        push_escape(hi << 4 | lo, out)?;
    }
    Ok(())
}

/// Appends one decoded byte: as itself when unreserved, else as an upper-case escape.
fn push_escape(byte: u8, out: &mut String) -> Result<(), PathError> {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    match byte {
        b'/' => Err(PathError::EncodedSlash),
        b'\\' => Err(PathError::EncodedBackslash),
        0 => Err(PathError::EncodedNul),
        _ if is_unreserved(byte) => {
            out.push(char::from(byte));
            Ok(())
        }
        _ => {
            out.push('%');
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 0x0f)]));
            Ok(())
        }
    }
}

/// RFC 3986 unreserved characters: `A-Z a-z 0-9 - . _ ~`.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// The value of one hex digit, either case.
fn hex_value(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(path: &str) -> String {
        match normalize(path) {
            Ok(p) => p.into_owned(),
            Err(e) => panic!("{path:?} was refused: {e}"),
        }
    }

    fn refused(path: &str) -> PathError {
        match normalize(path) {
            Ok(p) => panic!("{path:?} was accepted as {p:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn must_start_with_slash() {
        for bad in ["", "*", "a/b", "%2Fa", "http://x/a"] {
            assert_eq!(refused(bad), PathError::NotAbsolute, "{bad:?}");
        }
    }

    #[test]
    fn already_normal_paths_are_borrowed() {
        for p in [
            "/",
            "/api/v0/cat",
            "/a/b/",
            "/a-b_c~d",
            "/a..b/c.",
            "/v1/chat:stream",
        ] {
            assert!(matches!(normalize(p), Ok(Cow::Borrowed(_))), "{p:?}");
        }
        // Not on the fast path, but already canonical: still borrowed.
        for p in ["/a%3Ab", "/.well-known/x", "/a/.../b", "/%25"] {
            assert!(matches!(normalize(p), Ok(Cow::Borrowed(_))), "{p:?}");
        }
        assert!(matches!(normalize("/a%3ab"), Ok(Cow::Owned(_))));
    }

    #[test]
    fn decodes_unreserved_only() {
        assert_eq!(norm("/api/v0/%63at"), "/api/v0/cat");
        assert_eq!(norm("/%41%5a%61%7A%30%39"), "/AZaz09");
        assert_eq!(norm("/%2d%2E%5f%7e"), "/-._~");
        assert_eq!(norm("/a%3ab%3A%20%c3%a9"), "/a%3Ab%3A%20%C3%A9");
        assert_eq!(norm("/a%2bb"), "/a%2Bb");
    }

    #[test]
    fn decodes_only_once() {
        assert_eq!(norm("/a%2541"), "/a%2541");
        assert_eq!(norm("/a%252F"), "/a%252F");
        assert_eq!(norm("/%252e%252e/x"), "/%252e%252e/x");
        assert_eq!(norm("/%25%32%65"), "/%252e");
    }

    #[test]
    fn refuses_encoded_separators_and_nul() {
        for (p, e) in [
            ("/a%2Fb", PathError::EncodedSlash),
            ("/a%2fb", PathError::EncodedSlash),
            ("/a%5Cb", PathError::EncodedBackslash),
            ("/a%5cb", PathError::EncodedBackslash),
            ("/a%00b", PathError::EncodedNul),
        ] {
            assert_eq!(refused(p), e, "{p:?}");
        }
    }

    #[test]
    fn refuses_raw_bad_bytes() {
        assert_eq!(refused("/a\\b"), PathError::Backslash);
        assert_eq!(refused("/a\0b"), PathError::ControlCharacter);
        assert_eq!(refused("/a\nb"), PathError::ControlCharacter);
        assert_eq!(refused("/a\tb"), PathError::ControlCharacter);
        assert_eq!(refused("/a\x7fb"), PathError::ControlCharacter);
        assert_eq!(refused("/caf\u{e9}"), PathError::NonAscii);
        assert_eq!(refused("/a?b"), PathError::QueryOrFragment);
        assert_eq!(refused("/a#b"), PathError::QueryOrFragment);
    }

    #[test]
    fn refuses_malformed_escapes() {
        for p in [
            "/%", "/a%", "/%4", "/a%4/b", "/%zz", "/%g0", "/%0g", "/%%41",
        ] {
            assert_eq!(refused(p), PathError::MalformedEscape, "{p:?}");
        }
    }

    #[test]
    fn collapses_slashes() {
        assert_eq!(norm("//a///b"), "/a/b");
        assert_eq!(norm("//api//v0/cat"), "/api/v0/cat");
        assert_eq!(norm("//"), "/");
        assert_eq!(norm("/a//"), "/a/");
    }

    #[test]
    fn removes_dot_segments_after_decoding() {
        assert_eq!(norm("/a/./b"), "/a/b");
        assert_eq!(norm("/api/v0/./cat"), "/api/v0/cat");
        assert_eq!(norm("/api/v0/x/../cat"), "/api/v0/cat");
        assert_eq!(norm("/api/v0/%2e%2e/v0/cat"), "/api/v0/cat");
        assert_eq!(norm("/a/%2e%2e/b"), "/b");
        assert_eq!(norm("/a/%2E%2e/b"), "/b");
        assert_eq!(norm("/a/%2e/b"), "/a/b");
        assert_eq!(norm("/a/b/.."), "/a/");
        assert_eq!(norm("/a/b/."), "/a/b/");
        assert_eq!(norm("/a/.%2E/"), "/");
        assert_eq!(norm("/a/.."), "/");
        assert_eq!(norm("/."), "/");
        assert_eq!(norm("/a//../b"), "/b");
    }

    #[test]
    fn refuses_climbing_above_root() {
        for p in ["/..", "/../x", "/a/../../x", "/%2e%2e/x", "/a/./../.."] {
            assert_eq!(refused(p), PathError::AboveRoot, "{p:?}");
        }
    }

    #[test]
    fn refuses_dot_segments_with_parameters() {
        for p in ["/public/..;/admin", "/a/.;x/b", "/a/%2e%2e;jsessionid=1/b"] {
            assert_eq!(refused(p), PathError::DotParameter, "{p:?}");
        }
        assert_eq!(norm("/a/b;c/d"), "/a/b;c/d");
        assert_eq!(norm("/a/...;x"), "/a/...;x");
    }

    #[test]
    fn dotted_names_are_ordinary() {
        assert_eq!(norm("/a/.../b"), "/a/.../b");
        assert_eq!(norm("/a/.b/c."), "/a/.b/c.");
        assert_eq!(norm("/a/%2e%2e%2e"), "/a/...");
        assert_eq!(norm("/a/..b/../c"), "/a/c");
    }

    #[test]
    fn keeps_trailing_slash_and_case() {
        assert_eq!(norm("/a/b/"), "/a/b/");
        assert_eq!(norm("/A/b/%43/"), "/A/b/C/");
        assert_eq!(norm("/Api/V0"), "/Api/V0");
    }

    #[test]
    fn errors_do_not_echo_the_path() {
        let msg = refused("/secret%2Fthing").to_string();
        assert!(!msg.contains("secret"), "{msg}");
    }

    /// Every path of up to four segments from a small alphabet, with and without a trailing slash.
    fn generated_paths() -> Vec<String> {
        const PIECES: [&str; 7] = ["a", ".", "..", "%2e", "%2E%2e", "", "b%41"];
        let mut paths = Vec::new();
        for len in 1..=4u32 {
            for n in 0..PIECES.len().pow(len) {
                let mut path = String::new();
                let mut rest = n;
                for _ in 0..len {
                    path.push('/');
                    path.push_str(PIECES[rest % PIECES.len()]);
                    rest /= PIECES.len();
                }
                if n % 3 == 0 {
                    path.push('/');
                }
                paths.push(path);
            }
        }
        paths
    }

    #[test]
    fn normalisation_is_idempotent_and_canonical() {
        let mut accepted = 0;
        for path in generated_paths() {
            let Ok(once) = normalize(&path) else { continue };
            accepted += 1;
            let twice = norm(&once);
            assert_eq!(once, twice, "not idempotent for {path:?}");
            assert!(matches!(normalize(&once), Ok(Cow::Borrowed(_))), "{path:?}");
            assert!(once.starts_with('/'), "{path:?} -> {once:?}");
            for bad in ["//", "/./", "/../", "%2e", "%2E", "%41"] {
                assert!(!once.contains(bad), "{path:?} -> {once:?}");
            }
            assert!(
                !once.ends_with("/.") && !once.ends_with("/.."),
                "{path:?} -> {once:?}"
            );
        }
        assert!(
            accepted > 300,
            "only {accepted} generated paths were accepted"
        );
    }
}
