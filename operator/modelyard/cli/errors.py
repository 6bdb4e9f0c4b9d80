"""The one error type of the command: a line for the user and the exit code that goes with it."""

from __future__ import annotations

import sys

from modelyard.exitcodes import EXIT_FAILED, EXIT_USAGE


class CliError(Exception):
    """A mistake or a state the user can act on: printed as one line, never as a traceback."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.message = message
        self.code = code

    def tell(self) -> int:
        """Print the line for the user; the exit code that goes with it."""
        print(f"error: {self.message}", file=sys.stderr)
        return self.code


class UsageError(CliError):
    """The command line itself is wrong (unknown resource type, bad flag value, bad file)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, EXIT_USAGE)


class NotFound(CliError):
    """The object named does not exist in the namespace."""
