"""One self-contained HTML page: tables and base64-embedded images, no external resources."""

from __future__ import annotations

import base64
import html
from pathlib import Path

_STYLE = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1400px}
table{border-collapse:collapse;margin:1em 0;font-size:13px}td,th{border:1px solid #ccc;padding:3px 8px}
th{background:#f3f3f3}img{max-width:100%;border:1px solid #eee}.meta{color:#666;font-size:12px}"""

# After load, each image records its decoded width: a headless browser's DOM dump shows it.
_SCRIPT = """window.addEventListener('load',function(){document.querySelectorAll('img').forEach(
function(i){i.setAttribute('data-decoded-width',i.naturalWidth)});});"""


def table_html(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def image_html(path: Path, alt: str) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"></figure>'


def page(title: str, meta: str, sections: list[tuple[str, str]]) -> str:
    """``sections``: (heading, inner HTML) pairs."""
    parts = [f"<h2>{html.escape(h)}</h2>{body}" for h, body in sections]
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{_STYLE}</style><script>{_SCRIPT}</script></head><body><h1>{html.escape(title)}</h1>"
            f"<p class='meta'>{html.escape(meta)}</p>{''.join(parts)}</body></html>")
