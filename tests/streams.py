"""Names of a test's own topics and consumer groups on a shared broker, so tests never read each
other's records or offsets."""

from __future__ import annotations


def own_topics(suffix: str) -> dict[str, str]:
    """The four topics, each named with ``suffix`` (settings overrides)."""
    return {
        "topic_purchases": f"purchases-{suffix}",
        "topic_purchases_dlq": f"purchases.dlq-{suffix}",
        "topic_offers": f"offers-{suffix}",
        "topic_offer_feedback": f"offer-feedback-{suffix}",
    }


def own_groups(suffix: str, *groups: str) -> dict[str, str]:
    """The consumer groups named in ``groups`` ("offer", "inbox", ...), each as ``<group>-<suffix>``
    except the offer service's, ``offers-<suffix>`` (settings overrides)."""
    return {f"{group}_group": f"{'offers' if group == 'offer' else group}-{suffix}" for group in groups}
