"""Webhook signatures: Nango's two headers, checked as Nango's node SDK does, and Standard Webhooks."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import shutil
import subprocess
import time
import uuid
from datetime import UTC, datetime

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from keyway_shared.jsjson import js_stringify
from keyway_shared.webhook_signing import (
    generate_signing_key,
    nango_hmac_signature,
    nango_signature,
    standard_signature,
    verify_nango_hmac,
    verify_nango_signature,
)

SECRET_KEY = "0b1c7f3e-5d3a-4c55-9f0e-2a4b6c8d0e1f"
PAYLOAD = {
    "from": "nango",
    "type": "auth",
    "connectionId": "user-ü",
    "providerConfigKey": "github-dev",
    "authMode": "OAUTH2",
    "provider": "github",
    "environment": "dev",
    "operation": "creation",
    "success": True,
}
BODY = js_stringify(PAYLOAD).encode()


def test_nango_signature_is_sha256_of_secret_then_body() -> None:
    expected = hashlib.sha256(f"{SECRET_KEY}{BODY.decode()}".encode()).hexdigest()
    signature = nango_signature(SECRET_KEY, BODY)
    assert signature == expected
    assert len(signature) == 64
    assert signature == signature.lower()
    # Not an HMAC, and it depends on both inputs.
    assert signature != hmac.new(SECRET_KEY.encode(), BODY, hashlib.sha256).hexdigest()
    assert nango_signature("other-secret", BODY) != signature
    assert nango_signature(SECRET_KEY, BODY + b" ") != signature


def test_nango_hmac_is_hmac_sha256_of_body() -> None:
    expected = hmac.new(SECRET_KEY.encode(), BODY, hashlib.sha256).hexdigest()
    assert nango_hmac_signature(SECRET_KEY, BODY) == expected
    assert nango_hmac_signature(SECRET_KEY, BODY) != nango_signature(SECRET_KEY, BODY)


def test_verify_helpers() -> None:
    assert verify_nango_signature(SECRET_KEY, BODY, nango_signature(SECRET_KEY, BODY))
    assert verify_nango_signature(SECRET_KEY, BODY, " " + nango_signature(SECRET_KEY, BODY).upper() + "\n")
    assert not verify_nango_signature(SECRET_KEY, BODY, nango_signature("wrong", BODY))
    assert not verify_nango_signature(SECRET_KEY, BODY + b"x", nango_signature(SECRET_KEY, BODY))
    assert verify_nango_hmac(SECRET_KEY, BODY, nango_hmac_signature(SECRET_KEY, BODY))
    assert not verify_nango_hmac(SECRET_KEY, BODY, nango_signature(SECRET_KEY, BODY))


_NODE_VERIFY = """
const crypto = require('crypto');
const [secret, body, sig, mac] = JSON.parse(require('fs').readFileSync(0, 'utf8'));
const payload = JSON.parse(body);
// What Nango's node SDK does: re-serialise the parsed payload and hash secret + text.
const legacy = crypto.createHash('sha256').update(`${secret}${JSON.stringify(payload)}`).digest('hex');
const hmac = crypto.createHmac('sha256', secret).update(body).digest('hex');
process.stdout.write(JSON.stringify({legacy: legacy === sig, hmac: hmac === mac}));
"""


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_node_sdk_style_verification_accepts_our_headers() -> None:
    payload = {**PAYLOAD, "error": {"type": "unknown", "description": "ümlaut ✓"}, "n": 1.0}
    body = js_stringify(payload).encode()
    request = json.dumps(
        [SECRET_KEY, body.decode(), nango_signature(SECRET_KEY, body), nango_hmac_signature(SECRET_KEY, body)]
    )
    out = subprocess.run(
        ["node", "-e", _NODE_VERIFY], input=request, capture_output=True, text=True, timeout=60, check=True
    )
    assert json.loads(out.stdout) == {"legacy": True, "hmac": True}


def _standard_headers(keys: list[str], body: bytes, *, timestamp: int | None = None) -> dict[str, str]:
    msg_id = f"msg_{uuid.uuid4().hex}"
    ts = int(time.time()) if timestamp is None else timestamp
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": standard_signature(keys, msg_id=msg_id, timestamp=ts, body=body),
    }


def test_standard_signature_verified_by_the_reference_library() -> None:
    key = generate_signing_key()
    assert key.startswith("whsec_")
    assert len(base64.b64decode(key.removeprefix("whsec_"))) == 24
    headers = _standard_headers([key], BODY)
    assert headers["webhook-signature"].startswith("v1,")
    assert Webhook(key).verify(BODY, headers) == PAYLOAD


def test_standard_signature_rejects_tampering() -> None:
    key = generate_signing_key()
    headers = _standard_headers([key], BODY)
    with pytest.raises(WebhookVerificationError):
        Webhook(key).verify(BODY.replace(b"github", b"gitlab"), headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(key).verify(BODY, {**headers, "webhook-id": "msg_other"})
    with pytest.raises(WebhookVerificationError):
        Webhook(generate_signing_key()).verify(BODY, headers)


def test_standard_signature_with_two_keys_during_rotation() -> None:
    old, new = generate_signing_key(), generate_signing_key()
    headers = _standard_headers([new, old], BODY)
    parts = headers["webhook-signature"].split(" ")
    assert len(parts) == 2
    assert all(part.startswith("v1,") for part in parts)
    assert parts[0] != parts[1]
    # A receiver holding either key accepts the delivery…
    assert Webhook(old).verify(BODY, headers) == PAYLOAD
    assert Webhook(new).verify(BODY, headers) == PAYLOAD
    # …and each signature stands on its own with its own key.
    assert Webhook(new).verify(BODY, {**headers, "webhook-signature": parts[0]}) == PAYLOAD
    assert Webhook(old).verify(BODY, {**headers, "webhook-signature": parts[1]}) == PAYLOAD
    with pytest.raises(WebhookVerificationError):
        Webhook(old).verify(BODY, {**headers, "webhook-signature": parts[0]})
    with pytest.raises(WebhookVerificationError):
        Webhook(generate_signing_key()).verify(BODY, headers)


def test_standard_signature_matches_the_library_signer() -> None:
    key = generate_signing_key()
    ts = int(time.time())
    expected = Webhook(key).sign("msg_1", datetime.fromtimestamp(ts, tz=UTC), BODY.decode())
    assert standard_signature([key], msg_id="msg_1", timestamp=ts, body=BODY) == expected
