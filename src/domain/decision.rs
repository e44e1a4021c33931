//! The outcome of admission: allow, or a denial with a stable machine-readable code.
//!
//! A denial is a normal outcome, not an error; the proxy turns it into the documented JSON body
//! `{"error":{"code":..,"message":..}}` in exactly one place (`proxy::respond`).

use std::borrow::Cow;

/// Stable rejection codes of the data plane, each with its HTTP status (see DESIGN.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DenyCode {
    MissingCredentials,
    InvalidKey,
    KeyDisabled,
    KeyRevoked,
    KeyExpired,
    IpNotAllowed,
    PermissionDenied,
    ModelNotAllowed,
    QuotaExceeded,
    RateLimited,
    ConcurrencyLimit,
    InsufficientBalance,
    BadRequest,
    PayloadTooLarge,
    /// The request body came too slowly (`limits.body_min_rate`).
    RequestTimeout,
    UpstreamUnavailable,
    UpstreamTimeout,
}

impl DenyCode {
    /// Every code, for metrics pre-registration and tests.
    pub const ALL: [DenyCode; 17] = [
        DenyCode::MissingCredentials,
        DenyCode::InvalidKey,
        DenyCode::KeyDisabled,
        DenyCode::KeyRevoked,
        DenyCode::KeyExpired,
        DenyCode::IpNotAllowed,
        DenyCode::PermissionDenied,
        DenyCode::ModelNotAllowed,
        DenyCode::QuotaExceeded,
        DenyCode::RateLimited,
        DenyCode::ConcurrencyLimit,
        DenyCode::InsufficientBalance,
        DenyCode::BadRequest,
        DenyCode::PayloadTooLarge,
        DenyCode::RequestTimeout,
        DenyCode::UpstreamUnavailable,
        DenyCode::UpstreamTimeout,
    ];

    /// The `code` string of the JSON error body.
    pub fn as_str(self) -> &'static str {
        match self {
            DenyCode::MissingCredentials => "missing_credentials",
            DenyCode::InvalidKey => "invalid_key",
            DenyCode::KeyDisabled => "key_disabled",
            DenyCode::KeyRevoked => "key_revoked",
            DenyCode::KeyExpired => "key_expired",
            DenyCode::IpNotAllowed => "ip_not_allowed",
            DenyCode::PermissionDenied => "permission_denied",
            DenyCode::ModelNotAllowed => "model_not_allowed",
            DenyCode::QuotaExceeded => "quota_exceeded",
            DenyCode::RateLimited => "rate_limited",
            DenyCode::ConcurrencyLimit => "concurrency_limit",
            DenyCode::InsufficientBalance => "insufficient_balance",
            DenyCode::BadRequest => "bad_request",
            DenyCode::PayloadTooLarge => "payload_too_large",
            DenyCode::RequestTimeout => "request_timeout",
            // Both upstream failures share one public code; the status tells them apart.
            DenyCode::UpstreamUnavailable | DenyCode::UpstreamTimeout => "upstream_unavailable",
        }
    }

    /// The HTTP status code sent with this denial.
    pub fn status(self) -> u16 {
        match self {
            DenyCode::MissingCredentials | DenyCode::InvalidKey => 401,
            DenyCode::KeyDisabled
            | DenyCode::KeyRevoked
            | DenyCode::KeyExpired
            | DenyCode::IpNotAllowed
            | DenyCode::PermissionDenied
            | DenyCode::ModelNotAllowed => 403,
            DenyCode::QuotaExceeded | DenyCode::RateLimited | DenyCode::ConcurrencyLimit => 429,
            DenyCode::InsufficientBalance => 402,
            DenyCode::BadRequest => 400,
            DenyCode::PayloadTooLarge => 413,
            DenyCode::RequestTimeout => 408,
            DenyCode::UpstreamUnavailable => 502,
            DenyCode::UpstreamTimeout => 504,
        }
    }

    /// The default human-readable message for this code.
    pub fn default_message(self) -> &'static str {
        match self {
            DenyCode::MissingCredentials => "no API key was presented",
            DenyCode::InvalidKey => "the API key is not valid",
            DenyCode::KeyDisabled => "the API key is disabled",
            DenyCode::KeyRevoked => "the API key has been revoked",
            DenyCode::KeyExpired => "the API key has expired",
            DenyCode::IpNotAllowed => "the client IP address is not on the key's allow-list",
            DenyCode::PermissionDenied => "the API key lacks the permission this route needs",
            DenyCode::ModelNotAllowed => "the model is not available to this API key",
            DenyCode::QuotaExceeded => "a usage quota is exhausted",
            DenyCode::RateLimited => "too many requests",
            DenyCode::ConcurrencyLimit => "too many concurrent requests for this key",
            DenyCode::InsufficientBalance => "the partner's prepaid balance is exhausted",
            DenyCode::BadRequest => "the request is malformed",
            DenyCode::PayloadTooLarge => "the request body is larger than allowed",
            DenyCode::RequestTimeout => "the request body arrived too slowly",
            DenyCode::UpstreamUnavailable => "the upstream could not be reached",
            DenyCode::UpstreamTimeout => "the upstream did not answer in time",
        }
    }
}

