"""List files: a CSV or JSON file of `path,label[,split]` for images not laid out in class folders.

Paths are relative to the list file's folder; labels are class names or class indices (not a
mix); the optional split says train, val or test. Reading the images is the image-folder code's
job (`imagefolder.load_files`), so decoding, the cache and streaming work the same.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass
from pathlib import Path

from cnnlab.errors import DataError

SPLITS = ("train", "val", "test")
COLUMNS = ("path", "label", "split")
_INTEGER = re.compile(r"-?\d+")


@dataclass
class Entry:
    path: Path
    label: str
    split: str
    where: str  # "line 7" or "entry 3", for messages


@dataclass
class ListedImages:
    """The list's images by split, labels as class indices, and the class names."""

    files: dict[str, list[Path]]
    labels: dict[str, list[int]]
    classes: list[str]


def _csv_entries(path: Path) -> list[Entry]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"data.root: cannot read the list file {path} ({error}); give a UTF-8 "
                        "CSV or JSON file") from None
    rows = [(number, row) for number, row in enumerate(csv.reader(text.splitlines()), start=1)
            if row and any(cell.strip() for cell in row)]
    columns = list(COLUMNS)
    if rows and rows[0][1][0].strip().lower() == "path":
        number, header = rows.pop(0)
        columns = [cell.strip().lower() for cell in header]
        if "label" not in columns or any(c not in COLUMNS for c in columns):
            raise DataError(f"{path} line {number}: the header is {','.join(header)}; a list "
                            "file's columns are path,label and optionally split")
    entries = []
    for number, row in rows:
        if len(row) not in (2, len(columns)) or len(row) > len(columns):
            raise DataError(f"{path} line {number} has {len(row)} columns; each line is "
                            "path,label or path,label,split")
        cells = dict(zip(columns, (cell.strip() for cell in row)))
        entries.append(Entry(Path(cells["path"]), cells["label"], cells.get("split") or "train",
                             f"line {number}"))
    return entries


def _json_entries(path: Path) -> list[Entry]:
    try:
        document = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise DataError(f"data.root: cannot read the list file {path} as JSON ({error}); give a "
                        "list of {\"path\", \"label\"} objects") from None
    if isinstance(document, dict):
        unknown = sorted(set(document) - set(SPLITS))
        if unknown:
            raise DataError(f"{path} has the key {unknown[0]!r}; a JSON list file maps train, "
                            "val and test to lists of {\"path\", \"label\"} objects")
        items = [(split, item) for split in SPLITS for item in document.get(split) or []]
    elif isinstance(document, list):
        items = [(None, item) for item in document]
    else:
        raise DataError(f"{path} holds a JSON {type(document).__name__}; a list file holds a "
                        "list of {\"path\", \"label\"} objects or {\"train\": [...], ...}")
    entries = []
    for number, (split, item) in enumerate(items, start=1):
        if not isinstance(item, dict) or "path" not in item or "label" not in item:
            raise DataError(f"{path} entry {number} is {str(item)[:80]}; each entry is an "
                            "object with \"path\" and \"label\" (and optionally \"split\")")
        label = item["label"]
        if isinstance(label, bool) or not isinstance(label, (str, int)):
            raise DataError(f"{path} entry {number} has label {label!r}; a label is a class "
                            "name or an integer class index")
        entries.append(Entry(Path(str(item["path"])), str(label),
                             split or str(item.get("split") or "train"), f"entry {number}"))
    return entries


def read_list(path: Path) -> ListedImages:
    """The images a list file names, checked: every file exists, every split is known, the
    labels are all names or all integers, and the list is not empty."""
    if not path.is_file():
        raise DataError(f"data.root: {path} is not a file; the filelist dataset needs a CSV or "
                        "JSON file of path,label lines")
    entries = _json_entries(path) if path.suffix.lower() == ".json" else _csv_entries(path)
    if not entries:
        raise DataError(f"{path} lists no images; add lines of path,label (optionally ,split)")
    folder = path.parent
    for entry in entries:
        if entry.split not in SPLITS:
            raise DataError(f"{path} {entry.where} has split {entry.split!r}; accepted: "
                            f"{', '.join(SPLITS)} (or leave it empty for train)")
        entry.path = entry.path if entry.path.is_absolute() else folder / entry.path
        if not entry.path.is_file():
            raise DataError(f"{path} {entry.where}: {entry.path} does not exist; paths are "
                            f"relative to the list file's folder {folder}")
    numeric = [bool(_INTEGER.fullmatch(entry.label)) for entry in entries]
    if any(numeric) and not all(numeric):
        named = entries[numeric.index(False)]
        number = entries[numeric.index(True)]
        raise DataError(f"{path} mixes class names and numbers in its labels ({number.where} "
                        f"has {number.label!r}, {named.where} has {named.label!r}); use one kind")
    if all(numeric):
        indices = [int(entry.label) for entry in entries]
        classes = [str(i) for i in range(max(indices) + 1)]
    else:
        classes = sorted({entry.label for entry in entries})
        position = {name: i for i, name in enumerate(classes)}
        indices = [position[entry.label] for entry in entries]
    files: dict[str, list[Path]] = {split: [] for split in SPLITS}
    labels: dict[str, list[int]] = {split: [] for split in SPLITS}
    for entry, index in zip(entries, indices):
        files[entry.split].append(entry.path)
        labels[entry.split].append(index)
    if not files["train"]:
        raise DataError(f"{path} has no training images (every line is in the val or test "
                        "split); mark some lines train or leave their split empty")
    return ListedImages(files, labels, classes)
