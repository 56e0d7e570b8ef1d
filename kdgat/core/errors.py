"""Errors the CLI turns into one readable line and a non-zero exit code.

Anything that is the user's fault (bad input file, bad config, unknown dataset)
raises a subclass of :class:`KdgatError`; everything else is a bug and keeps its
traceback.
"""

from __future__ import annotations

from pathlib import Path


class KdgatError(Exception):
    """A problem the user can fix; ``str(err)`` is the whole one-line message."""

    exit_code = 1


class ConfigError(KdgatError):
    """A config or catalog file (or a -O override) is invalid."""

    exit_code = 2


class UsageError(KdgatError):
    """The command line asks for something kdgat does not know or cannot combine (exit 2, like click's)."""

    exit_code = 2


class Interrupted(KdgatError):
    """A stage stopped on a signal after keeping what it needs to continue: exit 128 + the signal's number
    (143 for SIGTERM, 140 for SIGUSR2), codes a scheduler's retry rule retries."""

    def __init__(self, message: str, signum: int = 15):
        super().__init__(message)
        self.exit_code = 128 + int(signum)


class BadInputError(KdgatError):
    """A capture file cannot be read: names the file, the line (if known) and the problem."""

    def __init__(self, path: str | Path, problem: str, line: int | None = None):
        self.path = str(path)
        self.line = line
        self.problem = problem
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {problem}")
