"""The HTML report: escaping, self-containment, content, and a real headless browser render."""

from __future__ import annotations

import base64
import io
import json
import re
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from fruitspark.report import MAX_ERROR_ROWS, THUMBNAIL_SIDE, label_colour, write_report

CHROMIUM = Path("/usr/bin/chromium")
SCRIPT_LABEL = '<script>alert("x")</script>'
IMG_LABEL = "<img src=x onerror=alert(1)>"
LABELS = ["Apple Red", "Banana", "Kiwi <b>ü</b> 🥝", SCRIPT_LABEL, IMG_LABEL]
PER_LABEL = 6  # 4 train + 2 test, all featurised
ERRORS = [
    ("broken.jpg", "corrupt or truncated image: image file is truncated"),
    ("empty file.png", "empty file (0 bytes)"),
    ("<b>bold</b>.jpg", "not an image: no known image format recognised"),
]
PCA_K = 5


def _jpeg(colour: tuple[int, int, int], size: tuple[int, int] = (160, 120)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="JPEG")
    return buffer.getvalue()


def _folder(label: str) -> str:
    """Labels may hold characters a folder name cannot ('/'); the report only sees strings."""
    return label.replace("/", "_")


def _features_table(root: Path, extra_errors: int = 0) -> pa.Table:
    rng = np.random.default_rng(7)
    rows = []
    for index, label in enumerate(LABELS):
        for i in range(PER_LABEL):
            rows.append(
                {
                    "path": f"file:{root}/in put/{_folder(label)}/r {i} é.jpg",
                    "label": label,
                    "split": "train" if i < 4 else "test",
                    "width": 100,
                    "height": 100,
                    "pca": (rng.normal(size=PCA_K) + index).astype(np.float32).tolist(),
                    "error": None,
                }
            )
    failures = ERRORS + [(f"bad {i:04d}.jpg", "empty file (0 bytes)") for i in range(extra_errors)]
    for i, (name, reason) in enumerate(failures):
        label = LABELS[i % len(LABELS)]
        rows.append(
            {
                "path": f"{root}/in put/{_folder(label)}/{name}",
                "label": label,
                "split": "train",
                "width": None,
                "height": None,
                "pca": None,
                "error": reason,
            }
        )
    schema = pa.schema(
        [
            ("path", pa.string()),
            ("label", pa.string()),
            ("split", pa.string()),
            ("width", pa.int32()),
            ("height", pa.int32()),
            ("pca", pa.list_(pa.float32())),
            ("error", pa.string()),
        ]
    )
    return pa.Table.from_pylist(rows, schema=schema)


def _summary(root: Path, table: pa.Table, accounting_ok: bool = True) -> dict:
    errors = table.filter(table["error"].is_valid())["error"].to_pylist()
    return {
        "fruitspark_version": "0.1.0",
        "input": f"{root}/in put",
        "output": f"{root}/out",
        "started_at": "2025-01-02T10:00:00Z",
        "finished_at": "2025-01-02T10:02:05Z",
        "images": {
            "listed": table.num_rows,
            "featurised": table.num_rows - len(errors),
            "failed": len(errors),
        },
        "errors_by_reason": {reason: errors.count(reason) for reason in set(errors)},
        "accounting": {
            "ok": accounting_ok,
            "missing": 0 if accounting_ok else 2,
            "duplicated": 0,
            "unexpected": 0 if accounting_ok else 1,
        },
        "model": {
            "id": "efficientnet-lite0",
            "sha256": "ab" * 32,
            "input_size": 224,
            "feature_dim": 1280,
            "precision": "int8",
            "descriptor": "both",
            "logits": True,
            "colour_weight": 8.0,
            "views": "pad+crop",
        },
        "pca": {
            "k": 3,
            "explained_variance": [0.4, 0.25, 0.15, 0.1, 0.05, 0.03, 0.02],
            "selection": "variance >= 0.8",
        },
        "stages": {"list": 1.5, "featurise": 95.25, "pca": 12.0, "write": 4.0, "total": 125.0},
        "throughput_images_per_s": 3.7,
        "spark": {"master": "local[4]", "version": "4.0.1"},
        "labels": {label: PER_LABEL for label in LABELS},
        "class_counts": [
            {"label": label, "split": split, "failed": failed, "count": count}
            for (label, split, failed), count in Counter(
                zip(
                    table["label"].to_pylist(),
                    table["split"].to_pylist(),
                    table["error"].is_valid().to_pylist(),
                    strict=True,
                )
            ).items()
        ],
    }


