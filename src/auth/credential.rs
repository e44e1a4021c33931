//! Finding the caller's credential in request headers, and removing it before forwarding.
//!
//! Sources are checked in the fixed order of [`CredentialSource::ALL`]; a profile only chooses
//! which of them are enabled. Credentials never appear in `Debug` output or error messages.

use std::borrow::Cow;
use std::fmt;

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use http::header::{AUTHORIZATION, HeaderMap, HeaderName, HeaderValue};
use uuid::Uuid;

/// Anthropic-style `x-api-key`.
const X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");
/// Partoo-style `x-APIKey` (header names are case-insensitive).
const X_APIKEY: HeaderName = HeaderName::from_static("x-apikey");

/// Standard base64 that accepts the padding or its absence.
const BASIC_BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Where a credential may be presented.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CredentialSource {
    /// `Authorization: Bearer <key>`.
    Bearer,
    /// `x-api-key: <key>`.
    XApiKey,
    /// `x-APIKey: <key>`.
    XApiKeyPartoo,
    /// `Authorization: Basic base64(access_key:access_secret)`.
    Basic,
}

impl CredentialSource {
    /// Every source, in the order they are checked.
    pub const ALL: [CredentialSource; 4] = [
        CredentialSource::Bearer,
        CredentialSource::XApiKey,
        CredentialSource::XApiKeyPartoo,
        CredentialSource::Basic,
    ];

    /// The header this source reads.
    pub fn header(self) -> HeaderName {
        match self {
            CredentialSource::Bearer | CredentialSource::Basic => AUTHORIZATION,
            CredentialSource::XApiKey => X_API_KEY,
            CredentialSource::XApiKeyPartoo => X_APIKEY,
        }
    }
}

/// A credential as the caller presented it.
#[derive(PartialEq, Eq)]
pub enum Presented<'a> {
    /// A single token (e.g. `cr_...`): looked up by its digest.
    Token(Cow<'a, str>),
    /// A Gateway3 pair: public access key plus secret.
    Pair { access_key: Uuid, secret: String },
}

/// Redacts the secret parts so a credential logged by mistake leaks nothing.
impl fmt::Debug for Presented<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Presented::Token(_) => f.write_str("Token(<redacted>)"),
            Presented::Pair { access_key, .. } => f
                .debug_struct("Pair")
                .field("access_key", access_key)
                .field("secret", &"<redacted>")
                .finish(),
        }
    }
}

/// The outcome of looking for a credential.
#[derive(Debug, PartialEq, Eq)]
pub enum Extracted<'a> {
    /// No enabled source holds a credential.
    Missing,
    /// An enabled source holds something that is not a usable credential (or holds it twice).
    Malformed,
    /// The first credential found.
    Found(Presented<'a>),
}

/// Looks through the enabled sources in order and returns the first credential found.
///
/// The order is always that of [`CredentialSource::ALL`], whatever the order of `sources`. The
/// first source that finds a credential or something malformed decides.
pub fn extract<'a>(headers: &'a HeaderMap, sources: &[CredentialSource]) -> Extracted<'a> {
    let enabled = CredentialSource::ALL
        .into_iter()
        .filter(|s| sources.contains(s));
    for source in enabled {
        let found = match source {
            CredentialSource::Bearer => from_authorization(headers, Scheme::Bearer),
            CredentialSource::Basic => from_authorization(headers, Scheme::Basic),
            CredentialSource::XApiKey | CredentialSource::XApiKeyPartoo => {
                from_plain_header(headers, &source.header())
            }
        };
        if !matches!(found, Extracted::Missing) {
            return found;
        }
    }
    Extracted::Missing
}

/// Removes every header any enabled source reads (all `authorization`, `x-api-key`, `x-apikey`
/// values), so the caller's credential never reaches the upstream.
pub fn strip(headers: &mut HeaderMap, sources: &[CredentialSource]) {
    for source in sources {
        headers.remove(source.header());
    }
}

/// The two `Authorization` schemes the gateway understands.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Scheme {
    Bearer,
    Basic,
}

