//! A fake kubo node speaking the RPC wire format the gateway relies on: `POST /api/v0/<cmd>`
//! with `?arg=` query arguments, multipart `add` answered with newline-delimited JSON over a
//! chunked response (with kubo's `X-Chunked-Output` and `X-Stream-Error` trailer headers),
//! `dag/stat`, `block/stat`, `cat`, pins, keys and `name/publish`, and kubo's error object
//! `{"Message","Code":0,"Type":"error"}` with status 500.
//!
//! Content is addressed by its real CIDv0 (dag-pb framing left out: SHA-256 of the bytes);
//! "the network" is the `available` map a test fills with [`FakeKubo::provide`]. CID arguments
//! are read as kubo reads them (any multibase spelling). Every command received is logged so
//! tests can check what reached the node.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;

/// UnixFS framing the fake adds to every file's size, as kubo's dag-pb wrapper does.
pub const OVERHEAD: u64 = 11;

/// What the node holds.
#[derive(Debug, Default)]
pub struct Node {
    /// Content the node can fetch (locally or "from the network"), by CID.
    pub available: HashMap<String, Bytes>,
    /// Pinned CIDs and whether recursively.
    pub pins: BTreeMap<String, bool>,
    /// Keystore: name → id.
    pub keys: BTreeMap<String, String>,
    /// Every command received: `"<cmd>?<query>"`.
    pub log: Vec<String>,
}

/// A running fake node.
pub struct FakeKubo {
    pub url: String,
    pub node: Arc<Mutex<Node>>,
    _task: tokio::task::JoinHandle<()>,
}

impl FakeKubo {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr: SocketAddr = listener.local_addr().expect("addr");
        let node = Arc::new(Mutex::new(Node::default()));
        node.lock()
            .unwrap()
            .keys
            .insert("self".into(), "k51self".into());
        let shared = node.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let node = shared.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| answer(node.clone(), req));
                    let _ = Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        FakeKubo {
            url: format!("http://{addr}"),
            node,
            _task: task,
        }
    }

    /// Makes `content` fetchable by the node; returns its CID and the size kubo would report.
    pub fn provide(&self, content: &[u8]) -> (String, u64) {
        let cid = cid_of(content);
        let mut node = self.node.lock().unwrap();
        // The blockstore keys blocks by hash: both CID versions find the content.
        for key in [cid.clone(), cid_v1_of(content)] {
            node.available.insert(key, Bytes::copy_from_slice(content));
        }
        (cid, content.len() as u64 + OVERHEAD)
    }

    pub fn pinned(&self, cid: &str) -> bool {
        self.node.lock().unwrap().pins.contains_key(cid)
    }

    /// How many logged commands start with `prefix` (e.g. `"pin/rm?"`).
    pub fn calls(&self, prefix: &str) -> usize {
        let node = self.node.lock().unwrap();
        node.log.iter().filter(|l| l.starts_with(prefix)).count()
    }

    pub fn log(&self) -> Vec<String> {
        self.node.lock().unwrap().log.clone()
    }
}

/// The CIDv0 (`Qm...`) of `content`.
pub fn cid_of(content: &[u8]) -> String {
    let digest = Sha256::digest(content);
    let hash = multihash::Multihash::<64>::wrap(0x12, &digest).expect("sha2-256 multihash");
    cid::Cid::new_v0(hash).expect("v0").to_string()
}

/// The CIDv1 (dag-pb, `bafy...`) of the same hash as `cid_of`.
pub fn cid_v1_of(content: &[u8]) -> String {
    let v0 = cid::Cid::try_from(cid_of(content).as_str()).expect("cid");
    cid::Cid::new_v1(0x70, *v0.hash()).to_string()
}

/// A CID argument as kubo reads it: any spelling, one canonical text.
fn canonical(arg: &str) -> String {
    let bare = arg.strip_prefix("/ipfs/").unwrap_or(arg);
    cid::Cid::try_from(bare).map_or_else(|_| bare.to_string(), |c| c.to_string())
}

type Answer = Response<http_body_util::combinators::BoxBody<Bytes, Infallible>>;

async fn answer(node: Arc<Mutex<Node>>, req: Request<Incoming>) -> Result<Answer, Infallible> {
    if req.method() != Method::POST {
        return Ok(error(
            StatusCode::METHOD_NOT_ALLOWED,
            "405 - Method Not Allowed",
        ));
    }
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let Some(cmd) = path.strip_prefix("/api/v0/").map(str::to_string) else {
        return Ok(error(StatusCode::NOT_FOUND, "404 page not found"));
    };
    node.lock().unwrap().log.push(format!("{cmd}?{query}"));
    let args: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let ct = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = req.into_body().collect().await.map(|c| c.to_bytes());
    let Ok(body) = body else {
        return Ok(error(StatusCode::BAD_REQUEST, "request body broke off"));
    };
    let mut node = node.lock().unwrap();
    Ok(run(&mut node, &cmd, &Args(args), &ct, &body))
}

