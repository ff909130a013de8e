#!/usr/bin/env python3
"""Verify a naga callback (Standard Webhooks), with the standard library only.

    verify(secret, headers, body) -> bool

`secret` is the `[callbacks] secret` of naga (`whsec_<base64 key>`),
`headers` the request headers (webhook-id, webhook-timestamp,
webhook-signature), `body` the raw request body as bytes, unparsed.

As a command: WEBHOOK_SECRET=whsec_... verify_webhook.py ID TIMESTAMP SIGNATURE < body
exits 0 when the signature is valid, 1 otherwise.
"""
import base64
import hashlib
import hmac
import os
import sys
import time

TOLERANCE_SECONDS = 5 * 60


def verify(secret: str, headers: dict, body: bytes, now: float | None = None) -> bool:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    msg_id = headers["webhook-id"]
    timestamp = headers["webhook-timestamp"]
    # Refuse old or future-dated messages: a replayed capture stays invalid.
    if abs((now or time.time()) - int(timestamp)) > TOLERANCE_SECONDS:
        return False
    signed = f"{msg_id}.{timestamp}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    # The header may carry several space-separated signatures (key rotation).
    for candidate in headers["webhook-signature"].split():
        version, _, signature = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(signature, expected):
            return True
    return False


if __name__ == "__main__":
    msg_id, timestamp, signature = sys.argv[1:4]
    headers = {"webhook-id": msg_id, "webhook-timestamp": timestamp, "webhook-signature": signature}
    ok = verify(os.environ["WEBHOOK_SECRET"], headers, sys.stdin.buffer.read())
    print("valid" if ok else "INVALID")
    sys.exit(0 if ok else 1)
