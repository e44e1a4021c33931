//! HTTP/2 abuse against the proxy listener over real cleartext HTTP/2 (h2c by prior knowledge)
//! connections (issue #14, item 4): rapid reset, CONTINUATION floods, too many concurrent
//! streams, huge header lists, and readers whose window never opens or who stop reading. Each
//! attack must end with the connection closed or its streams refused, within bounded time and
//! memory, while a well-behaved HTTP/2 connection on the same listener keeps being answered;
//! its latencies during the attack are measured, printed and bounded.
//!
//! Well-behaved clients and the slower attacks use the `h2` crate; the attacks a compliant
//! client cannot make (a burst ignoring SETTINGS_MAX_CONCURRENT_STREAMS, pipelined
//! HEADERS + RST_STREAM pairs, endless CONTINUATION frames) are hand-framed on a raw socket.
//!
//! The tests take a lock so that they run one at a time: the latencies measured are those of
//! one attack, not of the other tests of this file running beside it.

mod common;

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{Options, TestGateway};
use h2::Reason;
use h2::client::SendRequest;
use http::{Request, StatusCode};
use serde_json::json;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// One test at a time (see the module doc). A tokio mutex: it is held across awaits, and
/// each test has its own runtime.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The bound on the well-behaved connection's p99 latency during an attack (generous: CI
/// runs on two busy cores).
const HONEST_P99: Duration = Duration::from_secs(1);
/// How long one honest request may take before the honest client gives up (a failure).
const HONEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the server may take to close an abusive connection.
const CLOSE_WITHIN: Duration = Duration::from_secs(10);
/// How long the connection-level attacks (rapid reset, CONTINUATION) are repeated, on fresh
/// connections, while the honest connection is measured.
const ATTACK_FOR: Duration = Duration::from_secs(2);
/// The server's SETTINGS_MAX_CONCURRENT_STREAMS (`src/proxy/server.rs`).
const MAX_STREAMS: u32 = 100;
/// The server's per-stream send buffer (`src/proxy/server.rs`).
const MAX_SEND_BUF: u64 = 256 << 10;
/// The echo upstream's chunk (`src/echo.rs`).
const ECHO_CHUNK: u64 = 64 << 10;

// ---------------------------------------------------------------------------------------------
// Helpers: keys, metrics, memory

fn authority(t: &TestGateway) -> &str {
    t.proxy.trim_start_matches("http://")
}

/// Requests of key `id` in flight now (its concurrency slots taken).
fn in_flight(t: &TestGateway, id: &str) -> u32 {
    t.gw()
        .manager
        .index
        .get(id.parse().expect("uuid"))
        .expect("key loaded")
        .live
        .in_flight
        .current()
}

/// Waits (up to `within`) until no request of key `id` is in flight; fails naming `what`.
async fn all_freed(t: &TestGateway, id: &str, within: Duration, what: &str) {
    let freed = common::eventually(within, || async { in_flight(t, id) == 0 }).await;
    assert!(
        freed,
        "{what}: {} requests still in flight",
        in_flight(t, id)
    );
}

/// An attacker's key: a concurrency limit far above anything the tests reach, so that its
/// requests in flight are counted (the count is what the tests read).
async fn counted_key(t: &TestGateway) -> (String, String) {
    t.create_key(json!({"permissions": ["read", "write"], "concurrency_limit": 100000}))
        .await
}

async fn bytes_out(t: &TestGateway) -> u64 {
    let text = common::metrics_text(t).await;
    common::metric_value(&text, r#"tollgate_bytes_total{direction="out"}"#).expect("bytes_out")
        as u64
}

/// This process's resident memory (the gateway runs in it), in bytes.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kb << 10
}

/// The largest a TCP socket's receive or send buffer may grow to here (`tcp_rmem`/`tcp_wmem`).
fn tcp_buffer_max(name: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/sys/net/ipv4/{name}"))
        .ok()
        .and_then(|s| s.split_whitespace().nth(2)?.parse().ok())
        .unwrap_or(32 << 20)
}

fn mib(n: u64) -> f64 {
    n as f64 / (1 << 20) as f64
}

// ---------------------------------------------------------------------------------------------
// Helpers: h2 clients

/// An h2c client connection (the `h2` crate) whose connection task runs in the background.
async fn h2_connect<T>(io: T, builder: &h2::client::Builder) -> (SendRequest<Bytes>, JoinHandle<()>)
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (send, conn) = builder.handshake(io).await.expect("h2 handshake");
    let task = tokio::spawn(async move {
        let _ = conn.await;
    });
    (send, task)
}

async fn h2_tcp(
    t: &TestGateway,
    builder: &h2::client::Builder,
) -> (SendRequest<Bytes>, JoinHandle<()>) {
    let tcp = TcpStream::connect(authority(t)).await.expect("connect");
    h2_connect(tcp, builder).await
}

fn get_request(uri: &str, key: &str) -> Request<()> {
    Request::get(uri)
        .header("authorization", format!("Bearer {key}"))
        .body(())
        .expect("request")
}

/// Sends `req` (no body) and reads the whole answer: its status and body length.
async fn exchange(
    send: &SendRequest<Bytes>,
    req: Request<()>,
) -> Result<(StatusCode, u64), h2::Error> {
    let mut send = send.clone().ready().await?;
    let (resp, _) = send.send_request(req, true)?;
    let resp = resp.await?;
    let status = resp.status();
    let mut body = resp.into_body();
    let mut n = 0u64;
    while let Some(chunk) = body.data().await {
        let chunk = chunk?;
        n += chunk.len() as u64;
        body.flow_control().release_capacity(chunk.len())?;
    }
    Ok((status, n))
}

/// Bytes of body the honest client asks for on each request.
const HONEST_BYTES: u64 = 100;

