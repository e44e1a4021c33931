//! Tollgate's own HTTP/1.1 server (`listen.http1 = "tollgate"`) against hyper's, the oracle:
//! the same raw bytes go to a gateway on each, in front of a recording upstream, and both must
//! forward the same bytes upstream (up to the request id and the upstream's port) or refuse
//! with the same statuses. First a corpus of framing edge cases, smuggling attempts and odd
//! heads (`tests/h1/corpus.rs`), then a seeded mutation fuzzer over it (`H1_FUZZ_CASES`,
//! default 240, and `H1_FUZZ_SEED` to explore further by hand).

#[path = "h1/capture.rs"]
mod capture;
mod common;
#[path = "h1/corpus.rs"]
mod corpus;

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use common::{Options, TestGateway};

/// A gateway on one HTTP/1 server, its recording upstream and a key.
struct Side {
    gw: TestGateway,
    capture: capture::Capture,
    key: String,
}

async fn side(server: &str) -> Side {
    let capture = capture::spawn().await;
    let gw = TestGateway::with(Options {
        listen_extra: format!("http1 = \"{server}\"\n"),
        upstream_url: Some(format!("http://{}", capture.addr)),
        extra: "[limits]\nmax_request_body = \"4KiB\"\nheader_read_timeout = \"2s\"\n\
                body_idle_timeout = \"1s\"\n"
            .into(),
        ..Default::default()
    })
    .await;
    let (_, key) = gw.rw_key().await;
    Side { gw, capture, key }
}

/// What the client saw: each response, normalised (see [`normalize_response`]); a response
/// that was cut short ends the list as `CUT ...`.
async fn exchange(proxy: &str, bytes: Vec<u8>) -> Vec<String> {
    let head_request = bytes.starts_with(b"HEAD ");
    let addr = proxy.trim_start_matches("http://");
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    // The server may close before reading everything: that is an outcome, not an error.
    let _ = stream.write_all(&bytes).await;
    let mut got = Vec::new();
    let mut seen = Vec::new();
    // The first answer may take a body timeout; later ones follow at once.
    let mut wait = Duration::from_secs(4);
    loop {
        let mut chunk = [0u8; 16384];
        let closed = match tokio::time::timeout(wait, stream.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => {
                got.extend_from_slice(&chunk[..n]);
                false
            }
            Ok(_) => true,
            // Quiet for the whole wait: nothing more is coming.
            Err(_) => break,
        };
        while let Some(len) = response_len(&got, head_request, closed) {
            seen.push(normalize_response(&got[..len]));
            got.drain(..len);
            wait = Duration::from_millis(400);
        }
        if closed {
            break;
        }
    }
    if !got.is_empty() {
        seen.push(format!("CUT {}", String::from_utf8_lossy(&got)));
    }
    seen
}

/// The status of a normalised response.
fn status_of(response: &str) -> u16 {
    response
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// The length of the complete response at the start of `buf` (`closed`: the server has
/// closed, so a body without a length has ended).
fn response_len(buf: &[u8], head_request: bool, closed: bool) -> Option<usize> {
    let mut headers = [httparse::EMPTY_HEADER; 128];
    let mut resp = httparse::Response::new(&mut headers);
    let head = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        _ => return None,
    };
    let status = resp.code?;
    if head_request || (100..200).contains(&status) || status == 204 || status == 304 {
        return Some(head);
    }
    let header = |name: &str| {
        resp.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).to_string())
    };
    if header("transfer-encoding").is_some() {
        return capture::chunked_len(&buf[head..]).map(|n| head + n);
    }
    match header("content-length") {
        Some(len) => {
            let len: usize = len.trim().parse().ok()?;
            (buf.len() >= head + len).then_some(head + len)
        }
        None => closed.then_some(buf.len()),
    }
}

/// A response with what differs by design made equal: the date and the request id (also in
/// the body); header lines sorted (their order carries no meaning here).
fn normalize_response(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or_default().to_string();
    let mut rid = None;
    let mut headers: Vec<String> = lines
        .filter_map(|line| {
            let lower = line.to_ascii_lowercase();
            if lower.starts_with("date:") {
                return None;
            }
            if lower.starts_with("x-request-id:") {
                rid = Some(line[13..].trim().to_string());
                return Some("x-request-id: ID".into());
            }
            Some(line.to_string())
        })
        .collect();
    headers.sort();
    let body = match rid {
        Some(rid) if !rid.is_empty() => body.replace(&rid, "ID"),
        _ => body.to_string(),
    };
    format!("{status}\n{}\n\n{body}", headers.join("\n"))
}

