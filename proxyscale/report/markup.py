"""Markdown and HTML tables: the one pair of writers every report section uses."""

from __future__ import annotations

import html


def md_table(head: list[str], rows: list[list]) -> str:
    """A GitHub-flavoured Markdown table; cells escaped for `|` and kept on one line."""
    if not rows:
        return "_none_\n"
    esc = lambda c: str(c).replace("|", "\\|").replace("\n", " ")
    return "\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + ["| " + " | ".join(esc(c) for c in r) + " |" for r in rows]) + "\n"


def html_table(head: list[str], rows: list[list]) -> str:
    if not rows:
        return "<p class=note>none</p>"
    h = "".join(f"<th>{html.escape(x)}</th>" for x in head)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{h}</tr>{body}</table>"
