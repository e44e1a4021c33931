//! Bodies stream through the gateway both ways without being buffered: 100 MiB up and 100 MiB
//! down while the process's resident memory stays flat. Alone in its own test binary so no
//! other test's allocations disturb the measurement.

mod common;

use common::TestGateway;
use futures_util::StreamExt;

const MIB: u64 = 1024 * 1024;
const TOTAL: u64 = 100 * MIB;

/// Resident set size of this process, in bytes.
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("statm");
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_mib_each_way_with_flat_memory() {
    let t = TestGateway::with(common::Options {
        extra: "[limits]\nmax_request_body = \"1GiB\"\n".into(),
        ..Default::default()
    })
    .await;
    let (_, key) = t.rw_key().await;
    // Warm up connections and allocator pools first.
    let resp = t
        .client
        .get(format!("{}/warm", t.proxy))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let before = rss();

    // Upload: 1600 chunks of 64 KiB produced lazily.
    let chunk = bytes::Bytes::from(vec![7u8; 64 * 1024]);
    let chunks = (TOTAL / chunk.len() as u64) as usize;
    let stream = futures_util::stream::repeat(chunk)
        .take(chunks)
        .map(Ok::<_, std::io::Error>);
    let resp = t
        .client
        .post(format!("{}/upload", t.proxy))
        .bearer_auth(&key)
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let echo: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(echo["body_bytes"], TOTAL, "every byte reached the upstream");
    let after_upload = rss();

    // Download: the echo upstream streams 100 MiB.
    let resp = t
        .client
        .get(format!("{}/download?echo_bytes={TOTAL}", t.proxy))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut received = 0u64;
    let mut body = resp.bytes_stream();
    while let Some(chunk) = body.next().await {
        received += chunk.unwrap().len() as u64;
    }
    assert_eq!(received, TOTAL);
    let after_download = rss();

    eprintln!(
        "rss MiB: before {} upload {} download {}",
        before / MIB,
        after_upload / MIB,
        after_download / MIB
    );
    // Buffering either body would add >= 100 MiB; allow 32 MiB of allocator noise.
    let limit = before + 32 * MIB;
    assert!(
        after_upload < limit && after_download < limit,
        "RSS grew: before {} MiB, after upload {} MiB, after download {} MiB",
        before / MIB,
        after_upload / MIB,
        after_download / MIB
    );
}
