//! The kubo profile end to end: a real gateway in front of a fake kubo node speaking the RPC
//! wire format (`tests/common/kubo.rs`), with Gateway3 accounts and keys made through the
//! partner API. Covers the pin ledger (sizes from the node, refcounting across accounts,
//! limits enforced before anything is pinned, restarts), multipart `add`, streamed `cat`, and
//! IPNS names per account.

mod common;

use std::time::Duration;

use common::kubo::{FakeKubo, OVERHEAD, cid_of, cid_v1_of};
use common::{Options, TestGateway, denial, eventually};
use serde_json::{Value, json};
use tollgate::store::postgres::scratch::{Schema, test_url};

/// Plan 1: 3 pins, 1000 pinned bytes, 2 IPNS names. Plan 2: no limits.
const PLANS: &str = r#"
[[plans]]
id = 1
name = "Small"
price_usd = "0.00"
pinned_count_limit = 3
pinned_bytes_limit = 1000
ipns_limit = 2

[[plans]]
id = 2
name = "Open"
price_usd = "0.00"
"#;

const ALL: [&str; 5] = ["admin", "read", "write", "pin", "unpin"];

struct Setup {
    t: TestGateway,
    kubo: FakeKubo,
}

/// A key pair (access_key, access_secret) of one account.
#[derive(Clone)]
struct Pair(String, String);

async fn setup() -> Setup {
    let kubo = FakeKubo::start().await;
    let t = TestGateway::with(Options {
        top: "default_plan = 1\n".into(),
        extra: PLANS.into(),
        upstream_url: Some(kubo.url.clone()),
        profile: Some("kubo"),
        ..Options::default()
    })
    .await;
    Setup { t, kubo }
}

/// Creates Gateway3 user `uuid` with one key holding every permission.
async fn account(t: &TestGateway, uuid: &str) -> Pair {
    let body = json!({"email": "u@example.com", "name": "U", "uuid": uuid});
    assert_eq!(partner(t, "/partner/user/create", body).await["code"], 200);
    let body = json!({"uuid": uuid, "name": "main", "permissions": ALL});
    let data = partner(t, "/partner/user/key", body).await["data"].clone();
    Pair(
        data["access_key"].as_str().expect("access_key").into(),
        data["access_secret"].as_str().expect("secret").into(),
    )
}

async fn partner(t: &TestGateway, path: &str, body: Value) -> Value {
    t.client
        .post(format!("{}/api/v0{path}", t.api))
        .bearer_auth(&t.partner_token)
        .json(&body)
        .send()
        .await
        .expect("partner call")
        .json()
        .await
        .expect("envelope")
}

async fn stats(t: &TestGateway, uuid: &str) -> Value {
    let resp = t
        .client
        .get(format!("{}/api/v0/partner/user/stats?uuid={uuid}", t.api))
        .bearer_auth(&t.partner_token)
        .send()
        .await
        .expect("stats");
    resp.json::<Value>().await.expect("json")["data"].clone()
}

/// `GET /api/v0/stats` of the account API (the one with `ipns`), with the account's key.
async fn own_stats(t: &TestGateway, pair: &Pair) -> Value {
    let resp = t
        .client
        .get(format!("{}/api/v0/stats", t.api))
        .basic_auth(&pair.0, Some(&pair.1))
        .send()
        .await
        .expect("stats");
    resp.json::<Value>().await.expect("json")["data"].clone()
}

/// `POST /api/v0/<cmd>?<query>` through the gateway.
async fn rpc(t: &TestGateway, pair: &Pair, cmd: &str, query: &str) -> reqwest::Response {
    t.client
        .post(format!("{}/api/v0/{cmd}?{query}", t.proxy))
        .basic_auth(&pair.0, Some(&pair.1))
        .send()
        .await
        .expect("rpc")
}

async fn ok_json(resp: reqwest::Response) -> Value {
    let status = resp.status();
    let text = resp.text().await.expect("body");
    assert_eq!(status, 200, "{text}");
    serde_json::from_str(text.lines().last().unwrap_or("")).expect("json")
}

/// A multipart `add` of one file with reqwest (Content-Length known).
async fn add(t: &TestGateway, pair: &Pair, query: &str, content: &[u8]) -> reqwest::Response {
    let part = reqwest::multipart::Part::bytes(content.to_vec()).file_name("hello.txt");
    let form = reqwest::multipart::Form::new().part("file", part);
    t.client
        .post(format!("{}/api/v0/add?{query}", t.proxy))
        .basic_auth(&pair.0, Some(&pair.1))
        .multipart(form)
        .send()
        .await
        .expect("add")
}

