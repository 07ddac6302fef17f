"""Signed links: valid ones verify; forged, altered, expired or wrong-action ones are refused."""

from __future__ import annotations

import pytest

from services.links import LinkError, sign_link, verify_link


def test_valid_link_verifies() -> None:
    token = sign_link("s3cret", "click", "C1", "offer-1", ttl_s=60, now=1_000)
    claim = verify_link("s3cret", token, "click", now=1_030)
    assert (claim.customer_id, claim.offer_id, claim.action) == ("C1", "offer-1", "click")


@pytest.mark.parametrize(
    "mutate",
    [
        lambda t: t[:-2] + ("AA" if not t.endswith("AA") else "BB"),  # altered signature
        lambda t: "e30" + t[3:],  # altered payload
        lambda t: t.replace(".", ""),  # malformed
        lambda t: "garbage",
    ],
)
def test_altered_or_forged_links_are_refused(mutate) -> None:
    token = sign_link("s3cret", "click", "C1", "offer-1", ttl_s=60, now=1_000)
    with pytest.raises(LinkError):
        verify_link("s3cret", mutate(token), "click", now=1_010)


def test_wrong_secret_expiry_and_action_are_refused() -> None:
    token = sign_link("s3cret", "unsubscribe", "C1", None, ttl_s=60, now=1_000)
    with pytest.raises(LinkError, match="signature"):
        verify_link("other", token, "unsubscribe", now=1_010)
    with pytest.raises(LinkError, match="expired"):
        verify_link("s3cret", token, "unsubscribe", now=2_000)
    with pytest.raises(LinkError, match="not click"):
        verify_link("s3cret", token, "click", now=1_010)
