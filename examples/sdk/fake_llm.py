#!/usr/bin/env python3
"""A tiny fake LLM upstream speaking the real OpenAI and Anthropic wire formats.

Python standard library only. It answers

  POST /v1/chat/completions   OpenAI Chat Completions: JSON with `usage`, or with
                              `"stream": true` SSE `data: {...}` chunks, a final usage chunk
                              (`"choices": []`) only when `stream_options.include_usage` is
                              true, then `data: [DONE]`.
  POST /v1/messages           Anthropic Messages: JSON with `usage`, or with `"stream": true`
                              the SSE events message_start (usage.input_tokens),
                              content_block_start, content_block_delta..., content_block_stop,
                              message_delta (usage.output_tokens), message_stop.

and, for the demo (not an LLM API, call it directly, not through Tollgate):

  GET /_last                  the last LLM request received: method, path, headers, JSON body,
                              and the usage this server reported for it; plus `count`, the
                              number of LLM requests received so far.

The answer is "Echo: <last user message>". Token counts are deterministic: input = one per
4 characters of the message texts (at least 1), output = one per word of the answer.

With --expect-auth "HEADER: VALUE" a request without exactly that header is refused with 401 in
the provider's error format (so a call only works if Tollgate injected the upstream key).

Usage: fake_llm.py [--host 127.0.0.1] [--port 0] [--flavor openai|anthropic|both]
                   [--expect-auth "authorization: Bearer sk-..."] [--port-file FILE]
The bound port is printed on stdout as `PORT <n>` (and written to --port-file).
"""

import argparse
import json
import os
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()
STATE = {"count": 0, "last": None}