#[tokio::test]
async fn add_records_the_pinned_root_with_the_nodes_size() {
    let Setup { t, kubo } = setup().await;
    let alice = account(&t, "alice").await;
    let content = b"hello from tollgate".repeat(10);
    let json = ok_json(add(&t, &alice, "cid-version=0", &content).await).await;
    let cid = cid_of(&content);
    assert_eq!(json["Hash"], cid.as_str());
    assert!(kubo.pinned(&cid));
    // kubo never pins during the upload: Tollgate pins the root through the ledger after.
    let log = kubo.log();
    assert!(
        log.iter()
            .any(|l| l.starts_with("add?") && l.contains("pin=false")),
        "{log:?}"
    );
    assert!(
        log.iter()
            .any(|l| l == &format!("pin/add?arg={cid}&recursive=true")),
        "{log:?}"
    );
    let s = stats(&t, "alice").await;
    assert_eq!(s["pinned_count"], 1);
    assert_eq!(s["pinned_bytes"], content.len() as u64 + OVERHEAD);
    assert!(
        s["ingress"].as_u64().unwrap() > content.len() as u64,
        "upload metered: {s}"
    );
    // The account's pin/ls shows it; the unpinned add does not count.
    let json = ok_json(add(&t, &alice, "pin=false", b"not pinned at all").await).await;
    assert!(!kubo.pinned(json["Hash"].as_str().unwrap()));
    let ls = ok_json(rpc(&t, &alice, "pin/ls", "").await).await;
    assert_eq!(ls["Keys"].as_object().unwrap().len(), 1);
    assert_eq!(ls["Keys"][&cid]["Type"], "recursive");
    assert_eq!(stats(&t, "alice").await["pinned_count"], 1);
}

#[tokio::test]
async fn cat_streams_out_with_egress_metering() {
    let Setup { t, kubo } = setup().await;
    let alice = account(&t, "alice").await;
    let content = vec![b'z'; 300_000];
    let (cid, _) = kubo.provide(&content);
    let resp = rpc(&t, &alice, "cat", &format!("arg={cid}")).await;
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers().get("content-length").is_none(),
        "streamed, chunked"
    );
    assert_eq!(resp.bytes().await.unwrap().len(), content.len());
    let deadline = std::time::Duration::from_secs(5);
    let counted = common::eventually(deadline, || async {
        stats(&t, "alice").await["egress"].as_u64() == Some(content.len() as u64)
    })
    .await;
    assert!(counted, "egress {}", stats(&t, "alice").await["egress"]);
}

#[tokio::test]
async fn pins_are_refcounted_across_accounts() {
    let Setup { t, kubo } = setup().await;
    let (alice, bob) = (account(&t, "alice").await, account(&t, "bob").await);
    let (cid, size) = kubo.provide(b"shared content");
    for who in [&alice, &bob] {
        let json = ok_json(rpc(&t, who, "pin/add", &format!("arg={cid}")).await).await;
        assert_eq!(json, json!({"Pins": [cid]}));
    }
    assert_eq!(stats(&t, "bob").await["pinned_bytes"], size);
    // Alice lets go: Bob still holds it, so the node keeps its pin and never hears of it.
    let json = ok_json(rpc(&t, &alice, "pin/rm", &format!("arg={cid}")).await).await;
    assert_eq!(json, json!({"Pins": [cid]}));
    assert!(kubo.pinned(&cid));
    assert_eq!(kubo.calls("pin/rm?"), 0);
    assert_eq!(stats(&t, "alice").await["pinned_count"], 0);
    // Alice no longer holds it: refused, and the node is not asked.
    let resp = rpc(&t, &alice, "pin/rm", &format!("arg={cid}")).await;
    assert_eq!(denial(resp, 403).await, "permission_denied");
    assert!(kubo.pinned(&cid));
    // The last holder's pin/rm unpins it on the node.
    ok_json(rpc(&t, &bob, "pin/rm", &format!("arg={cid}")).await).await;
    assert!(!kubo.pinned(&cid));
    assert_eq!(kubo.calls("pin/rm?"), 1);
}

