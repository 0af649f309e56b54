"""Feature quality: the study of benchmarks/quality.py (photos owns it), run as a section.

``measure`` runs that script's ``main`` (slow: it extracts features at several input sizes and
fits classifiers), ``render`` shows its table.
"""

from __future__ import annotations

import json

from benchmarks import quality
from benchmarks.common import Context

TITLE = "Feature quality and input resolution (benchmarks/quality.py)"
SLOW = True


def measure(ctx: Context) -> dict:
    out = ctx.work / "quality.json"
    quality.main(["--data", str(ctx.data), "--out", str(out)])
    return json.loads(out.read_text())


def render(result: dict) -> str:
    return quality.markdown_table(result)
