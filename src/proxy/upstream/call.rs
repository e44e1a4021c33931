//! The upstream as the pipeline and the profiles call it: one place for the upstream's own
//! credential, the response deadline, and what a failed exchange becomes (a denial, an
//! `upstream_errors` count, a log line).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, Uri};

use super::{SendError, UpstreamBody, UpstreamClient, classify};
use crate::domain::decision::{Denial, DenyCode};
use crate::metrics::{Metrics, UpstreamErrorKind};
use crate::proxy::ProxyBody;

/// The upstream client with its credential, deadline and failure accounting.
pub struct Upstream {
    client: UpstreamClient,
    /// The upstream's own credential, injected after the caller's is stripped.
    auth: Option<(HeaderName, HeaderValue)>,
    /// How long an answer may take once the request is sent in full.
    pub response_timeout: Duration,
    metrics: Arc<Metrics>,
}

impl Upstream {
    pub fn new(
        client: UpstreamClient,
        auth: Option<(HeaderName, HeaderValue)>,
        response_timeout: Duration,
        metrics: Arc<Metrics>,
    ) -> Self {
        Upstream {
            client,
            auth,
            response_timeout,
            metrics,
        }
    }

    /// The connection pool (for the idle-connection reaper).
    pub fn client(&self) -> &UpstreamClient {
        &self.client
    }

    /// The absolute upstream URI for a normalised path and the original query.
    pub fn uri_for(&self, path: &str, query: Option<&str>) -> Option<Uri> {
        self.client.uri_for(path, query)
    }

    /// The upstream URI for a client request (see `UpstreamClient::uri_for_request`).
    pub fn uri_for_request(&self, path: &str, original: &Uri) -> Option<Uri> {
        self.client.uri_for_request(path, original)
    }

    /// Sets the upstream's own credential on a request going there.
    pub fn authorize(&self, headers: &mut HeaderMap) {
        if let Some((name, value)) = &self.auth {
            headers.insert(name, value.clone());
        }
    }

    /// Sends a request (its credential already set); the caller applies the deadline.
    pub async fn send(&self, req: Request<ProxyBody>) -> Result<Response<UpstreamBody>, SendError> {
        self.client.send(req).await
    }

    /// The denial for an exchange that failed with `err`, counted and logged (`what` says
    /// whose exchange it was).
    pub fn failed(&self, err: &SendError, what: &dyn std::fmt::Display) -> Denial {
        let (denial, kind) = classify(err);
        self.metrics.record_upstream_error(kind);
        tracing::warn!(error = %err, %what, "upstream exchange failed");
        denial
    }

    /// The denial for an answer that did not come in time, counted.
    pub fn timed_out(&self) -> Denial {
        self.metrics
            .record_upstream_error(UpstreamErrorKind::Timeout);
        Denial::new(DenyCode::UpstreamTimeout)
    }

    /// The denial for an answer that broke off or could not be read, counted.
    pub fn broke_off(&self, message: &'static str) -> Denial {
        self.metrics.record_upstream_error(UpstreamErrorKind::Other);
        Denial::with_message(DenyCode::UpstreamUnavailable, message)
    }

    /// Runs a whole exchange within the response timeout (`upstream_timeout` beyond it).
    pub async fn within_timeout<T>(
        &self,
        exchange: impl Future<Output = Result<T, Denial>>,
    ) -> Result<T, Denial> {
        match tokio::time::timeout(self.response_timeout, exchange).await {
            Ok(answer) => answer,
            Err(_) => Err(self.timed_out()),
        }
    }
}