#[tokio::test]
async fn an_account_cannot_unpin_or_list_another_accounts_pins() {
    let Setup { t, kubo } = setup().await;
    let (alice, mallory) = (account(&t, "alice").await, account(&t, "mallory").await);
    let (cid, _) = kubo.provide(b"alice's data");
    ok_json(rpc(&t, &alice, "pin/add", &format!("arg={cid}")).await).await;
    let resp = rpc(&t, &mallory, "pin/rm", &format!("arg={cid}")).await;
    assert_eq!(denial(resp, 403).await, "permission_denied");
    // Nor through kubo's extra-path-segment arguments or an /ipfs/ path.
    let resp = rpc(&t, &mallory, &format!("pin/rm/{cid}"), "").await;
    assert_eq!(denial(resp, 400).await, "bad_request");
    let resp = rpc(&t, &mallory, "pin/rm", &format!("arg=/ipfs/{cid}")).await;
    assert_eq!(denial(resp, 403).await, "permission_denied");
    assert!(kubo.pinned(&cid));
    assert_eq!(kubo.calls("pin/rm"), 0);
    let ls = ok_json(rpc(&t, &mallory, "pin/ls", "").await).await;
    assert_eq!(ls, json!({"Keys": {}}));
    let resp = rpc(&t, &mallory, "pin/ls", &format!("arg={cid}")).await;
    assert_eq!(
        resp.status(),
        500,
        "as kubo answers for a CID that is not pinned"
    );
    assert_eq!(kubo.calls("pin/ls"), 0, "answered from the ledger");
}

#[tokio::test]
async fn pin_limits_are_enforced_before_the_node_pins() {
    let Setup { t, kubo } = setup().await;
    let alice = account(&t, "alice").await;
    // 1000 pinned bytes, 3 pins. 600 + 11 fits; another 600 + 11 does not.
    let (first, _) = kubo.provide(&[1; 600]);
    let (big, _) = kubo.provide(&[2; 600]);
    ok_json(rpc(&t, &alice, "pin/add", &format!("arg={first}")).await).await;
    let resp = rpc(&t, &alice, "pin/add", &format!("arg={big}")).await;
    assert_eq!(denial(resp, 429).await, "quota_exceeded");
    assert!(!kubo.pinned(&big));
    assert_eq!(kubo.calls(&format!("pin/add?arg={big}")), 0, "never sent");
    // The count limit: two more small pins fit, the fourth does not.
    for n in 0..2u8 {
        let (cid, _) = kubo.provide(&[10 + n; 10]);
        ok_json(rpc(&t, &alice, "pin/add", &format!("arg={cid}")).await).await;
    }
    let (fourth, _) = kubo.provide(&[20; 10]);
    let resp = rpc(&t, &alice, "pin/add", &format!("arg={fourth}")).await;
    assert_eq!(denial(resp, 429).await, "quota_exceeded");
    assert!(!kubo.pinned(&fourth));
    // A pinned add is refused before its upload reaches the node.
    let before = kubo.calls("add?");
    let resp = add(&t, &alice, "", b"one pin too many").await;
    assert_eq!(denial(resp, 429).await, "quota_exceeded");
    assert_eq!(kubo.calls("add?"), before);
    let s = stats(&t, "alice").await;
    assert_eq!(
        (s["pinned_count"].as_u64(), s["pinned_count_limit"].as_u64()),
        (Some(3), Some(3))
    );
    // Unpinning frees room again.
    ok_json(rpc(&t, &alice, "pin/rm", &format!("arg={first}")).await).await;
    ok_json(rpc(&t, &alice, "pin/add", &format!("arg={big}")).await).await;
}

#[tokio::test]
async fn an_upload_of_unknown_length_is_cut_at_the_remaining_room() {
    let Setup { t, kubo } = setup().await;
    let alice = account(&t, "alice").await;
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..8).map(|_| Ok(vec![b'a'; 500])).collect();
    let body = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
    let resp = t
        .client
        .post(format!("{}/api/v0/add", t.proxy))
        .basic_auth(&alice.0, Some(&alice.1))
        .header("content-type", "multipart/form-data; boundary=xyz")
        .body(body)
        .send()
        .await
        .expect("send");
    assert_eq!(denial(resp, 413).await, "payload_too_large");
    assert_eq!(stats(&t, "alice").await["pinned_count"], 0);
    assert!(kubo.node.lock().unwrap().pins.is_empty());
}