def _misclassified(root: Path) -> list[dict]:
    """Three readable images in three path styles, then a missing file, one that is not an image
    and one on a filesystem pyarrow does not know."""
    images = root / "images ü"
    images.mkdir()
    plain = images / "apple red 1.jpg"
    plain.write_bytes(_jpeg((200, 30, 30)))
    encoded = images / "kiwi #2 é.jpg"
    encoded.write_bytes(_jpeg((40, 160, 40), size=(90, 200)))
    spark_style = images / "banana 3.jpg"
    spark_style.write_bytes(_jpeg((230, 210, 40)))
    (images / "not an image.jpg").write_bytes(b"definitely not a jpeg")
    return [
        {"path": str(plain), "label": "Apple Red", "predicted": IMG_LABEL, "probability": 0.91},
        {
            "path": "file://" + quote(str(encoded)),
            "label": "Kiwi <b>ü</b> 🥝",
            "predicted": "Banana",
            "probability": 0.55,
        },
        {
            "path": f"file:{spark_style}",
            "label": "Banana",
            "predicted": SCRIPT_LABEL,
            "probability": 0.4,
        },
        {
            "path": str(images / "gone.jpg"),
            "label": SCRIPT_LABEL,
            "predicted": "Banana",
            "probability": 0.7,
        },
        {
            "path": str(images / "not an image.jpg"),
            "label": IMG_LABEL,
            "predicted": "Apple Red",
            "probability": 0.33,
        },
        {
            "path": "nosuch://host/x.jpg",
            "label": "Banana",
            "predicted": "Apple Red",
            "probability": 0.3,
        },
    ]


def _evaluation(root: Path) -> dict:
    per_class = {
        label: {
            "precision": 0.5 + i / 10,
            "recall": 0.45 + i / 10,
            "f1": 0.47 + i / 10,
            "support": 2,
        }
        for i, label in enumerate(LABELS)
    }
    worst = [SCRIPT_LABEL, IMG_LABEL, "Banana"]
    return {
        "top1": 0.8123,
        "top5": 0.9876,
        "per_class": per_class,
        "confused_pairs": [
            {"true": SCRIPT_LABEL, "predicted": IMG_LABEL, "count": 2},
            {"true": "Banana", "predicted": "Apple Red", "count": 1},
        ],
        "trained_on": {"split": "train", "images": 20, "classes": len(LABELS), "features": "pca"},
        "tested_on": {"split": "test", "images": 10},
        "confusion": {"labels": worst, "matrix": [[1, 1, 0], [0, 2, 0], [0, 1, 1]]},
        "misclassified": _misclassified(root),
    }


def _write_output(
    root: Path, *, evaluation: bool = True, extra_errors: int = 0, ok: bool = True
) -> Path:
    output = root / "out"
    features = output / "features"
    features.mkdir(parents=True)
    table = _features_table(root, extra_errors)
    half = table.num_rows // 2
    pq.write_table(table.slice(0, half), features / "part-00000.snappy.parquet")
    pq.write_table(table.slice(half), features / "part-00001.snappy.parquet")
    (features / "_SUCCESS").write_bytes(b"")  # Spark's markers, which the reader must skip
    (features / ".part-00000.snappy.parquet.crc").write_bytes(b"crc")
    (output / "summary.json").write_text(json.dumps(_summary(root, table, ok)), encoding="utf-8")
    if evaluation:
        (output / "evaluation.json").write_text(json.dumps(_evaluation(root)), encoding="utf-8")
    return output


