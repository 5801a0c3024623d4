"""The one exception type for bad user input.

Every CLI (``trainables.run``, ``tuner.launch``, ``analysis.*``) catches :class:`UserError`,
prints its message on one line and exits with code 2, no traceback. Raise it wherever a value
given by the user is wrong, naming the bad value and the valid choices.
"""

from __future__ import annotations

import errno
import functools
import os
import sys
import tempfile
from collections.abc import Iterable


class UserError(ValueError):
    """Bad input from the user: the message says what was wrong and what would be valid."""


def choice_error(what: str, value: object, valid: Iterable[object]) -> UserError:
    """``unknown task 'foo'; valid: cola, mrpc, sst2``-style error."""
    return UserError(f"unknown {what} {value!r}; valid: {', '.join(map(str, valid))}")


def check_writable_dir(path: str, option: str) -> str:
    """The absolute ``path`` of an output folder if files can be written there (or, while it does
    not exist, in its nearest existing parent, which must be a folder); a UserError naming
    ``option`` otherwise (under /proc, under a file, read-only). Creates nothing."""
    path = os.path.abspath(os.path.expanduser(path))
    existing = path
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    try:
        if not os.path.isdir(existing):
            raise NotADirectoryError(errno.ENOTDIR, f"{existing} is a file")
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as err:
        raise UserError(f"{option} {path} is not a writable folder ({err.strerror or err})") from None
    return path


def exit_on_user_error(fn):
    """Decorator for CLI ``main`` functions: a UserError becomes one line on stderr and exit 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UserError as err:
            print(f"error: {err}", file=sys.stderr)
            raise SystemExit(2) from None

    return wrapper