/// The `Authorization` header as seen by the source for `wanted`.
///
/// The other scheme is `Missing` here: its own source reads it if enabled (Bearer is checked
/// before Basic, so Basic only sees a Bearer when Bearer is disabled), and a disabled source's
/// credential is no credential at all. An unknown scheme is malformed.
fn from_authorization(headers: &HeaderMap, wanted: Scheme) -> Extracted<'_> {
    let value = match single(headers, &AUTHORIZATION) {
        Single::Absent => return Extracted::Missing,
        Single::Many => return Extracted::Malformed,
        Single::One(value) => value,
    };
    let Ok(text) = value.to_str() else {
        return Extracted::Malformed;
    };
    let text = text.trim();
    let (scheme, rest) = text.split_once([' ', '\t']).unwrap_or((text, ""));
    let scheme = if scheme.eq_ignore_ascii_case("bearer") {
        Scheme::Bearer
    } else if scheme.eq_ignore_ascii_case("basic") {
        Scheme::Basic
    } else {
        return Extracted::Malformed;
    };
    match (scheme, wanted) {
        (Scheme::Bearer, Scheme::Bearer) => token(rest),
        (Scheme::Basic, Scheme::Basic) => basic(rest),
        _ => Extracted::Missing,
    }
}

/// A header holding the bare token.
fn from_plain_header<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Extracted<'a> {
    match single(headers, name) {
        Single::Absent => Extracted::Missing,
        Single::Many => Extracted::Malformed,
        Single::One(value) => match value.to_str() {
            Ok(text) => token(text),
            Err(_) => Extracted::Malformed,
        },
    }
}

/// A trimmed, non-empty token of visible ASCII without inner whitespace.
fn token(text: &str) -> Extracted<'_> {
    let text = text.trim();
    if is_token(text) {
        Extracted::Found(Presented::Token(Cow::Borrowed(text)))
    } else {
        Extracted::Malformed
    }
}

/// Decodes `base64(user:pass)`: a UUID user makes a pair, otherwise the password is the token.
fn basic(encoded: &str) -> Extracted<'static> {
    let Ok(bytes) = BASIC_BASE64.decode(encoded.trim()) else {
        return Extracted::Malformed;
    };
    let Ok(decoded) = String::from_utf8(bytes) else {
        return Extracted::Malformed;
    };
    let Some((user, pass)) = decoded.split_once(':') else {
        return Extracted::Malformed;
    };
    if !is_token(pass) {
        return Extracted::Malformed;
    }
    let presented = match Uuid::parse_str(user) {
        Ok(access_key) => Presented::Pair {
            access_key,
            secret: pass.to_string(),
        },
        Err(_) => Presented::Token(Cow::Owned(pass.to_string())),
    };
    Extracted::Found(presented)
}

/// Non-empty visible ASCII, no spaces.
fn is_token(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_graphic())
}

/// A header that must appear at most once.
enum Single<'a> {
    Absent,
    Many,
    One(&'a HeaderValue),
}

