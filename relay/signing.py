"""Standard Webhooks signatures for outbound requests (https://www.standardwebhooks.com/).

A receiver verifies them with the spec's reference libraries: the secret is
``whsec_<base64 key>``; the signature is ``v1,<base64 HMAC-SHA256 of
"id.timestamp.body">``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Callable

Signer = Callable[[str, bytes], dict[str, str]]


def signer_for(secret: str, clock: Callable[[], float] = time.time) -> Signer:
    """A function giving the three Standard Webhooks headers for (message id, body)."""
    if not secret.startswith("whsec_"):
        raise ValueError("expected a Standard Webhooks secret 'whsec_<base64>'")
    try:
        key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except binascii.Error:
        raise ValueError("the part after 'whsec_' is not valid base64") from None
    if len(key) < 16:
        raise ValueError("the signing key is shorter than 16 bytes")

    def sign(message_id: str, body: bytes) -> dict[str, str]:
        timestamp = str(int(clock()))
        signed = b"%s.%s.%s" % (message_id.encode(), timestamp.encode(), body)
        digest = hmac.new(key, signed, hashlib.sha256).digest()
        return {
            "webhook-id": message_id,
            "webhook-timestamp": timestamp,
            "webhook-signature": "v1," + base64.b64encode(digest).decode(),
        }

    return sign
