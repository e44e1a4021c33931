//! Sequential keep-alive HTTP/1.1 client for `benches/callgrind/run.sh`: opens ONE TCP connection,
//! sends N identical GET requests one after another on it (each waits for the previous answer),
//! reads each response to its end (`Content-Length` or chunked), checks the status, and fails if
//! the server closes the connection, answers with another status or sends `Connection: close`.
//! There is no reconnect: N answers means N requests on one connection. Prints one line:
//! `requests=N connections=1 status=S local_port=P seconds=T`.
//!
//! ```sh
//! cargo run --release --example ir_client -- --addr 127.0.0.1:18103 --path /small \
//!     --requests 2000 --expect 200 --header "Authorization: Bearer cr_..."
//! ```
//!
//! Plain `std::net` and blocking I/O: the client runs outside valgrind, and whatever it costs
//! is not counted; it only has to be one connection and strictly sequential.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;

#[derive(Parser)]
struct Args {
    /// `host:port` of the target.
    #[arg(long)]
    addr: String,
    /// Request path.
    #[arg(long, default_value = "/small")]
    path: String,
    /// How many requests to send on the one connection.
    #[arg(long)]
    requests: u64,
    /// The status every response must have.
    #[arg(long, default_value_t = 200)]
    expect: u16,
    /// Extra request header, `Name: value` (repeatable).
    #[arg(long)]
    header: Vec<String>,
    /// Seconds to wait for one response (valgrind makes the target ~50× slower).
    #[arg(long, default_value_t = 120)]
    timeout: u64,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let host = args.addr.clone();
    let mut request = format!("GET {} HTTP/1.1\r\nHost: {host}\r\n", args.path);
    for h in &args.header {
        if !h.contains(':') {
            bail!("--header {h:?} is not `Name: value`");
        }
        request.push_str(h);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");

    let stream = TcpStream::connect(&args.addr).with_context(|| format!("connecting {host}"))?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(args.timeout)))?;
    let local_port = stream.local_addr()?.port();
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::with_capacity(64 * 1024, stream);
    let started = Instant::now();
    let mut line = String::new();
    for i in 0..args.requests {
        writer
            .write_all(request.as_bytes())
            .with_context(|| format!("sending request {}", i + 1))?;
        let status = read_response(&mut reader, &mut line)
            .with_context(|| format!("reading response {} of {}", i + 1, args.requests))?;
        if status != args.expect {
            bail!(
                "response {} has status {status}, expected {}",
                i + 1,
                args.expect
            );
        }
    }
    println!(
        "requests={} connections=1 status={} local_port={local_port} seconds={:.2}",
        args.requests,
        args.expect,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Reads one response (status line, headers, body); returns its status. Errors on EOF and on
/// `Connection: close`, so a run that completes stayed on one connection.
fn read_response(reader: &mut BufReader<TcpStream>, line: &mut String) -> Result<u16> {
    line.clear();
    if reader.read_line(line)? == 0 {
        bail!("connection closed by the server");
    }
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("bad status line {line:?}"))?;
    let mut length: Option<usize> = None;
    let mut chunked = false;
    loop {
        line.clear();
        if reader.read_line(line)? == 0 {
            bail!("connection closed inside the headers");
        }
        let h = line.trim_end();
        if h.is_empty() {
            break;
        }
        let Some((name, value)) = h.split_once(':') else {
            bail!("bad header line {h:?}");
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(value.parse().context("bad Content-Length")?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.eq_ignore_ascii_case("chunked");
        } else if name.eq_ignore_ascii_case("connection") && value.eq_ignore_ascii_case("close") {
            bail!("the server sent `Connection: close`");
        }
    }
    if chunked {
        loop {
            line.clear();
            reader.read_line(line)?;
            let size_hex = line.trim_end().split(';').next().unwrap_or("");
            let size = usize::from_str_radix(size_hex, 16)
                .with_context(|| format!("bad chunk size {line:?}"))?;
            skip(reader, size)?;
            if size == 0 {
                // Trailers (none expected) up to the empty line.
                loop {
                    line.clear();
                    reader.read_line(line)?;
                    if line.trim_end().is_empty() {
                        return Ok(status);
                    }
                }
            }
            line.clear();
            reader.read_line(line)?; // the CRLF after the chunk
        }
    }
    skip(reader, length.unwrap_or(0))?;
    Ok(status)
}

fn skip(reader: &mut BufReader<TcpStream>, n: usize) -> Result<()> {
    let copied = std::io::copy(&mut reader.by_ref().take(n as u64), &mut std::io::sink())?;
    if copied != n as u64 {
        bail!("connection closed inside a body ({copied} of {n} bytes)");
    }
    Ok(())
}
