"""How benchmarks print their rows: JSON with ``--json``, else a Markdown table ready for the README."""

from __future__ import annotations

import json
from typing import Any, Callable, Sequence

Column = tuple[str, Callable[[dict[str, Any]], str]]  # (title, row -> cell text)


def emit(rows: Sequence[dict[str, Any]], as_json: bool, columns: Sequence[Column]) -> None:
    """Print ``rows`` as indented JSON, or as a Markdown table with one column per (title, format)."""
    if as_json:
        print(json.dumps(list(rows), indent=1))
        return
    print("| " + " | ".join(title for title, _ in columns) + " |")
    print("|" + "---|" * len(columns))
    for r in rows:
        print("| " + " | ".join(cell(r) for _, cell in columns) + " |")
