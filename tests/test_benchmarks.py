"""The benchmark framework without measuring: targets, rendering from results, input trees."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from benchmarks import document, sections, targets
from benchmarks.common import class_subset, link_tree, sample_files
from benchmarks.targets import Target

RUN = {
    "date": "2026-12-01 11:00 UTC",
    "machine": {"cpu": "test CPU", "cpus": 2, "ram_gb": 1.0, "os": "os", "python": "3.11",
                "spark": "4", "onnxruntime": "1", "numpy": "2", "pillow": "11", "java": "17"},
    "master": "local[2]",
    "quick": True,
    "limit": None,
    "load": {"seconds": 10.0, "others_cores": 0.75, "own_cores": 1.2,
             "loadavg_start": 1.0, "loadavg_end": 2.0},
}  # fmt: skip
E2E = {"run": {"featurize_images_per_s": 125.0, "wall_s": 100.0, "peak_worker_rss_mb": 300.0},
       "bare": {"images_per_s": 100.0}, "outside_featurize_s": 20.0}  # fmt: skip


def outcome(results: dict, goal_start: str) -> targets.Outcome:
    matches = [o for o in targets.evaluate(results) if o.target.goal.startswith(goal_start)]
    assert len(matches) == 1, goal_start
    return matches[0]


def test_a_ratio_target_divides_the_first_key_by_the_second_and_applies_its_bound():
    met = outcome({"e2e": E2E}, "featurize stage, int8")
    assert met.value == pytest.approx(1.25)
    assert (met.measured, met.met) == ("1.25 x", "met")
    share = outcome({"e2e": E2E}, "outside featurize")
    assert share.value == pytest.approx(0.2)
    assert (share.measured, share.met) == ("20.0 %", "**not met**")
    quick = outcome({"e2e": E2E | {"_run": RUN}}, "outside featurize")
    assert quick.measured == "20.0 % (quick run)"


def test_a_target_without_its_section_or_key_is_not_measured():
    assert outcome({}, "30-image run").measured == "not measured"
    fp32 = outcome({"e2e": E2E}, "featurize stage with fp32")  # no fp32 run in the result
    assert (fp32.value, fp32.measured, fp32.met) == (None, "not measured", "-")


def test_strict_and_loose_bounds_differ_at_the_bound():
    at_most = Target("x", "t", "s", ("v",), "<=", 1.0)
    below = Target("x", "t", "s", ("v",), "<", 1.0)
    assert at_most.met(1.0) and not below.met(1.0)
    assert at_most.value({"v": {"w": 1}}) is None  # not a number
    with pytest.raises(ValueError):
        Target("x", "t", "s", ("a", "b", "c"), "<=", 1.0)
    with pytest.raises(ValueError):
        Target("x", "t", "s", ("a",), "=<", 1.0)


def test_dotted_keys_reach_into_nested_results():
    assert targets.lookup({"a": {"b": {"c": 3}}}, "a.b.c") == 3
    assert targets.lookup({"a": {"b": 3}}, "a.b.c") is None
    assert Target("x", "t", "s", ("a.n", "a.d"), ">=", 1).value({"a": {"n": 3, "d": 0}}) is None


def test_every_target_reads_a_section_of_the_document():
    assert {target.section for target in targets.TARGETS} <= set(sections.ORDER)
    assert {target.issue for target in targets.TARGETS} >= {"9", "11"}


def test_the_document_renders_each_section_with_its_machine_load_and_one_targets_table():
    ceiling = {"model": "m", "cores": 2, "seconds_per_layout": 1.0, "two_core_scaling": 1.9,
               "rows": [{"processes": p, "threads": t, "batch": b, "images_per_s": 10.0 * p * t,
                         "others_cores": 0.1} for p in (1, 2) for t in (1, 2)
                        for b in (1, 4, 8, 16, 32)]}  # fmt: skip
    ceiling |= {"best": ceiling["rows"][-1], "pipeline_layout": ceiling["rows"][12],
                "one_core": ceiling["rows"][0], document.RUN_KEY: RUN}  # fmt: skip
    text = document.render_document({"ceiling": ceiling})
    assert text.count("## Targets") == 1
    assert "## Ceiling: the bare model outside Spark" in text
    assert "other processes used 0.75 cores" in text and "quick run" in text
    assert "| 2 x 2 (oversubscribed) | 40.0 |" in text
    assert "not measured" in text and "| met |" not in text


def test_the_committed_results_render():
    results = document.load_results()
    assert results, "benchmarks/results/ holds no section result"
    text = document.render_document(results)
    for name in results:
        module = sections.module(name)
        assert module is not None and f"## {module.TITLE}" in text


def test_input_trees_take_whole_classes_and_hard_link_distinct_paths(tmp_path: Path):
    source = tmp_path / "source"
    for split, label, count in (("Training", "A", 3), ("Training", "B", 2), ("Test", "A", 1)):
        for index in range(count):
            path = source / split / label / f"{index}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"x")
    files = sample_files(source)
    assert [p.parts[-2] for p in class_subset(files, 2)] == ["A"] * 4
    assert link_tree(source, files, tmp_path / "tree", total=15) == 15
    linked = sample_files(tmp_path / "tree")
    assert len(linked) == 15 and linked[0].parts[0] == "c0"
    assert os.stat(source / files[0]).st_nlink == 4  # the original and three copies


def fake_run(images: int, featurize_s: float = 10.0, wall_s: float = 30.0) -> dict:
    """What ``e2e.measured_run`` returns, with made-up numbers."""
    roles = {
        "driver JVM": {"count": 1, "max_rss_mb": 1500.0, "max_pss_mb": 1400.0, "cpu_s": 20.0},
        "python worker": {"count": 2, "max_rss_mb": 350.0, "max_pss_mb": 280.0, "cpu_s": 30.0},
    }
    cpu = {"driver JVM": 2.0, "python worker": 10.0, "all": 12.0}
    return {"name": "r", "images": images, "featurised": images, "failed": 0, "accounting_ok": True,
            "stages": {"list": 2.0, "featurize": featurize_s, "pca": 3.0, "total": wall_s - 2},
            "featurize_images_per_s": images / featurize_s, "wall_s": wall_s,
            "wall_images_per_s": images / wall_s, "pca_k": 10,
            "settings": {"featurize_partitions": 4, "batch_size": 8, "model_loads": 2},
            "processes": {"roles": roles, "worker_rss_mb": [350.0, 340.0], "others_cores": 0.5,
                          "peak_total_rss_mb": 2200.0},
            "cpu_ms_per_image": cpu, "cpu_ms_per_image_featurizing": cpu,
            "peak_worker_rss_mb": 350.0, "outside_featurize_s": wall_s - featurize_s,
            "speed_vs_default": 1.0, "cpu_vs_default": 1.0, "whole_to_bare": 0.5}  # fmt: skip


def test_the_spark_sections_render_from_their_results():
    bare = {"processes": 2, "threads": 1, "batch": 8, "images_per_s": 100.0, "before": 98.0,
            "after": 102.0}  # fmt: skip
    naive = fake_run(1000) | {"partitions": 30, "model_loads": 30}
    results = {
        "e2e": {"input": "in", "bare": bare, "run": fake_run(1000), "outside_featurize_s": 20.0},
        "naive": {"naive": naive, "fruitspark": fake_run(1000), "speed_ratio": 2.0,
                  "cpu_ratio": 0.5},
        "scaling": {"bare": bare, "runs": [fake_run(1000), fake_run(3000, 20, 50)],
                    "fit": {"slope_ms": 10.0, "intercept_s": 20.0, "r2": 1.0},
                    "at_3000": {"bare": bare, "wall_images_per_s": 60.0}},
        "tuning": {"images": 500, "runs": [fake_run(500) | {"label": "defaults"}]},
        "load": {"runs": [fake_run(5000), fake_run(50000, 300, 400)],
                 "large_vs_small_per_image": {"wall_s": 0.5, "outside_featurize_s": 0.3}},
    }  # fmt: skip
    text = document.render_document(results)
    for name in results:
        assert f"## {sections.module(name).TITLE}" in text
    assert "**all** | 3 | 2,200 MB |  | **12.00** | 12.00 |" in text  # e2e's process table
    assert outcome(results, "whole command at 3,000").measured == "0.60 x"
