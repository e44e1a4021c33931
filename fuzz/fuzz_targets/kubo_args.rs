//! The kubo RPC query and command parsers, and CID handling, never panic.
#![no_main]

use http::Method;
use libfuzzer_sys::fuzz_target;
use tollgate::proxy::kubo::args::{self, Query};
use tollgate::proxy::kubo::command;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // `<command>?<query>`: the command path picks the parser, the query feeds it.
    let (path, query) = text.split_once('?').unwrap_or((text, ""));
    let mut parsed = Query::parse(Some(query));
    let path = format!("/api/v0/{path}");
    let _ = command::parse(&Method::POST, &path, &mut parsed);
    let _ = parsed.cids();
    let _ = args::cid(query);
});
