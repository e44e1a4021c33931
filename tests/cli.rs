//! Tests of the real `tollgate` binary: `check`, `hash-token`, `partner create` and `demo`.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_tollgate");

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn check_accepts_the_example_config() {
    let out = Command::new(BIN)
        .args(["check", "--config", "config/tollgate.toml"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn check_reports_every_error_with_its_field_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        &dir,
        "bad.toml",
        "[listen]\nproxy = \"nope\"\n[upstream]\nurl = \"/relative\"\nprofile = \"kubo\"\n\
         [security]\ntrusted_proxies = [\"10.0.0.0/8\", \"10.0.0.300/8\"]\n",
    );
    let out = Command::new(BIN)
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("listen.proxy"), "{err}");
    assert!(
        err.contains("upstream.url: relative URL without a base"),
        "{err}"
    );
    assert!(err.contains("security.trusted_proxies[1]"), "{err}");

    let out = Command::new(BIN)
        .args(["check", "--config"])
        .arg(dir.path().join("missing.toml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.toml"));
}

#[test]
fn hash_token_prints_an_argon2id_hash() {
    let mut child = Command::new(BIN)
        .arg("hash-token")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"operator-token\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let phc = String::from_utf8(out.stdout).unwrap();
    assert!(phc.trim().starts_with("$argon2id$"), "{phc}");
    assert!(tollgate::domain::secret::verify_token(
        "operator-token",
        phc.trim()
    ));
}

#[test]
fn partner_create_prints_a_token_once() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        &dir,
        "t.toml",
        &format!(
            "[store]\nurl = \"sqlite://{}\"\n[upstream]\nurl = \"http://127.0.0.1:9\"\n",
            dir.path().join("t.db").display()
        ),
    );
    let out = Command::new(BIN)
        .args(["partner", "create", "--name", "acme", "--json", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(json["token"].as_str().unwrap().starts_with("rsk_"));
    assert!(json["id"].as_str().unwrap().len() == 36);
}

#[test]
fn demo_serves_the_printed_key_and_never_logs_it() {
    let mut child = Command::new(BIN)
        .args(["demo", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let demo: serde_json::Value = serde_json::from_str(&line).expect("one JSON line");
    let proxy = demo["proxy"].as_str().unwrap().to_string();
    let key = demo["key"].as_str().unwrap().to_string();
    assert!(key.starts_with("cr_") && key.len() == 46);
    assert!(demo["partner_token"].as_str().unwrap().starts_with("rsk_"));
    assert!(
        demo["api"]
            .as_str()
            .unwrap()
            .starts_with("http://127.0.0.1:")
    );

    let rt = tokio::runtime::Runtime::new().unwrap();
    let (ok, missing, wrong) = rt.block_on(async {
        let c = reqwest::Client::new();
        let get = |auth: Option<&str>| {
            let mut req = c.get(format!("{proxy}/hello"));
            if let Some(a) = auth {
                req = req.bearer_auth(a);
            }
            req.timeout(Duration::from_secs(10)).send()
        };
        (
            get(Some(&key)).await.unwrap().status(),
            get(None).await.unwrap().status(),
            get(Some("cr_wrong")).await.unwrap().status(),
        )
    });
    assert_eq!(
        (ok.as_u16(), missing.as_u16(), wrong.as_u16()),
        (200, 401, 401)
    );

    // SIGTERM: drains and exits 0; nothing it logged contains the key.
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    assert!(status.success());
    let mut logs = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut logs)
        .unwrap();
    assert!(
        logs.contains("tollgate::access"),
        "access log expected: {logs}"
    );
    assert!(!logs.contains(&key), "key leaked into logs");
    assert!(!logs.contains(&key[3..]), "key body leaked into logs");
}
