//! The data plane: path normalisation, credential extraction, client IP, routes, profiles,
//! forwarding, TLS termination and the accept loop.

pub mod client_ip;
pub mod codec;
pub mod framing;
pub mod h1;
pub mod handler;
pub mod headers;
pub mod inbound;
pub mod kubo;
pub mod listener;
pub mod llm;
pub mod path;
pub mod phases;
pub mod profile;
pub mod request_body;
pub mod respond;
pub mod routes;
pub mod server;
pub mod stall;
pub mod tls;
pub mod upstream;

/// Error type of bodies on the data plane.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body type of forwarded requests and of responses (upstream stream or JSON denial).
pub type ProxyBody = http_body_util::combinators::BoxBody<bytes::Bytes, BoxError>;