#[tokio::test]
async fn pin_update_moves_the_pin_and_its_size() {
    let Setup { t, kubo } = setup().await;
    let alice = account(&t, "alice").await;
    let (old, _) = kubo.provide(&[1; 500]);
    let (new, new_size) = kubo.provide(&[2; 700]);
    ok_json(rpc(&t, &alice, "pin/add", &format!("arg={old}")).await).await;
    // 511 + 711 > 1000, but the old pin's room is released by the update.
    let json = ok_json(rpc(&t, &alice, "pin/update", &format!("arg={old}&arg={new}")).await).await;
    assert_eq!(json, json!({"Pins": [old, new]}));
    assert!(kubo.pinned(&new) && !kubo.pinned(&old));
    let s = stats(&t, "alice").await;
    assert_eq!(
        (s["pinned_count"].as_u64(), s["pinned_bytes"].as_u64()),
        (Some(1), Some(new_size))
    );
    // Keeping the old pin too would not fit.
    let (third, _) = kubo.provide(&[3; 400]);
    let query = format!("arg={new}&arg={third}&unpin=false");
    assert_eq!(
        denial(rpc(&t, &alice, "pin/update", &query).await, 429).await,
        "quota_exceeded"
    );
}

#[tokio::test]
async fn the_ledger_survives_a_restart() {
    let Setup { mut t, kubo } = setup().await;
    let (alice, bob) = (account(&t, "alice").await, account(&t, "bob").await);
    let (cid, size) = kubo.provide(b"kept across restarts");
    for who in [&alice, &bob] {
        ok_json(rpc(&t, who, "pin/add", &format!("arg={cid}")).await).await;
    }
    ok_json(rpc(&t, &alice, "key/gen", "arg=blog").await).await;
    t.restart().await;
    let s = stats(&t, "alice").await;
    assert_eq!(
        (s["pinned_count"].as_u64(), s["pinned_bytes"].as_u64()),
        (Some(1), Some(size))
    );
    assert_eq!(own_stats(&t, &alice).await["ipns"], 1);
    // Refcounts came back too: Alice's unpin leaves Bob's pin on the node.
    ok_json(rpc(&t, &alice, "pin/rm", &format!("arg={cid}")).await).await;
    assert!(kubo.pinned(&cid));
    ok_json(rpc(&t, &bob, "pin/rm", &format!("arg={cid}")).await).await;
    assert!(!kubo.pinned(&cid));
}

