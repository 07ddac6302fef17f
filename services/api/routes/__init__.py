"""One router module per resource: offers (API key), links (signed tokens), demo (HTML)."""
