"""Errors a user can cause, kept apart from bugs.

The CLI prints a `UserError` as one sentence on stderr and exits with its `exit_code`; any other
exception is a bug in cnnlab and keeps its traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class UserError(ValueError):
    """Bad input: the message says what was received, what is accepted and how to fix it."""

    exit_code = 2


class ConfigError(UserError):
    """One or more problems in a config, all reported together."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        if len(self.problems) == 1:
            message = f"invalid config: {self.problems[0]}"
        else:
            lines = "\n".join(f"  - {p}" for p in self.problems)
            message = f"invalid config ({len(self.problems)} problems):\n{lines}"
        super().__init__(message)


class DataError(UserError):
    """A data set that cannot be used as given (missing files, bad labels, corrupt images)."""


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or infinite loss; the run stopped without overwriting checkpoints."""

    exit_code = 3

    def __init__(self, message: str, step: int, epoch: int):
        super().__init__(message)
        self.step = step
        self.epoch = epoch


def first_line(error: BaseException) -> str:
    """The first line of an error's message, or its type's name when it has none."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def described(error: BaseException, limit: int = 200) -> str:
    """'Type: first line' of an error raised by the user's code, for a message naming it."""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0][:limit]}" if lines else type(error).__name__


def did_you_mean(received: str, accepted: Iterable[str], most: int = 1) -> str:
    """A ' (did you mean X?)' hint for a misspelled name (up to `most` names, joined by 'or'),
    or ''."""
    accepted = list(accepted)
    # A name in the wrong case (`Relu`) means that name, not the nearest spelling (`elu`).
    same_but_case = [name for name in accepted if str(name).lower() == str(received).lower()]
    close = same_but_case[:1] or difflib.get_close_matches(str(received), accepted, n=most,
                                                           cutoff=0.6)
    return f" (did you mean {' or '.join(repr(str(c)) for c in close)}?)" if close else ""


def unknown_name(kind: str, received: object, accepted: Iterable[str], list_kind: str) -> UserError:
    accepted = sorted(accepted)
    return UserError(
        f"unknown {kind} '{received}'{did_you_mean(str(received), accepted)}; "
        f"accepted: {', '.join(accepted)} (see `cnnlab list {list_kind}`)"
    )


class Interrupted(Exception):
    """SIGINT or SIGTERM arrived; training wrote a checkpoint at the last completed step."""

    exit_code = 130


class DiskFull(RuntimeError):
    """The disk filled up while a run was writing; its last checkpoint is intact."""

    exit_code = 1


class ExportMismatch(RuntimeError):
    """An exported model's outputs differ from PyTorch's beyond the stated tolerance; the file
    is kept under a `.unverified` name."""

    exit_code = 1


# What the CLI reports as one line and an exit code instead of a traceback.
EXPECTED_STOPS = (UserError, NonFiniteLossError, Interrupted, DiskFull, ExportMismatch)