#[tokio::test]
async fn ipns_names_belong_to_one_account_and_count_against_the_plan() {
    let Setup { t, kubo } = setup().await;
    let (alice, bob) = (account(&t, "alice").await, account(&t, "bob").await);
    let json = ok_json(rpc(&t, &alice, "key/gen", "arg=blog&type=ed25519").await).await;
    assert_eq!(json["Name"], "blog", "shown without the node's prefix");
    let node_keys: Vec<String> = kubo.node.lock().unwrap().keys.keys().cloned().collect();
    assert!(
        node_keys
            .iter()
            .any(|k| k.starts_with("tg-") && k.ends_with("-blog")),
        "{node_keys:?}"
    );
    // Bob has his own namespace: the same name is his to take, and he sees only his.
    ok_json(rpc(&t, &bob, "key/gen", "arg=blog").await).await;
    let list = ok_json(rpc(&t, &alice, "key/list", "").await).await;
    assert_eq!(list["Keys"].as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list["Keys"][0]["Name"], "blog");
    // Publishing needs one of the caller's names; the node's `self` is never available.
    let query = "arg=/ipfs/QmWhatever123&key=blog";
    let json = ok_json(rpc(&t, &alice, "name/publish", query).await).await;
    assert!(json["Name"].as_str().unwrap().starts_with("k51"));
    let resp = rpc(&t, &alice, "name/publish", "arg=/ipfs/QmWhatever123").await;
    assert_eq!(denial(resp, 403).await, "permission_denied");
    let resp = rpc(
        &t,
        &alice,
        "name/publish",
        "arg=/ipfs/QmWhatever123&key=other",
    )
    .await;
    assert_eq!(denial(resp, 403).await, "permission_denied");
    // The plan allows two names.
    ok_json(rpc(&t, &alice, "key/gen", "arg=site").await).await;
    let resp = rpc(&t, &alice, "key/gen", "arg=third").await;
    assert_eq!(denial(resp, 429).await, "quota_exceeded");
    let s = own_stats(&t, &alice).await;
    assert_eq!(
        (s["ipns"].as_u64(), s["ipns_limit"].as_u64()),
        (Some(2), Some(2))
    );
    // Removing one frees its place; Bob cannot remove Alice's.
    let resp = rpc(&t, &bob, "key/rm", "arg=site").await;
    assert_eq!(denial(resp, 403).await, "permission_denied");
    let json = ok_json(rpc(&t, &alice, "key/rm", "arg=site").await).await;
    assert_eq!(json["Keys"][0]["Name"], "site");
    ok_json(rpc(&t, &alice, "key/gen", "arg=third").await).await;
    // A rename keeps the count and moves the name.
    let json = ok_json(rpc(&t, &alice, "key/rename", "arg=third&arg=fourth").await).await;
    assert_eq!(
        (json["Was"].as_str(), json["Now"].as_str()),
        (Some("third"), Some("fourth"))
    );
    let list = ok_json(rpc(&t, &alice, "key/list", "").await).await;
    let names: Vec<&str> = list["Keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|k| k["Name"].as_str())
        .collect();
    assert_eq!(names, ["blog", "fourth"]);
}

#[tokio::test]
async fn pinning_side_channels_and_node_admin_are_refused() {
    let Setup { t, kubo } = setup().await;
    let alice = account(&t, "alice").await;
    for (cmd, query) in [
        ("dag/import", ""),
        ("dag/put", "pin=true"),
        ("block/put", "pin=true"),
        ("pin/add/QmSomething12", ""),
        // kubo reads the first value, so a repeated option must not slip past the ledger.
        ("add", "pin=false&pin=true"),
        ("name/publish", "arg=/ipfs/QmSomething12&key=mine&k=self"),
    ] {
        let resp = rpc(&t, &alice, cmd, query).await;
        assert_eq!(denial(resp, 400).await, "bad_request", "{cmd}?{query}");
    }
    for cmd in [
        "config/show",
        "shutdown",
        "repo/gc",
        "pin/verify",
        "refs/local",
        "key/export",
        "files/write",
        "files/ls",
        "block/rm",
        "pubsub/pub",
        "stats/bw",
    ] {
        let resp = rpc(&t, &alice, cmd, "").await;
        assert_eq!(denial(resp, 403).await, "permission_denied", "{cmd}");
    }
    let resp = t
        .client
        .get(format!("{}/api/v0/pin/add?arg=QmSomething12", t.proxy))
        .basic_auth(&alice.0, Some(&alice.1))
        .send()
        .await
        .unwrap();
    assert_eq!(
        denial(resp, 400).await,
        "bad_request",
        "kubo RPC is POST only"
    );
    assert!(
        kubo.log().is_empty(),
        "nothing reached the node: {:?}",
        kubo.log()
    );
    // Permissions per command: a read-only key can cat but not pin.
    let body = json!({"uuid": "alice", "name": "reader", "permissions": ["read"]});
    let data = partner(&t, "/partner/user/key", body).await["data"].clone();
    let reader = Pair(
        data["access_key"].as_str().unwrap().into(),
        data["access_secret"].as_str().unwrap().into(),
    );
    let (cid, _) = kubo.provide(b"readable");
    assert_eq!(
        rpc(&t, &reader, "cat", &format!("arg={cid}"))
            .await
            .status(),
        200
    );
    let resp = rpc(&t, &reader, "pin/add", &format!("arg={cid}")).await;
    assert_eq!(denial(resp, 403).await, "permission_denied");
}

#[tokio::test]
async fn node_errors_pass_through_and_record_nothing() {
    let Setup { t, kubo } = setup().await;
    let alice = account(&t, "alice").await;
    // A CID the node cannot find: kubo's own error, nothing recorded.
    let unknown = cid_of(b"nobody has this");
    let resp = rpc(&t, &alice, "pin/add", &format!("arg={unknown}")).await;
    assert_eq!(resp.status(), 500);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["Type"], "error");
    assert!(body["Message"].as_str().unwrap().contains("could not find"));
    assert_eq!(stats(&t, "alice").await["pinned_count"], 0);
    // Several arguments are pinned one by one, as kubo does.
    let (a, _) = kubo.provide(b"first of two");
    let (b, _) = kubo.provide(b"second of two");
    let json = ok_json(rpc(&t, &alice, "pin/add", &format!("arg={a}&arg={b}")).await).await;
    assert_eq!(json, json!({"Pins": [a, b]}));
    assert_eq!(stats(&t, "alice").await["pinned_count"], 2);
}

