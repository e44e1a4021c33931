//! Open-loop latency probe for `benches/load/run.sh`: requests at a fixed total rate over N
//! keep-alive connections, each connection on its own fixed schedule (a slow answer does not
//! slow the schedule down; a send that falls behind is counted as late), timed from the send to
//! the end of the response body at microsecond resolution. Prints one line:
//! `p50_us p99_us p999_us achieved_rps errors late`.
//!
//! ```sh
//! cargo run --release --example open_loop -- --url http://127.0.0.1:18003/small \
//!     --rate 5000 --connections 64 --seconds 8 --header "Authorization: Bearer cr_..."
//! ```
//!
//! hey, used before, reports 0.1 ms steps and its own jitter was milliseconds at the 99th
//! percentile even against the upstream directly; this probe is a single `current_thread`
//! runtime with hyper's HTTP/1 client, so what it adds is small and the same for every target.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use clap::Parser;
use http::header::HOST;
use http::{HeaderName, HeaderValue, Request, Uri};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::task::JoinSet;

#[derive(Parser)]
struct Args {
    /// `http://host:port/path` to request (GET).
    #[arg(long)]
    url: Uri,
    /// Requests per second, all connections together.
    #[arg(long, default_value_t = 5000.0)]
    rate: f64,
    #[arg(long, default_value_t = 64)]
    connections: usize,
    #[arg(long, default_value_t = 8.0)]
    seconds: f64,
    /// Extra request header, `Name: value` (repeatable).
    #[arg(long)]
    header: Vec<String>,
}

/// What one connection measured.
#[derive(Default)]
struct Tally {
    micros: Vec<u32>,
    errors: u64,
    late: u64,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let args = Args::parse();
    if args.rate <= 0.0 || args.connections == 0 || args.seconds <= 0.0 {
        bail!("--rate, --connections and --seconds must be positive");
    }
    let target = Target::from_args(&args)?;
    let interval = Duration::from_secs_f64(args.connections as f64 / args.rate);
    let start = Instant::now() + Duration::from_millis(200);
    let end = start + Duration::from_secs_f64(args.seconds);
    let mut workers = JoinSet::new();
    for i in 0..args.connections {
        let first = start + Duration::from_secs_f64(i as f64 / args.rate);
        let target = target.clone();
        workers.spawn(async move { target.run(first, interval, end).await });
    }
    let mut all = Tally::default();
    while let Some(done) = workers.join_next().await {
        let tally = done.context("connection task")??;
        all.micros.extend(tally.micros);
        all.errors += tally.errors;
        all.late += tally.late;
    }
    all.micros.sort_unstable();
    let at = |q: f64| {
        let n = all.micros.len();
        all.micros
            .get(((n as f64 * q) as usize).min(n.saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    let rps = all.micros.len() as f64 / args.seconds;
    println!(
        "{} {} {} {rps:.0} {} {}",
        at(0.50),
        at(0.99),
        at(0.999),
        all.errors,
        all.late
    );
    Ok(())
}

/// Where requests go and what they carry.
#[derive(Clone)]
struct Target {
    addr: String,
    host: HeaderValue,
    path: Uri,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl Target {
    fn from_args(args: &Args) -> Result<Self> {
        let authority = args.url.authority().context("--url needs host:port")?;
        let port = authority.port_u16().unwrap_or(80);
        let headers = args
            .header
            .iter()
            .map(|h| {
                let (name, value) = h.split_once(':').context("--header is `Name: value`")?;
                Ok((name.trim().parse()?, value.trim().parse()?))
            })
            .collect::<Result<_>>()?;
        Ok(Target {
            addr: format!("{}:{port}", authority.host()),
            host: authority.as_str().parse()?,
            path: args
                .url
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .parse()?,
            headers,
        })
    }

    /// One connection: a request at `first`, then every `interval`, until `end`.
    async fn run(self, first: Instant, interval: Duration, end: Instant) -> Result<Tally> {
        let stream = TcpStream::connect(&self.addr).await?;
        stream.set_nodelay(true)?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        let mut tally = Tally::default();
        let mut next = first;
        while next < end {
            tokio::time::sleep_until(next.into()).await;
            let sent = Instant::now();
            if sent > next + interval / 2 {
                tally.late += 1;
            }
            let mut req = Request::get(self.path.clone()).body(Empty::<Bytes>::new())?;
            req.headers_mut().insert(HOST, self.host.clone());
            for (name, value) in &self.headers {
                req.headers_mut().insert(name, value.clone());
            }
            sender.ready().await?;
            let resp = sender.send_request(req).await?;
            let ok = resp.status().is_success();
            resp.into_body().collect().await?;
            tally.micros.push(sent.elapsed().as_micros() as u32);
            if !ok {
                tally.errors += 1;
            }
            next += interval;
        }
        Ok(tally)
    }
}
