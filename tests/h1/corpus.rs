//! The request corpus of the differential test: framing edge cases, smuggling attempts, odd
//! and huge heads, every body shape. `{KEY}` stands for a valid key; `Host: gw` is literal.

/// (name, raw bytes with `{KEY}`).
pub fn cases() -> Vec<(&'static str, String)> {
    let auth = "Authorization: Bearer {KEY}\r\n";
    let get = |extra: &str| format!("GET /things?a=1 HTTP/1.1\r\nHost: gw\r\n{auth}{extra}\r\n");
    let post = |extra: &str, body: &str| {
        format!("POST /things HTTP/1.1\r\nHost: gw\r\n{auth}{extra}\r\n{body}")
    };
    let big_header = format!("X-Big: {}\r\n", "a".repeat(9000));
    let many_headers: String = (0..101).map(|i| format!("X-H{i}: v\r\n")).collect();
    let long_uri = format!(
        "GET /{} HTTP/1.1\r\nHost: gw\r\n{auth}\r\n",
        "u".repeat(7000)
    );
    vec![
        ("get", get("")),
        (
            "get-no-key",
            "GET /things HTTP/1.1\r\nHost: gw\r\n\r\n".into(),
        ),
        (
            "get-bad-key",
            "GET /x HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer nope\r\n\r\n".into(),
        ),
        (
            "x-apikey",
            "GET /x HTTP/1.1\r\nHost: gw\r\nx-APIKey: {KEY}\r\n\r\n".into(),
        ),
        (
            "head",
            format!("HEAD /things HTTP/1.1\r\nHost: gw\r\n{auth}\r\n"),
        ),
        (
            "options-star",
            format!("OPTIONS * HTTP/1.1\r\nHost: gw\r\n{auth}\r\n"),
        ),
        (
            "absolute-form",
            format!("GET http://other.example/abs?q HTTP/1.1\r\nHost: gw\r\n{auth}\r\n"),
        ),
        (
            "connect",
            format!("CONNECT gw:443 HTTP/1.1\r\nHost: gw:443\r\n{auth}\r\n"),
        ),
        (
            "lowercase-method",
            format!("get /x HTTP/1.1\r\nHost: gw\r\n{auth}\r\n"),
        ),
        (
            "custom-method",
            format!("PURGE /x HTTP/1.1\r\nHost: gw\r\n{auth}\r\n"),
        ),
        (
            "bad-method",
            format!("G(T /x HTTP/1.1\r\nHost: gw\r\n{auth}\r\n"),
        ),
        (
            "traversal",
            format!("GET /a/../../etc/passwd HTTP/1.1\r\nHost: gw\r\n{auth}\r\n"),
        ),
        (
            "encoded-traversal",
            format!("GET /a/%2e%2e/%2E%2e/b HTTP/1.1\r\nHost: gw\r\n{auth}\r\n"),
        ),
        (
            "double-slash",
            format!("GET //a//b/./c HTTP/1.1\r\nHost: gw\r\n{auth}\r\n"),
        ),
        (
            "encoded-slash",
            format!("GET /a%2fb HTTP/1.1\r\nHost: gw\r\n{auth}\r\n"),
        ),
        (
            "nul-in-path",
            format!("GET /a%00b HTTP/1.1\r\nHost: gw\r\n{auth}\r\n"),
        ),
        (
            "fragment",
            format!("GET /a#frag HTTP/1.1\r\nHost: gw\r\n{auth}\r\n"),
        ),
        ("http10", format!("GET /x HTTP/1.0\r\n{auth}\r\n")),
        (
            "http10-keepalive",
            format!(
                "GET /x HTTP/1.0\r\nConnection: keep-alive\r\n{auth}\r\nGET /y HTTP/1.0\r\n{auth}\r\n"
            ),
        ),
        ("http11-close", get("Connection: close\r\n")),
        (
            "http2-version",
            format!("GET /x HTTP/2.0\r\nHost: gw\r\n{auth}\r\n"),
        ),
        (
            "http12-version",
            format!("GET /x HTTP/1.2\r\nHost: gw\r\n{auth}\r\n"),
        ),
        (
            "bare-lf",
            format!(
                "GET /x HTTP/1.1\nHost: gw\n{}\n",
                auth.replace("\r\n", "\n")
            ),
        ),
        (
            "leading-crlf",
            format!("\r\n\r\nGET /x HTTP/1.1\r\nHost: gw\r\n{auth}\r\n"),
        ),
        ("obs-fold", get("X-Fold: a\r\n b\r\n")),
        ("space-before-colon", get("X-Sp : v\r\n")),
        ("no-colon", get("X-NoColon\r\n")),
        ("empty-name", get(": v\r\n")),
        ("nul-in-value", get("X-Nul: a\0b\r\n")),
        ("obs-text-value", get("X-High: caf\u{e9}\r\n")),
        ("tab-in-value", get("X-Tab: a\tb\r\n")),
        ("two-hosts", get("Host: second\r\n")),
        (
            "hop-by-hop",
            get(
                "Connection: keep-alive, X-Private\r\nX-Private: secret\r\nKeep-Alive: 5\r\nTE: trailers\r\nProxy-Connection: x\r\n",
            ),
        ),
        (
            "upgrade",
            get("Connection: Upgrade\r\nUpgrade: websocket\r\n"),
        ),
        (
            "forwarded-spoof",
            get("X-Forwarded-For: 1.2.3.4\r\nForwarded: for=1.2.3.4\r\nX-Real-IP: 1.2.3.4\r\n"),
        ),
        ("cookies", get("Cookie: a=1\r\nCookie: b=2\r\n")),
        ("big-header", get(&big_header)),
        ("101-headers", get(&many_headers)),
        ("long-uri", long_uri),
        ("post-length", post("Content-Length: 5\r\n", "hello")),
        ("post-length-zero", post("Content-Length: 0\r\n", "")),
        ("get-with-body", get("Content-Length: 3\r\n") + "abc"),
        (
            "post-chunked",
            post(
                "Transfer-Encoding: chunked\r\n",
                "5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n",
            ),
        ),
        (
            "chunked-trailers",
            post(
                "Transfer-Encoding: chunked\r\n",
                "3\r\nabc\r\n0\r\nX-Trailer: t\r\n\r\n",
            ),
        ),
        (
            "chunked-bad-trailer",
            post(
                "Transfer-Encoding: chunked\r\n",
                "3\r\nabc\r\n0\r\nnot a header\r\n\r\n",
            ),
        ),
        (
            "chunked-upper-hex",
            post(
                "Transfer-Encoding: chunked\r\n",
                "A\r\n0123456789\r\n0\r\n\r\n",
            ),
        ),
        (
            "chunked-size-spaces",
            post("Transfer-Encoding: chunked\r\n", "3 \r\nabc\r\n0\r\n\r\n"),
        ),
        (
            "chunked-bad-hex",
            post("Transfer-Encoding: chunked\r\n", "z\r\nabc\r\n0\r\n\r\n"),
        ),
        (
            "chunked-no-crlf-after-data",
            post("Transfer-Encoding: chunked\r\n", "3\r\nabcX\r\n0\r\n\r\n"),
        ),
        (
            "chunked-overflow",
            post(
                "Transfer-Encoding: chunked\r\n",
                "fffffffffffffffffff\r\nabc\r\n0\r\n\r\n",
            ),
        ),
        (
            "chunked-over-limit",
            post("Transfer-Encoding: chunked\r\n", "2000\r\nabc\r\n0\r\n\r\n"),
        ),
        (
            "chunked-sum-over-limit",
            post(
                "Transfer-Encoding: chunked\r\n",
                &format!(
                    "800\r\n{0}\r\n800\r\n{0}\r\n800\r\n{0}\r\n0\r\n\r\n",
                    "x".repeat(0x800)
                ),
            ),
        ),
        (
            "length-over-limit",
            post("Content-Length: 5000\r\n", &"x".repeat(5000)),
        ),
        (
            "length-over-limit-then-get",
            post("Content-Length: 5000\r\n", &"x".repeat(5000)) + &get(""),
        ),
        (
            "denied-body-then-get",
            "POST /x HTTP/1.1\r\nHost: gw\r\nContent-Length: 5\r\n\r\nhello".to_string() + &get(""),
        ),
        (
            "denied-big-body-then-get",
            format!(
                "POST /x HTTP/1.1\r\nHost: gw\r\nContent-Length: 3000\r\n\r\n{}",
                "y".repeat(3000)
            ) + &get(""),
        ),
        (
            "cl-and-te",
            post(
                "Content-Length: 3\r\nTransfer-Encoding: chunked\r\n",
                "5\r\nhello\r\n0\r\n\r\n",
            ),
        ),
        (
            "te-and-cl",
            post(
                "Transfer-Encoding: chunked\r\nContent-Length: 3\r\n",
                "5\r\nhello\r\n0\r\n\r\n",
            ),
        ),
        (
            "te-gzip-chunked",
            post(
                "Transfer-Encoding: gzip, chunked\r\n",
                "3\r\nabc\r\n0\r\n\r\n",
            ),
        ),
        (
            "te-chunked-gzip",
            post(
                "Transfer-Encoding: chunked, gzip\r\n",
                "3\r\nabc\r\n0\r\n\r\n",
            ),
        ),
        (
            "te-identity",
            post("Transfer-Encoding: identity\r\n", "abc"),
        ),
        (
            "te-case",
            post("Transfer-Encoding: CHUNKED\r\n", "3\r\nabc\r\n0\r\n\r\n"),
        ),
        (
            "te-twice",
            post(
                "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n",
                "3\r\nabc\r\n0\r\n\r\n",
            ),
        ),
        (
            "te-space-name",
            post("Transfer-Encoding : chunked\r\n", "3\r\nabc\r\n0\r\n\r\n"),
        ),
        (
            "te-http10",
            format!(
                "POST /x HTTP/1.0\r\n{auth}Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
            ),
        ),
        (
            "cl-twice-same",
            post("Content-Length: 3\r\nContent-Length: 3\r\n", "abc"),
        ),
        (
            "cl-twice-different",
            post("Content-Length: 3\r\nContent-Length: 4\r\n", "abcd"),
        ),
        ("cl-list", post("Content-Length: 3, 3\r\n", "abc")),
        ("cl-plus", post("Content-Length: +3\r\n", "abc")),
        ("cl-negative", post("Content-Length: -1\r\n", "")),
        (
            "cl-overflow",
            post("Content-Length: 99999999999999999999999\r\n", ""),
        ),
        ("cl-hex", post("Content-Length: 0x3\r\n", "abc")),
        ("cl-spaces", post("Content-Length:  3 \r\n", "abc")),
        (
            "expect-continue",
            post("Expect: 100-continue\r\nContent-Length: 3\r\n", "abc"),
        ),
        (
            "expect-other",
            post("Expect: something\r\nContent-Length: 3\r\n", "abc"),
        ),
        (
            "pipelined",
            get("") + &get("") + &post("Content-Length: 2\r\n", "hi"),
        ),
        (
            "pipelined-chunked-then-get",
            post("Transfer-Encoding: chunked\r\n", "2\r\nhi\r\n0\r\n\r\n") + &get(""),
        ),
        (
            "smuggle-cl-te",
            post(
                "Content-Length: 45\r\nTransfer-Encoding: chunked\r\n",
                "0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: gw\r\n\r\n",
            ),
        ),
        (
            "smuggle-te-cl",
            post(
                "Transfer-Encoding: chunked\r\nContent-Length: 4\r\n",
                "5c\r\nGPOST / HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 15\r\n\r\nx=1\r\n0\r\n\r\n",
            ),
        ),
        (
            "smuggle-te-obfuscated",
            post(
                "Content-Length: 4\r\nTransfer-Encoding: xchunked\r\n",
                "abcd",
            ),
        ),
        (
            "smuggle-te-vtab",
            post(
                "Transfer-Encoding:\u{b}chunked\r\nContent-Length: 3\r\n",
                "abc",
            ),
        ),
        (
            "smuggle-lf-in-chunk-ext",
            post(
                "Transfer-Encoding: chunked\r\n",
                "3;a\nb\r\nabc\r\n0\r\n\r\n",
            ),
        ),
        (
            "request-line-spaces",
            format!("GET  /x  HTTP/1.1\r\nHost: gw\r\n{auth}\r\n"),
        ),
        (
            "request-line-tab",
            format!("GET\t/x HTTP/1.1\r\nHost: gw\r\n{auth}\r\n"),
        ),
        ("no-version", format!("GET /x\r\nHost: gw\r\n{auth}\r\n")),
        ("garbage", "\u{1}\u{2}\u{3} nonsense\r\n\r\n".into()),
        (
            "ctl-in-uri",
            format!("GET /a\u{7f}b HTTP/1.1\r\nHost: gw\r\n{auth}\r\n"),
        ),
        (
            "utf8-in-uri",
            format!("GET /caf\u{e9} HTTP/1.1\r\nHost: gw\r\n{auth}\r\n"),
        ),
        (
            "query-odd",
            format!("GET /x?a=%zz&b=<>&&c HTTP/1.1\r\nHost: gw\r\n{auth}\r\n"),
        ),
        ("key-twice", get("Authorization: Bearer other\r\n")),
        // Upstream answers of every shape (tests/h1/capture.rs), through both clients.
        (
            "up-chunked",
            format!("GET /r/chunked HTTP/1.1\r\nHost: gw\r\n{auth}\r\n"),
        ),
        (
            "up-close",
            format!("GET /r/close HTTP/1.1\r\nHost: gw\r\n{auth}\r\n"),
        ),
        (
            "up-http10",
            format!("GET /r/http10 HTTP/1.1\r\nHost: gw\r\n{auth}\r\n"),
        ),
        (
            "up-http10-client",
            format!("GET /r/http10 HTTP/1.0\r\n{auth}\r\n"),
        ),
        (
            "up-204",
            format!("GET /r/empty HTTP/1.1\r\nHost: gw\r\n{auth}\r\n"),
        ),
        (
            "up-304",
            format!("GET /r/not-modified HTTP/1.1\r\nHost: gw\r\n{auth}\r\n"),
        ),
        (
            "up-100",
            format!("GET /r/continue HTTP/1.1\r\nHost: gw\r\n{auth}\r\n"),
        ),
        (
            "up-headers",
            format!("GET /r/headers HTTP/1.1\r\nHost: gw\r\n{auth}\r\n"),
        ),
        (
            "up-te-and-length",
            format!("GET /r/te-and-length HTTP/1.1\r\nHost: gw\r\n{auth}\r\n"),
        ),
        (
            "up-status",
            format!("GET /r/status HTTP/1.1\r\nHost: gw\r\n{auth}\r\n"),
        ),
        (
            "up-garbage",
            format!("GET /r/garbage HTTP/1.1\r\nHost: gw\r\n{auth}\r\n"),
        ),
        (
            "up-short",
            format!("GET /r/short HTTP/1.1\r\nHost: gw\r\n{auth}\r\n"),
        ),
        (
            "up-big",
            format!("GET /r/big HTTP/1.1\r\nHost: gw\r\n{auth}\r\n"),
        ),
        (
            "up-head",
            format!("HEAD /r/big HTTP/1.1\r\nHost: gw\r\n{auth}\r\n"),
        ),
        (
            "up-head-chunked",
            format!("HEAD /r/chunked HTTP/1.1\r\nHost: gw\r\n{auth}\r\n"),
        ),
        (
            "up-pipelined",
            format!(
                "GET /r/chunked HTTP/1.1\r\nHost: gw\r\n{auth}\r\nGET /r/big HTTP/1.1\r\nHost: gw\r\n{auth}\r\nGET /r/headers HTTP/1.1\r\nHost: gw\r\n{auth}\r\n"
            ),
        ),
        (
            "up-post-chunked-to-close",
            post("Transfer-Encoding: chunked\r\n", "3\r\nabc\r\n0\r\n\r\n")
                .replace("/things", "/r/close"),
        ),
    ]
}
