//! The framing watch against hand-written streams: where it stops, and that splitting a stream
//! anywhere changes nothing.

use super::*;

const LIMIT: u64 = 1000;

/// Feeds `stream` in one piece.
fn whole(stream: &[u8]) -> Result<(), Stop> {
    Watch::new(LIMIT, 8192).feed(stream)
}

/// Feeds `stream` in two pieces split at `at`, giving the stop's position in the whole stream.
fn split(stream: &[u8], at: usize) -> Result<(), Stop> {
    let mut watch = Watch::new(LIMIT, 8192);
    watch.feed(&stream[..at])?;
    watch.feed(&stream[at..]).map_err(|stop| match stop {
        Stop::TooLarge { at: p } => Stop::TooLarge { at: p + at },
        Stop::Unframed { at: p } => Stop::Unframed { at: p + at },
    })
}

/// Feeds `stream` a byte at a time.
fn bytewise(stream: &[u8]) -> Result<(), Stop> {
    let mut watch = Watch::new(LIMIT, 8192);
    for (i, b) in stream.iter().enumerate() {
        watch
            .feed(std::slice::from_ref(b))
            .map_err(|stop| match stop {
                Stop::TooLarge { .. } => Stop::TooLarge { at: i },
                Stop::Unframed { .. } => Stop::Unframed { at: i + 1 },
            })?;
    }
    Ok(())
}

fn chunked(body: &str) -> Vec<u8> {
    format!("POST /u HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n{body}").into_bytes()
}

/// Where `needle` starts in `hay`.
fn find(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len()).position(|w| w == needle).unwrap()
}

#[test]
fn pipelined_requests_of_every_framing_pass() {
    let mut stream = b"GET /a HTTP/1.1\r\nHost: a\r\n\r\n".to_vec();
    stream.extend_from_slice(b"POST /b HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello");
    stream.extend_from_slice(&chunked(
        "5\r\nhello\r\n3;ext=1\r\nabc\r\n0\r\nX-T: 1\r\n\r\n",
    ));
    stream.extend_from_slice(b"\r\nGET /c HTTP/1.0\r\n\r\n");
    // A body that looks like a huge chunked request is only data of a Content-Length body.
    let inner = chunked("ffffffffffffffff\r\n");
    let head = format!(
        "POST /d HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
        inner.len()
    );
    stream.extend_from_slice(head.as_bytes());
    stream.extend_from_slice(&inner);
    assert_eq!(whole(&stream), Ok(()));
    assert_eq!(bytewise(&stream), Ok(()));
    for at in 0..=stream.len() {
        assert_eq!(split(&stream, at), Ok(()), "split at {at}");
    }
}

#[test]
fn a_chunk_declaring_more_than_the_limit_stops_at_the_digit_that_passes_it() {
    // 0x3e8 = 1000 is allowed; "fff" = 4095 is not, and stops at its third digit.
    let ok = chunked("3e8\r\n");
    assert_eq!(whole(&ok), Ok(()));
    let huge = chunked("ffffffffffffffff\r\nxxxx");
    let third = find(&huge, b"ffff") + 2;
    assert_eq!(whole(&huge), Err(Stop::TooLarge { at: third }));
    assert_eq!(bytewise(&huge), Err(Stop::TooLarge { at: third }));
    for at in 0..=huge.len() {
        assert_eq!(
            split(&huge, at),
            Err(Stop::TooLarge { at: third }),
            "split at {at}"
        );
    }
    // More digits than a u64 holds: still too large, never an overflow.
    let overflow = chunked("10000000000000005\r\n");
    assert!(matches!(whole(&overflow), Err(Stop::TooLarge { .. })));
}

#[test]
fn chunks_that_add_up_past_the_limit_are_stopped() {
    let data = "x".repeat(600);
    let stream = chunked(&format!("258\r\n{data}\r\n258\r\n"));
    // 600 declared, then 0x258 = 600 more: the second chunk's third digit passes 1000.
    let second = stream.windows(3).rposition(|w| w == b"258").unwrap() + 2;
    assert_eq!(whole(&stream), Err(Stop::TooLarge { at: second }));
    // The total is per request: the next request starts again at zero.
    let mut two = chunked(&format!("258\r\n{data}\r\n0\r\n\r\n"));
    two.extend_from_slice(&chunked(&format!("258\r\n{data}\r\n0\r\n\r\n")));
    assert_eq!(whole(&two), Ok(()));
}

