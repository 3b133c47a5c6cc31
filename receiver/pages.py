"""The receiver's HTML pages, rendered with Jinja2 (autoescaped) from ``receiver/templates``.

Imported on the first page request, so Jinja2 stays off the web function's cold start.

    html = render("index.html", url="https://...", handlers=["handlers.log_runs"], ...)
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape


@cache
def _environment() -> Environment:
    return Environment(
        loader=FileSystemLoader(Path(__file__).parent / "templates"),
        autoescape=select_autoescape(default=True),
    )


def render(template: str, **values: Any) -> str:
    """``template`` rendered with ``values``, every value HTML-escaped."""
    return _environment().get_template(template).render(**values)
