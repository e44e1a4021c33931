//! Calls Tollgate makes to the kubo node itself (size look-ups, pins, keys) and the answers it
//! builds: the node's answer passed through, or JSON in kubo's own shapes.

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Limited};
use serde_json::Value;

use crate::domain::decision::{Denial, DenyCode};
use crate::proxy::headers::REQUEST_ID;
use crate::proxy::upstream::{Upstream, UpstreamBody};

/// The largest node answer read in full (pin and key answers are a few hundred bytes).
const MAX_ANSWER: usize = 8 << 20;

/// A complete answer of the node.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub content_type: Option<HeaderValue>,
    pub body: Bytes,
}

impl Answer {
    /// Whether the command succeeded. kubo reports failures with a non-200 status (an error
    /// midway through a streamed answer shows as an `{"Type":"error"}` object).
    pub fn ok(&self) -> bool {
        self.status == StatusCode::OK
            && last_json(&self.body)
                .is_none_or(|v| v.get("Type").and_then(Value::as_str) != Some("error"))
    }

    /// The last JSON object of the answer (kubo streams newline-delimited JSON).
    pub fn last(&self) -> Option<Value> {
        last_json(&self.body)
    }

    /// kubo's error message, if the answer is an error.
    pub fn message(&self) -> String {
        self.last()
            .and_then(|v| v.get("Message").and_then(Value::as_str).map(str::to_string))
            .unwrap_or_default()
    }
}

/// Sends `POST /api/v0/<command>?<query>` to the node and reads the whole answer.
pub async fn call(
    upstream: &Upstream,
    rid: &HeaderValue,
    command: &str,
    query: &str,
) -> Result<Answer, Denial> {
    upstream
        .within_timeout(async {
            let resp = send(upstream, rid, command, query).await?;
            read_whole(upstream, resp).await
        })
        .await
}

/// Reads a node answer in full (at most `MAX_ANSWER` bytes).
async fn read_whole(upstream: &Upstream, resp: Response<UpstreamBody>) -> Result<Answer, Denial> {
    let (head, body) = resp.into_parts();
    let body = Limited::new(body, MAX_ANSWER)
        .collect()
        .await
        .map_err(|_| broke_off(upstream))?
        .to_bytes();
    Ok(Answer {
        status: head.status,
        content_type: head.headers.get(CONTENT_TYPE).cloned(),
        body,
    })
}

/// Like [`call`], for a command answering with a stream of JSON objects (`dag/stat` with
/// progress): each object is handed to `keep_going` as it arrives; when it says stop, the
/// connection is dropped, which cancels the command on the node. `Ok(Ok(Some(last)))` for a
/// complete answer, `Ok(Ok(None))` if stopped, `Ok(Err(answer))` for the node's error.
pub async fn call_streamed(
    upstream: &Upstream,
    rid: &HeaderValue,
    command: &str,
    query: &str,
    mut keep_going: impl FnMut(&Value) -> bool + Send,
) -> Result<Result<Option<Value>, Answer>, Denial> {
    upstream
        .within_timeout(async {
            let resp = send(upstream, rid, command, query).await?;
            if resp.status() != StatusCode::OK {
                return read_whole(upstream, resp).await.map(Err);
            }
            let mut body = resp.into_body();
            let mut pending: Vec<u8> = Vec::new();
            let mut last = None;
            while let Some(frame) = body.frame().await {
                let Ok(data) = frame.map_err(|_| broke_off(upstream))?.into_data() else {
                    continue;
                };
                pending.extend_from_slice(&data);
                while let Some(end) = pending.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = pending.drain(..=end).collect();
                    let Ok(value) = serde_json::from_slice::<Value>(&line) else {
                        continue;
                    };
                    if !keep_going(&value) {
                        return Ok(Ok(None));
                    }
                    last = Some(value);
                }
                if pending.len() > MAX_ANSWER {
                    return Err(broke_off(upstream));
                }
            }
            if let Ok(value) = serde_json::from_slice::<Value>(&pending) {
                if !keep_going(&value) {
                    return Ok(Ok(None));
                }
                last = Some(value);
            }
            Ok(Ok(last))
        })
        .await
}