#[test]
fn framing_is_read_the_way_hyper_reads_it() {
    // Transfer-Encoding wins over Content-Length, before or after it.
    for head in [
        "POST /u HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
        "POST /u HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
        "POST /u HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
        "POST /u HTTP/1.1\r\ntransfer-encoding: gzip\r\nTRANSFER-ENCODING: Chunked\r\n\r\n",
    ] {
        let stream = format!("{head}fff\r\n");
        assert!(
            matches!(whole(stream.as_bytes()), Err(Stop::TooLarge { .. })),
            "{head}"
        );
    }
    // What hyper refuses, the watch stops following.
    for bad in [
        "POST /u HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
        "POST /u HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
        "POST /u HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
        "POST /u HTTP/1.1\r\nContent-Length: +3\r\n\r\n",
    ] {
        let len = bad.len();
        assert_eq!(
            whole(bad.as_bytes()),
            Err(Stop::Unframed { at: len }),
            "{bad}"
        );
    }
    for body in ["zz\r\n", "5\r\nhelloX", "3;a\nb\r\n", "3 4\r\n"] {
        assert!(
            matches!(whole(&chunked(body)), Err(Stop::Unframed { .. })),
            "{body}"
        );
    }
}

#[test]
fn a_head_longer_than_twice_hypers_cap_is_not_gathered() {
    let mut watch = Watch::new(LIMIT, 100);
    assert_eq!(watch.feed(b"GET / HTTP/1.1\r\n"), Ok(()));
    let long = format!("X-Long: {}\r\n", "a".repeat(300));
    assert_eq!(
        watch.feed(long.as_bytes()),
        Err(Stop::Unframed { at: long.len() })
    );
}

#[test]
fn the_error_is_found_through_hyper_and_io_wrappers() {
    let io = io::Error::new(io::ErrorKind::InvalidData, DeclaredTooLarge { limit: 1 });
    assert!(is_declared_too_large(&io));
    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] io::Error);
    assert!(is_declared_too_large(&Outer(io)));
    let other = io::Error::new(io::ErrorKind::InvalidData, Unframed);
    assert!(!is_declared_too_large(&Outer(other)));
}

#[tokio::test]
async fn a_watched_stream_hands_over_the_bytes_before_the_stop_then_fails() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut client, server) = tokio::io::duplex(1 << 16);
    let stream = chunked("5\r\nhello\r\nfffff\r\n");
    client.write_all(&stream).await.unwrap();
    let mut watched = Watched::new(server, LIMIT, 8192);
    let mut got = vec![0u8; 1 << 16];
    let n = watched.read(&mut got).await.unwrap();
    let stop = find(&stream, b"fffff") + 2;
    assert_eq!(&got[..n], &stream[..stop]);
    let err = watched.read(&mut got).await.unwrap_err();
    assert!(is_declared_too_large(&err), "{err}");
    assert!(watched.read(&mut got).await.is_err(), "it stays failed");
}

#[test]
fn a_head_without_framing_lines_is_measured_without_a_parse() {
    let get = b"GET /a HTTP/1.1\r\nHost: a\r\nX-Content-Length: 9\r\n\r\nGET /b";
    assert_eq!(bodiless_head(get), Some(get.len() - 6));
    assert_eq!(bodiless_head(b"GET / HTTP/1.1\nHost: a\n\nrest"), Some(24));
    // Anything that may frame a body, or that a parse reads otherwise, goes to the parse.
    for head in [
        "POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\n",
        "POST / HTTP/1.1\r\ncontent-LENGTH: 3\r\n\r\n",
        "POST / HTTP/1.1\r\nTRANSFER-encoding: chunked\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\n Content-Length: 3\r\n\r\n",
        "\r\nGET / HTTP/1.1\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\n",
    ] {
        assert_eq!(bodiless_head(head.as_bytes()), None, "{head:?}");
    }
    // Such a head frames no body whatever else it holds: hyper refuses a malformed one itself
    // and reads nothing more.
    assert_eq!(whole(b"GARBAGE\r\n\r\n"), Ok(()));
}