/// A recorded upstream request with what differs between the two gateways by design
/// replaced: the request id, the upstream's port and the key (each gateway has its own; a
/// mutated header name can carry it upstream).
fn normalized(request: &[u8], side: &Side) -> String {
    let port = side.capture.addr.port();
    let text = String::from_utf8_lossy(request)
        .replace(&format!(":{port}"), ":PORT")
        .replace(&side.key, "{KEY}");
    text.split("\r\n")
        .map(|line| {
            if line.to_ascii_lowercase().starts_with("x-request-id:") {
                "x-request-id: ID"
            } else {
                line
            }
        })
        .collect::<Vec<_>>()
        .join("\r\n")
}

/// Runs every case on both sides at once; panics with each disagreement. Returns what the
/// client saw of each case and the requests that reached the upstream.
async fn compare(
    own: &Side,
    hyper: &Side,
    cases: &[(String, Vec<u8>)],
) -> (Vec<Vec<String>>, Vec<String>) {
    let run = |side: &Side| {
        let proxy = side.gw.proxy.clone();
        let key = side.key.clone();
        futures_util::future::join_all(cases.iter().map(move |(_, bytes)| {
            let bytes = replace_key(bytes, &key);
            exchange_owned(proxy.clone(), bytes)
        }))
    };
    let (own_seen, hyper_seen) = tokio::join!(run(own), run(hyper));
    let mut wrong = Vec::new();
    for (((name, bytes), a), b) in cases.iter().zip(&own_seen).zip(&hyper_seen) {
        if !same_answers(a, b) {
            wrong.push(format!(
                "{name}: own {a:?}, hyper {b:?}, request {:?}",
                String::from_utf8_lossy(bytes)
            ));
        }
    }
    let upstream = |side: &Side| {
        let mut all: Vec<String> = side
            .capture
            .take()
            .iter()
            .map(|r| normalized(r, side))
            .collect();
        all.sort();
        all
    };
    let (own_up, hyper_up) = (upstream(own), upstream(hyper));
    for r in own_up.iter().filter(|r| !hyper_up.contains(r)) {
        wrong.push(format!("only the own server forwarded {r:?}"));
    }
    for r in hyper_up.iter().filter(|r| !own_up.contains(r)) {
        wrong.push(format!("only hyper forwarded {r:?}"));
    }
    assert!(
        wrong.is_empty(),
        "{} disagreements:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    (own_seen, own_up)
}

/// Whether two clients saw the same answers. Two known differences are allowed: a response
/// cut short (below), and after a
/// first answer, bytes that are no request at all (a body longer than its `Content-Length`)
/// get a 400 from the own server, while behind hyper the framing watch ends the stream there
/// and hyper closes without a word. Both refuse them; neither forwards them.
fn same_answers(own: &[String], hyper: &[String]) -> bool {
    // A response cut short is a failure however much of it got out: the own server streams
    // what it has, hyper may not have flushed its buffer yet.
    let uncut = |seen: &[String]| {
        let cut = seen.last().is_some_and(|r| r.starts_with("CUT "));
        seen[..seen.len() - usize::from(cut)].to_vec()
    };
    let (own, hyper) = (&uncut(own)[..], &uncut(hyper)[..]);
    own == hyper
        || (!hyper.is_empty()
            && own.len() == hyper.len() + 1
            && own[..hyper.len()] == *hyper
            && own.last().is_some_and(|r| status_of(r) == 400))
}

async fn exchange_owned(proxy: String, bytes: Vec<u8>) -> Vec<String> {
    exchange(&proxy, bytes).await
}

fn replace_key(bytes: &[u8], key: &str) -> Vec<u8> {
    let text = bytes;
    let mut out = Vec::with_capacity(text.len() + key.len());
    let mut i = 0;
    while i < text.len() {
        if text[i..].starts_with(b"{KEY}") {
            out.extend_from_slice(key.as_bytes());
            i += 5;
        } else {
            out.push(text[i]);
            i += 1;
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_corpus_gets_the_same_upstream_bytes_or_the_same_refusal() {
    let (own, hyper) = tokio::join!(side("tollgate"), side("hyper"));
    let cases: Vec<(String, Vec<u8>)> = corpus::cases()
        .into_iter()
        .map(|(name, text)| (name.to_string(), text.into_bytes()))
        .collect();
    let (seen, upstream) = compare(&own, &hyper, &cases).await;
    // Agreement on nothing proves nothing: the corpus is forwarded, refused for its framing,
    // its size and its key, and smuggled requests never reach the upstream.
    let status = |name: &str| {
        let i = cases.iter().position(|(n, _)| n == name).unwrap();
        seen[i].iter().map(|r| status_of(r)).collect::<Vec<u16>>()
    };
    assert_eq!(status("get"), [200]);
    assert_eq!(status("post-chunked"), [200]);
    assert_eq!(status("pipelined"), [200, 200, 200]);
    assert_eq!(status("get-no-key"), [401]);
    assert_eq!(status("cl-twice-different"), [400]);
    assert_eq!(status("te-chunked-gzip"), [400]);
    assert_eq!(status("chunked-over-limit"), [413]);
    assert_eq!(status("chunked-bad-trailer"), [400]);
    assert_eq!(status("101-headers"), [431]);
    assert!(upstream.len() > 40, "{upstream:#?}");
    assert!(
        upstream
            .iter()
            .all(|r| !r.contains("smuggled") && !r.starts_with("GPOST")),
        "{upstream:#?}"
    );
    let chunked = upstream
        .iter()
        .find(|r| r.contains("hello\r\n6\r\n world"))
        .unwrap();
    assert!(chunked.contains("transfer-encoding: chunked"), "{chunked}");
}

/// Interesting bytes and pieces for mutations.
const BYTES: &[u8] = b"\r\n \t:;0fF9\0\x7f\x80,";
const PIECES: &[&str] = &[
    "\r\n",
    "\n",
    "\r",
    " ",
    "Transfer-Encoding: chunked\r\n",
    "Content-Length: 3\r\n",
    "Content-Length: 0\r\n",
    "Connection: close\r\n",
    "Expect: 100-continue\r\n",
    "0\r\n\r\n",
    "GET / HTTP/1.1\r\n\r\n",
    "ffffffff",
    ";ext",
];

/// One random change to `bytes`.
fn mutate(rng: &mut StdRng, bytes: &mut Vec<u8>) {
    if bytes.is_empty() {
        bytes.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
    }
    let at = rng.gen_range(0..bytes.len());
    match rng.gen_range(0..6) {
        0 => bytes[at] = BYTES[rng.gen_range(0..BYTES.len())],
        1 => {
            bytes.remove(at);
        }
        2 => {
            let piece = PIECES[rng.gen_range(0..PIECES.len())].as_bytes();
            bytes.splice(at..at, piece.iter().copied());
        }
        3 => {
            // Duplicate a line.
            let start = bytes[..at]
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |p| p + 1);
            let end = bytes[at..]
                .iter()
                .position(|&b| b == b'\n')
                .map_or(bytes.len(), |p| at + p + 1);
            let line = bytes[start..end].to_vec();
            bytes.splice(start..start, line);
        }
        4 => bytes[at] = bytes[at].wrapping_add(1),
        _ => bytes.truncate(at.max(1)),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutated_requests_get_the_same_upstream_bytes_or_the_same_refusal() {
    let count: usize = std::env::var("H1_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(240);
    let seed: u64 = std::env::var("H1_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x7011_6a7e);
    let (own, hyper) = tokio::join!(side("tollgate"), side("hyper"));
    let corpus = corpus::cases();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut cases = Vec::with_capacity(count);
    for i in 0..count {
        let (name, text) = &corpus[rng.gen_range(0..corpus.len())];
        let mut bytes = text.clone().into_bytes();
        for _ in 0..rng.gen_range(1..=3) {
            mutate(&mut rng, &mut bytes);
        }
        cases.push((format!("seed {seed} case {i} (from {name})"), bytes));
    }
    let mut forwarded = 0;
    for batch in cases.chunks(80) {
        forwarded += compare(&own, &hyper, batch).await.1.len();
    }
    // Mutants are mostly refused, but not all.
    assert!(forwarded >= count / 20, "{forwarded} of {count} forwarded");
}

/// A head trickled a few bytes per write is answered the same by both (and the own server
/// parses it again only when its end may have come).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_sent_a_few_bytes_at_a_time_is_answered_alike() {
    let (own, hyper) = tokio::join!(side("tollgate"), side("hyper"));
    let trickle = |side: &Side| {
        let proxy = side.gw.proxy.clone();
        let request = format!(
            "GET /trickled HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {}\r\nX-Pad: {}\r\nConnection: close\r\n\r\n",
            side.key,
            "p".repeat(300)
        );
        async move {
            let mut stream = TcpStream::connect(proxy.trim_start_matches("http://"))
                .await
                .unwrap();
            stream.set_nodelay(true).unwrap();
            for piece in request.as_bytes().chunks(7) {
                stream.write_all(piece).await.unwrap();
                tokio::task::yield_now().await;
            }
            let mut got = Vec::new();
            let _ =
                tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut got)).await;
            normalize_response(&got)
        }
    };
    let (a, b) = tokio::join!(trickle(&own), trickle(&hyper));
    assert_eq!(status_of(&a), 200, "{a}");
    assert_eq!(a, b);
    own.capture.take();
    hyper.capture.take();
}
