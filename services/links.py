"""Signed links in e-mails: click-through and unsubscribe.

A token is `payload.signature`, both URL-safe base64; the payload is compact JSON with the action,
the offer or customer, and an expiry; the signature is HMAC-SHA256 with `XSELL_LINK_SECRET`. A
forged, altered or expired token is refused (`LinkError`) and changes nothing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass


class LinkError(ValueError):
    """The token is malformed, forged, altered or expired."""


@dataclass(frozen=True)
class LinkClaim:
    """What a verified token says."""

    action: str  # "click" or "unsubscribe"
    customer_id: str
    offer_id: str | None
    expires_at: int


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign_link(
    secret: str, action: str, customer_id: str, offer_id: str | None, ttl_s: int, now: float | None = None
) -> str:
    """A token for `action` on behalf of `customer_id` (and `offer_id`), valid for `ttl_s` seconds."""
    claim = {"a": action, "c": customer_id, "o": offer_id, "e": int((now or time.time()) + ttl_s)}
    payload = _b64(json.dumps(claim, separators=(",", ":"), sort_keys=True).encode())
    signature = _b64(hmac.new(secret.encode(), payload.encode(), hashlib.sha256).digest())
    return f"{payload}.{signature}"


def verify_link(secret: str, token: str, action: str, now: float | None = None) -> LinkClaim:
    """The claim of a valid token for `action`; raise `LinkError` otherwise."""
    try:
        payload, signature = token.split(".")
        expected = _b64(hmac.new(secret.encode(), payload.encode(), hashlib.sha256).digest())
        if not hmac.compare_digest(expected, signature):
            raise LinkError("bad signature")
        claim = json.loads(_unb64(payload))
        result = LinkClaim(action=claim["a"], customer_id=claim["c"], offer_id=claim["o"], expires_at=int(claim["e"]))
    except LinkError:
        raise
    except (ValueError, KeyError, TypeError) as error:
        raise LinkError("malformed link") from error
    if result.action != action:
        raise LinkError(f"link is for {result.action}, not {action}")
    if result.expires_at < (now or time.time()):
        raise LinkError("link expired")
    return result
