//! Path normalisation never panics, and what it returns normalises to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate::proxy::path::normalize;

fuzz_target!(|data: &[u8]| {
    let Ok(path) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(once) = normalize(path) {
        assert_eq!(normalize(&once).as_deref(), Ok(once.as_ref()), "{path:?}");
    }
});
