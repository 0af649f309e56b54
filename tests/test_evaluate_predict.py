"""Evaluation in Spark ML, and predict (no Spark) giving the batch job's own numbers."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from fruitspark.evaluate import (
    EvaluateOptions,
    class_scores,
    confused_pairs,
    evaluate,
    worst_confusion,
)
from fruitspark.pipeline import RunConfig, run
from fruitspark.predict import predict


def test_class_scores_and_confusions_from_counts():
    pairs = Counter({("a", "a"): 3, ("a", "b"): 1, ("b", "b"): 2, ("c", "b"): 2})
    scores = class_scores(pairs, ["a", "b", "c"])
    assert scores["a"] == {"precision": 1.0, "recall": 0.75, "f1": 6 / 7, "support": 4}
    assert scores["b"]["precision"] == pytest.approx(2 / 5)
    assert scores["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 2}
    assert confused_pairs(pairs)[0] == {"true": "c", "predicted": "b", "count": 2}
    confusion = worst_confusion(pairs, scores, size=2)
    assert confusion["labels"] == ["c", "b"]
    assert confusion["matrix"] == [[0, 2], [0, 2]]


@pytest.fixture(scope="module")
def evaluated(spark, subset, tmp_path_factory):
    output = tmp_path_factory.mktemp("evaluate") / "out"
    run(RunConfig(input=str(subset), output=str(output), report=False), spark)
    small_grid = EvaluateOptions(
        features=("pca",), reg_params=(1e-5, 1e-3), class_weights=("none",)
    )
    return output, evaluate(str(output), spark, small_grid)


def test_evaluation_trains_on_training_and_scores_test(evaluated):
    output, scores = evaluated
    on_disk = json.loads((output / "evaluation.json").read_text())
    assert on_disk["top1"] == scores["top1"]
    assert {"top1", "top5", "per_class", "confused_pairs", "trained_on"} <= set(on_disk)
    assert scores["trained_on"]["images"] == 32 and scores["tested_on"]["images"] == 16
    assert 0.6 <= scores["top1"] <= scores["top5"]  # chance is 0.25 with four classes
    assert sum(item["support"] for item in scores["per_class"].values()) == 16
    predictions = pq.read_table(output / "predictions").to_pylist()
    train_paths = {
        row["path"]
        for row in pq.read_table(output / "features").to_pylist()
        if row["split"] == "train"
    }
    assert len(predictions) == 16 and not train_paths & {row["path"] for row in predictions}


def test_predict_gives_the_batch_numbers_without_spark(evaluated):
    output, _ = evaluated
    batch = {row["path"]: row for row in pq.read_table(output / "predictions").to_pylist()}
    paths = sorted(batch)[:4]
    started = time.perf_counter()
    answers = predict(str(output), [path.removeprefix("file:") for path in paths], top_k=3)
    assert time.perf_counter() - started < 60
    labels = sorted({row["label"] for row in batch.values()})
    for path, answer in zip(paths, answers, strict=True):
        expected = batch[path]
        assert answer.error is None
        assert answer.labels[0] == expected["predicted"]
        probabilities = dict(zip(labels, expected["probabilities"], strict=True))
        for label, probability in zip(answer.labels, answer.probabilities, strict=True):
            assert probability == pytest.approx(probabilities[label], abs=1e-4)


def test_predict_reports_a_broken_image_as_an_error(evaluated, tmp_path):
    output, _ = evaluated
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (answer,) = predict(str(output), [str(broken)])
    assert answer.labels == [] and "corrupt" in answer.error


def test_pca_of_predict_equals_the_batch_pca(evaluated, subset):
    from fruitspark.featurize import FeaturizeOptions, describe_images
    from fruitspark.model import new_session, resolve_model
    from fruitspark.reduce import project

    output, _ = evaluated
    row = pq.read_table(output / "features").to_pylist()[0]
    made = json.loads((output / "summary.json").read_text())["model"]
    spec = resolve_model(precision=made["precision"])  # the run's: int8 by default
    session = new_session(Path(spec.path).read_bytes(), threads=1)
    with open(row["path"].removeprefix("file:"), "rb") as stream:
        (result,) = describe_images([stream.read()], session, spec, FeaturizeOptions())
    np.testing.assert_allclose(result.features, row["features"], atol=1e-5)
    pca = np.load(output / "pca.npz")
    np.testing.assert_allclose(
        project(result.features, pca["mean"], pca["components"]), row["pca"], atol=1e-4
    )


def test_balanced_weights_are_left_out_when_they_equal_unit_weights():
    from fruitspark.evaluate import _without_duplicate_candidates

    grid = EvaluateOptions(class_weights=("none", "balanced"))
    assert _without_duplicate_candidates(grid, [12, 12, 12]).class_weights == ("none",)
    assert _without_duplicate_candidates(grid, [12, 11, 12]).class_weights == ("none", "balanced")
    only = EvaluateOptions(class_weights=("balanced",))  # asked for alone: kept
    assert _without_duplicate_candidates(only, [5, 5]).class_weights == ("balanced",)
