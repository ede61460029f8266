"""A webhook receiver for trying Keyway locally: prints each webhook and whether its signature holds.

    KEYWAY_SECRET_KEY=<dev secret key> KEYWAY_WEBHOOK_SIGNING_KEY=<GET /environment's webhook_signing_key> \
        uv run python docs/examples/webhook_receiver.py   # listens on :8099

Point the environment at it: ``PATCH /environment {"webhook_settings": {"primary_url": "http://127.0.0.1:8099/webhooks"}}``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os

from aiohttp import web

SECRET_KEY = os.environ.get("KEYWAY_SECRET_KEY", "")  # keys X-Nango-Signature
WEBHOOK_SIGNING_KEY = os.environ.get("KEYWAY_WEBHOOK_SIGNING_KEY", "")  # keys X-Nango-Hmac-Sha256


async def receive(request: web.Request) -> web.Response:
    body = await request.read()
    expected = hashlib.sha256(SECRET_KEY.encode() + body).hexdigest()
    expected_hmac = hmac.new(WEBHOOK_SIGNING_KEY.encode(), body, hashlib.sha256).hexdigest()
    valid = hmac.compare_digest(expected, request.headers.get("X-Nango-Signature", "")) and hmac.compare_digest(
        expected_hmac, request.headers.get("X-Nango-Hmac-Sha256", "")
    )
    print(
        json.dumps(
            {"signature_valid": valid, "webhook_id": request.headers.get("webhook-id"), "body": json.loads(body)}
        )
    )
    return web.Response(text="ok")


def main() -> None:
    app = web.Application()
    app.router.add_post("/webhooks", receive)
    web.run_app(app, host="127.0.0.1", port=int(os.environ.get("PORT", "8099")), print=None)


if __name__ == "__main__":
    main()
