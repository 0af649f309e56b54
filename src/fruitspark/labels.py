"""Labels at the level the user wants: the folder's variety (fine) and the fruit it belongs to.

Fruits-360 names varieties ("Apple Golden 1"), the grocery-store photos nest them one level deeper
(``train/Fruit/Apple/Golden-Delicious/``): a classifier trained on both learns the fine labels, and
the coarse label of an image is found by a label map (CSV ``label,fruit``) or by the folder at a
given depth below the split folder. Probabilities are then summed per fruit, so a photo that is
40 % "Apple Red 1" and 30 % "Royal-Gala" is 70 % "Apple". ``fruits`` names the packaged map:
Fruits-360's 123 classes and the grocery-store varieties to fruit names.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from pathlib import Path

from fruitspark.sources import SPLIT_NAMES, ReadError, SourceError, read_bytes

PACKAGED_MAPS = {"fruits": Path(__file__).with_name("label_maps") / "fruits.csv"}


def load_label_map(uri: str) -> dict[str, str]:
    """``label -> fruit`` from a CSV with a header (first two columns), or a packaged map's name."""
    source = str(PACKAGED_MAPS.get(uri, uri))
    try:
        text = read_bytes(source).decode("utf-8-sig")
    except (ReadError, UnicodeDecodeError) as error:
        raise SourceError(f"cannot read label map {uri}: {error}") from None
    rows = [row for row in csv.reader(io.StringIO(text)) if row]
    if len(rows) < 2 or any(len(row) < 2 for row in rows):
        raise SourceError(f"label map {uri} needs a header and rows of 'label,fruit'")
    return {row[0].strip(): row[1].strip() for row in rows[1:]}


def coarse_label_expr(label_map: dict[str, str] | None, depth: int | None):
    """The coarse label of a row: the folder ``depth`` levels below the split folder (the deepest
    folder if the image is shallower), then looked up in ``label_map`` (kept if absent)."""
    from pyspark.sql import functions as F

    label = F.col("label")
    if depth is not None:
        names = "|".join(SPLIT_NAMES)
        below = F.regexp_extract(F.col("path"), rf"(?i)/(?:{names})/((?:[^/]+/)+)[^/]+$", 1)
        folders = F.split(F.regexp_replace(below, "/$", ""), "/")
        at_depth = F.element_at(folders, F.least(F.size(folders), F.lit(depth)))
        label = F.when(below == "", label).otherwise(at_depth)
    if label_map:
        lookup = F.create_map(*[F.lit(item) for pair in label_map.items() for item in pair])
        label = F.coalesce(lookup[label], label)
    return label


def fruit_of_classes(pairs: list[tuple[str, str, int]], classes: list[str]) -> list[str]:
    """Each fine class's fruit: the coarse label most of its training images have."""
    votes: dict[str, Counter] = {}
    for fine, coarse, count in pairs:
        votes.setdefault(fine, Counter())[coarse] += count
    return [votes[name].most_common(1)[0][0] if name in votes else name for name in classes]
