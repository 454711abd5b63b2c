"""The commands' one way of reporting bad input: one ``error: ...`` line on stderr, exit status 2."""
from __future__ import annotations

import sys

USAGE_ERROR = 2


def fail(message: object, status: int = USAGE_ERROR) -> int:
    """Print ``error: <message>`` to stderr and return ``status``, for ``return fail(...)`` in a
    command's ``main`` (or ``sys.exit(fail(...))`` where there is nothing to return to)."""
    print(f"error: {message}", file=sys.stderr)
    return status
