"""The base of the errors a user causes and can fix (a missing file, a file of another layout):
entry points print their message on one line and exit non-zero, without a traceback."""

from __future__ import annotations


class UserError(Exception):
    """An expected problem whose message names it and the fix."""