/// Whether `name` is absent, present once, or (ambiguously) present several times.
fn single<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Single<'a> {
    let mut values = headers.get_all(name).iter();
    match (values.next(), values.next()) {
        (None, _) => Single::Absent,
        (Some(value), None) => Single::One(value),
        (Some(_), Some(_)) => Single::Many,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};

    use CredentialSource::*;

    const ALL: [CredentialSource; 4] = CredentialSource::ALL;

    const KEY: &str = "cr_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789-_abcde";
    const UUID: &str = "6f1c2b9e-2d7a-4c1e-9b3a-0f6d7e8a9b10";

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    fn token_of(s: &str) -> Extracted<'_> {
        Extracted::Found(Presented::Token(Cow::Borrowed(s)))
    }

    fn basic_header(user_pass: &str) -> String {
        format!("Basic {}", STANDARD.encode(user_pass))
    }

    fn pair(secret: &str) -> Extracted<'static> {
        Extracted::Found(Presented::Pair {
            access_key: Uuid::parse_str(UUID).unwrap(),
            secret: secret.to_string(),
        })
    }

    #[test]
    fn bearer_token() {
        let h = headers(&[("authorization", &format!("Bearer {KEY}"))]);
        assert_eq!(extract(&h, &ALL), token_of(KEY));
        let h = headers(&[("authorization", &format!("  bEaReR   {KEY}  "))]);
        assert_eq!(extract(&h, &ALL), token_of(KEY));
        let h = headers(&[("authorization", &format!("Bearer\t{KEY}"))]);
        assert_eq!(extract(&h, &ALL), token_of(KEY));
    }

    #[test]
    fn bearer_token_is_borrowed() {
        let h = headers(&[("authorization", &format!("Bearer {KEY}"))]);
        assert!(matches!(
            extract(&h, &ALL),
            Extracted::Found(Presented::Token(Cow::Borrowed(_)))
        ));
    }

    #[test]
    fn api_key_headers() {
        let h = headers(&[("x-api-key", KEY)]);
        assert_eq!(extract(&h, &ALL), token_of(KEY));
        let h = headers(&[("X-APIKey", &format!(" {KEY} "))]);
        assert_eq!(extract(&h, &ALL), token_of(KEY));
    }

    #[test]
    fn nothing_is_missing() {
        let h = headers(&[("accept", "*/*"), ("x-api-keys", KEY)]);
        assert_eq!(extract(&h, &ALL), Extracted::Missing);
        assert_eq!(extract(&HeaderMap::new(), &ALL), Extracted::Missing);
        let h = headers(&[("authorization", &format!("Bearer {KEY}"))]);
        assert_eq!(extract(&h, &[]), Extracted::Missing);
    }

    #[test]
    fn order_of_sources() {
        let h = headers(&[
            ("x-apikey", "partoo"),
            ("x-api-key", "anthropic"),
            ("authorization", "Bearer bearer"),
        ]);
        assert_eq!(extract(&h, &ALL), token_of("bearer"));
        // The order of the slice does not matter, only which sources it enables.
        assert_eq!(extract(&h, &[XApiKey, Bearer]), token_of("bearer"));
        assert_eq!(
            extract(&h, &[XApiKeyPartoo, XApiKey]),
            token_of("anthropic")
        );
        assert_eq!(extract(&h, &[XApiKeyPartoo, Basic]), token_of("partoo"));

        let h = headers(&[
            ("x-api-key", "anthropic"),
            ("authorization", &basic_header("u:basic")),
        ]);
        assert_eq!(extract(&h, &ALL), token_of("anthropic"));
        assert_eq!(extract(&h, &[Basic]), token_of("basic"));
    }

    #[test]
    fn disabled_sources_are_ignored() {
        let h = headers(&[("x-api-key", KEY)]);
        assert_eq!(
            extract(&h, &[Bearer, XApiKeyPartoo, Basic]),
            Extracted::Missing
        );
        let h = headers(&[("x-apikey", KEY)]);
        assert_eq!(extract(&h, &[Bearer, XApiKey, Basic]), Extracted::Missing);
        // Malformed input in a disabled source is not looked at.
        let h = headers(&[("x-api-key", ""), ("x-apikey", KEY)]);
        assert_eq!(extract(&h, &[XApiKeyPartoo]), token_of(KEY));
    }

    #[test]
    fn authorization_of_a_disabled_scheme_is_skipped() {
        let h = headers(&[("authorization", &format!("Bearer {KEY}"))]);
        assert_eq!(extract(&h, &[Basic]), Extracted::Missing);
        assert_eq!(extract(&h, &[Basic, XApiKey]), Extracted::Missing);
        let h = headers(&[("authorization", "Bearer x"), ("x-api-key", KEY)]);
        assert_eq!(extract(&h, &[XApiKey, Basic]), token_of(KEY));

        let h = headers(&[("authorization", &basic_header(&format!("u:{KEY}")))]);
        assert_eq!(extract(&h, &[Bearer]), Extracted::Missing);
        let h = headers(&[("authorization", &basic_header("u:p")), ("x-api-key", KEY)]);
        assert_eq!(extract(&h, &[Bearer, XApiKey]), token_of(KEY));
    }

    #[test]
    fn unknown_scheme_is_malformed() {
        for value in ["Digest abc", "Token abc", KEY, "Bearerx abc"] {
            let h = headers(&[("authorization", value), ("x-api-key", KEY)]);
            assert_eq!(extract(&h, &ALL), Extracted::Malformed, "{value:?}");
            assert_eq!(extract(&h, &[Basic]), Extracted::Malformed, "{value:?}");
            // Not read at all when neither scheme is enabled.
            assert_eq!(extract(&h, &[XApiKey]), token_of(KEY), "{value:?}");
        }
    }

    #[test]
    fn empty_or_spaced_tokens_are_malformed() {
        for value in [
            "Bearer",
            "Bearer ",
            "Bearer    ",
            "Bearer a b",
            "Basic",
            "Basic  ",
            "",
        ] {
            let h = headers(&[("authorization", value)]);
            assert_eq!(extract(&h, &ALL), Extracted::Malformed, "{value:?}");
        }
        for value in ["", "   ", "a b"] {
            let h = headers(&[("x-api-key", value)]);
            assert_eq!(extract(&h, &ALL), Extracted::Malformed, "{value:?}");
        }
    }

    #[test]
    fn non_visible_ascii_is_malformed() {
        let mut h = HeaderMap::new();
        h.insert(
            AUTHORIZATION,
            HeaderValue::from_bytes(b"Bearer caf\xc3\xa9").unwrap(),
        );
        assert_eq!(extract(&h, &ALL), Extracted::Malformed);
        let mut h = HeaderMap::new();
        h.insert(X_APIKEY, HeaderValue::from_bytes(b"\xffkey").unwrap());
        assert_eq!(extract(&h, &ALL), Extracted::Malformed);
    }

    #[test]
    fn repeated_headers_are_malformed() {
        let h = headers(&[("authorization", "Bearer a"), ("authorization", "Bearer a")]);
        assert_eq!(extract(&h, &ALL), Extracted::Malformed);
        assert_eq!(extract(&h, &[Basic]), Extracted::Malformed);
        let h = headers(&[("x-api-key", "a"), ("x-api-key", "b")]);
        assert_eq!(extract(&h, &ALL), Extracted::Malformed);
        let h = headers(&[("x-APIKey", "a"), ("X-apikey", "b")]);
        assert_eq!(extract(&h, &ALL), Extracted::Malformed);
    }

    #[test]
    fn basic_with_uuid_user_is_a_pair() {
        let h = headers(&[("authorization", &basic_header(&format!("{UUID}:s3cret")))]);
        assert_eq!(extract(&h, &ALL), pair("s3cret"));
        // The password may itself contain ':'.
        let h = headers(&[("authorization", &basic_header(&format!("{UUID}:a:b")))]);
        assert_eq!(extract(&h, &ALL), pair("a:b"));
        // Padding is optional; the scheme is case-insensitive.
        let value = format!("bAsIc {}", STANDARD_NO_PAD.encode(format!("{UUID}:s3cret")));
        let h = headers(&[("authorization", &value)]);
        assert_eq!(extract(&h, &ALL), pair("s3cret"));
    }

    #[test]
    fn basic_with_other_user_carries_the_token_in_the_password() {
        let h = headers(&[("authorization", &basic_header(&format!("anything:{KEY}")))]);
        assert_eq!(extract(&h, &ALL), token_of(KEY));
        let h = headers(&[("authorization", &basic_header(&format!(":{KEY}")))]);
        assert_eq!(extract(&h, &ALL), token_of(KEY));
    }

    #[test]
    fn bad_basic_is_malformed() {
        let encoded = [
            basic_header(&format!("{UUID}:")),
            basic_header("anything:"),
            basic_header("no-colon"),
            basic_header("user:with space"),
            "Basic !!!notbase64".to_string(),
            format!("Basic {}", STANDARD.encode(b"user:\xff\xfe")),
        ];
        for value in &encoded {
            let h = headers(&[("authorization", value)]);
            assert_eq!(extract(&h, &ALL), Extracted::Malformed, "{value:?}");
        }
    }

    #[test]
    fn debug_output_redacts_secrets() {
        let h = headers(&[("authorization", &format!("Bearer {KEY}"))]);
        let shown = format!("{:?}", extract(&h, &ALL));
        assert!(!shown.contains(KEY), "{shown}");
        let shown = format!("{:?}", pair("s3cret"));
        assert!(!shown.contains("s3cret") && shown.contains(UUID), "{shown}");
    }

    #[test]
    fn strip_removes_every_credential_header() {
        let mut h = headers(&[
            ("authorization", "Bearer a"),
            ("authorization", "Basic b"),
            ("x-api-key", "c"),
            ("X-APIKey", "d"),
            ("accept", "application/json"),
            ("x-api-keys", "unrelated"),
            ("proxy-authorization", "kept for the hop-by-hop filter"),
        ]);
        strip(&mut h, &ALL);
        assert!(h.get(AUTHORIZATION).is_none());
        assert!(h.get(X_API_KEY).is_none());
        assert!(h.get(X_APIKEY).is_none());
        assert_eq!(h.len(), 3);
        assert_eq!(h["accept"], "application/json");
        assert_eq!(h["x-api-keys"], "unrelated");
    }

    #[test]
    fn strip_leaves_headers_of_disabled_sources() {
        let mut h = headers(&[
            ("authorization", "Bearer a"),
            ("x-api-key", "c"),
            ("x-apikey", "d"),
        ]);
        strip(&mut h, &[XApiKey]);
        assert_eq!(h["authorization"], "Bearer a");
        assert!(h.get(X_API_KEY).is_none());
        assert_eq!(h["x-apikey"], "d");
        // Either Authorization scheme strips the header.
        strip(&mut h, &[Basic]);
        assert!(h.get(AUTHORIZATION).is_none());
    }
}
