//! The HTTP/1 framing watch (`proxy::framing`) against hyper itself, on generated request
//! streams (pipelined requests with every framing: `Content-Length` right, wrong and doubled,
//! `Transfer-Encoding` in every order and case, chunk extensions, blanks, trailers, bare LFs,
//! plus a random byte changed): hyper behind the watch must do exactly what hyper alone does,
//! request for request and byte for byte, unless a body declares more than the limit, and then
//! it must never hand a byte of that body's oversized chunk to the service.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use proptest::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tollgate::proxy::framing::{Watched, is_declared_too_large};

/// What the service saw of one request: its line and its body, or how the body failed.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Body(String, Vec<u8>),
    Failed(String, bool),
}

/// Serves `stream` with hyper (behind the watch when `limit` is given), delivered `piece`
/// bytes at a time, and returns what the service saw and every byte hyper answered.
async fn serve(stream: Vec<u8>, limit: Option<u64>, piece: usize) -> (Vec<Seen>, Vec<u8>) {
    // At most `piece` bytes in flight: hyper's reads end at arbitrary points.
    let (client, server) = tokio::io::duplex(piece);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let service = service_fn(move |req: Request<Incoming>| {
        let log = log.clone();
        async move {
            let line = format!("{} {} {:?}", req.method(), req.uri(), req.version());
            let entry = match req.into_body().collect().await {
                Ok(body) => Seen::Body(line, body.to_bytes().to_vec()),
                Err(err) => Seen::Failed(line, is_declared_too_large(&err)),
            };
            let len = match &entry {
                Seen::Body(_, body) => body.len(),
                Seen::Failed(..) => 0,
            };
            log.lock().unwrap().push(entry);
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(len.to_string()))))
        }
    });
    let conn = async move {
        let http = http1::Builder::new();
        let _ = match limit {
            Some(limit) => {
                let io = TokioIo::new(Watched::new(server, limit, 8192));
                http.serve_connection(io, service).await
            }
            None => http.serve_connection(TokioIo::new(server), service).await,
        };
    };
    // Writes and reads at once: with little in flight, hyper's answers must be read for it to
    // go on reading.
    let (mut from_server, mut to_server) = tokio::io::split(client);
    let talk = async move {
        let write = async {
            // hyper may close first (after refusing something): the rest is not written.
            if to_server.write_all(&stream).await.is_ok() {
                let _ = to_server.shutdown().await;
            }
        };
        let mut answer = Vec::new();
        let read = from_server.read_to_end(&mut answer);
        let _ = tokio::join!(write, read);
        answer
    };
    // A connection neither side finishes within seconds has hung.
    let both = async { tokio::join!(talk, conn).0 };
    let answer = match tokio::time::timeout(std::time::Duration::from_secs(3), both).await {
        Ok(answer) => answer,
        Err(_) => b"(hung)".to_vec(),
    };
    let seen = seen.lock().unwrap().clone();
    (seen, answer)
}

/// A request head's framing headers, in the ways clients (and attackers) write them.
fn framing() -> impl Strategy<Value = Vec<&'static str>> {
    let header = prop_oneof![
        Just("Transfer-Encoding: chunked"),
        Just("transfer-encoding: CHUNKED"),
        Just("Transfer-Encoding: gzip, chunked"),
        Just("Transfer-Encoding: chunked, gzip"),
        Just("Transfer-Encoding: gzip"),
        Just("Transfer-Encoding:  chunked "),
        Just("Content-Length: LEN"),
        Just("Content-Length: 3"),
        Just("Content-Length: +3"),
        Just("Content-Length: 99999999999999999999999"),
        Just("Connection: close"),
        Just("X-Content-Length: 7"),
        Just("Content-Length-Note: 7"),
        Just(" Content-Length: 3"),
        Just("Content-Length : 3"),
        Just("CONTENT-LENGTH: LEN"),
        Just("Expect: 100-continue"),
    ];
    prop::collection::vec(header, 0..3)
}

