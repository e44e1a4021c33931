//! Authentication, shared by the proxy and the management surfaces that take key credentials
//! (the Gateway3 account API): find the caller's credential in the request headers, then the
//! key it belongs to. What the key may do is `domain::policy`'s, after this.

pub mod credential;

use std::sync::Arc;

use http::HeaderMap;

use credential::Extracted;
pub use credential::{CredentialSource, Presented};

use crate::domain::decision::{Denial, DenyCode};
use crate::domain::secret::{DigestMemo, KeyHasher};
use crate::index::{KeyEntry, KeyIndex};

/// The key behind the credential in `headers`, looked for in `sources`: `missing_credentials`
/// without one, `invalid_key` for a malformed one or one that matches no key (the two are not
/// told apart, so a caller learns nothing about which keys exist).
pub fn authenticate(
    headers: &HeaderMap,
    sources: &[CredentialSource],
    index: &KeyIndex,
    hasher: &KeyHasher,
    memo: Option<&DigestMemo>,
) -> Result<Arc<KeyEntry>, Denial> {
    let presented = match credential::extract(headers, sources) {
        Extracted::Found(presented) => presented,
        Extracted::Missing => return Err(Denial::new(DenyCode::MissingCredentials)),
        Extracted::Malformed => return Err(Denial::new(DenyCode::InvalidKey)),
    };
    lookup(index, &presented, hasher, memo).ok_or_else(|| Denial::new(DenyCode::InvalidKey))
}

/// The key a presented credential belongs to (secrets compared in constant time).
pub fn lookup(
    index: &KeyIndex,
    presented: &Presented<'_>,
    hasher: &KeyHasher,
    memo: Option<&DigestMemo>,
) -> Option<Arc<KeyEntry>> {
    match presented {
        Presented::Token(token) => index.lookup_token(token.as_bytes(), hasher, memo),
        Presented::Pair { access_key, secret } => {
            index.lookup_pair(access_key, secret.as_bytes(), hasher, memo)
        }
    }
}