class _Page(HTMLParser):
    """Every tag with its attributes, plus the text of each element with an id."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text_by_id: dict[str, str] = {}
        self._open_ids: list[tuple[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        self.tags.append((tag, attributes))
        if attributes.get("id"):
            self._open_ids.append((tag, attributes["id"]))
            self.text_by_id[attributes["id"]] = ""

    def handle_endtag(self, tag: str) -> None:
        if self._open_ids and self._open_ids[-1][0] == tag:
            self._open_ids.pop()

    def handle_data(self, data: str) -> None:
        for _, element_id in self._open_ids:
            self.text_by_id[element_id] += data

    def count(self, tag: str, css_class: str) -> int:
        return sum(
            1 for t, a in self.tags if t == tag and css_class in (a.get("class") or "").split()
        )


def _parse(html: str) -> _Page:
    page = _Page()
    page.feed(html)
    return page


def _cards(html: str) -> dict[str, str]:
    pairs = re.findall(
        r'<div class="card-value"[^>]*>([^<]*)</div>\s*<div class="card-label">([^<]*)</div>', html
    )
    return {label: value for value, label in pairs}


@pytest.fixture
def report(tmp_path: Path) -> tuple[Path, str]:
    output = _write_output(tmp_path)
    path = write_report(output)
    return path, path.read_text(encoding="utf-8")


def test_report_is_written_next_to_the_output_by_default(report: tuple[Path, str]) -> None:
    path, html = report
    assert path.name == "report.html"
    assert path.parent.name == "out"
    assert html.startswith("<!DOCTYPE html>")
    assert len(html.encode()) < 8_000_000


def test_labels_and_paths_are_escaped_everywhere(report: tuple[Path, str]) -> None:
    _, html = report
    assert "<script>alert" not in html
    assert "<img src=x" not in html
    assert "<b>bold</b>" not in html and "<b>ü</b>" not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    page = _parse(html)
    scripts = [attrs for tag, attrs in page.tags if tag == "script"]
    assert len(scripts) == 2, "plotly.js once (gzipped data), then the page's own script"
    assert [a.get("type") for a in scripts] == ["application/octet-stream", None]
    assert html.count("plotly-bundle") == 2, "the bundle, and the one place that unpacks it"
    assert all(
        tag != "img" or (attrs.get("src") or "").startswith("data:") for tag, attrs in page.tags
    )


def test_nothing_is_loaded_from_another_host(report: tuple[Path, str]) -> None:
    _, html = report
    page = _parse(html)
    for tag, attrs in page.tags:
        assert tag not in ("link", "iframe", "object", "embed", "base"), tag
        if tag == "script":
            assert "src" not in attrs
        if tag == "img":
            assert attrs["src"].startswith("data:image/jpeg;base64,")
        if tag == "a":
            assert attrs["href"].startswith("#")
        for name in ("src", "href", "srcset", "poster", "action", "data"):
            value = (attrs.get(name) or "").strip().lower()
            assert not value.startswith(("http:", "https:", "//", "ftp:")), (tag, name, value)
    assert "@import" not in html and "url(http" not in html
    csp = next(
        a["content"] for t, a in page.tags if a.get("http-equiv") == "Content-Security-Policy"
    )
    assert "default-src 'none'" in csp


def test_counts_and_run_summary_are_shown(report: tuple[Path, str]) -> None:
    _, html = report
    cards = _cards(html)
    featurised = len(LABELS) * PER_LABEL
    assert cards["images listed"] == str(featurised + len(ERRORS))
    assert cards["featurised"] == str(featurised)
    assert cards["failed"] == str(len(ERRORS))
    assert cards["classes"] == str(len(LABELS))
    assert cards["PCA components"] == "3"
    assert cards["wall time"] == "2 min 05 s"
    assert cards["top-1 accuracy"] == "81.2%"
    assert cards["top-5 accuracy"] == "98.8%"
    page = _parse(html)
    assert "accounting OK" in page.text_by_id["accounting"]
    shown = ("efficientnet-lite0, int8", "local[4]", "4.0.1", "variance &gt;= 0.8", "3.7 images/s")
    for text in shown:
        assert text in html
    assert "CNN features + ImageNet logits + colour histogram (weight 8)" in html
    assert "its centre square (averaged)" in html
    assert "finished 2025-01-02 10:02:05 UTC" in html
    stages = re.search(r'<table class="stages">(.*?)</table>', html, re.DOTALL)
    assert stages is not None
    row = r'<th[^>]*>([^<]*)</th>.*?<td class="num">([^<]*)</td>'
    rows = re.findall(row, stages.group(1), re.DOTALL)
    assert rows == [
        ("list", "1.50 s"),
        ("featurise", "1 min 35 s"),
        ("pca", "12.0 s"),
        ("write", "4.00 s"),
        ("other", "12.2 s"),
        ("total", "2 min 05 s"),
    ]
    assert '<td class="num muted">76%</td>' in stages.group(1), "share of the run's own total"
    assert '<td class="num muted">10%</td>' in stages.group(1), "start-up, in no stage"


def test_without_a_total_the_card_and_the_stage_table_agree(tmp_path: Path) -> None:
    """The run's own report is drawn before the commit adds the total: one wall time still."""
    output = _write_output(tmp_path, evaluation=False)
    summary = json.loads((output / "summary.json").read_text())
    del summary["stages"]["total"]
    (output / "summary.json").write_text(json.dumps(summary))
    html = write_report(output).read_text(encoding="utf-8")
    assert _cards(html)["wall time"] == "2 min 05 s"
    assert re.search(r'<tfoot>.*?<td class="num">2 min 05 s</td>', html, re.DOTALL)


