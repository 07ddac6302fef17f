"""Security tests: access control, signed links, escaping, logs without addresses, secrets."""
