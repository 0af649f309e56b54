"""One self-contained HTML page that shows what a run produced and how well the features work.

The page must open anywhere, offline and years later, so everything is inlined: plotly.js once,
chart data as JSON, thumbnails as data: URIs. It stays small for any run: plotly.js is its
"basic" partial bundle (scatter and bar, all the charts need), gzipped and unpacked by the
browser (0.5 MB against 4.8 MB for the full bundle); points, rows and thumbnails are capped.
Labels and paths come from folder names that anyone can choose, so every string reaches the
page through Jinja2 autoescaping or plotly's JSON encoder, and a Content-Security-Policy allows
only the page's own script (by hash) and no network at all.
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import json
import re
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup
from pyarrow.fs import FileSystem

from fruitspark.decode import decode_image
from fruitspark.summary import ModelInfo, Summary, describe_rule
from fruitspark.summary import load as load_summary

FEATURE_COLUMNS = ["path", "label", "split", "width", "height", "pca", "error"]
MAX_SCATTER_POINTS = 5_000  # SVG points: smooth to hover, about 60 bytes each on the page
MAX_HOVER_PATH = 60  # characters of a path kept in the scatter's tooltips
MAX_ERROR_ROWS = 500
MAX_CONFUSED_PAIRS = 100
MAX_THUMBNAILS = 48
THUMBNAIL_SIDE = 72
PLOTLY_BUNDLE = "plotly-basic.min.js.gz"  # scripts/vendor_plotly.sh

_TIMES = " \N{MULTIPLICATION SIGN} "
_URI = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):(.*)$", re.DOTALL)

_FONT = '-apple-system, BlinkMacSystemFont, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif'
_ACCENT = "#2f6fdb"
_FAILED = "#d64545"
_SPLIT_COLOURS = ("#2f6fdb", "#f0a53c", "#3aa676", "#8d5fd3", "#5b6b7f")
# A small template of our own: plotly's default one would be embedded in every figure.
_TEMPLATE = go.layout.Template(
    layout={
        "font": {"family": _FONT, "size": 12, "color": "#1f2933"},
        "paper_bgcolor": "white",
        "plot_bgcolor": "white",
        "colorway": list(_SPLIT_COLOURS),
        "margin": {"l": 60, "r": 20, "t": 30, "b": 50},
        "hoverlabel": {"font": {"family": _FONT}},
        "xaxis": {"gridcolor": "#edf0f4", "linecolor": "#c9d1db", "zeroline": False},
        "yaxis": {"gridcolor": "#edf0f4", "linecolor": "#c9d1db", "zeroline": False},
        "legend": {"bgcolor": "rgba(255,255,255,0.8)"},
    }
)
# plotly.js 4 shows a "Share chart" button that uploads the data to Plotly Cloud: not from here.
_PLOTLY_CONFIG = {"displaylogo": False, "responsive": True, "showSendToCloud": False}


def write_report(output_dir: str | Path, destination: str | Path | None = None) -> Path:
    """Write the HTML report of a local output directory; returns the file written.

    ``destination`` defaults to ``output_dir/report.html``. Misclassified thumbnails are read from
    the image paths recorded by the run, which may be local paths or any pyarrow URI (s3://...).
    """
    output_dir = Path(output_dir)
    summary = json.loads((output_dir / "summary.json").read_text(encoding="utf-8"))
    evaluation_file = output_dir / "evaluation.json"
    evaluation = (
        json.loads(evaluation_file.read_text(encoding="utf-8"))
        if evaluation_file.exists()
        else None
    )
    features = pq.read_table(output_dir / "features", columns=FEATURE_COLUMNS)
    target = Path(destination) if destination is not None else output_dir / "report.html"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render_report(summary, features, evaluation), encoding="utf-8")
    return target


def render_report(
    summary: dict[str, Any], features: pa.Table, evaluation: dict[str, Any] | None = None
) -> str:
    """The report page as a string, from the parsed run files (see :func:`write_report`)."""
    described = load_summary(summary)  # any schema version, typed and complete
    summary = described.to_dict()
    explained = [float(v) for v in summary["pca"]["explained_variance"]]
    figures: dict[str, go.Figure] = {}
    notes: dict[str, str] = {}
    if explained:
        figures["chart-variance"] = _variance_figure(explained, summary["pca"])
    scatter = _scatter_figure(features, explained)
    if scatter is not None:
        figures["chart-scatter"], notes["scatter"] = scatter
    classes = _class_figure(summary["class_counts"])
    if classes is not None:
        figures["chart-classes"] = classes

    context: dict[str, Any] = {
        "summary": summary,
        "pca_rule": describe_rule(described.pca),
        "finished": _timestamp(summary["finished_at"]),
        "cards": _cards(summary, evaluation),
        "run_rows": _run_rows(described, features),
        "accounting": summary["accounting"],
        "stages": _stages(summary["stages"], wall_seconds(summary)),
        "reasons": sorted(summary["errors_by_reason"].items(), key=lambda kv: (-kv[1], kv[0])),
        "errors": _error_rows(features),
        "charts": set(figures),
        "notes": notes,
        "evaluation": None,
    }
    if evaluation is not None:
        context["evaluation"] = _evaluation_context(evaluation)

    app_js = _app_script(figures)
    context["plotly_gz"] = _plotly_bundle()
    context["app_js"] = Markup(app_js)
    context["css"] = Markup(_asset("report.css"))
    context["csp"] = _content_security_policy([app_js])
    return _environment().get_template("report.html.j2").render(context)


# --- charts -------------------------------------------------------------------------------------


def _variance_figure(explained: list[float], pca: dict[str, Any]) -> go.Figure:
    """Per-component and cumulative explained variance, with the chosen k marked."""
    k = int(pca["k"])
    components = np.arange(1, len(explained) + 1)
    cumulative = np.cumsum(explained) * 100
    figure = go.Figure()
    figure.add_bar(
        x=components,
        y=np.asarray(explained) * 100,
        name="per component",
        marker_color="#9fbcea",
        yaxis="y2",
        hovertemplate="PC%{x}: %{y:.2f}%<extra></extra>",
    )
    figure.add_scatter(
        x=components,
        y=cumulative,
        name="cumulative",
        mode="lines",
        line={"color": _ACCENT, "width": 2.5},
        hovertemplate="PC1-%{x}: %{y:.1f}%<extra></extra>",
    )
    if 1 <= k <= len(explained):
        figure.add_scatter(
            x=[k],
            y=[cumulative[k - 1]],
            mode="markers",
            marker={"color": _FAILED, "size": 10},
            name=f"k = {k}",
            hovertemplate=f"k = {k}: %{{y:.1f}}% of the variance<extra></extra>",
        )
        figure.add_vline(x=k, line={"color": _FAILED, "dash": "dash", "width": 1.5})
    if pca.get("variance_target") is not None:
        figure.add_hline(
            y=pca["variance_target"] * 100, line={"color": "#8a96a3", "dash": "dot", "width": 1}
        )
    # All components are plotted, but the view starts around k: with a 1,280-d feature, the first
    # few dozen are what matter (double-click on the chart to see all of them).
    shown = min(len(explained), max(2 * k, 20))
    figure.update_layout(
        template=_TEMPLATE,
        height=380,
        xaxis={"title": "principal component", "range": [0.5, shown + 0.5]},
        yaxis={"title": "cumulative", "range": [0, 101], "ticksuffix": "%"},
        yaxis2={
            "title": "per component",
            "ticksuffix": "%",
            "tickformat": ".1f",
            "overlaying": "y",
            "side": "right",
            "showgrid": False,
            "rangemode": "tozero",
        },
        legend={"orientation": "h", "y": 1.12, "x": 0},
        margin={"r": 60},
        bargap=0.15,
    )
    return figure


def _scatter_figure(features: pa.Table, explained: list[float]) -> tuple[go.Figure, str] | None:
    """PC1 against PC2, one WebGL trace per label so the legend can hide or isolate classes."""
    pca = features["pca"]
    usable = features.filter(
        pc.and_(pc.is_null(features["error"]), pc.greater_equal(pc.list_value_length(pca), 2))
    )
    total = usable.num_rows
    if total == 0:
        return None
    if total > MAX_SCATTER_POINTS:
        picked = np.sort(np.random.default_rng(0).choice(total, MAX_SCATTER_POINTS, replace=False))
        usable = usable.take(pa.array(picked))
    x = pc.list_element(usable["pca"], 0).to_numpy(zero_copy_only=False).astype(np.float32)
    y = pc.list_element(usable["pca"], 1).to_numpy(zero_copy_only=False).astype(np.float32)
    labels = np.asarray(usable["label"].to_pylist(), dtype=object)
    paths = usable["path"].to_pylist()
    root = _common_root(paths)
    shown = np.asarray([_plotly_text(_shorten(p[len(root) :])) for p in paths], dtype=object)

    figure = go.Figure()
    names = sorted(set(labels.tolist()), key=lambda s: (s.casefold(), s))
    for name in names:
        rows = np.flatnonzero(labels == name)
        figure.add_trace(
            go.Scatter(
                x=x[rows],
                y=y[rows],
                text=shown[rows].tolist(),
                name=_plotly_text(name),
                mode="markers",
                marker={"size": 6, "color": label_colour(name), "opacity": 0.8},
                hovertemplate="<b>%{fullData.name}</b><br>%{text}<extra></extra>",
            )
        )

    def axis(i: int) -> str:
        share = f" ({explained[i]:.1%} of variance)" if i < len(explained) else ""
        return f"PC{i + 1}{share}"

    figure.update_layout(
        template=_TEMPLATE,
        height=620,
        xaxis={"title": axis(0)},
        yaxis={"title": axis(1)},
        legend={"itemsizing": "constant", "title": {"text": "class"}, "font": {"size": 11}},
        hovermode="closest",
    )
    note = f"{usable.num_rows:,} of {total:,} featurised images"
    if usable.num_rows < total:
        note += " (a uniform random sample)"
    if root:
        note += f"; paths in the tooltips are relative to {root}"
    return figure, note


def _class_figure(class_counts: list[dict[str, Any]]) -> go.Figure | None:
    """Images per class, stacked by split, failures in red, biggest classes first.

    The counts come from the summary, exact for any run size (the table is only a sample).
    """
    if not class_counts:
        return None
    counts: Counter = Counter()
    totals: Counter = Counter()
    for item in class_counts:
        series = "failed" if item["failed"] else (item["split"] or "unsplit")
        counts[(item["label"], series)] += item["count"]
        totals[item["label"]] += item["count"]
    order = sorted(totals, key=lambda label: (-totals[label], label.casefold(), label))
    present = {name for _, name in counts}
    series = sorted(present - {"failed"}) + sorted(present & {"failed"})
    figure = go.Figure()
    for index, name in enumerate(series):
        colour = _FAILED if name == "failed" else _SPLIT_COLOURS[index % len(_SPLIT_COLOURS)]
        figure.add_bar(
            x=[_plotly_text(label) for label in order],
            y=[counts.get((label, name), 0) for label in order],
            name=_plotly_text(name),
            marker_color=colour,
            hovertemplate="%{x}<br>%{fullData.name}: %{y:,}<extra></extra>",
        )
    figure.update_layout(
        template=_TEMPLATE,
        height=420,
        barmode="stack",
        bargap=0.12,
        xaxis={"type": "category", "tickangle": -45, "automargin": True},
        yaxis={"title": "images"},
        legend={"orientation": "h", "y": 1.1, "x": 0},
    )
    return figure


def _confusion_table(confusion: dict[str, Any]) -> dict[str, Any] | None:
    """The worst classes' confusion as table cells: the count, and its share of the true row
    (the cell's shade), so that errors stand out without a chart library."""
    labels = confusion["labels"]
    if not labels:
        return None
    counts = np.asarray(confusion["matrix"], dtype=np.int64).reshape(len(labels), len(labels))
    totals = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, totals, out=np.zeros(counts.shape), where=totals > 0)
    rows = [
        {
            "label": label,
            "cells": [
                {"count": int(count), "share": f"{share:.0%}", "alpha": f"{share:.2f}"}
                for count, share in zip(counts[i], shares[i], strict=True)
            ],
        }
        for i, label in enumerate(labels)
    ]
    return {"labels": labels, "rows": rows}


# The colour a fruit is known by, for labels that name one (first match, most specific first);
# other labels get a hue from a hash of the name. Either way a class keeps its colour in every
# run and every report, whatever the other classes are.
NATURAL_COLOURS = (
    ("granny smith", "#7dbb3c"), ("golden", "#e3c33b"), ("lime", "#6fae2f"),
    ("lemon", "#f2d335"), ("banana", "#e8c547"), ("clementine", "#f59a2f"),
    ("mandarin", "#f39a36"), ("tangerine", "#f29133"), ("orange", "#f28c28"),
    ("kiwi", "#8a6d3b"), ("avocado", "#4f6b2a"), ("strawberr", "#d7263d"),
    ("raspberr", "#c2185b"), ("cherr", "#9b1b30"), ("blueberr", "#3b4cc0"),
    ("grape", "#6a3d9a"), ("plum", "#5e3370"), ("pear", "#b5c24a"), ("apple", "#c0392b"),
    ("peach", "#f7a072"), ("apricot", "#f4a340"), ("mango", "#f6b93b"),
    ("pineapple", "#d9a826"), ("melon", "#a8c66c"), ("pomegranate", "#a4161a"),
    ("tomato", "#e03e2d"), ("pepper", "#d1495b"), ("potato", "#b08d57"), ("onion", "#b5838d"),
)  # fmt: skip


def label_colour(label: str) -> str:
    """The class's colour: its fruit's natural one if the name says which, else from a hash.

    Varieties ("Apple Braeburn", "Cherry 2") get their fruit's hue in a lightness of their own.
    """
    digest = hashlib.sha256(label.encode("utf-8")).digest()
    name = label.casefold().strip()
    key, natural = next(((k, c) for k, c in NATURAL_COLOURS if k in name), ("", None))
    if natural is None:
        hue = int.from_bytes(digest[:2], "big") * 360 / 65536
        return f"hsl({hue:.0f},62%,{42 + digest[2] % 16}%)"
    plain = name.rstrip("sy") in (key.rstrip("sy"), key.rstrip("r"))
    shift = 0.0 if plain else (digest[2] % 5 - 2) * 0.09  # -18 % .. +18 % lightness
    channels = [int(natural[i : i + 2], 16) for i in (1, 3, 5)]
    mixed = [round(c + (255 - c) * shift if shift > 0 else c * (1 + shift)) for c in channels]
    return "#" + "".join(f"{c:02x}" for c in mixed)


def _shorten(path: str) -> str:
    """Long paths keep their end, the part that tells images apart."""
    return path if len(path) <= MAX_HOVER_PATH else "…" + path[-(MAX_HOVER_PATH - 1) :]


def _plotly_text(text: str) -> str:
    """Plotly renders its own HTML subset in labels: escape so a class name shows as typed."""
    return html.escape(text, quote=False)


def _common_root(paths: list[str]) -> str:
    """The directory prefix shared by all paths, to keep the page small."""
    if len(paths) < 2:
        return ""
    first, last = min(paths), max(paths)
    pairs = enumerate(zip(first, last, strict=False))
    size = next((i for i, (a, b) in pairs if a != b), min(len(first), len(last)))
    return first[: first.rfind("/", 0, size) + 1]


# --- tables and cards ---------------------------------------------------------------------------


def _cards(summary: dict[str, Any], evaluation: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The key numbers for the header; ``bad`` ones are drawn in red."""
    images = summary["images"]
    pca = summary["pca"]
    kept = sum(pca["explained_variance"][: pca["k"]])

    def card(label: str, value: str, note: str = "", bad: bool = False) -> dict[str, Any]:
        return {"label": label, "value": value, "note": note, "bad": bad}

    cards = [
        card("images listed", f"{images['listed']:,}"),
        card("featurised", f"{images['featurised']:,}"),
        card("failed", f"{images['failed']:,}", bad=images["failed"] > 0),
        card("classes", f"{len(summary['labels']):,}"),
        card("PCA components", f"{pca['k']:,}", f"{kept:.1%} variance"),
        card(
            "wall time",
            _duration(wall_seconds(summary)),
            f"{summary['throughput_images_per_s']:,.1f} images/s",
        ),
    ]
    if evaluation is not None and evaluation["top1"] is not None:
        cards.append(card("top-1 accuracy", f"{evaluation['top1']:.1%}"))
        cards.append(card("top-5 accuracy", f"{evaluation['top5']:.1%}"))
    fruit = (evaluation or {}).get("fruit_level")
    if fruit and fruit["top1"] is not None:
        cards.append(
            card("fruit top-1", f"{fruit['top1']:.1%}", f"{len(fruit['per_class'])} fruits")
        )
    return cards


def _run_rows(summary: Summary, features: pa.Table) -> list[tuple[str, str]]:
    """Provenance: what ran, on what, with which model."""
    model, spark, size = summary.model, summary.spark, summary.model.input_size
    return [
        ("input", summary.input),
        ("output", summary.output),
        ("started", _timestamp(summary.started_at)),
        ("finished", _timestamp(summary.finished_at)),
        ("fruitspark", summary.fruitspark_version),
        ("Spark", f"{spark.version} on {spark.master}"),
        ("model", f"{model.id}, {model.precision}"),
        ("model sha256", model.sha256),
        ("model input", f"{size}{_TIMES}{size} px, {_views(model)}"),
        ("descriptor", _descriptor(model)),
        ("feature dimension", f"{model.feature_dim:,}"),
        ("PCA", f"k = {summary.pca.k} ({describe_rule(summary.pca)})"),
        ("image size", _typical_size(features)),
    ]


def _views(model: ModelInfo) -> str:
    if model.views == "pad":
        return "padded to a square on white"
    return "padded on white and, for a picture that is not square, its centre square (averaged)"


def _descriptor(model: ModelInfo) -> str:
    """The blocks that feed PCA, as FeaturizeOptions names them."""
    blocks = [] if model.descriptor == "colour" else ["CNN features"]
    if model.logits and blocks:
        blocks.append("ImageNet logits")
    if model.descriptor != "cnn":
        blocks.append(f"colour histogram (weight {model.colour_weight:g})")
    return " + ".join(blocks)


def _typical_size(features: pa.Table) -> str:
    """The most common width and height, and how many of the images have it."""
    sizes = Counter(
        (w, h)
        for w, h in zip(features["width"].to_pylist(), features["height"].to_pylist(), strict=True)
        if w is not None and h is not None
    )
    if not sizes:
        return "unknown"
    (width, height), count = sizes.most_common(1)[0]
    total = sum(sizes.values())
    share = "all images" if count == total else f"{count:,} of {total:,} images"
    return f"{width}{_TIMES}{height} px ({share}; {len(sizes):,} distinct sizes)"


def _stages(stages: dict[str, float], total: float) -> dict[str, Any]:
    """Time per stage with its share of the run's wall time ``total``, for CSS bars.

    A stage named ``total`` is that wall time, not one more stage; what no stage accounts for
    (Spark's start-up, mostly) is shown as ``other``, so the rows add up to the same total as
    the header's card.
    """
    parts = {name: seconds for name, seconds in stages.items() if name != "total"}
    if total - sum(parts.values()) >= 0.005 * total > 0:
        parts["other"] = total - sum(parts.values())
    longest = max(parts.values(), default=0.0) or 1.0
    rows = [
        {
            "name": name,
            "time": _duration(seconds),
            "share": f"{seconds / total:.0%}" if total else "",
            "width": f"{100 * seconds / longest:.1f}%",
        }
        for name, seconds in parts.items()
    ]
    return {"rows": rows, "total": _duration(total)}


def _error_rows(features: pa.Table) -> dict[str, Any]:
    """The failed files, sorted by path, capped so a broken bucket does not make a 100 MB page."""
    failed = features.filter(features["error"].is_valid()).select(
        ["path", "label", "split", "error"]
    )
    rows = sorted(failed.to_pylist(), key=lambda row: row["path"])
    return {"rows": rows[:MAX_ERROR_ROWS], "total": len(rows), "hidden": len(rows) - MAX_ERROR_ROWS}


def _evaluation_context(evaluation: dict[str, Any]) -> dict[str, Any]:
    """Evaluation tables, worst classes first, and the misclassified thumbnails."""
    per_class = sorted(
        ({"label": label, **scores} for label, scores in evaluation["per_class"].items()),
        key=lambda row: (row["f1"], row["label"]),
    )
    pairs = sorted(evaluation["confused_pairs"], key=lambda pair: -pair["count"])
    misclassified = evaluation["misclassified"]
    return {
        "top1": evaluation["top1"],
        "top5": evaluation["top5"],
        "trained_on": evaluation["trained_on"],
        "selection": _selection_context(evaluation.get("model_selection")),
        "fruit_level": evaluation.get("fruit_level"),
        "tested_on": evaluation["tested_on"],
        "per_class": per_class,
        "pairs": pairs[:MAX_CONFUSED_PAIRS],
        "pairs_hidden": len(pairs) - MAX_CONFUSED_PAIRS,
        "worst": len(evaluation["confusion"]["labels"]),
        "confusion": _confusion_table(evaluation["confusion"]),
        "thumbnails": _thumbnails(misclassified[:MAX_THUMBNAILS]),
        "thumbnails_hidden": len(misclassified) - MAX_THUMBNAILS,
    }


def _selection_context(selection: dict[str, Any] | None) -> dict[str, Any] | None:
    """The CV grid and its choice, candidates that reached the last rung first, best first.
    An evaluation.json of before successive halving has no ``search``, ``rungs`` nor ``rung``:
    it was a grid search, every candidate on the full CV."""
    if not selection:
        return None
    rows = sorted(
        selection["grid"],
        key=lambda row: (-(row.get("rung") or 0), -(row.get("cv_accuracy") or 0.0)),
    )
    return {
        "search": "grid",
        "rungs": [],
        "halving_factor": None,
        **selection,
        "grid": rows,
    }


# --- thumbnails ---------------------------------------------------------------------------------


def _thumbnails(misclassified: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each image as a small JPEG data: URI, or the reason it could not be shown."""
    with ThreadPoolExecutor(max_workers=8) as pool:
        previews = list(pool.map(lambda item: _thumbnail(item["path"]), misclassified))
    return [
        {**item, "src": src, "problem": problem}
        for item, (src, problem) in zip(misclassified, previews, strict=True)
    ]


def _thumbnail(path: str) -> tuple[str | None, str | None]:
    """(data URI, None) or (None, reason): a missing or broken image never stops the report."""
    try:
        image = decode_image(_read_bytes(path), min_side=THUMBNAIL_SIDE)
        image.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=75, optimize=True)
    except Exception as error:  # unknown scheme, S3 denial, bad file: all just a placeholder
        return None, str(error) or type(error).__name__
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii"), None


def _read_bytes(path: str) -> bytes:
    """The bytes of a local path or a URI (file:, s3:, s3a:, gs:, hdfs: ...).

    Spark writes URIs without percent-encoding (``file:/data/Apple Red/1.jpg``) while a proper URI
    has it, so the literal reading is tried first and the percent-decoded one second. ``#`` and
    ``?`` are part of the file name, hence no urlsplit.
    """
    match = _URI.match(path)
    if match is None:  # a plain path (a one-letter "scheme" would be a Windows drive)
        return Path(path).read_bytes()
    scheme, rest = match.groups()
    scheme = {"s3a": "s3", "s3n": "s3"}.get(scheme.lower(), scheme.lower())
    netloc, key = "", rest
    if rest.startswith("//"):
        netloc, _, key = rest[2:].partition("/")
        key = "/" + key
    candidates = [f"{scheme}://{netloc}{quote(key, safe='/')}", f"{scheme}://{netloc}{key}"]
    last_error: Exception = FileNotFoundError(path)
    for uri in dict.fromkeys(candidates):
        try:
            filesystem, inner = FileSystem.from_uri(uri)
            with filesystem.open_input_stream(inner) as stream:
                return stream.read()
        except (OSError, ValueError) as error:
            last_error = error
    raise last_error


# --- page assembly ------------------------------------------------------------------------------


def _app_script(figures: dict[str, go.Figure]) -> str:
    """Every figure's JSON and the page's behaviour, as one script for the CSP to hash.

    plotly's JSON encoder writes ``<`` as ``\\u003c``, so a label cannot close the script element.
    """
    entries = ",\n".join(
        f"{json.dumps(div_id)}: {pio.to_json(figure, validate=False)}"
        for div_id, figure in figures.items()
    )
    return (
        f"const FIGURES = {{\n{entries}\n}};\n"
        f"const PLOTLY_CONFIG = {json.dumps(_PLOTLY_CONFIG)};\n" + _asset("report.js")
    )


def _content_security_policy(scripts: list[str]) -> str:
    """No network at all, and only our own scripts run: injected markup stays inert even if
    escaping ever failed. ``unsafe-eval`` because the unpacked plotly.js is run with
    ``new Function`` (the gzipped bundle is data, in a script element of a type that never runs).
    """
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(s.encode("utf-8")).digest()).decode() + "'"
        for s in scripts
    )
    return (
        f"default-src 'none'; script-src {hashes} 'unsafe-eval'; style-src 'unsafe-inline'; "
        "img-src data: blob:; font-src data:; base-uri 'none'; form-action 'none'"
    )