struct Args(Vec<(String, String)>);

impl Args {
    fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
    fn get(&self, name: &str) -> Option<&str> {
        self.all(name).pop()
    }
    fn flag(&self, name: &str, default: bool) -> bool {
        self.get(name).map_or(default, |v| v != "false")
    }
}

fn run(node: &mut Node, cmd: &str, args: &Args, ct: &str, body: &[u8]) -> Answer {
    let arg = canonical(args.get("arg").unwrap_or(""));
    match cmd {
        "version" => ok(json!({"Version": "0.32.1", "Commit": "fake", "System": "amd64/linux"})),
        "add" => add(node, args, ct, body),
        "cat" => match node.available.get(&arg) {
            Some(data) => stream(vec![data.clone()]),
            None => error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "block was not found locally",
            ),
        },
        "dag/stat" => match node.available.get(&arg) {
            Some(data) => {
                let size = data.len() as u64 + OVERHEAD;
                let summary = json!({"UniqueBlocks": 1, "TotalSize": size, "SharedSize": 0,
                    "Ratio": 1, "DagStats": [{"Cid": {"/": arg}, "Size": size, "NumBlocks": 1}]});
                if !args.flag("progress", true) {
                    return ok(summary);
                }
                // As kubo streams it: the running summary after each "block" (100 bytes here),
                // then the final one.
                let mut lines: Vec<Bytes> = (1..=size / 100)
                    .map(|n| Bytes::from(format!("{}\n", json!({"TotalSize": n * 100}))))
                    .collect();
                lines.push(Bytes::from(format!("{summary}\n")));
                stream(lines)
            }
            None => not_found(&arg),
        },
        "block/stat" => match node.available.get(&arg) {
            Some(data) => ok(json!({"Key": arg, "Size": data.len() as u64 + OVERHEAD})),
            None => not_found(&arg),
        },
        "pin/add" => {
            let cids: Vec<String> = args.all("arg").into_iter().map(canonical).collect();
            if let Some(missing) = cids.iter().find(|c| !node.available.contains_key(*c)) {
                return not_found(missing);
            }
            for cid in &cids {
                node.pins.insert(cid.clone(), args.flag("recursive", true));
            }
            ok(json!({"Pins": cids}))
        }
        "pin/rm" => {
            let cids: Vec<String> = args.all("arg").into_iter().map(canonical).collect();
            if cids.iter().any(|c| !node.pins.contains_key(c)) {
                return error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "not pinned or pinned indirectly",
                );
            }
            for cid in &cids {
                node.pins.remove(cid);
            }
            ok(json!({"Pins": cids}))
        }
        "pin/update" => {
            let [from, to] = args.all("arg")[..] else {
                return error(StatusCode::BAD_REQUEST, "two arguments required");
            };
            if !node.pins.contains_key(from) {
                return error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "'from' cid was not recursively pinned already",
                );
            }
            if node.pins.contains_key(to) {
                return error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "'to' cid was already recursively pinned",
                );
            }
            if !node.available.contains_key(to) {
                return not_found(to);
            }
            node.pins.insert(to.to_string(), true);
            if args.flag("unpin", true) {
                node.pins.remove(from);
            }
            ok(json!({"Pins": [from, to]}))
        }
        "pin/ls" => {
            let keys: serde_json::Map<String, Value> = node
                .pins
                .iter()
                .map(|(c, r)| {
                    (
                        c.clone(),
                        json!({"Type": if *r {"recursive"} else {"direct"}}),
                    )
                })
                .collect();
            ok(json!({"Keys": keys}))
        }
        "key/gen" => {
            if node.keys.contains_key(&arg) {
                return error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &format!("key with name '{arg}' already exists"),
                );
            }
            let id = format!("k51{}", &cid_of(arg.as_bytes())[2..20]);
            node.keys.insert(arg.clone(), id.clone());
            ok(json!({"Name": arg, "Id": id}))
        }
        "key/list" => {
            let keys: Vec<Value> = node
                .keys
                .iter()
                .map(|(n, id)| json!({"Name": n, "Id": id}))
                .collect();
            ok(json!({"Keys": keys}))
        }
        "key/rm" => {
            let mut removed = Vec::new();
            for name in args.all("arg") {
                match node.keys.remove(name) {
                    Some(id) => removed.push(json!({"Name": name, "Id": id})),
                    None => {
                        return error(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            &format!("no key named {name} was found"),
                        );
                    }
                }
            }
            ok(json!({"Keys": removed}))
        }
        "key/rename" => {
            let [old, new] = args.all("arg")[..] else {
                return error(StatusCode::BAD_REQUEST, "two arguments required");
            };
            let Some(id) = node.keys.remove(old) else {
                return error(StatusCode::INTERNAL_SERVER_ERROR, "no key named old");
            };
            let overwrite = node.keys.insert(new.to_string(), id.clone()).is_some();
            ok(json!({"Was": old, "Now": new, "Id": id, "Overwrite": overwrite}))
        }
        "name/publish" => {
            let key = args.get("key").unwrap_or("self");
            match node.keys.get(key) {
                Some(id) => ok(json!({"Name": id, "Value": arg})),
                None => error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "no key by the given name was found",
                ),
            }
        }
        _ => error(StatusCode::NOT_FOUND, &format!("unknown command {cmd}")),
    }
}

