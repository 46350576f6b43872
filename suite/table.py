"""Plain-text tables for terminal output (no dependency, stable for tests and docs)."""
from __future__ import annotations

import re
from typing import Sequence

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def printable(value: object) -> str:
    """``value`` as text with control characters (terminal escape codes in a submitted row's
    fields, say) shown as ``\\x1b`` escapes rather than sent to the terminal."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", str(value))


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]], align: str | None = None) -> str:
    cells = [[printable(h) for h in headers]] + [["" if v is None else printable(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    align = align or "l" * len(headers)

    def line(r):
        return "  ".join(c.rjust(w) if a == "r" else c.ljust(w) for c, w, a in zip(r, widths, align)).rstrip()

    out = [line(cells[0]), "  ".join("-" * w for w in widths)]
    out += [line(r) for r in cells[1:]]
    return "\n".join(out)


def format_table_by_model(models: Sequence[object], headers: Sequence[str], rows: Sequence[Sequence[object]],
                          align: str | None = None) -> str:
    """`format_table` with a leading model column when the rows come from more than one model
    (e.g. ``minilm`` and ``minilm + lora``), so rows of different models never look alike."""
    models = [str(m) for m in models]
    if len(set(models)) > 1:
        headers, rows = ["model", *headers], [[m, *r] for m, r in zip(models, rows)]
        align = "l" + (align or "l" * (len(headers) - 1))
    return format_table(headers, rows, align)