/// A chunked body, well formed or nearly.
fn chunks() -> impl Strategy<Value = String> {
    let chunk = (1usize..40, 0usize..6, any::<bool>()).prop_map(|(size, style, upper)| {
        let hex = if upper {
            format!("{size:X}")
        } else {
            format!("{size:x}")
        };
        let line = match style {
            0 => format!("{hex}\r\n"),
            1 => format!("0{hex};name=value\r\n"),
            2 => format!("{hex} \t;x\r\n"),
            3 => format!("{hex}\n"),
            4 => format!("{hex}\r\n{}\r\n", "y".repeat(size)),
            _ => format!("{hex}  \r\n"),
        };
        if style == 4 {
            return line;
        }
        format!("{line}{}\r\n", "z".repeat(size))
    });
    let end = prop_oneof![
        Just("0\r\n\r\n"),
        Just("0\r\nX-Trailer: 1\r\n\r\n"),
        Just("0;e\r\nA: b\nc\r\n\r\n"),
        Just("00\r\n\r\n"),
        Just(""),
    ];
    (prop::collection::vec(chunk, 0..4), end).prop_map(|(c, end)| c.concat() + end)
}

/// One request: its head (with `LEN` replaced by its body's length) and body.
fn request() -> impl Strategy<Value = Vec<u8>> {
    (
        any::<bool>(),
        any::<bool>(),
        framing(),
        chunks(),
        "[a-z]{0,12}",
    )
        .prop_map(|(post, http10, headers, chunked, plain)| {
            let body = if headers
                .iter()
                .any(|h| h.to_ascii_lowercase().contains("chunked"))
            {
                chunked
            } else {
                plain
            };
            let mut head = format!(
                "{} /p HTTP/1.{}\r\nHost: h\r\n",
                if post { "POST" } else { "GET" },
                if http10 { 0 } else { 1 }
            );
            for h in headers {
                head.push_str(&h.replace("LEN", &body.len().to_string()));
                head.push_str("\r\n");
            }
            format!("{head}\r\n{body}").into_bytes()
        })
}

/// Pipelined requests, sometimes with one byte changed.
fn stream() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::collection::vec(request(), 1..4),
        any::<bool>(),
        any::<prop::sample::Index>(),
        any::<u8>(),
    )
        .prop_map(|(requests, mutate, at, byte)| {
            let mut stream = requests.concat();
            if mutate {
                let at = at.index(stream.len());
                stream[at] = byte;
            }
            stream
        })
}

/// An answer without its `date` lines (the two runs may straddle a second).
fn undated(answer: &[u8]) -> String {
    String::from_utf8_lossy(answer)
        .split("\r\n")
        .filter(|line| !line.starts_with("date: "))
        .collect::<Vec<_>>()
        .join("\r\n")
}

/// How many bytes the client may have in flight: a few (heads and chunk lines split anywhere)
/// or all of them.
fn piece() -> impl Strategy<Value = usize> {
    prop_oneof![1usize..16, Just(1 << 20)]
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1_000))]

    /// With a limit no body reaches, hyper behind the watch is hyper.
    #[test]
    fn the_watch_changes_nothing_within_the_limit(stream in stream(), piece in piece()) {
        let rt = runtime();
        let alone = rt.block_on(serve(stream.clone(), None, piece));
        let watched = rt.block_on(serve(stream.clone(), Some(u64::MAX), piece));
        prop_assert_eq!(&watched.0, &alone.0, "{}", String::from_utf8_lossy(&stream));
        prop_assert_eq!(
            undated(&watched.1), undated(&alone.1), "{}", String::from_utf8_lossy(&stream)
        );
    }

    /// With a small limit, every request hyper alone serves whole within the limit is served the
    /// same; the first one that differs is one whose chunks declared more, failed as such, and
    /// whose body reached the service only up to the limit.
    #[test]
    fn the_watch_refuses_only_bodies_declaring_more_than_the_limit(
        stream in stream(),
        piece in piece(),
    ) {
        const LIMIT: u64 = 40;
        let rt = runtime();
        let (alone, _) = rt.block_on(serve(stream.clone(), None, piece));
        let (watched, _) = rt.block_on(serve(stream.clone(), Some(LIMIT), piece));
        let text = String::from_utf8_lossy(&stream);
        let same = alone.iter().zip(&watched).take_while(|(a, w)| a == w).count();
        if same < alone.len().max(watched.len()) {
            // The first difference is a refusal for the declared size, and the last request.
            prop_assert!(same < watched.len(), "the watch lost request {} of {}", same, text);
            prop_assert!(
                matches!(&watched[same], Seen::Failed(_, true)),
                "{:?} vs {:?} in {}", watched[same], alone.get(same), text
            );
            prop_assert_eq!(same + 1, watched.len(), "nothing after a refusal: {}", text);
            // hyper alone read that body whole: then it was longer than the limit.
            if let Some(Seen::Body(_, body)) = alone.get(same) {
                prop_assert!(body.len() as u64 > LIMIT, "refused {} bytes: {}", body.len(), text);
            }
        }
    }
}