/// Multipart `add`: one line per file (and one for the wrapping directory), pinned root last.
fn add(node: &mut Node, args: &Args, ct: &str, body: &[u8]) -> Answer {
    let Some(boundary) = ct.split("boundary=").nth(1) else {
        return error(StatusCode::BAD_REQUEST, "expected multipart/form-data");
    };
    let files = multipart(body, boundary.trim_matches('"'));
    if files.is_empty() {
        return error(StatusCode::BAD_REQUEST, "no file in the request");
    }
    let mut lines = Vec::new();
    let mut total = 0;
    let mut root = None;
    for (name, content) in &files {
        if args.flag("progress", false) {
            lines.push(json!({"Name": name, "Bytes": content.len()}));
        }
        let cid = cid_of(content);
        let size = content.len() as u64 + OVERHEAD;
        total += size;
        node.available
            .insert(cid.clone(), Bytes::copy_from_slice(content));
        lines.push(json!({"Name": name, "Hash": cid, "Size": size.to_string()}));
        root = Some(cid);
    }
    if args.flag("wrap-with-directory", false) {
        let listing: Vec<u8> = files.iter().flat_map(|(n, _)| n.bytes()).collect();
        let cid = cid_of(&listing);
        node.available.insert(cid.clone(), Bytes::from(listing));
        lines.push(json!({"Name": "", "Hash": cid, "Size": (total + OVERHEAD).to_string()}));
        root = Some(cid);
    }
    if args.flag("pin", true) && !args.flag("only-hash", false) {
        node.pins.insert(root.expect("a file"), true);
    }
    let chunks = lines
        .into_iter()
        .map(|l| Bytes::from(format!("{l}\n")))
        .collect();
    let mut resp = stream(chunks);
    resp.headers_mut()
        .insert("x-chunked-output", "1".parse().unwrap());
    resp.headers_mut()
        .insert("trailer", "X-Stream-Error".parse().unwrap());
    resp
}

/// The `(filename, content)` of each file part of a multipart body.
fn multipart(body: &[u8], boundary: &str) -> Vec<(String, Vec<u8>)> {
    let delimiter = format!("--{boundary}");
    let text = body;
    let mut parts = Vec::new();
    let mut rest = text;
    while let Some(start) = find(rest, delimiter.as_bytes()) {
        rest = &rest[start + delimiter.len()..];
        if rest.starts_with(b"--") {
            break;
        }
        let Some(head_end) = find(rest, b"\r\n\r\n") else {
            break;
        };
        let head = String::from_utf8_lossy(&rest[..head_end]).to_string();
        let content_start = head_end + 4;
        let Some(len) = find(
            &rest[content_start..],
            format!("\r\n{delimiter}").as_bytes(),
        ) else {
            break;
        };
        let content = rest[content_start..content_start + len].to_vec();
        let name = head
            .split("filename=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .unwrap_or("")
            .to_string();
        if !head.contains("application/x-directory") {
            parts.push((name, content));
        }
        rest = &rest[content_start + len..];
    }
    parts
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn ok(value: Value) -> Answer {
    let mut resp = Response::new(Full::new(Bytes::from(format!("{value}\n"))).boxed());
    resp.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    resp
}

/// A chunked answer (no content-length), as kubo streams its output.
fn stream(chunks: Vec<Bytes>) -> Answer {
    let frames = futures_util::stream::iter(
        chunks
            .into_iter()
            .map(|c| Ok::<_, Infallible>(hyper::body::Frame::data(c))),
    );
    let mut resp = Response::new(http_body_util::StreamBody::new(frames).boxed());
    resp.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    resp
}

fn not_found(cid: &str) -> Answer {
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        &format!("block was not found locally (offline): ipld: could not find {cid}"),
    )
}

fn error(status: StatusCode, message: &str) -> Answer {
    let mut resp = ok(json!({"Message": message, "Code": 0, "Type": "error"}));
    *resp.status_mut() = status;
    resp
}
