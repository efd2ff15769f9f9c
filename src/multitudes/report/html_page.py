"""The one HTML page builder: a run's report.html (report/page.py) and a study's scale.html
(study/render.py) are both a title, parts and figures on one self-contained page."""

from __future__ import annotations

import html

BASE_CSS = ("body{font-family:sans-serif;max-width:%dpx;margin:2em auto;padding:0 1em}")
FIGURE_CSS = "img{max-width:100%}figcaption{color:#555;font-size:.9em}"


def figure(caption: str, png: str) -> str:
    """A base64 PNG and its caption."""
    return (f"<figure><img src='data:image/png;base64,{png}'>"
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def document(title: str, parts: list[str], width: int, css: str = "") -> bytes:
    """The page: `parts` (HTML) one per line under a plain style `width` pixels wide."""
    return ("<!doctype html><html><head><meta charset='utf-8'>"
            f"<title>{html.escape(title)}</title><style>{BASE_CSS % width}{css}{FIGURE_CSS}"
            "</style></head><body>" + "\n".join(parts) + "</body></html>").encode()