/// A well-behaved HTTP/2 connection on the same listener, asking for one small answer after
/// another and timing each, until stopped.
struct Honest {
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Vec<Duration>>>,
    task: JoinHandle<Result<(), String>>,
    _conn: JoinHandle<()>,
}

struct Latencies {
    n: usize,
    p50: Duration,
    p99: Duration,
    max: Duration,
}

impl Honest {
    /// Connects and makes one request (so the connection is warm) before the loop starts.
    async fn start(t: &TestGateway) -> Honest {
        let (_, key) = t.rw_key().await;
        let (send, conn) = h2_tcp(t, &h2::client::Builder::new()).await;
        let uri = format!("{}/honest?echo_bytes={HONEST_BYTES}", t.proxy);
        let warm = exchange(&send, get_request(&uri, &key))
            .await
            .expect("warm-up");
        assert_eq!(warm, (StatusCode::OK, HONEST_BYTES));
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(Mutex::new(Vec::new()));
        let task = tokio::spawn({
            let (stop, samples) = (stop.clone(), samples.clone());
            async move {
                while !stop.load(Ordering::Acquire) {
                    let started = Instant::now();
                    let got = tokio::time::timeout(
                        HONEST_TIMEOUT,
                        exchange(&send, get_request(&uri, &key)),
                    )
                    .await;
                    match got {
                        Ok(Ok((StatusCode::OK, HONEST_BYTES))) => {
                            samples.lock().unwrap().push(started.elapsed())
                        }
                        Ok(other) => return Err(format!("honest request failed: {other:?}")),
                        Err(_) => {
                            return Err(format!("honest request unanswered in {HONEST_TIMEOUT:?}"));
                        }
                    }
                }
                Ok(())
            }
        });
        Honest {
            stop,
            samples,
            task,
            _conn: conn,
        }
    }

    fn count(&self) -> usize {
        self.samples.lock().unwrap().len()
    }

    /// Waits (with a deadline) until the honest client has `n` more answers than now: the
    /// observation window of attacks that hold something open.
    async fn answers(&self, n: usize) {
        let target = self.count() + n;
        let ok =
            common::eventually(Duration::from_secs(30), || async { self.count() >= target }).await;
        assert!(
            ok,
            "the honest connection got {} of {target} answers",
            self.count()
        );
    }

    /// Stops the loop; asserts every request was answered, at least `min` of them, with the
    /// p99 latency under [`HONEST_P99`]; prints the figures.
    async fn finish(self, label: &str, min: usize) -> Latencies {
        self.stop.store(true, Ordering::Release);
        let result = self.task.await.expect("honest task");
        let mut samples = self.samples.lock().unwrap().clone();
        samples.sort();
        let at = |q: f64| {
            samples[((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1]
        };
        assert!(result.is_ok(), "{label}: {}", result.unwrap_err());
        assert!(
            samples.len() >= min,
            "{label}: only {} honest answers during the attack (want {min})",
            samples.len()
        );
        let l = Latencies {
            n: samples.len(),
            p50: at(0.50),
            p99: at(0.99),
            max: at(1.0),
        };
        println!(
            "{label}: honest h2 connection during the attack: n={} p50={:?} p99={:?} max={:?}",
            l.n, l.p50, l.p99, l.max
        );
        assert!(
            l.p99 < HONEST_P99,
            "{label}: honest p99 {:?} (bound {HONEST_P99:?})",
            l.p99
        );
        l
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers: hand-made HTTP/2 frames on a raw socket (RFC 9113 §4.1, RFC 7541 §6.2.2)

const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const GOAWAY: u8 = 0x7;
const WINDOW_UPDATE: u8 = 0x8;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const CANCEL: u32 = 0x8;
const REFUSED_STREAM: u32 = 0x7;
const ENHANCE_YOUR_CALM: u32 = 0xb;

fn frame(out: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    let len = payload.len() as u32;
    assert!(len < 1 << 24);
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    out.extend_from_slice(payload);
}

/// An HPACK string length: a 7-bit-prefix integer, Huffman bit clear.
fn hpack_len(out: &mut Vec<u8>, mut n: usize) {
    if n < 127 {
        out.push(n as u8);
        return;
    }
    out.push(127);
    n -= 127;
    while n >= 128 {
        out.push((n % 128) as u8 | 0x80);
        n /= 128;
    }
    out.push(n as u8);
}

/// A literal header field without indexing, new name, raw strings.
fn literal(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.push(0x00);
    hpack_len(out, name.len());
    out.extend_from_slice(name.as_bytes());
    hpack_len(out, value.len());
    out.extend_from_slice(value);
}

/// The header block of `GET path` with the key (no dynamic table: every block stands alone).
fn request_block(authority: &str, path: &str, key: &str) -> Vec<u8> {
    let mut b = Vec::new();
    literal(&mut b, ":method", b"GET");
    literal(&mut b, ":scheme", b"http");
    literal(&mut b, ":authority", authority.as_bytes());
    literal(&mut b, ":path", path.as_bytes());
    literal(&mut b, "authorization", format!("Bearer {key}").as_bytes());
    b
}

/// The client's opening: preface, empty SETTINGS, and a connection window opened wide (so
/// answers are never held back for want of it).
fn client_start() -> Vec<u8> {
    let mut out = PREFACE.to_vec();
    frame(&mut out, SETTINGS, 0, 0, &[]);
    frame(&mut out, WINDOW_UPDATE, 0, 0, &(1u32 << 30).to_be_bytes());
    out
}

/// A frame the server sent (DATA payloads are not kept).
#[derive(Debug)]
struct Frame {
    kind: u8,
    stream: u32,
    payload: Vec<u8>,
}

impl Frame {
    /// The error code of a RST_STREAM or GOAWAY.
    fn code(&self) -> Option<u32> {
        let at = match self.kind {
            RST_STREAM => 0,
            GOAWAY => 4,
            _ => return None,
        };
        Some(u32::from_be_bytes(
            self.payload.get(at..at + 4)?.try_into().ok()?,
        ))
    }
}

enum Event {
    Frame(Frame),
    /// The server closed the connection: `None` on EOF, else the read error.
    Closed(Option<String>),
}

/// The server's side of a raw connection: its frames as a task reads and parses them, until
/// it closes.
type Events = mpsc::UnboundedReceiver<Event>;

/// The client's side of a raw HTTP/2 connection: the write half.
struct Raw {
    write: OwnedWriteHalf,
    /// Bytes written so far.
    written: u64,
}

impl Raw {
    /// Connects and writes the client's opening ([`client_start`]).
    async fn connect(t: &TestGateway) -> (Raw, Events) {
        let tcp = TcpStream::connect(authority(t)).await.expect("connect");
        let (mut read, write) = tcp.into_split();
        let (tx, events) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut head = [0u8; 9];
            loop {
                if let Err(e) = read.read_exact(&mut head).await {
                    let eof = e.kind() == std::io::ErrorKind::UnexpectedEof;
                    let _ = tx.send(Event::Closed((!eof).then(|| e.to_string())));
                    return;
                }
                let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
                let mut payload = vec![0u8; len];
                if let Err(e) = read.read_exact(&mut payload).await {
                    let _ = tx.send(Event::Closed(Some(e.to_string())));
                    return;
                }
                if head[3] == DATA {
                    payload.clear();
                }
                let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
                let frame = Frame {
                    kind: head[3],
                    stream,
                    payload,
                };
                if tx.send(Event::Frame(frame)).is_err() {
                    return;
                }
            }
        });
        let mut raw = Raw { write, written: 0 };
        raw.send(&client_start()).await.expect("preface");
        (raw, events)
    }

    async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.write.write_all(bytes).await?;
        self.written += bytes.len() as u64;
        Ok(())
    }
}

/// What a raw connection saw until the server closed it.
#[derive(Debug, Default)]
struct Ending {
    /// GOAWAY's last stream id and error code, if one was read before the close.
    goaway: Option<(u32, u32)>,
    goaway_debug: String,
    /// The read error that ended it (a reset), or `None` for a clean EOF.
    error: Option<String>,
    /// RST_STREAM frames by error code.
    resets: Vec<u32>,
    /// Streams answered with a response HEADERS frame.
    answered: Vec<u32>,
}

/// Drains `events` into an [`Ending`] until the server closes the connection; `None` if it
/// is still open after `within`.
async fn until_closed(events: &mut Events, within: Duration) -> Option<Ending> {
    let mut ending = Ending::default();
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Err(_) => return None,
            Ok(None) | Ok(Some(Event::Closed(None))) => return Some(ending),
            Ok(Some(Event::Closed(Some(err)))) => {
                ending.error = Some(err);
                return Some(ending);
            }
            Ok(Some(Event::Frame(f))) => note(&mut ending, f),
        }
    }
}

