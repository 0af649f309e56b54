"""The summary schema: typed round trip, version 1 outputs upgraded, newer versions refused."""

from __future__ import annotations

import json

import pytest

from fruitspark.summary import (
    SCHEMA_VERSION,
    ClassCount,
    ImageCounts,
    PcaInfo,
    Summary,
    SummaryError,
    describe_rule,
    load,
)


def test_round_trip_keeps_types_and_numbers():
    summary = Summary(
        images=ImageCounts(3, 2, 1, 3, 0),
        pca=PcaInfo(k=2, explained_variance=[0.7, 0.2, 0.1], variance_target=0.9),
        stages={"featurize": 1.5, "total": 4.0},
        class_counts=[ClassCount("Kiwi", "train", False, 2)],
    )
    text = summary.to_json()
    assert json.loads(text)["pca"]["variance_target"] == 0.9
    assert load(text) == summary
    assert load(text).class_counts[0].count == 2


def test_version_1_outputs_are_read_and_their_pca_rule_parsed_once():
    old = {
        "fruitspark_version": "0.1.0",
        "images": {"listed": 5, "featurised": 5, "failed": 0},
        "pca": {"k": 3, "explained_variance": [0.5, 0.3, 0.2], "selection": "variance >= 0.95"},
        "stages": {"featurize": 2},
        "unknown_later_key": {"ignored": True},
    }
    summary = load(old)
    assert summary.schema_version == SCHEMA_VERSION
    assert summary.pca.variance_target == 0.95 and summary.pca.k_requested is None
    assert summary.stages["featurize"] == 2.0 and isinstance(summary.stages["featurize"], float)
    assert describe_rule(summary.pca) == "variance >= 0.95"
    fixed = load({"pca": {"k": 5, "explained_variance": [], "selection": "k = 5"}})
    assert fixed.pca.k_requested == 5 and describe_rule(fixed.pca) == "k = 5 given"


def test_a_newer_schema_is_refused_in_one_line():
    with pytest.raises(SummaryError, match="schema version 99, this fruitspark reads up to"):
        load({"schema_version": 99})
