//! Tollgate's HTTP/1.1 codec, which the own server (`proxy::h1`) runs on: request heads
//! (`head`, hyper's rules and refusals), request bodies read from the socket on demand
//! (`body`, the framing watch's grammar and chunk-size check) and responses written with
//! `writev` (`write`, hyper's framing rules). It knows nothing of the pipeline.

pub mod body;
pub mod date;
pub mod head;
pub mod write;