def text_of(content):
    """The text of an OpenAI/Anthropic message `content` (a string or a list of parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def conversation(body):
    """All message texts (plus an Anthropic `system`) and the last user message."""
    texts, last_user = [], ""
    system = body.get("system")
    if system:
        texts.append(text_of(system))
    for m in body.get("messages") or []:
        if not isinstance(m, dict):
            continue
        t = text_of(m.get("content"))
        texts.append(t)
        if m.get("role") == "user":
            last_user = t
    return texts, last_user


def answer_and_usage(body):
    texts, last_user = conversation(body)
    reply = "Echo: " + (last_user or "(nothing)")
    input_tokens = max(1, sum(len(t) for t in texts) // 4)
    words = reply.split(" ")
    # Stream pieces: every word but the first keeps its leading space.
    pieces = [words[0]] + [" " + w for w in words[1:]]
    return reply, pieces, input_tokens, len(words)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-llm/1"
    flavor = "both"
    expect_auth = None  # (lowercase header name, value)

    def log_message(self, fmt, *args):  # quiet unless asked
        if self.server.verbose:
            sys.stderr.write("fake_llm: " + (fmt % args) + "\n")

    # ---- plumbing -------------------------------------------------------------------------

    def read_body(self):
        if "chunked" in (self.headers.get("transfer-encoding") or "").lower():
            data = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("content-length") or 0)
        return self.rfile.read(n) if n else b""

    def send_json(self, status, obj, extra_headers=()):
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        for k, v in extra_headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def start_sse(self):
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("cache-control", "no-cache")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()

    def chunk(self, text):
        data = text.encode()
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()
        time.sleep(0.02)  # a real upstream streams; make the pieces arrive separately

    def end_sse(self):
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    # ---- routes ---------------------------------------------------------------------------

    def do_GET(self):
        if self.path == "/_last":
            with LOCK:
                self.send_json(200, dict(STATE))
            return
        self.send_json(404, {"error": {"message": f"no route GET {self.path}"}})

    def do_POST(self):
        raw = self.read_body()
        path = self.path.split("?")[0]
        routes = {
            "/v1/chat/completions": ("openai", self.openai_chat),
            "/v1/messages": ("anthropic", self.anthropic_messages),
        }
        route = routes.get(path)
        if route is None or self.flavor not in ("both", route[0]):
            self.send_json(404, {"error": {"message": f"no route POST {path}"}})
            return
        flavor, handler = route
        try:
            body = json.loads(raw or b"null")
        except ValueError:
            body = None
        record = {
            "method": "POST",
            "path": self.path,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "body": body,
            "usage": None,
        }
        with LOCK:
            STATE["count"] += 1
            STATE["last"] = record
        if self.expect_auth is not None:
            name, value = self.expect_auth
            if self.headers.get(name) != value:
                if flavor == "openai":
                    err = {"error": {"message": "Incorrect API key provided (fake upstream)",
                                     "type": "invalid_request_error", "param": None,
                                     "code": "invalid_api_key"}}
                else:
                    err = {"type": "error", "error": {"type": "authentication_error",
                                                      "message": "invalid x-api-key (fake upstream)"}}
                self.send_json(401, err)
                return
        if not isinstance(body, dict) or not isinstance(body.get("model"), str):
            self.send_json(400, {"error": {"message": "body must be a JSON object with a model"}})
            return
        handler(body, record)

    def openai_chat(self, body, record):
        reply, pieces, prompt, completion = answer_and_usage(body)
        usage = {"prompt_tokens": prompt, "completion_tokens": completion,
                 "total_tokens": prompt + completion}
        record["usage"] = usage
        cid = "chatcmpl-" + uuid.uuid4().hex[:24]
        created = int(time.time())
        model = body["model"]
        if not body.get("stream"):
            self.send_json(200, {
                "id": cid, "object": "chat.completion", "created": created, "model": model,
                "system_fingerprint": "fp_fake",
                "choices": [{"index": 0, "logprobs": None, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": reply,
                                         "refusal": None}}],
                "usage": usage,
            })
            return
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

        def chunk(delta, finish=None, usage_field=False):
            c = {"id": cid, "object": "chat.completion.chunk", "created": created,
                 "model": model, "system_fingerprint": "fp_fake",
                 "choices": [{"index": 0, "delta": delta, "logprobs": None,
                              "finish_reason": finish}]}
            if include_usage:
                c["usage"] = None
            return "data: " + json.dumps(c) + "\n\n"

        self.start_sse()
        self.chunk(chunk({"role": "assistant", "content": "", "refusal": None}))
        for p in pieces:
            self.chunk(chunk({"content": p}))
        self.chunk(chunk({}, finish="stop"))
        if include_usage:
            self.chunk("data: " + json.dumps({
                "id": cid, "object": "chat.completion.chunk", "created": created,
                "model": model, "system_fingerprint": "fp_fake", "choices": [],
                "usage": usage}) + "\n\n")
        self.chunk("data: [DONE]\n\n")
        self.end_sse()

    def anthropic_messages(self, body, record):
        reply, pieces, input_tokens, output_tokens = answer_and_usage(body)
        usage = {"input_tokens": input_tokens, "output_tokens": output_tokens}
        record["usage"] = usage
        mid = "msg_" + uuid.uuid4().hex[:24]
        model = body["model"]
        if not body.get("stream"):
            self.send_json(200, {
                "id": mid, "type": "message", "role": "assistant", "model": model,
                "content": [{"type": "text", "text": reply}],
                "stop_reason": "end_turn", "stop_sequence": None,
                "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens,
                          "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0},
            })
            return

        def event(name, data):
            return f"event: {name}\ndata: {json.dumps(data)}\n\n"

        self.start_sse()
        self.chunk(event("message_start", {"type": "message_start", "message": {
            "id": mid, "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": input_tokens, "output_tokens": 1,
                      "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}}}))
        self.chunk(event("content_block_start", {"type": "content_block_start", "index": 0,
                                                 "content_block": {"type": "text", "text": ""}}))
        self.chunk(event("ping", {"type": "ping"}))
        for p in pieces:
            self.chunk(event("content_block_delta", {"type": "content_block_delta", "index": 0,
                                                     "delta": {"type": "text_delta", "text": p}}))
        self.chunk(event("content_block_stop", {"type": "content_block_stop", "index": 0}))
        self.chunk(event("message_delta", {"type": "message_delta",
                                           "delta": {"stop_reason": "end_turn",
                                                     "stop_sequence": None},
                                           "usage": {"output_tokens": output_tokens}}))
        self.chunk(event("message_stop", {"type": "message_stop"}))
        self.end_sse()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--flavor", choices=["openai", "anthropic", "both"], default="both")
    ap.add_argument("--expect-auth", help='"HEADER: VALUE" every LLM request must carry')
    ap.add_argument("--port-file", help="write the bound port here")
    ap.add_argument("--verbose", action="store_true", help="log each request on stderr")
    args = ap.parse_args()

    Handler.flavor = args.flavor
    if args.expect_auth:
        name, _, value = args.expect_auth.partition(":")
        Handler.expect_auth = (name.strip().lower(), value.strip())
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    server.daemon_threads = True
    server.verbose = args.verbose
    port = server.server_address[1]
    if args.port_file:
        with open(args.port_file + ".tmp", "w") as f:
            f.write(f"{port}\n")
        os.replace(args.port_file + ".tmp", args.port_file)
    print(f"PORT {port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
