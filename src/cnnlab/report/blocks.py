"""What a report is made of, independent of how it is written out (HTML or Markdown).

The page builder fills sections with these plain blocks; `render_html` and `render_markdown` turn
the same list into a file. Keeping the content apart from the format means the two outputs
cannot say different things.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Paragraph:
    text: str  # plain text; renderers escape it


@dataclass
class Cell:
    """A table cell: the text shown and, for numbers, the value a sort compares."""

    text: str
    sort: float | None = None


@dataclass
class Table:
    headers: list[str]
    rows: list[list[Cell]]
    table_id: str = ""
    sortable: bool = True
    caption: str = ""


@dataclass
class Figure:
    path: Path  # a PNG already written; HTML embeds its bytes, Markdown links to it
    alt: str
    caption: str = ""


@dataclass
class Details:
    """Collapsed by default: long text (a whole config) that most readers do not need."""

    summary: str
    code: str
    language: str = "yaml"


Block = Paragraph | Table | Figure | Details


@dataclass
class Section:
    section_id: str
    title: str
    blocks: list[Block] = field(default_factory=list)


def number(value: float | None, fmt: str = ".4f") -> Cell:
    """A numeric cell; missing and non-finite values show as '-' and sort last."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return Cell("-", None)
    value = float(value)
    if math.isinf(value):
        return Cell("+inf" if value > 0 else "-inf", value)
    shown = int(value) if fmt.endswith("d") else value  # counts are integers
    return Cell(format(shown, fmt), value)


def interval(bounds, fmt: str = ".4f") -> Cell:
    """'[low, high]', sorted by its lower bound."""
    if not bounds or bounds[0] is None or (isinstance(bounds[0], float) and math.isnan(bounds[0])):
        return Cell("-", None)
    low, high = float(bounds[0]), float(bounds[1])
    return Cell(f"[{format(low, fmt)}, {format(high, fmt)}]", low)


def text(value: object) -> Cell:
    return Cell("-" if value is None else str(value), None)
