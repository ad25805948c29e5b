"""The study journal file, made to survive a write that never finished.

Optuna's journal is one JSON record per line, appended under a lock. A process killed in the
middle of an append (power cut, full disk, SIGKILL during a large write) leaves a torn line with
no end. Optuna then glues the next record onto it, cannot parse the result, and every later read
of the file fails, for every study in it, finished ones included.

`RepairingJournalBackend` finds such damage and repairs it under the journal's own write lock:

- a torn last line is cut off, so the journal ends at its last complete record;
- a torn record that a later append was glued onto has its torn bytes overwritten with spaces,
  which keeps the complete record behind it and every byte offset (other processes reading the
  file remember offsets);
- a damaged line with no complete record in it becomes a record that changes nothing.

Before changing anything the whole file is copied aside as `<journal>.torn-<offset>`, and a
warning names the byte offset of the first damaged line and the copy.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import warnings
from collections.abc import Generator
from pathlib import Path
from typing import Any

from optuna.storages.journal import JournalFileBackend
from optuna.storages.journal._file import get_lock_file

from cnnlab.atomic import replace_atomically
from cnnlab.rundir import TornFileWarning

RECORD_START = b'{"op_code"'
# Sets an attribute of a study that does not exist: every Optuna version skips it.
NO_OP_RECORD = b'{"op_code":2,"worker_id":"cnnlab-repair","study_id":-1,"user_attr":{}}'
TAIL_PROBE = 1 << 16  # bytes read from the end to check the last line without reading it all


class TornJournalWarning(TornFileWarning):
    """A study journal had a torn record; it was repaired and the damaged file kept."""


def _parses(line: bytes) -> bool:
    try:
        json.loads(line)
    except ValueError:
        return False
    return True


def _complete_tail(line: bytes) -> int | None:
    """Where, in a damaged line, a complete record starts after torn bytes; None if none does.
    `{"op_code"` can only appear unescaped at the start of a record, never inside a value."""
    start = line.rfind(RECORD_START)
    while start > 0:
        if _parses(line[start:]):
            return start
        start = line.rfind(RECORD_START, 0, start)
    return None


def _last_line_is_complete(path: Path) -> bool:
    with open(path, "rb") as handle:
        size = handle.seek(0, os.SEEK_END)
        if size == 0:
            return True
        handle.seek(max(0, size - TAIL_PROBE))
        tail = handle.read()
    if not tail.endswith(b"\n"):
        return False
    previous = tail.rfind(b"\n", 0, len(tail) - 1)
    if previous < 0 and size > len(tail):
        return True  # a last line longer than the probe: leave it to the full check on read
    return _parses(tail[previous + 1:])


class RepairingJournalBackend(JournalFileBackend):
    """Optuna's journal file backend that repairs torn records instead of failing on them."""

    def __init__(self, file_path: str) -> None:
        super().__init__(file_path)
        self._path = Path(file_path)
        if not _last_line_is_complete(self._path):
            # It may be an append in progress: look again holding the writers' lock.
            with get_lock_file(self._lock):
                self._repair_locked()

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        with get_lock_file(self._lock):
            if not _last_line_is_complete(self._path):
                self._repair_locked()  # else this record would be glued onto the torn one
            text = "".join(json.dumps(log, separators=(",", ":")) + "\n" for log in logs)
            with open(self._path, "ab") as handle:
                handle.write(text.encode("utf-8"))
                handle.flush()
                os.fsync(handle.fileno())

    def read_logs(self, log_number_from: int) -> Generator[dict[str, Any], None, None]:
        position, repaired = log_number_from, False
        while True:
            try:
                for log in super().read_logs(position):
                    position += 1
                    yield log
                return
            except ValueError:  # a line that is not JSON, or has no end, before the last one
                if repaired:
                    raise
                with get_lock_file(self._lock):
                    self._repair_locked()
                repaired = True

    def _repair_locked(self) -> list[int]:
        """Check the whole file and repair it (the caller holds the writers' lock); returns the
        byte offsets of the damaged lines."""
        data = self._path.read_bytes()
        offset, damaged = 0, []
        patches: list[tuple[int, bytes]] = []  # same-length overwrites
        cut: int | None = None  # truncate here
        dropped: list[tuple[int, int]] = []  # (offset, length) of lines removed outright
        # Split only at "\n", as Optuna's reader does (bytes.splitlines would also split at "\r").
        for line in re.findall(b"[^\n]*\n|[^\n]+$", data):
            body = line.rstrip(b"\r\n")
            if not line.endswith(b"\n"):
                damaged.append(offset)
                cut = offset
                break
            if body.strip() and not _parses(body):
                damaged.append(offset)
                start = _complete_tail(body)
                if start is not None:
                    patches.append((offset, b" " * start))
                elif len(body) >= len(NO_OP_RECORD):
                    patches.append((offset, NO_OP_RECORD.ljust(len(body))))
                else:
                    dropped.append((offset, len(line)))
            offset += len(line)
        if not damaged:
            return []
        keep = self._path.with_name(f"{self._path.name}.torn-{damaged[0]}")
        shutil.copy2(self._path, keep)
        if dropped:
            # Too short to overwrite in place: rewrite the file without it (offsets move, so
            # processes that already have this journal open should be restarted).
            for start, text in patches:
                data = data[:start] + text + data[start + len(text):]
            for start, length in reversed(dropped):
                data = data[:start] + data[start + length:]
            if cut is not None:
                data = data[:cut - sum(length for _, length in dropped)]
            replace_atomically(self._path, data,
                               temporary=self._path.with_name(self._path.name + ".repairing"))
            self._log_number_offset = {0: 0}  # the offsets this process remembered moved
        else:
            with open(self._path, "r+b") as handle:
                for start, text in patches:
                    handle.seek(start)
                    handle.write(text)
                if cut is not None:
                    handle.truncate(cut)
                handle.flush()
                os.fsync(handle.fileno())
        more = f" and {len(damaged) - 1} more damaged line(s)" if len(damaged) > 1 else ""
        warnings.warn(f"{self._path}: torn record at byte {damaged[0]}{more} (a write that never "
                      f"finished); repaired to its last complete record, the damaged file is kept "
                      f"as {keep}",
                      TornJournalWarning, stacklevel=2)
        return damaged
