"""The report's HTML: one static page, tables from the lake's views and ``<img>`` tags for the figures."""

from __future__ import annotations

import html

import pyarrow as pa

from kdgat.lake.render import cell_text, is_numeric

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 1280px;
       padding: 0 1.5rem; color: #1d2329; }
h1 { margin-bottom: 0.2rem; } h2 { border-bottom: 2px solid #d8dee4; padding-bottom: 0.2rem; margin-top: 2.4rem; }
h3 { margin-top: 1.6rem; color: #3b4650; }
.meta { color: #57606a; margin-top: 0; }
table { border-collapse: collapse; font-size: 0.85rem; margin: 0.8rem 0; }
th, td { border: 1px solid #d8dee4; padding: 0.25rem 0.55rem; }
th { background: #f3f5f7; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr:nth-child(even) td { background: #fafbfc; }
img { max-width: 100%; border: 1px solid #e4e8ec; margin: 0.4rem 0; }
.note { color: #57606a; font-style: italic; }
nav a { margin-right: 1rem; }
"""


def esc(value) -> str:
    return html.escape(str(value), quote=True)


def table_html(table: pa.Table, columns: list[str] | None = None) -> str:
    columns = columns or table.column_names
    head = "".join(f"<th>{esc(c)}</th>" for c in columns)
    shown = table.select(columns)
    opening = ['<td class="num">' if is_numeric(field) else "<td>" for field in shown.schema]
    body = []
    for row in shown.to_pylist():
        cells = (f"{td}{esc(cell_text(v, grouping=True))}</td>" for td, v in zip(opening, row.values(), strict=True))
        body.append("<tr>" + "".join(cells) + "</tr>")
    if not body:
        return '<p class="note">No rows.</p>'
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def figure_html(src: str, alt: str) -> str:
    return f'<figure><img src="{esc(src)}" alt="{esc(alt)}"></figure>'


def page(title: str, meta: str, sections: list[tuple[str, str, str]]) -> str:
    """``sections``: (anchor, heading, inner HTML)."""
    nav = "".join(f'<a href="#{esc(a)}">{esc(h)}</a>' for a, h, _ in sections)
    body = "".join(f'<section id="{esc(a)}"><h2>{esc(h)}</h2>{inner}</section>' for a, h, inner in sections)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{esc(title)}</title><style>{STYLE}</style></head><body>"
        f'<h1>{esc(title)}</h1><p class="meta">{meta}</p><nav>{nav}</nav>{body}</body></html>\n'
    )
