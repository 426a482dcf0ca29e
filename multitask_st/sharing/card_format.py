"""How the model card writes a value: metrics to four places, plain values, table cells, and what a folder does not
record."""

from __future__ import annotations

import json

from .model_index import is_number


NOT_RECORDED = "not recorded"


def format_metric(value) -> str:
    return f"{value:.4f}" if is_number(value) else NOT_RECORDED


def format_plain(value) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if value is None:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, dict)):
        return f"`{json.dumps(value)}`"
    return str(value)


def format_value(mapping: dict, key: str) -> str:
    return format_plain(mapping[key]) if key in mapping else NOT_RECORDED


def table_cell(value) -> str:
    return " ".join(str(value).split()).replace("|", "\\|")
