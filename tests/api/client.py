"""A partner's integration, written against a Python client generated from Tollgate's own
/openapi.json by openapi-python-client (PyPI): create, list, patch, disable and revoke a key and
read usage, through the generated functions and models only. Run by tests/api_conformance.rs:

    python3 tests/api/client.py <api base URL> <partner token> <work dir>

Exits non-zero with the failing step when the client cannot be generated, imported or used.
"""

import subprocess
import sys
import uuid


def generate(api, work):
    out = f"{work}/client"
    subprocess.run(
        ["openapi-python-client", "generate", "--url", f"{api}/openapi.json",
         "--output-path", out, "--overwrite"],
        check=True, capture_output=True, text=True,
    )
    sys.path.insert(0, out)


def main(api, token, work):
    generate(api, work)
    from tollgate_management_api_client import AuthenticatedClient
    from tollgate_management_api_client.api.reseller import (
        create_key, disable_key, enable_key, get_key, get_usage, list_keys, revoke_key, update_key,
    )
    from tollgate_management_api_client.models import KeyFields, Permission

    client = AuthenticatedClient(base_url=api, token=token, raise_on_unexpected_status=True)

    # Create, retried with the same Idempotency-Key: one key.
    retry_key = str(uuid.uuid4())
    fields = KeyFields(
        label="generated-client", description="made by the generated client",
        permissions=[Permission.READ], daily_cost_limit_usd=5.0, rate_limit_per_minute=120,
    )
    first = create_key.sync(client=client, body=fields, idempotency_key=retry_key)
    again = create_key.sync(client=client, body=fields, idempotency_key=retry_key)
    assert first.ok and first.data.api_key.startswith("cr_"), first
    assert again.data.id == first.data.id, "an idempotent retry minted another key"
    key_id = first.data.id
    assert isinstance(key_id, uuid.UUID), key_id
    assert first.data.has_restricted_permissions is True, first.data
    assert first.data.user_type == "partner" and first.data.created_by_name, first.data

    # List, a page of one at a time, until the new key is found.
    cursor, seen = None, []
    while True:
        page = list_keys.sync(client=client, limit=1, cursor=cursor if cursor else None)
        assert len(page.data) <= 1, page
        seen += [k.id for k in page.data]
        if not page.next_cursor:
            break
        cursor = page.next_cursor
    assert key_id in seen and len(seen) == len(set(seen)), seen

    # PATCH answers the key as stored.
    patched = update_key.sync(key_id, client=client, body=KeyFields(label="renamed", concurrency_limit=3))
    assert patched.data.label == "renamed" and patched.data.concurrency_limit == 3, patched
    assert get_key.sync(key_id, client=client).data.label == "renamed"

    # Disable, then revoke for good: enabling a revoked key is a 409 with {"detail"}.
    disabled = disable_key.sync(key_id, client=client).data
    assert disabled.disabled is True and disabled.disabled_at and disabled.disabled_by, disabled
    revoked = revoke_key.sync(key_id, client=client)
    assert revoked.data.revoked is True and revoked.data.revoked_at, revoked
    assert revoked.data.revoked_by_name == disabled.disabled_by_name, revoked
    refused = enable_key.sync_detailed(key_id, client=client)
    assert refused.status_code == 409 and "revoked" in refused.parsed.detail, refused

    # The usage series: seven days by default, thirty on request.
    assert len(get_usage.sync(client=client).data) == 7
    assert len(get_usage.sync(client=client, range_="30d").data) == 30
    print("generated client: create, list, patch, disable, revoke and usage all worked")


if __name__ == "__main__":
    main(*sys.argv[1:4])
