"""One self-contained HTML page: figures as data: URIs, CSS and the table-sorting script inline.

The page must open from a file on a machine without network access and make no request at all:
a Content-Security-Policy that allows only inline code and data: images enforces that in the
browser, so a later edit that links an outside resource fails visibly instead of silently.
"""

from __future__ import annotations

import base64
import html
import math

from cnnlab.report.blocks import Block, Cell, Details, Figure, Paragraph, Section, Table

POLICY = ("default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
          "script-src 'unsafe-inline'")

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; color: #1b1b1b;
       max-width: 1250px; margin: 2em auto; padding: 0 1.2em; line-height: 1.45; }
h1 { margin-bottom: 0.2em; }
h2 { border-bottom: 1px solid #ccc; padding-bottom: 0.2em; margin-top: 2em; }
p.intro { color: #555; margin-top: 0; }
nav a { margin-right: 1em; white-space: nowrap; }
.scroll { overflow-x: auto; margin: 0.8em 0; }
table { border-collapse: collapse; font-size: 0.85em; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.55em; text-align: left; vertical-align: top;
         white-space: nowrap; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
thead th { background: #f3f3f3; position: sticky; top: 0; }
table.sortable thead th { cursor: pointer; user-select: none; }
table.sortable thead th::after { content: " \\2195"; color: #999; }
table.sortable thead th[aria-sort="ascending"]::after { content: " \\2191"; color: #000; }
table.sortable thead th[aria-sort="descending"]::after { content: " \\2193"; color: #000; }
tbody tr:nth-child(even) { background: #fafafa; }
caption { caption-side: top; text-align: left; color: #555; padding-bottom: 0.3em; }
figure { margin: 1em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.9em; }
details { margin: 0.8em 0; }
pre { background: #f6f6f6; padding: 0.8em; overflow-x: auto; font-size: 0.85em; }
"""

# Sorting compares the cell's data-sort number when it has one (so "0.95" and "1e-3" sort as
# numbers), else its text; cells without a value ("-") stay at the bottom in both directions.
SCRIPT = """
(function () {
  function key(cell) {
    var raw = cell.getAttribute("data-sort");
    if (raw !== null) { return {missing: raw === "", number: parseFloat(raw), text: ""}; }
    var text = cell.textContent.trim();
    return {missing: text === "" || text === "-", number: NaN, text: text};
  }
  function compare(a, b) {
    if (a.missing || b.missing) { return 0; }
    if (!isNaN(a.number) && !isNaN(b.number)) { return a.number - b.number; }
    return a.text.localeCompare(b.text, undefined, {numeric: true});
  }
  function sortBy(table, column, header) {
    var ascending = header.getAttribute("aria-sort") !== "ascending";
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (r, s) {
      var a = key(r.cells[column]), b = key(s.cells[column]);
      if (a.missing !== b.missing) { return a.missing ? 1 : -1; }
      return ascending ? compare(a, b) : compare(b, a);
    });
    rows.forEach(function (row) { body.appendChild(row); });
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th) {
      th.removeAttribute("aria-sort");
    });
    header.setAttribute("aria-sort", ascending ? "ascending" : "descending");
  }
  Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), function (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, column) {
      th.tabIndex = 0;
      th.title = "sort by this column";
      th.addEventListener("click", function () { sortBy(table, column, th); });
      th.addEventListener("keydown", function (event) {
        if (event.key === "Enter" || event.key === " ") {
          event.preventDefault();
          sortBy(table, column, th);
        }
      });
    });
  });
})();
"""


def escape(value: object) -> str:
    return html.escape(str(value), quote=True)


def sort_value(value: float | None) -> str:
    """The data-sort attribute: JavaScript's parseFloat reads 'Infinity' but not Python's 'inf'."""
    if value is None or math.isnan(value):
        return ""
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return repr(float(value))


def _cell(cell: Cell) -> str:
    if cell.sort is None and cell.text != "-":
        return f"<td>{escape(cell.text)}</td>"
    return f'<td class="num" data-sort="{sort_value(cell.sort)}">{escape(cell.text)}</td>'


def table_html(table: Table) -> str:
    classes = ' class="sortable"' if table.sortable else ""
    ident = f' id="{escape(table.table_id)}"' if table.table_id else ""
    hint = "click a header to sort" if table.sortable else ""
    words = "; ".join(part for part in (table.caption, hint) if part)
    caption = f"<caption>{escape(words)}</caption>" if words else ""
    head = "".join(f'<th scope="col">{escape(h)}</th>' for h in table.headers)
    body = "\n".join("<tr>" + "".join(_cell(c) for c in row) + "</tr>" for row in table.rows)
    return (f'<div class="scroll"><table{classes}{ident}>{caption}<thead><tr>{head}</tr></thead>'
            f"\n<tbody>\n{body}\n</tbody></table></div>")


def figure_html(figure: Figure) -> str:
    encoded = base64.b64encode(figure.path.read_bytes()).decode("ascii")
    caption = f"<figcaption>{escape(figure.caption)}</figcaption>" if figure.caption else ""
    return (f'<figure><img src="data:image/png;base64,{encoded}" alt="{escape(figure.alt)}">'
            f"{caption}</figure>")


def block_html(block: Block) -> str:
    if isinstance(block, Paragraph):
        return f"<p>{escape(block.text)}</p>"
    if isinstance(block, Table):
        return table_html(block)
    if isinstance(block, Figure):
        return figure_html(block)
    if isinstance(block, Details):
        return (f"<details><summary>{escape(block.summary)}</summary>"
                f"<pre><code>{escape(block.code)}</code></pre></details>")
    raise TypeError(f"unknown report block {type(block).__name__}")


def render_html(title: str, intro: str, sections: list[Section]) -> str:
    nav = " ".join(f'<a href="#{escape(s.section_id)}">{escape(s.title)}</a>' for s in sections)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{POLICY}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        f'<p class="intro">{escape(intro)}</p>',
        f"<nav>{nav}</nav>",
    ]
    for section in sections:
        parts.append(f'<section id="{escape(section.section_id)}">')
        parts.append(f"<h2>{escape(section.title)}</h2>")
        parts.extend(block_html(block) for block in section.blocks)
        parts.append("</section>")
    parts.append(f"<script>{SCRIPT}</script></body></html>")
    return "\n".join(parts) + "\n"