def test_errors_and_thumbnails_are_listed(report: tuple[Path, str]) -> None:
    _, html = report
    page = _parse(html)
    error_rows = re.search(r'id="errors-table">.*?<tbody>(.*?)</tbody>', html, re.DOTALL)
    assert error_rows is not None
    assert error_rows.group(1).count("<tr>") == len(ERRORS)
    assert "&lt;b&gt;bold&lt;/b&gt;.jpg" in error_rows.group(1)
    assert "errors-more" not in html
    assert page.count("figure", "thumb") == 6
    assert page.count("div", "placeholder") == 3
    thumbnails = [a for t, a in page.tags if t == "img"]
    assert len(thumbnails) == 3
    sizes = []
    for attrs in thumbnails:
        data = attrs["src"].removeprefix("data:image/jpeg;base64,")
        with Image.open(io.BytesIO(base64.b64decode(data))) as image:
            sizes.append(image.size)
    assert max(max(size) for size in sizes) == THUMBNAIL_SIDE
    assert (32, 72) in sizes, "aspect ratio kept for the 90 x 200 image"


def test_without_evaluation_many_errors_and_failed_accounting(tmp_path: Path) -> None:
    output = _write_output(tmp_path, evaluation=False, extra_errors=MAX_ERROR_ROWS, ok=False)
    target = tmp_path / "elsewhere" / "r.html"
    assert write_report(output, target) == target
    html = target.read_text(encoding="utf-8")
    page = _parse(html)
    assert 'id="evaluation"' not in html and "top-1 accuracy" not in html
    assert "accounting failed" in page.text_by_id["accounting"]
    rows = re.search(r'id="errors-table">.*?<tbody>(.*?)</tbody>', html, re.DOTALL)
    assert rows is not None and rows.group(1).count("<tr>") == MAX_ERROR_ROWS
    assert page.text_by_id["errors-more"].startswith(f"{len(ERRORS):,} more failed files")
    assert not (output / "report.html").exists()


# --- a real browser ---------------------------------------------------------------------------

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