/// Sends the command and returns the node's answer head with its body to read.
async fn send(
    upstream: &Upstream,
    rid: &HeaderValue,
    command: &str,
    query: &str,
) -> Result<Response<UpstreamBody>, Denial> {
    let uri = upstream
        .uri_for(&format!("/api/v0/{command}"), Some(query))
        .ok_or_else(|| Denial::new(DenyCode::BadRequest))?;
    let mut req = Request::builder()
        .method(Method::POST)
        .uri(uri)
        .header(&REQUEST_ID, rid.clone())
        .body(Empty::new().map_err(|never| match never {}).boxed())
        .map_err(|_| Denial::new(DenyCode::BadRequest))?;
    upstream.authorize(req.headers_mut());
    match upstream.send(req).await {
        Ok(resp) => Ok(resp),
        Err(err) => Err(upstream.failed(&err, &format_args!("kubo {command}"))),
    }
}

fn broke_off(upstream: &Upstream) -> Denial {
    upstream.broke_off("the node's answer broke off or was too large")
}

/// The node's answer as the client's response.
pub fn passthrough(answer: Answer) -> Response<Bytes> {
    let mut resp = Response::new(answer.body);
    *resp.status_mut() = answer.status;
    if let Some(ct) = answer.content_type {
        resp.headers_mut().insert(CONTENT_TYPE, ct);
    }
    resp
}

/// A 200 JSON answer.
pub fn json(value: &Value) -> Response<Bytes> {
    with_json(StatusCode::OK, value)
}

/// An error in kubo's own shape (`{"Message":..,"Code":0,"Type":"error"}`), as the node
/// would have answered.
pub fn kubo_error(message: String) -> Response<Bytes> {
    let value = serde_json::json!({ "Message": message, "Code": 0, "Type": "error" });
    with_json(StatusCode::INTERNAL_SERVER_ERROR, &value)
}

fn with_json(status: StatusCode, value: &Value) -> Response<Bytes> {
    let mut body = value.to_string();
    body.push('\n');
    let mut resp = Response::new(Bytes::from(body));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// The last line of newline-delimited JSON that parses.
pub fn last_json(body: &[u8]) -> Option<Value> {
    body.split(|b| *b == b'\n')
        .rev()
        .filter(|line| !line.iter().all(u8::is_ascii_whitespace))
        .find_map(|line| serde_json::from_slice(line).ok())
}

/// A size as kubo writes it: a number, or a decimal string (`add`'s `"Size":"1234"`).
pub fn size_of(value: Option<&Value>) -> Option<u64> {
    match value? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_json_skips_blank_and_progress_lines() {
        let body = b"{\"Progress\":1}\n{\"Pins\":[\"Qm1\"]}\n\n";
        assert_eq!(last_json(body).unwrap()["Pins"][0], "Qm1");
        assert!(last_json(b"").is_none());
    }

    #[test]
    fn sizes_as_numbers_or_strings() {
        let v = serde_json::json!({"a": 12, "b": "34", "c": "x"});
        assert_eq!(size_of(v.get("a")), Some(12));
        assert_eq!(size_of(v.get("b")), Some(34));
        assert_eq!(size_of(v.get("c")), None);
        assert_eq!(size_of(v.get("d")), None);
    }

    #[test]
    fn a_streamed_error_is_not_ok() {
        let answer = Answer {
            status: StatusCode::OK,
            content_type: None,
            body: Bytes::from_static(
                b"{\"Progress\":3}\n{\"Message\":\"boom\",\"Code\":0,\"Type\":\"error\"}\n",
            ),
        };
        assert!(!answer.ok());
        assert_eq!(answer.message(), "boom");
    }
}
