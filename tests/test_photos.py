"""Real photos: label levels, several inputs in one run, the logits block, evaluate's CV grid."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import DATA

from fruitspark.evaluate import EvaluateOptions, by_input, evaluate, folded
from fruitspark.featurize import FeaturizeOptions, describe_images
from fruitspark.labels import coarse_label_expr, fruit_of_classes, load_label_map
from fruitspark.layout import CLASSIFIER_NPZ
from fruitspark.model import new_session, resolve_model
from fruitspark.pipeline import RunConfig, run
from fruitspark.predict import predict
from fruitspark.sources import InputSpec, SourceError

GROCERY = DATA / "grocery-store"


def test_packaged_map_names_fruits360_and_grocery_varieties_as_fruits():
    fruits = load_label_map("fruits")
    assert fruits["Apple Golden 1"] == fruits["Golden-Delicious"] == "Apple"
    assert fruits["Limes"] == "Lime" and fruits["Cantaloupe 2"] == fruits["Watermelon"] == "Melon"
    assert fruits["Grapefruit Pink"] == "Red-Grapefruit"


def test_a_bad_label_map_is_one_clear_error(tmp_path):
    (tmp_path / "map.csv").write_text("just one column\nApple\n")
    with pytest.raises(SourceError, match="label,fruit"):
        load_label_map(str(tmp_path / "map.csv"))
    with pytest.raises(SourceError, match="cannot read label map"):
        load_label_map(str(tmp_path / "missing.csv"))


def test_fruit_is_the_folder_at_a_depth_below_the_split_then_the_map(spark):
    rows = [
        ("/d/grocery/train/Fruit/Apple/Golden-Delicious/a.jpg", "Golden-Delicious"),
        ("/d/grocery/train/Fruit/Avocado/b.jpg", "Avocado"),
        ("/d/f360/Training/Apple Red 1/c.jpg", "Apple Red 1"),
        ("/d/loose/d.jpg", "loose"),
    ]
    frame = spark.createDataFrame(rows, "path string, label string")

    def fruits(label_map, depth):
        expr = coarse_label_expr(label_map, depth).alias("fruit")
        return [row["fruit"] for row in frame.select(expr).collect()]

    assert fruits(None, 2) == ["Apple", "Avocado", "Apple Red 1", "loose"]
    assert fruits(None, 3) == ["Golden-Delicious", "Avocado", "Apple Red 1", "loose"]
    assert fruits({"Apple Red 1": "Apple"}, 2) == ["Apple", "Avocado", "Apple", "loose"]
    assert fruits({"Golden-Delicious": "Apple"}, None)[0] == "Apple"


def test_each_fine_class_gets_the_fruit_most_of_its_images_have():
    pairs = [("Kaiser", "Pear", 9), ("Kaiser", "Apple", 1), ("Lemon", "Lemon", 3)]
    assert fruit_of_classes(pairs, ["Kaiser", "Lemon", "Kiwi"]) == ["Pear", "Lemon", "Kiwi"]


def test_an_input_may_set_the_split_of_all_its_images():
    assert InputSpec.parse("/data/photos@Test") == InputSpec("/data/photos", "test")
    assert InputSpec.parse("s3://bucket/year=2024/").split is None
    assert InputSpec.parse("/data/list.csv@train").is_manifest


def test_the_logits_block_is_the_models_own_logits():
    spec = resolve_model()
    session = new_session(Path(spec.path).read_bytes(), threads=1)
    image = next((DATA / "photos" / "banana").iterdir()).read_bytes()
    (with_logits,) = describe_images([image], session, spec, FeaturizeOptions(descriptor="cnn"))
    plain = FeaturizeOptions(descriptor="cnn", logits=False)
    (without,) = describe_images([image], session, spec, plain)
    assert with_logits.features.shape == (spec.feature_dim + 1000,)
    np.testing.assert_array_equal(with_logits.features[: spec.feature_dim], without.features)
    assert FeaturizeOptions().feature_dim(spec) == 1280 + 1000 + 288
    assert int(np.argmax(with_logits.features[spec.feature_dim :])) == 954  # ImageNet "banana"


def test_a_photo_that_is_not_square_is_described_by_its_two_views_averaged():
    """pad+crop (the default): the CNN block is the mean of the padded picture's outputs and
    its centre square's; a square studio shot has one view, the same in either setting."""
    from fruitspark.decode import decode_image
    from fruitspark.featurize import _embed_in_batches
    from fruitspark.preprocess import model_views, to_tensor

    spec = resolve_model()
    session = new_session(Path(spec.path).read_bytes(), threads=1)
    photo = (DATA / "photos" / "banana" / "banana_64.jpg").read_bytes()  # 673 x 421
    studio = next((DATA / "fruits360-sample" / "Test" / "Lemon").iterdir()).read_bytes()
    cnn = FeaturizeOptions(descriptor="cnn")
    both, padded, square, square_padded = (
        describe_images([image], session, spec, options)[0].features
        for image, options in (
            (photo, cnn), (photo, replace(cnn, views="pad")),
            (studio, cnn), (studio, replace(cnn, views="pad")),
        )
    )  # fmt: skip
    views = model_views(decode_image(photo, min_side=spec.input_size), spec.input_size)
    outputs = _embed_in_batches(
        session, spec, [to_tensor(view, spec.normalisation) for view in views], cnn
    )
    assert len(views) == 2
    np.testing.assert_allclose(both, outputs.mean(axis=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(padded, outputs[0], rtol=1e-5, atol=1e-6)
    assert not np.allclose(both, padded, atol=1e-3)
    np.testing.assert_array_equal(square, square_padded)


def _grocery_subset(target: Path, fruits=("Banana", "Lemon"), train: int = 8, val: int = 3):
    for split, count in (("train", train), ("val", val)):
        for fruit in fruits:
            folder = target / split / "Fruit" / fruit
            folder.mkdir(parents=True, exist_ok=True)
            for image in sorted((GROCERY / split / "Fruit" / fruit).glob("*.jpg"))[:count]:
                shutil.copy2(image, folder / image.name)
    return target


@pytest.fixture(scope="module")
def mixed(spark, subset, tmp_path_factory):
    """Fruits-360 (a folder), grocery photos (a folder whose val is used as test) and a manifest
    of two real photos labelled by fruit name, in one run; evaluated at the fruit level."""
    root = tmp_path_factory.mktemp("mixed")
    grocery = _grocery_subset(root / "grocery")
    manifest = root / "held-out.csv"
    bananas = sorted((DATA / "photos" / "banana").iterdir())[:2]
    manifest.write_text("path,label,split\n" + "".join(f"{p},Banana,test\n" for p in bananas))
    config = RunConfig(
        input=str(subset),
        extra_inputs=(str(grocery / "train"), f"{grocery / 'val'}@test", str(manifest)),
        output=str(root / "out"),
        report=False,
    )
    summary = run(config, spark)
    options = EvaluateOptions(
        features=("pca", "features"), reg_params=(1e-3, 1e-1), class_weights=("balanced",),
        label_map="fruits", label_depth=2, search="halving",  # auto: the grid, at this size
    )  # fmt: skip
    return root / "out", summary, evaluate(str(root / "out"), spark, options)


def test_several_inputs_are_one_run_with_every_image_accounted_for(mixed):
    _, summary, _ = mixed
    assert summary.images.listed == 32 + 16 + 16 + 6 + 2
    assert summary.accounting.ok and summary.images.failed == 0
    assert summary.labels["Banana"] == 8 + 4 + 8 + 3 + 2  # same fine name in all inputs


def test_evaluate_chooses_by_cross_validation_and_scores_both_levels(mixed):
    output, _, scores = mixed
    on_disk = json.loads((output / "evaluation.json").read_text())
    grid = on_disk["model_selection"]["grid"]
    assert len(grid) == 2 + 4 and {row["features"] for row in grid} == {"pca", "features"}
    boosts = {(row["features"], row["colour_boost"]) for row in grid}  # pca has no colour block
    assert boosts == {("pca", 1.0), ("features", 1.0), ("features", 2.0)}
    last = len(on_disk["model_selection"]["rungs"]) - 1  # halving: 6 candidates, then 2
    finalists = [row for row in grid if row["rung"] == last]
    assert on_disk["model_selection"]["search"] == "halving" and len(finalists) == 2
    assert on_disk["model_selection"]["chosen"] == max(finalists, key=lambda r: r["cv_accuracy"])
    assert scores["trained_on"]["images"] == 32 + 16
    fruit = scores["fruit_level"]
    # test: 16 Fruits-360 + 6 grocery val + 2 photos, all of fruits the classes map to
    assert fruit["tested"] == 24 and set(fruit["per_class"]) == {"Apple", "Banana", "Kiwi", "Lemon"}
    assert fruit["top1"] >= 0.75  # chance is 0.25
    assert scores["tested_on"]["images"] == 16 + 6 + 2  # fine classes Banana, Lemon… exist too
    parts = on_disk["by_input"]  # the Fruits-360 folder, grocery val, the manifest ("other")
    assert sorted(part["images"] for part in parts.values()) == [2, 6, 16]
    assert parts["other"]["images"] == 2
    assert sum(part["fruit_tested"] for part in parts.values()) == fruit["tested"]


def test_predict_reports_the_fruit_summed_over_its_classes(mixed):
    """Each fruit's probability is the sum of its classes' (every class asked for, so the sums
    can be redone here); the fruits come ranked. Which fruit wins on a photo is the accuracy
    tests' business: on this small training set a photo can sit near a tie."""
    output, _, _ = mixed
    classifier = np.load(output / CLASSIFIER_NPZ)
    fruit_of = dict(zip(classifier["labels"].tolist(), classifier["fruits"].tolist(), strict=True))
    photo = sorted((DATA / "photos" / "banana").iterdir())[-1]
    (answer,) = predict(str(output), [str(photo)], top_k=len(fruit_of))
    assert answer.error is None and "Banana" in answer.fruits
    sums: dict[str, float] = {}
    for label, probability in zip(answer.labels, answer.probabilities, strict=True):
        sums[fruit_of[label]] = sums.get(fruit_of[label], 0.0) + probability
    assert answer.fruits == sorted(sums, key=lambda fruit: -sums[fruit])
    assert answer.fruit_probabilities == pytest.approx([sums[f] for f in answer.fruits], abs=1e-9)


def test_top_fruits_add_up_the_varieties_of_each_fruit(tmp_path):
    from fruitspark.predict import top_fruits

    labels = np.array(["Apple Braeburn", "Apple Golden", "Banana", "Kiwi"])
    fruits_of_labels = np.array(["Apple", "Apple", "Banana", "Kiwi"])
    np.savez(tmp_path / "c.npz", labels=labels, fruits=fruits_of_labels)
    classifier = np.load(tmp_path / "c.npz")
    order, probabilities = np.array([2, 0, 1, 3]), np.array([0.4, 0.3, 0.2, 0.1])
    fruits, sums = top_fruits(classifier, order, probabilities, 2)
    assert fruits == ["Apple", "Banana"] and sums == pytest.approx([0.5, 0.4])
    np.savez(tmp_path / "same.npz", labels=labels, fruits=labels)  # no coarser level: none
    assert top_fruits(np.load(tmp_path / "same.npz"), order, probabilities, 2) == ([], [])


def test_folded_coefficients_give_the_scaled_models_logits():
    rng = np.random.default_rng(1)
    x, mean, std = rng.normal(size=(5, 6)), rng.normal(size=6), rng.uniform(0.5, 2, size=6)
    std[2] = 0.0  # a constant column: Spark's StandardScaler makes it 0
    scale = np.array([1, 1, 1, 1, 3, 3.0])  # a boosted block
    weights, intercepts = rng.normal(size=(4, 6)), rng.normal(size=4)
    scaled = np.where(std > 0, (x - mean) / np.where(std > 0, std, 1), 0) * scale
    w, b = folded(mean, std, scale, weights, intercepts)
    np.testing.assert_allclose(x @ w.T + b, scaled @ weights.T + intercepts, atol=1e-12)


def test_both_inputs_with_a_colour_boost_predict_the_batch_numbers(spark, mixed, tmp_path):
    """raw + PCA side by side, the colour block boosted: predict (numpy, folded coefficients)
    gives the probabilities of the Spark pipeline (scaler, boost, logistic regression)."""
    output = tmp_path / "out"
    shutil.copytree(mixed[0], output)
    options = EvaluateOptions(
        features=("both",), reg_params=(1e-2,), class_weights=("none",), colour_boost=(4.0,),
        label_map="fruits", label_depth=2,
    )  # fmt: skip
    scores = evaluate(str(output), spark, options)
    assert scores["model_selection"]["chosen"]["features"] == "both"
    assert scores["trained_on"]["colour_boost"] == 4.0
    batch = {row["path"]: row for row in pq.read_table(output / "predictions").to_pylist()}
    labels = [str(name) for name in np.load(output / "classifier.npz")["labels"]]
    paths = sorted(batch)[::6]
    answers = predict(str(output), [path.removeprefix("file:") for path in paths], top_k=3)
    for path, answer in zip(paths, answers, strict=True):
        assert answer.error is None and answer.labels[0] == batch[path]["predicted"]
        expected = dict(zip(labels, batch[path]["probabilities"], strict=True))
        for label, probability in zip(answer.labels, answer.probabilities, strict=True):
            assert probability == pytest.approx(expected[label], abs=1e-4)


def test_a_colour_boost_must_be_positive():
    with pytest.raises(ValueError, match="colour boosts"):
        EvaluateOptions(colour_boost=(0.0,))


def test_each_test_image_counts_for_the_deepest_input_folder_that_holds_it(spark):
    rows = [("file:/d/a/x.jpg", 0, 0), ("file:/d/a/b/y.jpg", 1, None), ("/m/z.jpg", None, 0)]
    predictions = spark.createDataFrame(rows, "path string, rank int, fruit_rank int")
    parts = by_input(predictions, ["/d/a", "/d/a/b@test", "/m/list.csv"])
    assert parts["/d/a"] == {
        "images": 1, "tested": 1, "top1": 1.0, "fruit_tested": 1, "fruit_top1": 1.0
    }  # fmt: skip
    assert parts["/d/a/b@test"]["top1"] == 0.0 and parts["/d/a/b@test"]["fruit_top1"] is None
    assert parts["other"] == {
        "images": 1, "tested": 0, "top1": None, "fruit_tested": 1, "fruit_top1": 1.0
    }  # fmt: skip
