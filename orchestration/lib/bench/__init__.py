"""Benchmarks behind ``ops-warehouse bench``: each prints its figures side by side."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def write_figures(json_path: str | None, figures: dict[str, Any]) -> None:
    """The ``--json PATH`` option of every benchmark: the printed figures, as a file."""
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps(figures, indent=2))
        print(f"figures written to {json_path}")
