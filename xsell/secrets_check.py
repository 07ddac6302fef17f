"""Refuse to run with the shipped demo secrets where they would be real ones.

The defaults of `XSELL_API_KEY` and `XSELL_LINK_SECRET` are public (they are in the repository) and
the demo page embeds the API key, so a production process must not start with any of them. The
caller decides when this applies (e.g. `XSELL_ENV=production`); `refuse_placeholder_secrets` says
what is wrong and which variable fixes it.
"""

from __future__ import annotations

from xsell.settings import Settings

MIN_SECRET_LENGTH = 16
# Values that are placeholders wherever they come from (the shipped defaults are added below).
KNOWN_PLACEHOLDERS = frozenset({"changeme", "change-me", "secret", "password", "test", "xsell"})


class PlaceholderSecretError(ValueError):
    """A secret still has its demo value (or none); the message names each variable to set."""


def refuse_placeholder_secrets(settings: Settings) -> None:
    """Raise `PlaceholderSecretError` if the API key or link secret is a default, a placeholder or too
    short, or if the demo page (which embeds the API key) is on; return None when all is well."""
    problems: list[str] = []
    for field, variable in (("api_key", "XSELL_API_KEY"), ("link_secret", "XSELL_LINK_SECRET")):
        value: str = getattr(settings, field)
        default = Settings.model_fields[field].default
        if value == default or value.strip().lower() in KNOWN_PLACEHOLDERS:
            problems.append(f"{variable} is the public demo/placeholder value; set a random secret "
                            "(e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`)")
        elif len(value.strip()) < MIN_SECRET_LENGTH:
            problems.append(f"{variable} is {len(value.strip())} characters; use at least {MIN_SECRET_LENGTH} random ones")
    if settings.api_key and settings.api_key == settings.link_secret:
        problems.append("XSELL_API_KEY and XSELL_LINK_SECRET are the same; use two different secrets")
    if settings.demo_enabled:
        problems.append("XSELL_DEMO_ENABLED is true: the demo page shows the API key to every visitor; set it to false")
    if problems:
        raise PlaceholderSecretError("refusing to run with placeholder secrets: " + "; ".join(problems))