class _Watched:
    """A browser page whose console errors, dialogs and requests to other hosts are recorded."""

    def __init__(self, browser) -> None:
        self.problems: list[str] = []
        self.dialogs: list[str] = []
        self.foreign: list[str] = []
        self.page = browser.new_page(viewport={"width": 1366, "height": 900})
        self.page.route("**/*", self._route)
        self.page.on("console", lambda m: m.type == "error" and self.problems.append(m.text))
        self.page.on("pageerror", lambda error: self.problems.append(str(error)))
        self.page.on("requestfailed", lambda r: self.problems.append(f"request failed: {r.url}"))
        self.page.on("dialog", self._dialog)

    def _route(self, route) -> None:
        if route.request.url.startswith(("file:", "data:", "blob:")):
            route.continue_()
        else:
            self.foreign.append(route.request.url)
            route.abort()

    def _dialog(self, dialog) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip("needs Debian's chromium at /usr/bin/chromium (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


# What the rendered report shows, read from the page itself (Plotly's own data included).
_PAGE_STATE = """() => {
        const gd = document.getElementById("chart-scatter");
        const rows = id => document.querySelectorAll(`#${id} tbody tr`).length;
        return {
            plots: document.querySelectorAll(".js-plotly-plot").length,
            traces: gd._fullData.length,
            points: gd._fullData.reduce((n, t) => n + t._length, 0),
            legend: Array.from(gd.querySelectorAll(".legendtext"), e => e.textContent),
            errors: rows("errors-table"),
            perClass: rows("per-class-table"),
            pairs: rows("pairs-table"),
            confusion: rows("confusion-table"),
            confusionCells: document.querySelectorAll("#confusion-table tbody td").length,
            colours: Object.fromEntries(gd._fullData.map(t => [t.name, t.marker.color])),
            thumbs: document.querySelectorAll("figure.thumb").length,
            images: Array.from(document.images).filter(i => i.naturalWidth > 0).length,
            foreignImages: document.querySelectorAll('img:not([src^="data:"])').length,
            scripts: document.scripts.length,
            cloudButtons: document.querySelectorAll('.modebar-btn[data-title^="Share"]').length,
        };
    }"""


def test_report_renders_in_a_real_browser(tmp_path: Path, browser) -> None:
    report = write_report(_write_output(tmp_path))
    watched = _Watched(browser)
    page = watched.page
    page.goto(report.as_uri(), wait_until="load")
    page.wait_for_function(
        "document.querySelectorAll('.js-plotly-plot .main-svg').length >= 3", timeout=15_000
    )
    state = page.evaluate(_PAGE_STATE)
    f1 = "#per-class-table thead th:nth-child(4)"
    page.click(f1)
    page.click(f1)
    f1_values = page.eval_on_selector_all(
        "#per-class-table tbody td:nth-child(4)", "cells => cells.map(c => +c.dataset.value)"
    )
    page.fill("input[data-filter]", "kiwi")
    visible = page.eval_on_selector_all(
        "#per-class-table tbody tr", "rows => rows.filter(r => !r.hidden).length"
    )
    screenshot = page.screenshot(full_page=True)
    page.close()

    assert watched.problems == []
    assert watched.dialogs == []
    assert watched.foreign == []
    assert state["plots"] == 3  # variance, scatter, classes
    assert state["confusion"] == 3 and state["confusionCells"] == 9
    assert state["traces"] == len(LABELS)
    assert state["points"] == len(LABELS) * PER_LABEL
    assert sorted(state["legend"]) == sorted(LABELS), "class names shown exactly as written"
    escaped = {label.replace("<", "&lt;").replace(">", "&gt;"): label for label in LABELS}
    assert {escaped[name]: colour for name, colour in state["colours"].items()} == {
        label: label_colour(label) for label in LABELS
    }
    assert state["errors"] == len(ERRORS)
    assert state["perClass"] == len(LABELS)
    assert state["pairs"] == 2
    assert state["thumbs"] == 6 and state["images"] == 3
    assert state["foreignImages"] == 0 and state["scripts"] == 2
    assert state["cloudButtons"] == 0, "no button that uploads the data to Plotly Cloud"
    assert f1_values == sorted(f1_values, reverse=True) != sorted(f1_values)
    assert visible == 1
    with Image.open(io.BytesIO(screenshot)) as image:
        pixels = np.asarray(image.convert("RGB"))
    assert pixels.shape[0] > 1500, "full page, not just the viewport"
    assert pixels.std() > 20
    assert len(np.unique(pixels.reshape(-1, 3)[::7], axis=0)) > 200


def test_content_security_policy_blocks_injected_markup(tmp_path: Path, browser) -> None:
    """Defence in depth: even markup that escaped escaping could neither run nor fetch."""
    report = write_report(_write_output(tmp_path, evaluation=False))
    html = report.read_text(encoding="utf-8")
    injected = (
        "<script>alert(1)</script><img src=x onerror=alert(2)><img src=data:, onerror=alert(3)>"
    )
    report.write_text(html.replace("</main>", injected + "</main>"), encoding="utf-8")
    watched = _Watched(browser)
    watched.page.goto(report.as_uri(), wait_until="load")
    watched.page.wait_for_function("document.querySelectorAll('.js-plotly-plot').length >= 3")
    watched.page.close()
    assert watched.dialogs == []
    blocked = [p for p in watched.problems if "Content Security Policy" in p]
    assert sum("inline script" in p for p in blocked) == 1
    assert sum("inline event handler" in p for p in blocked) == 2
    assert sum("Loading the image" in p for p in blocked) == 1
    others = set(watched.problems) - set(blocked)
    assert others <= {f"request failed: {report.parent.as_uri()}/x"}


# --- size, colours, empty sections ------------------------------------------------------------


def test_the_page_is_small_and_bounded_for_any_run(tmp_path: Path) -> None:
    """A few hundred images stay under 1 MB; 30,000 images and 5,000 failures barely more."""
    small = write_report(_write_output(tmp_path / "small"))
    assert small.stat().st_size < 1_000_000
    big = _write_output(tmp_path / "big", extra_errors=5_000)
    rng = np.random.default_rng(1)
    rows = [
        {"path": f"/data/Training/Class {i % 300}/a rather long file name {i:06d}.jpg",
         "label": f"Class {i % 300}", "split": "train", "width": 100, "height": 100,
         "pca": rng.normal(size=PCA_K).astype(np.float32).tolist(), "error": None}
        for i in range(30_000)
    ]  # fmt: skip
    schema = pq.read_schema(big / "features" / "part-00000.snappy.parquet")
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), big / "features" / "part-2.parquet")
    summary = json.loads((big / "summary.json").read_text())
    summary["labels"] = {f"Class {i}": 100 for i in range(300)}
    (big / "summary.json").write_text(json.dumps(summary))
    size = write_report(big).stat().st_size
    assert size < 2_000_000, size
    assert size < 2.5 * small.stat().st_size


