#!/usr/bin/env python3
"""Drive Tollgate with the official, unmodified `openai` and `anthropic` Python SDKs.

Usage: check.py SETUP.json   (written by run.sh; see there for the fields)

For each provider it makes a plain and a streamed call through Tollgate with a Tollgate key as
the SDK's api_key, checks on the fake upstream that the Tollgate key was replaced by the
upstream's own key, reads the key's recorded cost back from the reseller API
(`GET /api/v1/reseller/keys/{id}` → `data.cost_total_usd`) and checks that it grows after each
call by exactly what the upstream's reported usage costs at the `[prices]` of the config. Last,
a model without a `[prices]` entry must be refused with 403 `model_not_allowed`, raised by the
SDK as its PermissionDeniedError, and must never reach the upstream.
"""

import json
import sys
import time
import urllib.error
import urllib.request
from fractions import Fraction
from math import ceil

import anthropic
import openai

FAILURES = []


def check(cond, what):
    if cond:
        print(f"    ok   {what}")
    else:
        print(f"    FAIL {what}")
        FAILURES.append(what)
    return cond


def http_json(url, token=None):
    req = urllib.request.Request(url)
    if token:
        req.add_header("authorization", f"Bearer {token}")
    for _ in range(5):
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return json.load(r)
        except urllib.error.HTTPError as e:
            if e.code == 429:  # management API rate limit: wait as told
                time.sleep(float(e.headers.get("retry-after") or 1))
                continue
            raise
    raise RuntimeError(f"{url}: still rate limited")


class Provider:
    def __init__(self, name, cfg):
        self.name = name
        self.cfg = cfg
        self.price_in = Fraction(cfg["price"]["input_usd_per_mtok"])
        self.price_out = Fraction(cfg["price"]["output_usd_per_mtok"])
        self.cost_micros = 0  # what the reseller API showed last

    # -- the management API and the fake upstream ------------------------------------------

    def key_object(self):
        c = self.cfg
        return http_json(f"{c['api']}/api/v1/reseller/keys/{c['key_id']}", c["partner_token"])

    def cost_usd(self):
        obj = self.key_object()
        assert obj.get("ok") is True, obj
        return obj["data"]["cost_total_usd"]

    def upstream_last(self):
        return http_json(f"{self.cfg['upstream']}/_last")

    def expected_micros(self, usage):
        """ceil(Σ tokens × USD per Mtok) micro-USD, as README § LLM profiles says."""
        if "prompt_tokens" in usage:
            tin, tout = usage["prompt_tokens"], usage["completion_tokens"]
        else:
            tin, tout = usage["input_tokens"], usage["output_tokens"]
        return ceil(tin * self.price_in + tout * self.price_out), tin, tout

    def wait_cost(self, expected_total, timeout=5.0):
        """Polls the reseller API until the key's cost reads `expected_total` micro-USD (the
        request is settled when its response body has been passed on; allow a moment)."""
        deadline = time.monotonic() + timeout
        while True:
            micros = round(self.cost_usd() * 1e6)
            if micros == expected_total or time.monotonic() > deadline:
                return micros
            time.sleep(0.2)

    # -- the per-call checks -----------------------------------------------------------------

    def after_call(self, label, count_before):
        """Checks what reached the upstream and what the key was charged for the last call."""
        last = self.upstream_last()
        rec = last["last"]
        check(last["count"] == count_before + 1, f"the upstream received the {label} call")
        hdr, value = self.cfg["upstream_auth"]
        check(rec["headers"].get(hdr.lower()) == value,
              f"upstream saw `{hdr}: {value[:12]}...` (the upstream key from auth_value_env)")
        leaked = [k for k, v in rec["headers"].items() if self.cfg["key"] in v]
        check(not leaked, f"the Tollgate key was stripped (found in: {leaked or 'no header'})")
        add, tin, tout = self.expected_micros(rec["usage"])
        before = self.cost_micros
        now = self.wait_cost(before + add)
        check(now > before, f"cost grew: {before} -> {now} micro-USD")
        check(now == before + add,
              f"charged exactly the reported usage: {tin} in x ${self.price_in} + {tout} out x "
              f"${self.price_out} per Mtok = {add} micro-USD (key total now "
              f"cost_total_usd={now / 1e6:.6f})")
        self.cost_micros = now
        return rec

    def refused_model(self, call, error_cls):
        """An unpriced model: 403 model_not_allowed via the SDK, nothing forwarded or charged."""
        model = self.cfg["unpriced_model"]
        count = self.upstream_last()["count"]
        try:
            call(model)
        except error_cls as e:
            body = e.response.json()
            print(f"  refused  model {model!r}: {type(e).__name__} {e.status_code} {body}")
            print(f"           e.message={e.message!r}"
                  + (f" e.code={e.code!r}" if hasattr(e, "code") else ""))
            check(e.status_code == 403, "status 403")
            check(body.get("error", {}).get("code") == "model_not_allowed",
                  "error.code == model_not_allowed")
        except Exception as e:  # noqa: BLE001 - report whatever else the SDK raised
            print(f"  refused  model {model!r}: unexpected {type(e).__name__}: {e}")
            check(False, f"{error_cls.__name__} raised")
        else:
            check(False, f"model {model!r} was refused")
        check(self.upstream_last()["count"] == count, "the refused call never reached the upstream")
        time.sleep(0.3)
        check(round(self.cost_usd() * 1e6) == self.cost_micros, "the refused call cost nothing")


