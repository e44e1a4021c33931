//! A raw HTTP/1.1 upstream that records every request exactly as it arrived (head and framed
//! body bytes) and answers each with a small 200, for the differential test.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The recording upstream.
pub struct Capture {
    pub addr: std::net::SocketAddr,
    pub seen: Arc<Mutex<Vec<Vec<u8>>>>,
}

pub async fn spawn() -> Capture {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve(stream, record.clone()));
        }
    });
    Capture { addr, seen }
}

impl Capture {
    /// Takes what was recorded so far.
    pub fn take(&self) -> Vec<Vec<u8>> {
        std::mem::take(&mut *self.seen.lock().unwrap())
    }
}

async fn serve(mut stream: TcpStream, seen: Arc<Mutex<Vec<Vec<u8>>>>) {
    let mut buf = Vec::new();
    loop {
        let len = loop {
            if let Some(len) = request_len(&buf) {
                break len;
            }
            let mut chunk = [0u8; 16384];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let request: Vec<u8> = buf.drain(..len).collect();
        let (answer, close) = answer_to(&request);
        seen.lock().unwrap().push(request);
        if stream.write_all(&answer).await.is_err() || close {
            return;
        }
    }
}

/// The answer to a request: `/r/<shape>/...` picks an odd one (framing, 1xx, odd headers, a
/// broken head), anything else gets a small 200. `true`: the connection closes after it.
fn answer_to(request: &[u8]) -> (Vec<u8>, bool) {
    let line = request.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let path = line.split(' ').nth(1).unwrap_or("/");
    let shape = path
        .strip_prefix("/r/")
        .map(|r| r.split(['/', '?']).next().unwrap_or(""));
    let ok = "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n";
    let (text, close) = match shape {
        None | Some("") => (format!("{ok}content-length: 2\r\n\r\nok"), false),
        Some("chunked") => (
            format!(
                "{ok}transfer-encoding: chunked\r\n\r\n3;x=1\r\nabc\r\n4\r\ndefg\r\n0\r\nx-trailer: t\r\n\r\n"
            ),
            false,
        ),
        Some("close") => (format!("{ok}connection: close\r\n\r\nuntil the end"), true),
        Some("http10") => ("HTTP/1.0 200 OK\r\nx-old: 1\r\n\r\nold body".into(), true),
        Some("empty") => ("HTTP/1.1 204 No Content\r\nx-e: 1\r\n\r\n".into(), false),
        Some("not-modified") => (
            "HTTP/1.1 304 Not Modified\r\netag: \"x\"\r\n\r\n".into(),
            false,
        ),
        Some("continue") => (
            format!("HTTP/1.1 100 Continue\r\n\r\n{ok}content-length: 3\r\n\r\nyes"),
            false,
        ),
        Some("headers") => (
            format!(
                "{ok}set-cookie: a=1\r\nset-cookie: b=2\r\nx-high: caf\u{e9}\r\nX-Mixed-Case: v\r\nkeep-alive: timeout=5\r\ncontent-length: 1\r\n\r\n!"
            ),
            false,
        ),
        Some("te-and-length") => (
            format!(
                "{ok}content-length: 100\r\ntransfer-encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n"
            ),
            false,
        ),
        Some("status") => (
            "HTTP/1.1 599 Custom\r\ncontent-length: 0\r\n\r\n".into(),
            false,
        ),
        Some("garbage") => ("NOT HTTP AT ALL\r\n\r\n".into(), true),
        Some("short") => (format!("{ok}content-length: 10\r\n\r\nshort"), true),
        Some("big") => (
            format!("{ok}content-length: 70000\r\n\r\n{}", "b".repeat(70000)),
            false,
        ),
        Some(_) => (format!("{ok}content-length: 2\r\n\r\nok"), false),
    };
    (text.into_bytes(), close)
}

/// The length of the complete request at the start of `buf` (a well-formed one: the gateway
/// sent it), or `None` while it is incomplete.
fn request_len(buf: &[u8]) -> Option<usize> {
    let mut headers = [httparse::EMPTY_HEADER; 128];
    let mut req = httparse::Request::new(&mut headers);
    let head = match req.parse(buf).expect("the gateway sends a valid head") {
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial => return None,
    };
    let header = |name: &str| {
        req.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).to_string())
    };
    if header("transfer-encoding").is_some() {
        return chunked_len(&buf[head..]).map(|n| head + n);
    }
    let body: usize = header("content-length").map_or(0, |v| v.parse().unwrap());
    (buf.len() >= head + body).then_some(head + body)
}

/// The length of a complete chunked body (with its trailers) at the start of `buf`.
pub fn chunked_len(buf: &[u8]) -> Option<usize> {
    let mut pos = 0;
    loop {
        let line_end = pos + buf[pos..].windows(2).position(|w| w == b"\r\n")?;
        let line = std::str::from_utf8(&buf[pos..line_end]).unwrap();
        let size = usize::from_str_radix(line.split(';').next().unwrap().trim(), 16).unwrap();
        pos = line_end + 2;
        if size == 0 {
            // Trailers up to an empty line.
            loop {
                let end = pos + buf[pos..].windows(2).position(|w| w == b"\r\n")?;
                let empty = end == pos;
                pos = end + 2;
                if empty {
                    return Some(pos);
                }
            }
        }
        if buf.len() < pos + size + 2 {
            return None;
        }
        pos += size + 2;
    }
}