fn note(ending: &mut Ending, f: Frame) {
    match f.kind {
        GOAWAY => {
            let last =
                u32::from_be_bytes(f.payload[..4].try_into().expect("4 bytes")) & 0x7fff_ffff;
            ending.goaway = Some((last, f.code().expect("code")));
            ending.goaway_debug = String::from_utf8_lossy(&f.payload[8..]).into_owned();
        }
        RST_STREAM => ending.resets.push(f.code().expect("code")),
        HEADERS if f.stream != 0 => ending.answered.push(f.stream),
        _ => {}
    }
}

// ---------------------------------------------------------------------------------------------
// 1. Rapid reset (CVE-2023-44487)

/// Pipelines HEADERS + RST_STREAM(CANCEL) pairs, 50 to a write, for up to `max_streams`
/// streams (each a request that would hold the upstream for a second); returns the ending
/// the server chose and the streams written before the write side failed or stopped.
async fn rapid_reset_round(
    t: &TestGateway,
    key: &str,
    max_streams: u32,
) -> (Option<Ending>, u32, Duration) {
    let started = Instant::now();
    let (mut raw, mut events) = Raw::connect(t).await;
    let block = request_block(authority(t), "/rr?echo_delay_ms=1000", key);
    let writer = async {
        let mut id = 1u32;
        let mut batch = Vec::new();
        while id / 2 < max_streams {
            batch.clear();
            for _ in 0..50 {
                frame(&mut batch, HEADERS, END_STREAM | END_HEADERS, id, &block);
                frame(&mut batch, RST_STREAM, 0, id, &CANCEL.to_be_bytes());
                id += 2;
            }
            if raw.send(&batch).await.is_err() {
                break;
            }
        }
        id / 2
    };
    let (written, ending) = tokio::join!(writer, until_closed(&mut events, CLOSE_WITHIN));
    (ending, written, started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_rapid_reset_is_cut_with_goaway_while_honest_traffic_flows() {
    let _serial = SERIAL.lock().await;
    let t = TestGateway::start().await;
    let (id, key) = counted_key(&t).await;
    let honest = Honest::start(&t).await;
    let started = Instant::now();
    let (mut rounds, mut last_ids, mut slowest) = (0, Vec::new(), Duration::ZERO);
    while rounds < 3 || started.elapsed() < ATTACK_FOR {
        let (ending, written, took) = rapid_reset_round(&t, &key, 20_000).await;
        let ending = ending.unwrap_or_else(|| {
            panic!("rapid reset: the connection is still open after {CLOSE_WITHIN:?} and {written} streams")
        });
        let (last, code) = ending
            .goaway
            .unwrap_or_else(|| panic!("rapid reset: closed without a GOAWAY: {ending:?}"));
        assert_eq!(code, ENHANCE_YOUR_CALM, "rapid reset: {ending:?}");
        // The server processed at most a few hundred of the streams before it gave up.
        assert!(last / 2 < 500, "rapid reset: last stream processed {last}");
        last_ids.push(last);
        slowest = slowest.max(took);
        rounds += 1;
    }
    println!(
        "rapid reset: {rounds} connections, each closed with GOAWAY ENHANCE_YOUR_CALM; last stream ids \
         processed {:?}; slowest close {slowest:?}",
        &last_ids[..last_ids.len().min(8)]
    );
    honest.finish("rapid reset", 5).await;
    // Every reset stream gave its slot back.
    all_freed(&t, &id, Duration::from_secs(10), "rapid reset").await;
}

/// Opens streams through the `h2` client and resets each at once (`send_reset(CANCEL)`), up
/// to `max_streams`; returns how many it opened and the error that stopped it (`None`: the
/// server let all of them through).
async fn h2_rapid_reset_round(
    t: &TestGateway,
    key: &str,
    max_streams: u32,
) -> (u32, Option<h2::Error>) {
    let (send, _conn) = h2_tcp(t, &h2::client::Builder::new()).await;
    let uri = format!("{}/rr?echo_delay_ms=1000", t.proxy);
    let mut opened = 0;
    while opened < max_streams {
        let mut ready = match send.clone().ready().await {
            Ok(ready) => ready,
            Err(e) => return (opened, Some(e)),
        };
        match ready.send_request(get_request(&uri, key), true) {
            Ok((_, mut stream)) => stream.send_reset(Reason::CANCEL),
            Err(e) => return (opened, Some(e)),
        }
        opened += 1;
        if opened % 100 == 0 {
            tokio::task::yield_now().await;
        }
    }
    (opened, None)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rapid_reset_from_an_h2_client_is_cut_within_bounded_streams() {
    let _serial = SERIAL.lock().await;
    let t = TestGateway::start().await;
    let (id, key) = counted_key(&t).await;
    let honest = Honest::start(&t).await;
    let started = Instant::now();
    let (mut rounds, mut cut, mut goaways) = (0, Vec::new(), 0);
    let mut slowest = Duration::ZERO;
    // At least 20 rounds, so that one round the server kept up with cannot sink the ratio.
    while rounds < 20 || started.elapsed() < ATTACK_FOR {
        let round_started = Instant::now();
        let (n, err) = tokio::time::timeout(CLOSE_WITHIN, h2_rapid_reset_round(&t, &key, 20_000))
            .await
            .expect("rapid reset (h2 client): 20 000 streams neither cut nor served in time");
        slowest = slowest.max(round_started.elapsed());
        rounds += 1;
        // A round the server kept up with (it accepted each stream before its reset came,
        // when this client was descheduled between them) is not cut: rare, and counted below.
        let Some(err) = err else { continue };
        // Closed by the server: its GOAWAY, or a write into the socket it closed (the GOAWAY
        // then lost behind the error).
        if err.is_go_away() {
            assert_eq!(err.reason(), Some(Reason::ENHANCE_YOUR_CALM), "{err:?}");
            assert!(err.is_remote(), "{err:?}");
            goaways += 1;
        } else {
            assert!(err.is_io(), "rapid reset (h2 client): {err:?}");
        }
        cut.push(n);
    }
    cut.sort();
    println!(
        "rapid reset (h2 client): {} of {rounds} connections closed by the server ({goaways} with a \
         GOAWAY read, the rest by a write into the closed socket) after {}..{} streams (median {}); \
         slowest round {slowest:?}",
        cut.len(),
        cut.first().unwrap_or(&0),
        cut.last().unwrap_or(&0),
        cut.get(cut.len() / 2).unwrap_or(&0),
    );
    assert!(
        cut.len() * 10 >= rounds * 9,
        "only {} of {rounds} connections cut",
        cut.len()
    );
    assert!(goaways > 0, "never a GOAWAY read in {rounds} connections");
    assert!(
        cut[cut.len() / 2] < 2_000,
        "median {} streams before the cut",
        cut[cut.len() / 2]
    );
    honest.finish("rapid reset (h2 client)", 5).await;
    all_freed(&t, &id, Duration::from_secs(10), "rapid reset (h2 client)").await;
}

// ---------------------------------------------------------------------------------------------
// 2. CONTINUATION flood

/// One HEADERS frame without END_HEADERS, then CONTINUATION frames carrying `fragment` each,
/// never ending the header block, up to `budget` bytes or until the server stops reading.
async fn continuation_round(
    t: &TestGateway,
    key: &str,
    fragment: &[u8],
    budget: u64,
) -> (Option<Ending>, u64, bool) {
    let (mut raw, mut events) = Raw::connect(t).await;
    let block = request_block(authority(t), "/flood", key);
    let mut first = Vec::new();
    frame(&mut first, HEADERS, END_STREAM, 1, &block);
    let mut batch = Vec::new();
    while batch.len() < 256 << 10 {
        frame(&mut batch, CONTINUATION, 0, 1, fragment);
    }
    let writer = async {
        if raw.send(&first).await.is_err() {
            return (raw.written, true);
        }
        while raw.written < budget {
            if raw.send(&batch).await.is_err() {
                return (raw.written, true);
            }
        }
        (raw.written, false)
    };
    let ((written, cut), ending) = tokio::join!(writer, until_closed(&mut events, CLOSE_WITHIN));
    (ending, written, cut)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn continuation_flood_is_cut_while_honest_traffic_flows() {
    let _serial = SERIAL.lock().await;
    let t = TestGateway::start().await;
    let (_, key) = t.rw_key().await;
    let honest = Honest::start(&t).await;
    let mut small = Vec::new();
    literal(&mut small, "x-flood", &[b'f'; 90]);
    let mut large = Vec::new();
    literal(&mut large, "x-flood", &[b'f'; 16_000]);
    let shapes: [(&str, Vec<u8>); 3] = [("empty", Vec::new()), ("100 B", small), ("16 KB", large)];
    // Far more than the socket buffers between us and the server hold: if the server kept
    // reading (and buffering) the header block, the whole budget would go through.
    let budget = 256u64 << 20;
    let started = Instant::now();
    let mut rounds = 0;
    while rounds < 3 || started.elapsed() < ATTACK_FOR {
        let (shape, fragment) = &shapes[rounds % shapes.len()];
        let round_started = Instant::now();
        let (ending, written, cut) = continuation_round(&t, &key, fragment, budget).await;
        let took = round_started.elapsed();
        let ending = ending.unwrap_or_else(|| {
            panic!(
                "CONTINUATION ({shape}): still open after {CLOSE_WITHIN:?}, {written} bytes written"
            )
        });
        assert!(
            cut,
            "CONTINUATION ({shape}): the server read all {written} bytes of the flood"
        );
        let (_, code) = ending.goaway.unwrap_or_else(|| {
            panic!("CONTINUATION ({shape}): closed without a GOAWAY: {ending:?}")
        });
        assert_ne!(
            code, 0,
            "CONTINUATION ({shape}): GOAWAY without an error: {ending:?}"
        );
        assert!(
            ending.answered.is_empty(),
            "CONTINUATION ({shape}): the request was answered"
        );
        if rounds < shapes.len() {
            println!(
                "CONTINUATION flood ({shape} frames): GOAWAY code {code:#x} {:?} after {took:?}; \
                 {:.1} MiB written before the socket failed",
                ending.goaway_debug,
                mib(written)
            );
        }
        rounds += 1;
    }
    println!(
        "CONTINUATION flood: {rounds} connections in {:?}",
        started.elapsed()
    );
    honest.finish("CONTINUATION flood", 5).await;
}

// ---------------------------------------------------------------------------------------------
// 3. Too many concurrent streams

/// Samples a key's requests in flight every few milliseconds until stopped; the highest seen.
fn sample_max(t: &TestGateway, id: &str) -> (Arc<AtomicBool>, Arc<AtomicU32>, JoinHandle<()>) {
    let stop = Arc::new(AtomicBool::new(false));
    let max = Arc::new(AtomicU32::new(0));
    let entry = t
        .gw()
        .manager
        .index
        .get(id.parse().expect("uuid"))
        .expect("key loaded");
    let task = tokio::spawn({
        let (stop, max) = (stop.clone(), max.clone());
        async move {
            while !stop.load(Ordering::Acquire) {
                max.fetch_max(entry.live.in_flight.current(), Ordering::AcqRel);
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    });
    (stop, max, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compliant_client_is_held_to_100_streams_and_all_its_requests_are_answered() {
    let _serial = SERIAL.lock().await;
    let t = TestGateway::start().await;
    let (id, key) = counted_key(&t).await;
    let (send, _conn) = h2_tcp(&t, &h2::client::Builder::new()).await;
    // One exchange, so the server's SETTINGS have been read.
    let first = exchange(&send, get_request(&format!("{}/first", t.proxy), &key))
        .await
        .expect("first request");
    assert_eq!(first.0, StatusCode::OK);
    assert_eq!(
        send.current_max_send_streams(),
        MAX_STREAMS as usize,
        "SETTINGS_MAX_CONCURRENT_STREAMS"
    );
    let honest = Honest::start(&t).await;
    let (stop, max, sampler) = sample_max(&t, &id);
    let started = Instant::now();
    let uri = format!("{}/slow?echo_delay_ms=1500", t.proxy);
    let requests: Vec<_> = (0..150)
        .map(|_| {
            let (send, req) = (send.clone(), get_request(&uri, &key));
            tokio::spawn(async move { exchange(&send, req).await })
        })
        .collect();
    let reached = common::eventually(Duration::from_secs(10), || async {
        in_flight(&t, &id) == MAX_STREAMS
    })
    .await;
    assert!(
        reached,
        "never {MAX_STREAMS} in flight (now {})",
        in_flight(&t, &id)
    );
    for r in requests {
        let got = tokio::time::timeout(Duration::from_secs(30), r)
            .await
            .expect("every queued request is answered")
            .expect("task");
        assert_eq!(got.expect("request").0, StatusCode::OK);
    }
    let took = started.elapsed();
    stop.store(true, Ordering::Release);
    sampler.await.expect("sampler");
    let max = max.load(Ordering::Acquire);
    println!("150 streams on a compliant client: most in flight {max}, all answered in {took:?}");
    assert!(
        max <= MAX_STREAMS,
        "{max} requests in flight on one connection"
    );
    // Two waves of 1.5 s: the client queued the excess instead of the server running it.
    assert!(
        took >= Duration::from_millis(2900),
        "150 slow requests done in {took:?}"
    );
    honest.finish("150 streams (compliant client)", 5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_over_the_limit_are_refused_and_a_flood_of_them_ends_the_connection() {
    let _serial = SERIAL.lock().await;
    let t = TestGateway::start().await;
    let (id, key) = counted_key(&t).await;
    let honest = Honest::start(&t).await;
    let (stop, max, sampler) = sample_max(&t, &id);
    let block = request_block(authority(&t), "/slow?echo_delay_ms=1500", &key);
    let burst = |from: u32, n: u32| {
        let mut out = Vec::new();
        for i in 0..n {
            frame(
                &mut out,
                HEADERS,
                END_STREAM | END_HEADERS,
                from + 2 * i,
                &block,
            );
        }
        out
    };

    // 150 streams at once, ignoring the advertised 100: the excess is refused, the rest
    // answered, and the connection stays up.
    let (mut raw, mut events) = Raw::connect(&t).await;
    raw.send(&burst(1, 150)).await.expect("burst");
    let mut ending = Ending::default();
    let deadline = Instant::now() + Duration::from_secs(15);
    while ending.answered.len() < 100 || ending.resets.len() < 50 {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, events.recv())
            .await
            .ok()
            .flatten()
        {
            Some(Event::Frame(f)) => note(&mut ending, f),
            Some(Event::Closed(err)) => {
                panic!("150 streams: connection closed ({err:?}): {ending:?}")
            }
            None => panic!(
                "150 streams: {} answered, {} refused in 15 s",
                ending.answered.len(),
                ending.resets.len()
            ),
        }
    }
    assert_eq!(ending.resets.len(), 50, "{ending:?}");
    assert!(
        ending.resets.iter().all(|&c| c == REFUSED_STREAM),
        "{:?}",
        ending.resets
    );
    assert!(ending.goaway.is_none(), "{ending:?}");
    // The refused ones are the last 50 opened.
    assert!(
        ending.answered.iter().all(|&s| s < 200),
        "{:?}",
        ending.answered
    );
    let over_limit = max.load(Ordering::Acquire);
    println!(
        "150 streams at once (raw): 100 answered, 50 REFUSED_STREAM, most in flight {over_limit}"
    );
    assert!(
        over_limit <= MAX_STREAMS,
        "{over_limit} requests in flight on one connection"
    );
    drop((raw, events));

    // 2000 at once: 100 run, then refusals count against the local reset limit (256) and the
    // connection is closed with ENHANCE_YOUR_CALM.
    let started = Instant::now();
    let (mut raw, mut events) = Raw::connect(&t).await;
    let flood = burst(1, 2000);
    let write = raw.send(&flood);
    let (_, ending) = tokio::join!(write, until_closed(&mut events, CLOSE_WITHIN));
    let ending = ending.expect("a flood of refused streams is closed");
    let took = started.elapsed();
    let refused = ending
        .resets
        .iter()
        .filter(|&&c| c == REFUSED_STREAM)
        .count();
    println!(
        "2000 streams at once (raw): {refused} REFUSED_STREAM then GOAWAY {:?} {:?} after {took:?}",
        ending.goaway, ending.goaway_debug
    );
    let (_, code) = ending.goaway.expect("GOAWAY");
    assert_eq!(code, ENHANCE_YOUR_CALM, "{ending:?}");
    assert!(refused <= 256 + 1, "{refused} refusals before the GOAWAY");
    stop.store(true, Ordering::Release);
    sampler.await.expect("sampler");
    let most = max.load(Ordering::Acquire);
    assert!(
        most <= MAX_STREAMS,
        "{most} requests in flight on one connection"
    );
    honest.finish("stream floods (raw)", 5).await;
    all_freed(&t, &id, Duration::from_secs(10), "after the flood").await;
}

// ---------------------------------------------------------------------------------------------
// 4. Huge header lists

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_header_lists_are_refused_and_the_listener_stays_usable() {
    let _serial = SERIAL.lock().await;
    let t = TestGateway::with(Options {
        extra: "[limits]\nmax_header_bytes = 16384\n".into(),
        ..Options::default()
    })
    .await;
    let (_, key) = t.rw_key().await;
    let honest = Honest::start(&t).await;
    let uri = format!("{}/headers", t.proxy);
    let with_headers = |count: usize, each: usize| {
        let mut req = get_request(&uri, &key);
        for i in 0..count {
            // Varied bytes, so HPACK's Huffman code does not shrink them much.
            let value: String = (0..each)
                .map(|j| (b'!' + ((i * 31 + j * 7) % 90) as u8) as char)
                .collect();
            req.headers_mut().insert(
                http::HeaderName::from_bytes(format!("x-big-{i}").as_bytes()).expect("name"),
                value.parse().expect("value"),
            );
        }
        req
    };
    let (send, _conn) = h2_tcp(&t, &h2::client::Builder::new()).await;

    // Under the limit: forwarded.
    let (status, _) = exchange(&send, with_headers(4, 2000))
        .await
        .expect("8 KB of headers");
    assert_eq!(
        status,
        StatusCode::OK,
        "8 KB of headers under a 16 KiB limit"
    );

    // Over the limit (about 24 KB): this stream is refused, the connection lives on.
    let over = exchange(&send, with_headers(12, 2000)).await;
    match &over {
        Ok((status, _)) => assert_eq!(*status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE),
        Err(e) => assert!(e.is_reset() && !e.is_go_away(), "a stream error, not {e:?}"),
    }
    let (status, _) = exchange(&send, get_request(&uri, &key))
        .await
        .expect("the same connection still serves");
    assert_eq!(status, StatusCode::OK);

    // Way over (4 MB, hundreds of CONTINUATION frames): the connection is closed.
    let started = Instant::now();
    let huge = tokio::time::timeout(CLOSE_WITHIN, exchange(&send, with_headers(400, 10_000)))
        .await
        .expect("a 4 MB header list is dealt with in bounded time");
    let took = started.elapsed();
    let err = huge.expect_err("a 4 MB header list is not served");
    println!(
        "header lists (limit 16 KiB): 8 KB -> 200, 24 KB -> {:?}, 4 MB -> {err} after {took:?}",
        over.as_ref().map(|r| r.0)
    );
    assert!(
        err.is_go_away() || err.is_io(),
        "the connection is closed: {err:?}"
    );
    if let Some(reason) = err.reason() {
        assert_ne!(reason, Reason::NO_ERROR, "{err:?}");
    }
    let after = exchange(&send, get_request(&uri, &key)).await;
    assert!(
        after.is_err(),
        "the closed connection still serves: {after:?}"
    );

    // A fresh connection is served.
    let (send, _conn) = h2_tcp(&t, &h2::client::Builder::new()).await;
    let (status, _) = exchange(&send, get_request(&uri, &key))
        .await
        .expect("a new connection");
    assert_eq!(status, StatusCode::OK);
    honest.finish("huge header lists", 3).await;
}

// ---------------------------------------------------------------------------------------------
// 5. Readers that do not read

/// Waits until `bytes_out` holds still for a moment (the gateway stopped pulling), within a
/// deadline; returns the settled value.
async fn settled_bytes_out(t: &TestGateway) -> u64 {
    let mut last = bytes_out(t).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = bytes_out(t).await;
        // The honest client's answers keep counting, a few hundred bytes at a time.
        if now.abs_diff(last) < 64 << 10 || Instant::now() > deadline {
            return now;
        }
        last = now;
    }
}

/// The gateway's memory and upstream bytes before an attack.
struct Footprint {
    rss: u64,
    out: u64,
    honest: u64,
}

impl Footprint {
    async fn take(t: &TestGateway, honest: &Honest) -> Self {
        Footprint {
            rss: rss(),
            out: bytes_out(t).await,
            honest: honest.count() as u64,
        }
    }

    /// Once the gateway stops pulling: the bytes it pulled from the upstream for the attack
    /// (the honest client's answers taken out), and how much its memory grew.
    async fn since(&self, t: &TestGateway, honest: &Honest) -> (u64, u64) {
        let settled = settled_bytes_out(t).await;
        let honest_bytes = (honest.count() as u64 - self.honest + 2) * HONEST_BYTES;
        let pulled = settled
            .saturating_sub(self.out)
            .saturating_sub(honest_bytes);
        (pulled, rss().saturating_sub(self.rss))
    }
}

/// A connection whose windows never open, with `streams` requests of `asked` bytes each
/// answered (heads are not flow-controlled): its sender, its task and the unread bodies.
async fn closed_window_streams(
    t: &TestGateway,
    key: &str,
    streams: u32,
    asked: u64,
) -> (SendRequest<Bytes>, JoinHandle<()>, Vec<h2::RecvStream>) {
    let mut builder = h2::client::Builder::new();
    builder.initial_window_size(0);
    let (send, conn) = h2_tcp(t, &builder).await;
    let uri = format!("{}/big?echo_bytes={asked}", t.proxy);
    let mut bodies = Vec::new();
    for _ in 0..streams {
        let mut s = send.clone().ready().await.expect("ready");
        let (resp, _) = s.send_request(get_request(&uri, key), true).expect("send");
        let resp = tokio::time::timeout(Duration::from_secs(10), resp)
            .await
            .expect("response head (not flow-controlled)")
            .expect("response");
        assert_eq!(resp.status(), StatusCode::OK);
        bodies.push(resp.into_body());
    }
    (send, conn, bodies)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_that_never_opens_pulls_nothing_from_upstream() {
    let _serial = SERIAL.lock().await;
    let t = TestGateway::start().await;
    let (id, key) = counted_key(&t).await;
    let honest = Honest::start(&t).await;
    let streams = 20u32;
    let asked = 50_000_000u64;
    let before = Footprint::take(&t, &honest).await;
    let (send, conn, bodies) = closed_window_streams(&t, &key, streams, asked).await;
    assert_eq!(in_flight(&t, &id), streams);
    // Hold the streams open while the honest connection gets 50 answers.
    honest.answers(50).await;
    let (pulled, grown) = before.since(&t, &honest).await;
    println!(
        "window 0: {streams} streams asking {:.0} MiB each: {pulled} bytes pulled through the gateway, \
         RSS +{:.1} MiB, all {streams} still in flight",
        mib(asked),
        mib(grown)
    );
    // Nothing can be sent, so (almost) nothing is read from upstream: at most a chunk per
    // stream, far below the send buffer.
    assert!(
        pulled <= streams as u64 * ECHO_CHUNK,
        "{pulled} bytes pulled for closed windows"
    );
    assert!(grown < 128 << 20, "RSS grew {:.1} MiB", mib(grown));
    assert_eq!(in_flight(&t, &id), streams, "the streams are still open");
    honest.finish("window never opens", 50).await;
    // Dropping the connection frees every slot.
    drop(bodies);
    drop(send);
    conn.abort();
    all_freed(
        &t,
        &id,
        Duration::from_secs(10),
        "window 0 after the client left",
    )
    .await;
}

/// An I/O object that never reads once `stalled` is set (the peer then sees a full socket).
struct Stalling {
    io: TcpStream,
    stalled: Arc<AtomicBool>,
}

impl AsyncRead for Stalling {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.stalled.load(Ordering::Acquire) {
            return Poll::Pending;
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Stalling {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_costs_at_most_the_send_buffers() {
    let _serial = SERIAL.lock().await;
    let t = TestGateway::start().await;
    let (id, key) = counted_key(&t).await;
    let honest = Honest::start(&t).await;
    let streams = 10u32;
    let asked = 200_000_000u64;
    let before = Footprint::take(&t, &honest).await;
    // Windows wide open (64 MiB a stream, 1 GiB the connection), then never a byte read: only
    // the socket buffers and the server's send buffers stand between the upstream and memory.
    let tcp = TcpStream::connect(authority(&t)).await.expect("connect");
    let io = Stalling {
        io: tcp,
        stalled: Arc::new(AtomicBool::new(true)),
    };
    let mut builder = h2::client::Builder::new();
    builder
        .initial_window_size(64 << 20)
        .initial_connection_window_size(1 << 30);
    let (send, conn) = h2_connect(io, &builder).await;
    let uri = format!("{}/big?echo_bytes={asked}", t.proxy);
    let mut pending = Vec::new();
    for _ in 0..streams {
        let mut s = send.clone().ready().await.expect("ready");
        pending.push(s.send_request(get_request(&uri, &key), true).expect("send"));
    }
    let all = common::eventually(Duration::from_secs(10), || async {
        in_flight(&t, &id) == streams
    })
    .await;
    assert!(
        all,
        "{} of {streams} requests in flight",
        in_flight(&t, &id)
    );
    honest.answers(50).await;
    let (pulled, grown) = before.since(&t, &honest).await;
    // What can be in flight without the client reading: both sockets' buffers, plus the
    // server's send buffer and a chunk per stream, plus 1 MiB for framing and slack.
    let bound = tcp_buffer_max("tcp_rmem")
        + tcp_buffer_max("tcp_wmem")
        + streams as u64 * (MAX_SEND_BUF + ECHO_CHUNK)
        + (1 << 20);
    println!(
        "stalled reader: {streams} streams asking {:.0} MiB each: {:.1} MiB pulled through the gateway \
         (bound {:.1} MiB: socket buffers + {streams} x send buffer), RSS +{:.1} MiB",
        mib(asked),
        mib(pulled),
        mib(bound),
        mib(grown)
    );
    assert!(
        pulled <= bound,
        "{pulled} bytes pulled for a client that reads nothing"
    );
    assert!(grown < 128 << 20, "RSS grew {:.1} MiB", mib(grown));
    honest.finish("stalled reader", 50).await;
    drop(pending);
    drop(send);
    conn.abort();
    all_freed(
        &t,
        &id,
        Duration::from_secs(10),
        "stalled reader after the client left",
    )
    .await;
}

// ---------------------------------------------------------------------------------------------
// Responses nobody takes: limits.send_timeout

/// A gateway whose responses may wait on a client for 1 s.
async fn impatient() -> TestGateway {
    TestGateway::with(Options {
        extra: "[limits]\nsend_timeout = \"1s\"\n".into(),
        ..Options::default()
    })
    .await
}

/// A client that keeps every HTTP/2 window closed has its connection closed once a response has
/// waited on it for `limits.send_timeout`, and every stream's slot is freed, without the client
/// doing anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_kept_closed_past_the_send_timeout_closes_the_connection() {
    let _serial = SERIAL.lock().await;
    let t = impatient().await;
    let (id, key) = counted_key(&t).await;
    let (_send, conn, bodies) = closed_window_streams(&t, &key, 10, 50_000_000).await;
    let started = Instant::now();
    // The gateway ends the connection: the client's connection task finishes by itself.
    tokio::time::timeout(Duration::from_secs(20), conn)
        .await
        .expect("the gateway closed the connection")
        .unwrap();
    let took = started.elapsed();
    println!("window kept closed: connection closed after {took:?}");
    assert!(
        took >= Duration::from_millis(500),
        "closed too early: {took:?}"
    );
    all_freed(&t, &id, Duration::from_secs(10), "window kept closed").await;
    drop(bodies);
}

/// The same over HTTP/1: a client that stops reading its socket is cut off once the response
/// has waited on it for `limits.send_timeout`, while an upstream slow to answer is not a
/// stall.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http1_client_that_stops_reading_is_cut_off_but_a_slow_upstream_is_not() {
    let _serial = SERIAL.lock().await;
    let t = impatient().await;
    let (id, key) = counted_key(&t).await;
    // Waiting 2 s on the upstream is not waiting on the client.
    let resp = t
        .client
        .get(format!("{}/slow?echo_delay_ms=2000", t.proxy))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut conn = TcpStream::connect(authority(&t)).await.unwrap();
    let head = format!(
        "GET /big?echo_bytes=500000000 HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {key}\r\n\r\n"
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    let busy = common::eventually(Duration::from_secs(10), || async {
        in_flight(&t, &id) == 1
    })
    .await;
    assert!(busy, "the request is in flight");
    // Read nothing; the gateway frees the slot on its own.
    all_freed(
        &t,
        &id,
        Duration::from_secs(20),
        "the stalled response still holds its slot",
    )
    .await;
    // The connection is closed: reading drains what was buffered, then ends.
    let mut sink = vec![0u8; 1 << 16];
    let ended = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match conn.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the connection was closed");
}

/// A request whose client resets the stream while it waits on the upstream is counted as
/// `client_closed`, and its slot is freed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_reset_by_its_client_is_counted_and_frees_its_slot() {
    let _serial = SERIAL.lock().await;
    let t = TestGateway::start().await;
    let (id, key) = counted_key(&t).await;
    let (send, _conn) = h2_tcp(&t, &h2::client::Builder::new()).await;
    let uri = format!("{}/slow?echo_delay_ms=5000", t.proxy);
    let mut s = send.clone().ready().await.expect("ready");
    let (resp, mut stream) = s.send_request(get_request(&uri, &key), true).expect("send");
    let busy = common::eventually(Duration::from_secs(10), || async {
        in_flight(&t, &id) == 1
    })
    .await;
    assert!(busy, "the request is in flight");
    stream.send_reset(Reason::CANCEL);
    drop(resp);
    let closed = r#"tollgate_requests_total{code="client_closed"}"#;
    let counted = common::eventually(Duration::from_secs(10), || async {
        let text = common::metrics_text(&t).await;
        common::metric_value(&text, closed) == Some(1.0)
    })
    .await;
    assert!(counted, "{}", common::metrics_text(&t).await);
    assert_eq!(in_flight(&t, &id), 0);
}