@cache
def _environment() -> Environment:
    """Autoescaping on, and undefined names fail loudly rather than rendering as blanks."""
    environment = Environment(
        loader=PackageLoader("fruitspark", "report_assets"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["num"] = lambda value: f"{value:,}"
    environment.filters["pct"] = lambda value: "n/a" if value is None else f"{value:.1%}"
    environment.filters["score"] = lambda value: f"{value:.3f}"
    return environment


@cache
def _asset(name: str) -> str:
    """A static file inlined into the page (CSS, the page's JavaScript)."""
    return (Path(__file__).parent / "report_assets" / name).read_text(encoding="utf-8")


def wall_seconds(summary: dict[str, Any]) -> float:
    """The run's one wall time: the summary's total, start to finish (Spark start-up included)."""
    total = summary["stages"].get("total")
    if total is not None:
        return float(total)
    return (
        _parse_time(summary["finished_at"]) - _parse_time(summary["started_at"])
    ).total_seconds()


@cache
def _plotly_bundle() -> str:
    """plotly.js, gzipped, as base64 text: the page unpacks it (DecompressionStream)."""
    data = (Path(__file__).parent / "report_assets" / PLOTLY_BUNDLE).read_bytes()
    return base64.b64encode(data).decode("ascii")


def _parse_time(value: str) -> datetime:
    """ISO 8601, including the trailing Z that Python 3.10 does not accept."""
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _timestamp(value: str) -> str:
    """To the second, and UTC said as such: microseconds and +00:00 are noise on a report."""
    moment = _parse_time(value)
    offset = moment.utcoffset()
    zone = "" if offset is None else " UTC" if not offset else moment.strftime(" UTC%z")
    return moment.strftime("%Y-%m-%d %H:%M:%S") + zone


def _duration(seconds: float) -> str:
    """Human durations: 0.42 s, 12.3 s, 4 min 05 s, 2 h 03 min."""
    if seconds < 10:
        return f"{seconds:.2f} s"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"