/// The quotas a `quota_exceeded` denial names (in its message and as the `quota` label of
/// `tollgate_quota_denials_total`): the key's cost limits and the plan's limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Quota {
    DailyCost,
    TotalCost,
    Ingress,
    Egress,
    PinnedCount,
    PinnedBytes,
    Ipns,
}

impl Quota {
    pub const ALL: [Quota; 7] = [
        Quota::DailyCost,
        Quota::TotalCost,
        Quota::Ingress,
        Quota::Egress,
        Quota::PinnedCount,
        Quota::PinnedBytes,
        Quota::Ipns,
    ];

    /// The plan field that sets it.
    pub fn as_str(self) -> &'static str {
        match self {
            Quota::DailyCost => "daily_cost_limit_usd",
            Quota::TotalCost => "total_cost_limit_usd",
            Quota::Ingress => "ingress_limit",
            Quota::Egress => "egress_limit",
            Quota::PinnedCount => "pinned_count_limit",
            Quota::PinnedBytes => "pinned_bytes_limit",
            Quota::Ipns => "ipns_limit",
        }
    }
}

/// The longest `Retry-After`, in seconds, after which a refusal still counts as one a retry
/// may soon get past ([`Denial::retry_soon`]).
pub const RETRY_SOON_SECS: u64 = 60;

/// A refused request: the code, a message safe to show the caller, and an optional retry hint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Denial {
    pub code: DenyCode,
    pub message: Cow<'static, str>,
    /// Seconds after which retrying may succeed (sent as `Retry-After`).
    pub retry_after: Option<u64>,
    /// Which quota refused the request (`quota_exceeded`), for metrics.
    pub quota: Option<Quota>,
}

impl Denial {
    /// Whether a money limit (a key's cost limit, a partner's balance) refused: in lease mode a
    /// bigger budget lease may admit the request.
    pub fn is_money(&self) -> bool {
        self.code == DenyCode::InsufficientBalance
            || matches!(self.quota, Some(Quota::DailyCost | Quota::TotalCost))
    }

    /// Whether an automatic retry could succeed soon. `false` for denials that only a change
    /// of key or request, a top-up or the end of a quota window can lift: sent as
    /// `x-should-retry: false`, which the official OpenAI and Anthropic SDKs obey, so they
    /// give up at once instead of retrying (or sleeping through a `Retry-After` of hours).
    /// Short-lived refusals (rate, concurrency, a quota or budget back within a minute) keep
    /// their honest `Retry-After`; timeouts and upstream failures are left to the client.
    pub fn retry_soon(&self) -> bool {
        use DenyCode::*;
        match self.code {
            RateLimited | ConcurrencyLimit | RequestTimeout | UpstreamUnavailable
            | UpstreamTimeout => true,
            QuotaExceeded | InsufficientBalance => {
                self.retry_after.is_some_and(|secs| secs <= RETRY_SOON_SECS)
            }
            MissingCredentials | InvalidKey | KeyDisabled | KeyRevoked | KeyExpired
            | IpNotAllowed | PermissionDenied | ModelNotAllowed | BadRequest | PayloadTooLarge => {
                false
            }
        }
    }

    /// A denial with the code's default message.
    pub fn new(code: DenyCode) -> Self {
        Denial {
            code,
            message: Cow::Borrowed(code.default_message()),
            retry_after: None,
            quota: None,
        }
    }

    /// A denial with a specific message.
    pub fn with_message(code: DenyCode, message: impl Into<Cow<'static, str>>) -> Self {
        Denial {
            code,
            message: message.into(),
            retry_after: None,
            quota: None,
        }
    }

    /// Adds a `Retry-After` hint in seconds.
    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }
}

/// The result of a check: go on, or refuse.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny(Denial),
}

impl Decision {
    /// Shorthand for a denial with the code's default message.
    pub fn deny(code: DenyCode) -> Self {
        Decision::Deny(Denial::new(code))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_the_documented_status() {
        let table = [
            ("missing_credentials", 401),
            ("invalid_key", 401),
            ("key_disabled", 403),
            ("key_revoked", 403),
            ("key_expired", 403),
            ("ip_not_allowed", 403),
            ("permission_denied", 403),
            ("model_not_allowed", 403),
            ("quota_exceeded", 429),
            ("rate_limited", 429),
            ("concurrency_limit", 429),
            ("insufficient_balance", 402),
            ("bad_request", 400),
            ("payload_too_large", 413),
            ("request_timeout", 408),
            ("upstream_unavailable", 502),
            ("upstream_unavailable", 504),
        ];
        assert_eq!(DenyCode::ALL.len(), table.len());
        for (code, (name, status)) in DenyCode::ALL.into_iter().zip(table) {
            assert_eq!(code.as_str(), name);
            assert_eq!(code.status(), status, "{name}");
        }
    }
}