def test_class_colours_are_stable_and_natural_where_the_name_says() -> None:
    assert label_colour("Orange") == label_colour("Orange") == "#f28c28"
    assert label_colour("Apple Granny Smith").startswith("#") and label_colour("Kiwi") != "#000"
    red, green, blue = (int(label_colour("Orange")[i : i + 2], 16) for i in (1, 3, 5))
    assert red > green > blue, "orange looks orange"
    red, green, blue = (int(label_colour("Limes")[i : i + 2], 16) for i in (1, 3, 5))
    assert green > red and green > blue, "limes look green"
    other = {label_colour(f"Class {i}") for i in range(50)}
    assert len(other) > 40 and all(c.startswith("hsl(") for c in other)


def test_empty_evaluation_sections_say_none(tmp_path: Path) -> None:
    output = _write_output(tmp_path)
    evaluation = json.loads((output / "evaluation.json").read_text())
    evaluation.update(confused_pairs=[], misclassified=[], top1=1.0)
    (output / "evaluation.json").write_text(json.dumps(evaluation))
    html = write_report(output).read_text(encoding="utf-8")
    page = _parse(html)
    assert page.text_by_id["pairs-none"].startswith("None")
    assert page.text_by_id["thumbs-none"].startswith("None")
    assert 'id="pairs-table"' not in html


def _selection(search: str | None) -> dict:
    """A model selection as evaluate writes it (``None``: as before successive halving)."""
    rows = [
        ("pca", 1e3, 0, 0.31),
        ("features", 1e-3, 1, 0.83),
        ("pca", 1e-3, 1, 0.88),
        ("features", 1e3, 0, 0.97),  # a lucky small sample: it still did not reach the last rung
    ]
    grid = [
        {"features": f, "colour_boost": 1.0, "reg_param": r, "class_weight": "none",
         "rung": rung, "cv_accuracy": accuracy}
        for f, r, rung, accuracy in rows
    ]  # fmt: skip
    selection = {"folds": 3, "metric": "accuracy", "grid": grid, "chosen": grid[2]}
    if search is None:
        for row in grid:
            del row["rung"]
        return selection
    rungs = [
        {"rung": 0, "rows": 20, "candidates": 4, "seconds": 3.5},
        {"rung": 1, "rows": 60, "candidates": 2, "seconds": 7.25},
    ]
    return {**selection, "search": search, "halving_factor": 3, "rungs": rungs}


@pytest.mark.parametrize("search", ["halving", None])
def test_model_selection_shows_the_rung_each_candidate_reached(tmp_path: Path, search) -> None:
    output = _write_output(tmp_path)
    evaluation = json.loads((output / "evaluation.json").read_text())
    evaluation["model_selection"] = _selection(search)
    (output / "evaluation.json").write_text(json.dumps(evaluation))
    page = _parse(write_report(output).read_text(encoding="utf-8"))
    text = " ".join(page.text_by_id["model-selection"].split())
    assert "pca, regParam 0.001, none class weights" in text
    order = [text.index(value) for value in ("88.0%", "83.0%", "97.0%", "31.0%")]
    if search is None:  # an evaluation.json of before: the grid, best first, no rungs
        assert "last rung" not in text and "halving" not in text
        assert order[2] < order[0] < order[1] < order[3]
        return
    assert "successive halving" in text and "last rung" in text
    assert "rung 0: 4 candidates on 20 rows (3.5 s) → rung 1: 2 candidates on 60 rows" in text
    assert order == sorted(order)  # the last rung's candidates first, then by accuracy
    assert text.count("(all rows)") == 2
