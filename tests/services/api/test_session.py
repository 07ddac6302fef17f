"""Signed dashboard session values: valid until they expire, bound to the secret and the API key."""

from __future__ import annotations

from services.api.session import SESSION_TTL_S, sign_session, verify_session

NOW = 1_700_000_000.0


def test_a_signed_session_is_valid_until_it_expires() -> None:
    value = sign_session("secret", "key", NOW)
    assert value.startswith(f"{int(NOW) + SESSION_TTL_S}.") and "key" not in value
    assert verify_session("secret", "key", value, NOW + SESSION_TTL_S - 1)
    assert not verify_session("secret", "key", value, NOW + SESSION_TTL_S)


def test_altered_foreign_or_malformed_sessions_are_refused() -> None:
    value = sign_session("secret", "key", NOW)
    expires, _, signature = value.partition(".")
    extended = f"{int(expires) + 3600}.{signature}"
    flipped = value[:-1] + ("0" if value[-1] != "0" else "1")
    for candidate in (extended, flipped, "", None, ".", "abc.def", f"-1.{signature}", "1" * 40 + "." + signature):
        assert not verify_session("secret", "key", candidate, NOW), candidate
    assert not verify_session("other-secret", "key", value, NOW)
    assert not verify_session("secret", "rotated-key", value, NOW)
    assert not verify_session("", "", sign_session("", "", NOW), NOW)  # nothing configured: nobody gets in
