"""Reduced-size JPEG decoding: draft mode against a full decode, time and feature cosine.

``decode_image(data, min_side=224)`` lets libjpeg scale by 1/2, 1/4 or 1/8 while the short side
stays >= 224; against ``min_side=None`` (full decode), both followed by ``resize_square``. The
cosine compares the CNN features of the two model inputs. Run on the photos folder and on 12 MP
JPEGs generated from its largest photos (q90), since the sample's 100 px images cannot shrink.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks.common import IMAGE_SUFFIXES, Context, log, median, table
from fruitspark.decode import decode_image
from fruitspark.model import ModelSpec, embed, new_session, resolve_model
from fruitspark.preprocess import resize_square, to_tensor

TITLE = "Reduced-size JPEG decoding"
SLOW = False
REPEATS = 3
GROUPS = {"photos": "photos folder", "12mp": "generated 12 MP JPEG (q90)"}


def make_12mp(photos: Path, target: Path, count: int = 3) -> list[Path]:
    """The ``count`` largest JPEGs under ``photos`` upscaled to 4000x3000, saved at q90."""
    candidates = []
    for path in sorted(photos.rglob("*")):
        if path.is_file() and path.suffix.lower() in (".jpg", ".jpeg"):
            with Image.open(path) as image:
                if image.format == "JPEG" and image.width * image.height < 8_000_000:
                    candidates.append((image.width * image.height, path))
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    made = []
    for _, path in sorted(candidates, reverse=True)[:count]:
        destination = target / f"{path.stem}-4000x3000.jpg"
        big = decode_image(path.read_bytes()).resize((4000, 3000), Image.Resampling.BICUBIC)
        big.save(destination, quality=90)
        made.append(destination)
    return made


def _timed(data: bytes, min_side: int | None, size: int) -> tuple[float, Image.Image]:
    times, square = [], None
    for _ in range(REPEATS):
        started = time.perf_counter()
        square = resize_square(decode_image(data, min_side=min_side), size)
        times.append(time.perf_counter() - started)
    return median(times), square


def _row(path: Path, root: Path, session, spec: ModelSpec) -> dict:
    data = path.read_bytes()
    with Image.open(path) as probe:
        kind, width, height = probe.format, probe.width, probe.height
    drafted = decode_image(data, min_side=spec.input_size).size  # also warms the caches
    full_s, full = _timed(data, None, spec.input_size)
    reduced_s, reduced = _timed(data, spec.input_size, spec.input_size)
    tensors = np.stack([to_tensor(image, spec.normalisation) for image in (full, reduced)])
    a, b = embed(session, spec, tensors).astype(np.float64)
    return {
        "file": str(path.relative_to(root)),
        "format": kind,
        "size": f"{width}x{height}",
        "decoded_as": f"{drafted[0]}x{drafted[1]}",
        "full_ms": round(1000 * full_s, 2),
        "reduced_ms": round(1000 * reduced_s, 2),
        "speedup": round(full_s / reduced_s, 2),
        "cosine": round(float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b))), 5),
    }


def measure(ctx: Context) -> dict:
    spec = resolve_model()
    session = new_session(Path(spec.path).read_bytes(), threads=1)
    photos = sorted(
        p for p in ctx.photos.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    )
    paths = {
        "photos": (ctx.photos, photos),
        "12mp": (ctx.work, make_12mp(ctx.photos, ctx.work / "12mp")),
    }
    result = {}
    for group, (root, files) in paths.items():
        rows = [_row(path, root, session, spec) for path in files]
        full, reduced = sum(r["full_ms"] for r in rows), sum(r["reduced_ms"] for r in rows)
        result[group] = {
            "rows": rows,
            "full_ms_total": round(full, 1),
            "reduced_ms_total": round(reduced, 1),
            "speedup_total": round(full / reduced, 2),
            "cosine_min": min(r["cosine"] for r in rows),
        }
        log(f"jpeg {group}: {full / reduced:.1f} x faster, cosine >= {result[group]['cosine_min']}")
    return result


def _group_table(group: dict) -> str:
    rows = [
        [
            r["file"],
            r["format"],
            r["size"],
            r["decoded_as"],
            f"{r['full_ms']:.1f}",
            f"{r['reduced_ms']:.1f}",
            f"{r['speedup']:.1f}",
            f"{r['cosine']:.4f}",
        ]
        for r in group["rows"]
    ]
    rows.append(
        [
            "**total**",
            "",
            "",
            "",
            f"{group['full_ms_total']:.1f}",
            f"{group['reduced_ms_total']:.1f}",
            f"**{group['speedup_total']:.1f}**",
            f"min {group['cosine_min']:.4f}",
        ]
    )
    headers = ["file", "format", "size", "decoded as", "full ms", "reduced ms", "speedup", "cosine"]
    return table(headers, rows)  # fmt: skip


def render(result: dict) -> str:
    out = [
        "`decode_image(data, min_side=224)` + `resize_square` against a full decode + "
        "`resize_square`, median of three; cosine of the CNN features of the two model inputs.",
        "",
    ]
    for key, title in GROUPS.items():
        if key in result:
            out += [f"### {title}", "", _group_table(result[key]), ""]
    out.append(
        "Pictures whose short side is below 448 px cannot be reduced and cost the same either "
        "way; PNGs are never reduced."
    )
    return "\n".join(out)
