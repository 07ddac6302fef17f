"""Signed ops-dashboard sessions: what the login form's cookie holds.

A session value is `expires.signature`: the expiry (Unix seconds) and the hex HMAC-SHA256, keyed
with `XSELL_LINK_SECRET`, of a message naming its purpose, the expiry and a digest of the API key
the operator logged in with. So it cannot be forged or extended, it is never the key itself, and
changing `XSELL_API_KEY` (or the secret) ends every session.
"""

from __future__ import annotations

import hashlib
import hmac

COOKIE_NAME = "xsell_dashboard"
SESSION_TTL_S = 12 * 3600
_PURPOSE = b"xsell-dashboard-session"


def _signature(secret: str, api_key: str, expires_at: int) -> str:
    key_digest = hashlib.sha256(api_key.encode()).hexdigest()
    message = b"|".join((_PURPOSE, str(expires_at).encode(), key_digest.encode()))
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def sign_session(secret: str, api_key: str, now: float, ttl_s: int = SESSION_TTL_S) -> str:
    """A session value valid for `ttl_s` seconds from `now`."""
    expires_at = int(now) + ttl_s
    return f"{expires_at}.{_signature(secret, api_key, expires_at)}"


def verify_session(secret: str, api_key: str, value: str | None, now: float) -> bool:
    """True if `value` was signed for this secret and API key and has not expired."""
    if not value or not secret or not api_key:
        return False
    expires, _, signature = value.partition(".")
    if not expires.isdigit() or len(expires) > 12:
        return False
    expected = _signature(secret, api_key, int(expires))
    return hmac.compare_digest(signature.encode(), expected.encode()) and int(expires) > now
