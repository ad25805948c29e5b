"""The same report as Markdown, with its PNGs in a folder beside the .md file."""

from __future__ import annotations

import html
import os
import re
from pathlib import Path
from urllib.parse import quote

from cnnlab.report.blocks import Block, Details, Figure, Paragraph, Section, Table

# CommonMark lets any ASCII punctuation be backslash-escaped; these are the ones that would
# otherwise start emphasis, links, HTML, table cells or entities inside a label such as
# `model.init={name: normal}` or `kaiming_normal`.
_SPECIAL = re.compile(r"([\\`*_\[\]<>|&])")


def escape(value: object) -> str:
    return _SPECIAL.sub(r"\\\1", str(value)).replace("\n", " ")


def table_markdown(table: Table) -> str:
    lines = []
    if table.caption:
        lines += [f"*{escape(table.caption)}*", ""]
    lines.append("| " + " | ".join(escape(h) for h in table.headers) + " |")
    lines.append("|" + "|".join(" --- " for _ in table.headers) + "|")
    for row in table.rows:
        lines.append("| " + " | ".join(escape(cell.text) for cell in row) + " |")
    return "\n".join(lines)


def figure_markdown(figure: Figure, base: Path) -> str:
    # A relative link, so the .md and its folder can be moved together.
    link = quote(Path(os.path.relpath(figure.path, base)).as_posix())
    lines = [f"![{escape(figure.alt)}]({link})"]
    if figure.caption:
        lines += ["", f"*{escape(figure.caption)}*"]
    return "\n".join(lines)


def details_markdown(details: Details) -> str:
    # A fence longer than any backtick run inside keeps the code block closed where it should be.
    longest = max((len(run) for run in re.findall(r"`+", details.code)), default=0)
    fence = "`" * max(3, longest + 1)
    return (f"<details><summary>{html.escape(details.summary)}</summary>\n\n"
            f"{fence}{details.language}\n{details.code.rstrip()}\n{fence}\n\n</details>")


def block_markdown(block: Block, base: Path) -> str:
    if isinstance(block, Paragraph):
        return escape(block.text)
    if isinstance(block, Table):
        return table_markdown(block)
    if isinstance(block, Figure):
        return figure_markdown(block, base)
    if isinstance(block, Details):
        return details_markdown(block)
    raise TypeError(f"unknown report block {type(block).__name__}")


def render_markdown(title: str, intro: str, sections: list[Section], base: Path) -> str:
    """`base` is the folder of the .md file: figure links are written relative to it."""
    parts = [f"# {escape(title)}", escape(intro)]
    for section in sections:
        # An explicit anchor, so links to #results work the same as in the HTML page.
        parts.append(f'<a id="{section.section_id}"></a>\n\n## {escape(section.title)}')
        parts.extend(block_markdown(block, base) for block in section.blocks)
    return "\n\n".join(parts) + "\n"
