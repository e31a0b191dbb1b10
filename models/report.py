"""Printing a flat report of figures, as every eval and measurement command does."""
from __future__ import annotations

import json


def print_report(report: dict, as_json: bool = False) -> None:
    """One JSON object, or one aligned `name value` line per figure (floats to 4 places)."""
    if as_json:
        print(json.dumps(report))
        return
    width = max((len(key) for key in report), default=0) + 2
    for key, value in report.items():
        print(f"{key:{width}s}{value:.4f}" if isinstance(value, float) else f"{key:{width}s}{value}")
