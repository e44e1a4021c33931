//! Credential extraction never panics on any header value, in any of the places it looks.
#![no_main]

use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use tollgate::auth::credential::{self, CredentialSource};

fuzz_target!(|data: &[u8]| {
    let Some((&which, value)) = data.split_first() else {
        return;
    };
    let Ok(value) = HeaderValue::from_bytes(value) else {
        return;
    };
    let names = ["authorization", "x-api-key", "api-key", "x-goog-api-key"];
    let name = HeaderName::from_static(names[usize::from(which) % names.len()]);
    let mut headers = HeaderMap::new();
    headers.insert(name, value.clone());
    if which & 0x80 != 0 {
        // The same value twice: duplicates must be handled, not picked at random.
        headers.append(HeaderName::from_static("authorization"), value);
    }
    let _ = credential::extract(&headers, &CredentialSource::ALL);
    credential::strip(&mut headers, &CredentialSource::ALL);
});
