"""Drives the official OpenAI and Anthropic Python SDKs, with their default retry settings,
against Tollgate denials: for each case (a name and a key in a refused state) and each SDK,
prints one JSON line with the HTTP status the SDK raised and how long the call took.

Used by tests/sdk_retries.rs:  python3 tests/sdk/denials.py '{"proxy": URL, "cases": {NAME: KEY}}'
"""

import json
import sys
import time

import anthropic
import openai


def call_openai(proxy, key):
    client = openai.OpenAI(base_url=f"{proxy}/v1", api_key=key)
    client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
    )


def call_anthropic(proxy, key):
    client = anthropic.Anthropic(base_url=proxy, api_key=key)
    client.messages.create(
        model="claude-3-5-haiku-latest",
        max_tokens=16,
        messages=[{"role": "user", "content": "hi"}],
    )


def main():
    spec = json.loads(sys.argv[1])
    sdks = {"openai": (call_openai, openai.APIStatusError),
            "anthropic": (call_anthropic, anthropic.APIStatusError)}
    for name, key in spec["cases"].items():
        for sdk, (call, status_error) in sdks.items():
            started = time.monotonic()
            status = None
            try:
                call(spec["proxy"], key)
            except status_error as err:
                status = err.status_code
            took = time.monotonic() - started
            print(json.dumps({"case": name, "sdk": sdk, "status": status, "seconds": took}),
                  flush=True)


if __name__ == "__main__":
    main()