#[tokio::test]
async fn concurrent_pins_of_one_account_never_overshoot_the_count() {
    let Setup { t, kubo } = setup().await;
    let alice = account(&t, "alice").await;
    let cids: Vec<String> = (0..12u8).map(|n| kubo.provide(&[n; 5]).0).collect();
    let queries: Vec<String> = cids.iter().map(|cid| format!("arg={cid}")).collect();
    let calls = queries.iter().map(|q| rpc(&t, &alice, "pin/add", q));
    let statuses: Vec<u16> = futures_util::future::join_all(calls)
        .await
        .iter()
        .map(|r| r.status().as_u16())
        .collect();
    let pinned = statuses.iter().filter(|s| **s == 200).count();
    assert_eq!(pinned, 3, "exactly the plan's 3 pins: {statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 9);
    assert_eq!(kubo.node.lock().unwrap().pins.len(), 3);
    assert_eq!(stats(&t, "alice").await["pinned_count"], 3);
}

#[tokio::test]
async fn another_spelling_of_a_cid_is_the_same_pin() {
    let Setup { t, kubo } = setup().await;
    let (alice, bob) = (account(&t, "alice").await, account(&t, "bob").await);
    let content = b"alice's v1 content";
    kubo.provide(content);
    let cid = cid_v1_of(content);
    ok_json(rpc(&t, &alice, "pin/add", &format!("arg={cid}")).await).await;
    // Bob pins the uppercase spelling: the ledger sees one CID with two holders...
    let upper = cid.to_uppercase();
    let json = ok_json(rpc(&t, &bob, "pin/add", &format!("arg={upper}")).await).await;
    assert_eq!(
        json,
        json!({"Pins": [cid]}),
        "answered in the canonical spelling"
    );
    // ...so his pin/rm leaves Alice's pin on the node.
    ok_json(rpc(&t, &bob, "pin/rm", &format!("arg={upper}")).await).await;
    assert!(kubo.pinned(&cid));
    assert_eq!(kubo.calls("pin/rm"), 0);
    let ls = ok_json(rpc(&t, &alice, "pin/ls", "").await).await;
    assert!(ls["Keys"].get(&cid).is_some(), "{ls}");
}

#[tokio::test]
async fn an_add_of_several_files_pins_and_counts_each_root() {
    let Setup { t, kubo } = setup().await;
    let alice = account(&t, "alice").await;
    let form = reqwest::multipart::Form::new()
        .part(
            "file",
            reqwest::multipart::Part::bytes(b"first".to_vec()).file_name("a.txt"),
        )
        .part(
            "file",
            reqwest::multipart::Part::bytes(b"second".to_vec()).file_name("b.txt"),
        );
    let resp = t
        .client
        .post(format!("{}/api/v0/add", t.proxy))
        .basic_auth(&alice.0, Some(&alice.1))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let lines = resp.text().await.unwrap();
    assert_eq!(lines.lines().count(), 2, "{lines}");
    for content in [&b"first"[..], b"second"] {
        assert!(kubo.pinned(&cid_of(content)));
    }
    let s = stats(&t, "alice").await;
    assert_eq!(s["pinned_count"], 2);
    assert_eq!(s["pinned_bytes"], 5 + 6 + 2 * OVERHEAD);
    // Silencing kubo's output cannot hide a root: the option is not passed on.
    let json = ok_json(add(&t, &alice, "silent=true", b"quiet please").await).await;
    assert_eq!(json["Hash"], cid_of(b"quiet please").as_str());
    assert_eq!(stats(&t, "alice").await["pinned_count"], 3);
}

#[tokio::test]
async fn add_needs_the_pin_permission_unless_it_does_not_pin() {
    let Setup { t, kubo } = setup().await;
    account(&t, "alice").await;
    let body = json!({"uuid": "alice", "name": "writer", "permissions": ["read", "write"]});
    let data = partner(&t, "/partner/user/key", body).await["data"].clone();
    let writer = Pair(
        data["access_key"].as_str().unwrap().into(),
        data["access_secret"].as_str().unwrap().into(),
    );
    let resp = add(&t, &writer, "", b"would pin").await;
    assert_eq!(denial(resp, 403).await, "permission_denied");
    let json = ok_json(add(&t, &writer, "pin=false", b"does not pin").await).await;
    assert!(!kubo.pinned(json["Hash"].as_str().unwrap()));
    let resp = add(&t, &writer, "to-files=/mine", b"into MFS").await;
    assert_eq!(denial(resp, 400).await, "bad_request");
    // kubo's short name of `encoding` is read too: an XML answer would hide the roots.
    let resp = add(&t, &writer, "pin=false&enc=xml", b"as xml").await;
    assert_eq!(denial(resp, 400).await, "bad_request");
}

#[tokio::test]
async fn pin_update_onto_a_cid_another_account_holds() {
    let Setup { t, kubo } = setup().await;
    let (alice, bob) = (account(&t, "alice").await, account(&t, "bob").await);
    let (old, _) = kubo.provide(b"old version");
    let (new, _) = kubo.provide(b"new version");
    ok_json(rpc(&t, &alice, "pin/add", &format!("arg={old}")).await).await;
    ok_json(rpc(&t, &bob, "pin/add", &format!("arg={new}")).await).await;
    // kubo's own pin/update refuses a `to` that is already pinned; Tollgate does not need it.
    let json = ok_json(rpc(&t, &alice, "pin/update", &format!("arg={old}&arg={new}")).await).await;
    assert_eq!(json, json!({"Pins": [old, new]}));
    assert!(kubo.pinned(&new) && !kubo.pinned(&old));
    assert_eq!(stats(&t, "alice").await["pinned_count"], 1);
    let resp = rpc(&t, &alice, "pin/update", &format!("arg={new}&arg={new}")).await;
    assert_eq!(denial(resp, 400).await, "bad_request");
    let resp = rpc(&t, &alice, "pin/add", &format!("arg={old}&recursive=false")).await;
    assert_eq!(
        denial(resp, 400).await,
        "bad_request",
        "direct pins are not offered"
    );
    // Bob's pin of `new` survives Alice letting go of it.
    ok_json(rpc(&t, &alice, "pin/rm", &format!("arg={new}")).await).await;
    assert!(kubo.pinned(&new));
}

// Across instances: two gateways on one PostgreSQL schema in front of one node.

/// Two instances (A, B) sharing a PostgreSQL schema, in front of one node.
struct Pair2 {
    a: TestGateway,
    b: TestGateway,
    kubo: FakeKubo,
    schema: Option<Schema>,
}

impl Pair2 {
    async fn start() -> Pair2 {
        let kubo = FakeKubo::start().await;
        let schema = Schema::create(&test_url()).await.expect("schema");
        let a = TestGateway::with(Options {
            top: "default_plan = 1\n".into(),
            extra: PLANS.into(),
            upstream_url: Some(kubo.url.clone()),
            profile: Some("kubo"),
            store_url: Some(schema.url.clone()),
            ..Options::default()
        })
        .await;
        let b = a.beside().await;
        Pair2 {
            a,
            b,
            kubo,
            schema: Some(schema),
        }
    }

    /// Account `uuid`, made through A, once its key works on B too.
    async fn account(&self, uuid: &str) -> Pair {
        let pair = account(&self.a, uuid).await;
        let known = eventually(Duration::from_secs(5), || async {
            rpc(&self.b, &pair, "pin/ls", "").await.status() == 200
        })
        .await;
        assert!(known, "the key never reached B");
        pair
    }

    async fn finish(mut self) {
        self.a.shutdown().await;
        self.b.shutdown().await;
        self.schema.take().unwrap().drop().await.unwrap();
    }
}

/// The status of a `cmd` through `t`, and its body.
async fn status(t: &TestGateway, pair: &Pair, cmd: &str, query: &str) -> (u16, String) {
    let resp = rpc(t, pair, cmd, query).await;
    (resp.status().as_u16(), resp.text().await.unwrap())
}

#[tokio::test]
async fn across_instances_a_pin_is_listed_everywhere_and_counted_once() {
    let p = Pair2::start().await;
    let alice = p.account("alice").await;
    let (cid, size) = p.kubo.provide(b"pinned through A");
    ok_json(rpc(&p.a, &alice, "pin/add", &format!("arg={cid}")).await).await;
    let ls = ok_json(rpc(&p.b, &alice, "pin/ls", "").await).await;
    assert_eq!(
        ls,
        json!({"Keys": {cid.clone(): {"Type": "recursive", "Name": ""}}})
    );
    // Pinned again through B: already held, counted once.
    ok_json(rpc(&p.b, &alice, "pin/add", &format!("arg={cid}")).await).await;
    for t in [&p.a, &p.b] {
        let s = stats(t, "alice").await;
        assert_eq!(
            (s["pinned_count"].clone(), s["pinned_bytes"].clone()),
            (json!(1), json!(size))
        );
    }
    assert_eq!(p.kubo.calls("pin/add?"), 1, "the node pinned it once");
    // Removed through B, where it was not pinned.
    ok_json(rpc(&p.b, &alice, "pin/rm", &format!("arg={cid}")).await).await;
    assert!(!p.kubo.pinned(&cid));
    assert_eq!(stats(&p.a, "alice").await["pinned_count"], 0);
    p.finish().await;
}

#[tokio::test]
async fn across_instances_pins_and_unpins_of_one_cid_at_the_same_moment_keep_node_and_ledger_in_step()
 {
    let p = Pair2::start().await;
    let (alice, bob) = (p.account("alice").await, p.account("bob").await);
    let (cid, _) = p.kubo.provide(b"contended");
    let arg = format!("arg={cid}");
    // Each round, Alice (through A) and Bob (through B) act on the CID at the same moment.
    let rounds = [
        ("pin/add", "pin/add"),
        ("pin/rm", "pin/rm"),
        ("pin/add", "pin/add"),
        ("pin/rm", "pin/add"),
        ("pin/add", "pin/rm"),
        ("pin/rm", "pin/add"),
        ("pin/add", "pin/rm"),
        ("pin/add", "pin/add"),
        ("pin/rm", "pin/rm"),
    ];
    let (mut alice_holds, mut bob_holds) = (false, false);
    for (alice_cmd, bob_cmd) in rounds {
        let (ra, rb) = tokio::join!(
            status(&p.a, &alice, alice_cmd, &arg),
            status(&p.b, &bob, bob_cmd, &arg)
        );
        assert_eq!(ra.0, 200, "{alice_cmd}: {}", ra.1);
        assert_eq!(rb.0, 200, "{bob_cmd}: {}", rb.1);
        alice_holds = alice_cmd == "pin/add";
        bob_holds = bob_cmd == "pin/add";
        assert_eq!(
            p.kubo.pinned(&cid),
            alice_holds || bob_holds,
            "after {alice_cmd} / {bob_cmd} the node pins it iff an account holds it"
        );
        for (who, holds) in [("alice", alice_holds), ("bob", bob_holds)] {
            let count = stats(&p.a, who).await["pinned_count"].clone();
            assert_eq!(
                count,
                json!(u64::from(holds)),
                "{who} after {alice_cmd} / {bob_cmd}"
            );
        }
    }
    assert!(!alice_holds && !bob_holds && !p.kubo.pinned(&cid));
    p.finish().await;
}

#[tokio::test]
async fn across_instances_plan_limits_hold() {
    let p = Pair2::start().await;
    let alice = p.account("alice").await;
    // Plan 1: 3 pins. One is made; four more are asked for at once, two through each instance.
    let cids: Vec<String> = (0..5)
        .map(|i| p.kubo.provide(format!("file {i}").as_bytes()).0)
        .collect();
    ok_json(rpc(&p.a, &alice, "pin/add", &format!("arg={}", cids[0])).await).await;
    let asked = cids[1..].iter().enumerate().map(|(i, cid)| {
        let t = if i % 2 == 0 { &p.a } else { &p.b };
        let (alice, arg) = (alice.clone(), format!("arg={cid}"));
        async move { status(t, &alice, "pin/add", &arg).await }
    });
    let answers = futures_util::future::join_all(asked).await;
    let admitted = answers.iter().filter(|(s, _)| *s == 200).count();
    assert_eq!(admitted, 2, "{answers:?}");
    assert!(
        answers.iter().all(|(s, _)| *s == 200 || *s == 429),
        "{answers:?}"
    );
    assert_eq!(stats(&p.b, "alice").await["pinned_count"], 3);
    let pinned = cids.iter().filter(|c| p.kubo.pinned(c)).count();
    assert_eq!(pinned, 3, "the node holds exactly what the ledger counts");
    // Plan 1: 2 IPNS names; three asked for at once.
    let names = ["n1", "n2", "n3"].map(|n| {
        let t = if n == "n2" { &p.b } else { &p.a };
        let (alice, arg) = (alice.clone(), format!("arg={n}"));
        async move { status(t, &alice, "key/gen", &arg).await }
    });
    let answers = futures_util::future::join_all(names).await;
    assert_eq!(
        answers.iter().filter(|(s, _)| *s == 200).count(),
        2,
        "{answers:?}"
    );
    assert_eq!(own_stats(&p.b, &alice).await["ipns"], 2);
    p.finish().await;
}
