//! The web console (`/console/` on the api listener): its embedded assets are the ones
//! `console/build.mjs` builds from the repository, they are served with a strict
//! Content-Security-Policy and no inline script or style, and the whole console works in a
//! real browser against `tollgate demo` (`console/e2e.mjs`: Debian's chromium driven by
//! playwright-core; `.ci/run` installs chromium where missing). Screenshots of each page are
//! saved under the target directory (`console-screenshots/`).

mod common;

use common::TestGateway;

/// Our own console files, built into `console/dist` as they are.
const SOURCES: [&str; 3] = ["index.html", "app.js", "app.css"];

#[test]
fn the_embedded_assets_are_the_built_sources_and_the_pinned_uplot() {
    for file in SOURCES {
        let source = std::fs::read(format!("console/src/{file}")).unwrap();
        let built = std::fs::read(format!("console/dist/{file}")).unwrap();
        assert!(
            source == built,
            "console/dist/{file} is stale: run `cd console && npm ci && npm run build`"
        );
    }
    let lock = std::fs::read_to_string("console/package-lock.json").unwrap();
    let lock: serde_json::Value = serde_json::from_str(&lock).unwrap();
    let version = lock["packages"]["node_modules/uplot"]["version"]
        .as_str()
        .unwrap();
    let vendored = std::fs::read_to_string("console/dist/vendor/uPlot.iife.min.js").unwrap();
    assert!(
        vendored.starts_with(&format!(
            "/*! https://github.com/leeoniya/uPlot (v{version}) */"
        )),
        "the vendored uPlot is not the locked {version}"
    );
    // Installed packages, when present, must be what was copied.
    let installed = std::path::Path::new("console/node_modules/uplot/dist/uPlot.iife.min.js");
    if installed.exists() {
        assert_eq!(std::fs::read_to_string(installed).unwrap(), vendored);
    }
}

#[test]
fn the_console_has_no_inline_script_or_style_and_never_writes_html() {
    let html = std::fs::read_to_string("console/src/index.html").unwrap();
    assert!(!html.contains("<style"), "an inline style block");
    assert!(!html.contains(" style="), "an inline style attribute");
    for script in html.split("<script").skip(1) {
        let tag = &script[..script.find('>').unwrap()];
        assert!(tag.contains(" src="), "an inline script: <script{tag}>");
    }
    let handler = html.split(" on").skip(1).find(|rest| {
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_lowercase())
            .collect();
        !name.is_empty() && rest[name.len()..].starts_with('=')
    });
    assert!(handler.is_none(), "an inline event handler: on{handler:?}");
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "a remote resource"
    );
    let js = std::fs::read_to_string("console/src/app.js").unwrap();
    for sink in [
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "eval(",
    ] {
        assert!(!js.contains(sink), "app.js uses {sink}");
    }
    assert!(
        !js.contains("localStorage"),
        "the token must stay in session storage"
    );
}

#[tokio::test]
async fn console_files_are_served_with_strict_security_headers() {
    let t = TestGateway::start().await;
    let no_redirect = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let resp = no_redirect
        .get(format!("{}/console", t.api))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 308);
    assert_eq!(resp.headers()["location"], "/console/");
    for (path, kind) in [
        ("", "text/html"),
        ("app.js", "text/javascript"),
        ("app.css", "text/css"),
        ("vendor/uPlot.iife.min.js", "text/javascript"),
        ("vendor/uPlot.min.css", "text/css"),
    ] {
        let resp = t
            .client
            .get(format!("{}/console/{path}", t.api))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        let h = resp.headers();
        assert!(
            h["content-type"].to_str().unwrap().starts_with(kind),
            "{path}"
        );
        assert_eq!(h["content-security-policy"], tollgate::api::console::CSP);
        assert_eq!(h["x-frame-options"], "DENY");
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(h["referrer-policy"], "no-referrer");
    }
    let csp = tollgate::api::console::CSP;
    for rule in [
        "script-src 'self'",
        "style-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(rule), "{rule}");
    }
    assert!(!csp.contains("unsafe"), "{csp}");
    // Only the embedded files exist: no path reaches the file system.
    for missing in [
        "nope.js",
        "..%2fCargo.toml",
        "vendor/..%2fapp.js",
        "vendor",
        "app.js/x",
    ] {
        let resp = t
            .client
            .get(format!("{}/console/{missing}", t.api))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 404, "{missing}");
    }
}

#[tokio::test]
async fn a_sign_in_code_that_was_never_issued_is_refused() {
    let t = TestGateway::start().await;
    let code = t.gw().console_logins.issue(&t.partner_token);
    let login = |code: String| {
        let t = &t;
        async move {
            t.client
                .post(format!("{}/api/v1/console/login", t.api))
                .json(&serde_json::json!({ "code": code }))
                .send()
                .await
                .unwrap()
        }
    };
    let resp = login(code.clone()).await;
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["token"], t.partner_token.as_str());
    let again = login(code).await;
    assert_eq!(again.status(), 401, "a code works once");
    let made_up = login("made-up".into()).await;
    assert_eq!(made_up.status(), 401);
    let body: serde_json::Value = made_up.json().await.unwrap();
    assert!(body["detail"].is_string());
}

#[tokio::test]
async fn the_console_works_in_a_real_browser() {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).exists(),
        "{chromium} is missing: `apt-get install chromium` (.ci/run does), or set CHROMIUM"
    );
    if !std::path::Path::new("console/node_modules/playwright-core").exists() {
        let installed = tokio::process::Command::new("npm")
            .args(["ci", "--prefix", "console", "--no-audit", "--no-fund"])
            .status()
            .await
            .expect("npm (Node.js 18 or later) to install the browser driver");
        assert!(installed.success(), "npm ci in console/ failed");
    }
    let shots = concat!(env!("CARGO_TARGET_TMPDIR"), "/console-screenshots");
    let out = tokio::process::Command::new("node")
        .arg("console/e2e.mjs")
        .env("TOLLGATE_BIN", env!("CARGO_BIN_EXE_tollgate"))
        .env("SCREENSHOTS", shots)
        .env("CHROMIUM", &chromium)
        .output()
        .await
        .expect("node");
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "the browser run failed:\n{text}");
    assert!(text.contains("console e2e: all checks passed"), "{text}");
    for page in ["signin", "partner", "spend", "edit", "operator"] {
        let shot = std::fs::metadata(format!("{shots}/{page}.png")).expect("a screenshot");
        assert!(shot.len() > 10_000, "{page}.png looks empty");
    }
}