def run_openai(p):
    c = p.cfg
    print(f"\n== openai {openai.__version__}: OpenAI(base_url={c['proxy']}/v1, api_key=<tollgate key>)")
    client = openai.OpenAI(base_url=f"{c['proxy']}/v1", api_key=c["key"])
    p.cost_micros = round(p.cost_usd() * 1e6)
    check(p.cost_micros == 0, "a fresh key has cost_total_usd 0")
    msgs = [{"role": "user", "content": "Say hello to Tollgate, please."}]

    count = p.upstream_last()["count"]
    r = client.chat.completions.create(model=c["model"], messages=msgs, max_tokens=64)
    print(f"  plain    -> {r.choices[0].message.content!r}  usage={r.usage.prompt_tokens}/"
          f"{r.usage.completion_tokens}")
    p.after_call("plain", count)

    count = p.upstream_last()["count"]
    stream = client.chat.completions.create(model=c["model"], messages=msgs, stream=True)
    chunks = list(stream)
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    print(f"  stream   -> {text!r}  ({len(chunks)} chunks)")
    rec = p.after_call("streamed", count)
    check((rec["body"].get("stream_options") or {}).get("include_usage") is True,
          "Tollgate injected stream_options.include_usage=true upstream")
    check(all(ch.usage is None and ch.choices for ch in chunks),
          "the client, which did not ask, got no usage-only chunk")

    count = p.upstream_last()["count"]
    stream = client.chat.completions.create(model=c["model"], messages=msgs, stream=True,
                                            stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    usage = chunks[-1].usage if chunks else None
    print(f"  stream+usage -> {text!r}  final chunk usage={usage and usage.model_dump()}")
    rec = p.after_call("streamed (include_usage)", count)
    check(usage is not None and usage.prompt_tokens == rec["usage"]["prompt_tokens"],
          "the client, which asked, got the usage chunk")

    p.refused_model(
        lambda m: client.chat.completions.create(model=m, messages=msgs),
        openai.PermissionDeniedError)


def run_anthropic(p):
    c = p.cfg
    print(f"\n== anthropic {anthropic.__version__}: Anthropic(base_url={c['proxy']}, "
          f"api_key=<tollgate key>)")
    client = anthropic.Anthropic(base_url=c["proxy"], api_key=c["key"])
    p.cost_micros = round(p.cost_usd() * 1e6)
    check(p.cost_micros == 0, "a fresh key has cost_total_usd 0")
    msgs = [{"role": "user", "content": "Say hello to Tollgate, please."}]

    count = p.upstream_last()["count"]
    m = client.messages.create(model=c["model"], max_tokens=64, messages=msgs)
    print(f"  plain    -> {m.content[0].text!r}  usage={m.usage.input_tokens}/"
          f"{m.usage.output_tokens}")
    p.after_call("plain", count)

    count = p.upstream_last()["count"]
    with client.messages.stream(model=c["model"], max_tokens=64, messages=msgs) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    print(f"  stream   -> {text!r}  usage={final.usage.input_tokens}/{final.usage.output_tokens}")
    rec = p.after_call("streamed", count)
    check("stream_options" not in rec["body"], "nothing injected into an Anthropic request")
    check(final.usage.output_tokens == rec["usage"]["output_tokens"],
          "message_delta usage passed through to the client")

    p.refused_model(
        lambda mdl: client.messages.create(model=mdl, max_tokens=16, messages=msgs),
        anthropic.PermissionDeniedError)


def main():
    setup = json.load(open(sys.argv[1]))
    for name, fn in (("openai", run_openai), ("anthropic", run_anthropic)):
        if name in setup:
            try:
                fn(Provider(name, setup[name]))
            except Exception as e:  # noqa: BLE001 - a failed SDK call is a failed check
                print(f"  ERROR {type(e).__name__}: {e}")
                FAILURES.append(f"{name}: {type(e).__name__}: {e}")
    print()
    if FAILURES:
        print(f"FAILED: {len(FAILURES)} check(s):")
        for f in FAILURES:
            print(f"  - {f}")
        sys.exit(1)
    print(f"PASSED: openai {openai.__version__} and anthropic {anthropic.__version__} work "
          "unchanged through Tollgate, and every call was charged to the key.")


if __name__ == "__main__":
    main()
