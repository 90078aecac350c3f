"""One base class for every error a user can fix: the CLI prints its message as one line and exits 2.

Each stage raises its own subclass (ConfigError, GridError, LaunchError, ...) so callers can tell
them apart, while the CLI needs a single `except UserError`.
"""

from __future__ import annotations


class UserError(ValueError):
    """Bad input from the user; str(exc) is the one line the CLI prints (exit `code`)."""

    code = 2
