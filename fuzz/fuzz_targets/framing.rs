//! The HTTP/1 framing watch never panics on any byte stream, and where it stops does not depend
//! on how the stream is split into reads.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate::proxy::framing::{Stop, Watch};

/// Feeds `data` in pieces cut at `cuts`, returning the stop's position in the whole stream.
fn run(data: &[u8], cuts: &[usize]) -> Result<(), Stop> {
    let mut watch = Watch::new(64, 256);
    let mut start = 0;
    for &end in cuts.iter().chain(std::iter::once(&data.len())) {
        let end = end.clamp(start, data.len());
        watch.feed(&data[start..end]).map_err(|stop| match stop {
            Stop::TooLarge { at } => Stop::TooLarge { at: at + start },
            Stop::Unframed { at } => Stop::Unframed { at: at + start },
        })?;
        start = end;
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let Some((&seed, stream)) = data.split_first() else {
        return;
    };
    let whole = run(stream, &[]);
    // Cut every `seed % 7 + 1` bytes: a too-large stop is found at the same byte however the
    // stream is read (an unframed one may be found once the head is complete, as in hyper).
    let step = usize::from(seed % 7) + 1;
    let cuts: Vec<usize> = (step..stream.len()).step_by(step).collect();
    let split = run(stream, &cuts);
    if let (Err(Stop::TooLarge { at: a }), Err(Stop::TooLarge { at: b })) = (whole, split) {
        assert_eq!(a, b, "{stream:?}");
    }
});
