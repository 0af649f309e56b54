"""How well the features recognise fruit: a multinomial logistic regression in Spark ML.

What suits Fruits-360's studio shots (little regularisation, PCA input) fails on real photos, so
nothing is fixed: the regularisation, the input (raw features or PCA) and the class weighting are
chosen per dataset by k-fold cross-validation on the train split only (Spark ML's CrossValidator,
models fitted in parallel). Folds keep runs of consecutive file numbers together (video frames,
bursts of shop photos), which random folds would spread over train and validation. The chosen
model is refitted on all of train, scored on test, saved next to the PCA model, and its
coefficients exported so that ``predict`` needs no Spark. With a label map or a label depth
(:mod:`fruitspark.labels`) the classes stay fine (varieties) and each fruit's probability is the
sum of its varieties': both levels are scored.

The default grid is 40 candidates (5 inputs x 4 regParams x 2 weightings); fitting each on
every fold (``--search grid``) is 121 fits, hours on 2 cores for ~10,000 images. There the
default search (``auto``, :func:`search_for`) is successive halving (``--search halving``;
below a thousand or so images every fit costs Spark's per-job overhead whatever its rows, and
``auto`` takes the grid): rung 0 cross-validates every candidate on
a small sample of train, each next rung keeps the best 1/factor (at least 1) and gives them
factor times the rows, and the last rung is the k-fold CV of the grid search on all of train
(the same folds), whose best candidate is refitted on all of it. At factor 3 the 40 candidates
cost 40/27 + 14/9 + 5/3 + 2 = 6.7 candidates' full CV instead of 40.
The resource is the number of training rows, not L-BFGS iterations: a fit stopped early ranks
candidates by how fast they converge (strong regularisation converges first), while a fit on
fewer rows is the same problem, only noisier, at a cost linear in the rows. Its known bias is
that small samples favour stronger regularisation; keeping a third of the candidates per rung
keeps the neighbours of the best regParam, and the last two rungs compare on a third of the rows
and on all of them. The rows are sampled per class and fold (stratified: each (class, fold)
keeps the same share, at least MIN_ROWS_PER_STRATUM rows, so no class vanishes and every fold
keeps the classes it had), by a seeded hash of the path: the same rows for every candidate of a
rung, nested from rung to rung. The fold column is kept, so validation rows are still never
near-copies of training rows (:func:`_with_weights_and_folds`). Each rung is one Spark ML
``CrossValidator`` over the candidates left, ``parallelism`` models at a time (it also refits
its best on the rung's sample: a third of a fit in all). Ties go to the candidate earlier in
the grid. Rows are a sound resource where a fit's cost is in its rows (~10,000 images: ~0.8 s
an L-BFGS iteration); on a train split of about a thousand images an iteration is mostly
Spark's per-job overhead, whatever the rows, and halving saves less (README, "evaluate").
"""

from __future__ import annotations

import io
import time
from collections import Counter
from collections.abc import Hashable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np

from fruitspark import sparkenv
from fruitspark.layout import CLASSIFIER, CLASSIFIER_NPZ, EVALUATION, FEATURES, PREDICTIONS, SUMMARY
from fruitspark.progress import tracked

if TYPE_CHECKING:
    from fruitspark.summary import Summary

MAX_MISCLASSIFIED = 48
WORST_CLASSES = 12
VECTORS = {"pca": "pca_vector", "features": "raw_vector", "both": "both_vector"}
WEIGHTS = {"none": "unit_weight", "balanced": "balanced_weight"}
FILE_RUN = 10  # consecutive file numbers kept in one fold
MIN_ROWS_PER_STRATUM = 2  # rows a (class, fold) keeps in a halving sample, when it has them
SAMPLE_SEED = 42  # of the hash that orders the rows of a (class, fold) for the samples
DRAW = "draw"  # that order: 1, 2, ... within a (class, fold)
SEARCHES = ("auto", "halving", "grid")
WORK_PER_SOLVER_TASK = 150_000_000  # multiply-adds of a solver pass a task is worth (solver_tasks)


def _help(text: str, default, **metadata):
    return field(default=default, metadata={"help": text, **metadata})


@dataclass(frozen=True)
class EvaluateOptions:
    """The grid cross-validation chooses from (benchmarks/quality.py), and the label level."""

    features: tuple[str, ...] = _help(
        "inputs to choose from: pca, features (raw), both (raw and pca side by side)",
        ("pca", "features", "both"),
    )
    colour_boost: tuple[float, ...] = _help(
        "weights of the colour block after standardisation (raw and both inputs), candidates",
        (1.0, 2.0),
    )
    reg_params: tuple[float, ...] = _help("regParam candidates", (1e-5, 1e-4, 1e-3, 1e-2))
    class_weights: tuple[str, ...] = _help("class weightings: none, balanced", ("none", "balanced"))
    folds: int = _help("cross-validation folds on the train split", 3)
    # PySpark's CrossValidator fits ``parallelism`` > 1 models in Python threads; on PySpark 4
    # the driver then keeps a coefficient-sized double[] per L-BFGS iteration, which killed a
    # default evaluate of 1,142 images in a 2 GB driver (none kept with 1, nor on 3.5.6: README)
    parallelism: int = _help("models fitted at once during cross-validation", 1)
    max_iter: int = _help("L-BFGS iterations per fit", 200)
    search: str = _help(
        "halving: every candidate CV'd on a stratified sample of train, the best 1/factor on "
        "factor x the rows, ..., the last rung on all of train; grid: every candidate on all; "
        "auto: halving where a fit's cost is in its rows, else the grid (search_for)",
        "auto",
        choices=SEARCHES,
    )
    halving_factor: int = _help(
        "halving: each rung keeps 1/factor of the candidates and gives them factor x the rows", 3
    )
    label_map: str | None = _help("CSV label,fruit (or 'fruits', the packaged map)", None)
    label_depth: int | None = _help("fruit = folder at this depth below the split folder", None)

    def __post_init__(self) -> None:
        """Refuse a bad grid before Spark starts (the command and the Python API alike)."""
        if not set(self.features) <= set(VECTORS) or not self.features:
            raise ValueError(f"features must be among {sorted(VECTORS)}, not {self.features}")
        if not set(self.class_weights) <= set(WEIGHTS) or not self.class_weights:
            raise ValueError(f"class weights must be among {sorted(WEIGHTS)}")
        if self.folds < 2 or not self.reg_params or min(self.reg_params) < 0:
            raise ValueError("need folds >= 2 and reg params >= 0")
        if not self.colour_boost or min(self.colour_boost) <= 0:
            raise ValueError("colour boosts must be > 0")
        if self.label_depth is not None and self.label_depth < 1:
            raise ValueError("label depth counts from 1 (the first folder below train/)")
        if self.search not in SEARCHES:
            raise ValueError(f"search must be one of {', '.join(SEARCHES)}, not {self.search!r}")
        if self.halving_factor < 2:
            raise ValueError(f"halving factor must be at least 2, not {self.halving_factor}")
        if self.parallelism < 1 or self.max_iter < 1:
            raise ValueError("parallelism and max iter must be at least 1")


# Four candidates for studio shots of balanced classes (Fruits-360): PCA or raw + PCA, two
# regularisations, unit weights; `fruitspark demo` and the notebook use it. The default grid's 40
# are for a dataset nothing is known about yet: with --search grid they took 12 minutes on the
# demo's 216 images, 2 cores.
QUICK_GRID = EvaluateOptions(
    features=("pca", "both"), colour_boost=(1.0,), reg_params=(1e-4, 1e-2), class_weights=("none",)
)


def solver_work(rows: int, widths: dict, classes: int) -> int:
    """Multiply-adds of one solver pass over the train rows with the widest input."""
    return rows * max(width for width, _ in widths.values()) * classes


def solver_tasks(work: int, parallelism: int) -> int:
    """Tasks of each solver pass over the train rows: one per core only when a pass's ``work``
    pays for the extra task. The folds' shuffles leave ~200 partitions of a few dozen rows, and
    every L-BFGS iteration of every candidate runs a Spark job over them; measured on 2 cores
    (README, "evaluate"), a second task made a fit slower at 1,142 rows x 2,758 x 28 classes
    (6.4 vs 4.3 s) and faster at 3,426 (9.8 vs 13.0 s)."""
    return max(1, min(parallelism, -(-work // WORK_PER_SOLVER_TASK)))


def search_for(search: str, work: int) -> str:
    """``auto``: successive halving only where a fit's cost grows with its rows, i.e. where a
    solver pass over all of train is worth more than one task; below that every fit costs
    Spark's per-job overhead whatever its rows, and halving's 40 + 14 + 5 + 2 candidates cost
    more than the grid's 40 (grocery train, 1,142 rows: rung 0 on 168 rows and the last rung on
    all took the same 3.9 s a fit)."""
    if search != "auto":
        return search
    return "halving" if work > WORK_PER_SOLVER_TASK else "grid"


def halving_schedule(candidates: int, factor: int) -> list[int]:
    """Candidates per rung: all at rung 0, then the best ceil(n / factor) of the previous rung,
    until at most ``factor`` are left (one more cut would leave a single candidate, whose full
    CV would choose nothing); 40 at factor 3: [40, 14, 5, 2]. Rung r of R gets 1/factor^(R-1-r)
    of the rows, the last all of them."""
    counts = [candidates]
    while counts[-1] > factor:
        counts.append(-(-counts[-1] // factor))
    return counts


def sample_plan(
    strata: dict[Hashable, int], divisor: int, minimum: int = MIN_ROWS_PER_STRATUM
) -> dict[Hashable, int]:
    """Rows each stratum (a class in a fold) keeps in a rung given 1/divisor of the rows:
    ceil(n / divisor), at least ``minimum`` (all when it has fewer); divisor 1: every row."""
    return {key: min(n, max(minimum, -(-n // divisor))) for key, n in strata.items()}


def class_scores(pairs: Counter, labels: list[str]) -> dict[str, dict[str, float]]:
    """Precision, recall, F1 and support per class from ``(true, predicted) -> count``."""
    scores = {}
    for label in labels:
        hits = pairs.get((label, label), 0)
        predicted = sum(count for (_, guess), count in pairs.items() if guess == label)
        support = sum(count for (truth, _), count in pairs.items() if truth == label)
        precision = hits / predicted if predicted else 0.0
        recall = hits / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        scores[label] = {"precision": precision, "recall": recall, "f1": f1, "support": support}
    return scores


def confused_pairs(pairs: Counter, limit: int = 20) -> list[dict]:
    wrong = [(count, truth, guess) for (truth, guess), count in pairs.items() if truth != guess]
    return [
        {"true": truth, "predicted": guess, "count": count}
        for count, truth, guess in sorted(wrong, key=lambda item: (-item[0], item[1], item[2]))
    ][:limit]


def worst_confusion(pairs: Counter, scores: dict, size: int = WORST_CLASSES) -> dict:
    """The confusion matrix restricted to the classes with the lowest F1 that have test images."""
    tested = [label for label, score in scores.items() if score["support"]]
    worst = sorted(tested, key=lambda label: (scores[label]["f1"], label))[:size]
    matrix = [[pairs.get((truth, guess), 0) for guess in worst] for truth in worst]
    return {"labels": worst, "matrix": matrix}


def softmax_top_k(
    features: np.ndarray, coefficients: np.ndarray, intercepts: np.ndarray, k: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """Class indices and probabilities of the k most likely classes, per row."""
    logits = np.atleast_2d(features) @ coefficients.T + intercepts
    logits -= logits.max(axis=1, keepdims=True)
    probabilities = np.exp(logits)
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    order = np.argsort(-probabilities, axis=1)[:, :k]  # k None: all classes
    return order, np.take_along_axis(probabilities, order, axis=1)


@dataclass(frozen=True)
class _Data:
    """What evaluate works on: the output's description, its indexed train and test rows."""

    described: Summary
    train: object  # DataFrame: split = train, with the class index ``target``
    test: object  # DataFrame: test images of a known class or fruit
    test_all: object  # DataFrame: every test image
    labels: list[str]
    fruit_of: list[str]  # the fruit of each class, by index
    class_counts: dict[str, int]  # training images per class
    options: EvaluateOptions  # the grid without candidates that repeat others


@tracked("evaluate")
def evaluate(output: str, spark=None, options: EvaluateOptions | None = None) -> dict:
    """Choose by CV on ``split = train``, test on ``split = test``; write the evaluation."""
    from fruitspark.session import spark_session
    from fruitspark.storage import Storage

    options = options or EvaluateOptions()
    spark = spark or spark_session()
    storage = Storage(spark, output)
    data = _data(spark, storage, output, options)
    train, folds = _with_weights_and_folds(data.train, options.folds, data.class_counts)
    widths = _widths(data.described)
    work = solver_work(sum(data.class_counts.values()), widths, len(data.labels))
    chosen = replace(data.options, folds=folds, search=search_for(data.options.search, work))
    if chosen.search == "halving":
        train = _with_draw(train)
    train = train.coalesce(solver_tasks(work, sparkenv.parallelism(spark))).cache()
    classifier, selection = _cross_validate(train, chosen, widths)
    predictions = _predictions(classifier, data.test, data.labels, data.fruit_of)
    predictions.write.mode("overwrite").parquet(storage.uri(PREDICTIONS))
    predictions = spark.read.parquet(storage.uri(PREDICTIONS)).cache()
    report = _report(data, predictions, train.count(), selection, options)
    train.unpersist()
    _save(storage, classifier, data.labels, data.fruit_of, selection["chosen"]["features"])
    storage.write_json(EVALUATION, report)
    return report


def _data(spark, storage, output: str, options: EvaluateOptions) -> _Data:
    """The output's rows split in train and test, classes indexed from train; refused without
    both splits."""
    from pyspark.ml.feature import StringIndexer
    from pyspark.sql import functions as F

    from fruitspark.labels import coarse_label_expr, fruit_of_classes, load_label_map
    from fruitspark.output import OutputError
    from fruitspark.summary import load as load_summary

    label_map = load_label_map(options.label_map) if options.label_map else None
    if not storage.exists(SUMMARY):
        raise OutputError(f"{output} is not a complete fruitspark output (no {SUMMARY})")
    described = load_summary(storage.read_bytes(SUMMARY))
    rows = _rows(spark, storage, coarse_label_expr(label_map, options.label_depth))
    train = rows.where(F.col("split") == "train")
    indexer = StringIndexer(inputCol="label", outputCol="target", stringOrderType="alphabetAsc")
    indexer = indexer.fit(train)  # test images of other classes are scored by name, not indexed
    labels = list(indexer.labels)
    pairs = train.groupBy("label", "fruit").count().collect()
    fruit_of = fruit_of_classes([(r["label"], r["fruit"], r["count"]) for r in pairs], labels)
    test_all = rows.where(F.col("split") == "test")
    test = test_all.where(F.col("label").isin(labels) | F.col("fruit").isin(sorted(set(fruit_of))))
    if not labels or test.limit(1).count() == 0:
        raise OutputError(
            f"{output} needs images in both a train and a test split "
            "(folders named Training/train and Test/test) to evaluate"
        )
    class_counts = Counter()
    for row in pairs:
        class_counts[row["label"]] += row["count"]
    pruned = _without_duplicate_candidates(options, list(class_counts.values()))
    return _Data(
        described, indexer.transform(train), test, test_all, labels, fruit_of, class_counts, pruned
    )


def _report(data: _Data, predictions, trained: int, selection: dict, options) -> dict:
    """evaluation.json: both levels' scores, what was trained on, the model selection."""
    fine = _level(predictions, "label", "predicted", "rank", data.labels)
    chosen = selection["chosen"]
    report = {
        **fine,
        "misclassified": _misclassified(predictions),
        "trained_on": {
            "split": "train",
            "images": trained,
            "classes": len(data.labels),
            "features": chosen["features"],
            "colour_boost": chosen["colour_boost"],
            "classifier": "multinomial logistic regression (Spark ML), standardised",
            "reg_param": chosen["reg_param"],
            "class_weight": chosen["class_weight"],
        },
        "tested_on": {
            "split": "test",
            "images": fine["tested"],
            "excluded_unknown_class": data.test_all.count() - fine["tested"],
        },
        "model_selection": selection,
    }
    described = data.described
    report["by_input"] = by_input(predictions, [described.input, *described.extra_inputs])
    if options.label_map or options.label_depth:
        fruits = sorted(set(data.fruit_of))
        report["fruit_level"] = _level(
            predictions, "fruit", "predicted_fruit", "fruit_rank", fruits
        )
        report["fruit_level"]["label_map"] = options.label_map
        report["fruit_level"]["label_depth"] = options.label_depth
    return report


def _without_duplicate_candidates(options: EvaluateOptions, counts: list[int]) -> EvaluateOptions:
    """Balanced weights are unit weights when every class has as many training images: then the
    ``balanced`` candidates would repeat the ``none`` ones, fits and all, and are left out."""
    weights = options.class_weights
    if "none" in weights and "balanced" in weights and len(set(counts)) <= 1:
        return replace(options, class_weights=tuple(w for w in weights if w != "balanced"))
    return options


def _rows(spark, storage, fruit_expr):
    """Featurised rows with both feature vectors, the fruit label, and the file number run."""
    from pyspark.ml.functions import array_to_vector
    from pyspark.sql import functions as F

    return (
        spark.read.parquet(storage.uri(FEATURES))
        .where(F.col("pca").isNotNull() & F.col("features").isNotNull())
        .withColumn(VECTORS["pca"], array_to_vector("pca"))
        .withColumn(VECTORS["features"], array_to_vector("features"))
        .withColumn(VECTORS["both"], array_to_vector(F.concat("features", "pca")))
        .withColumn("fruit", fruit_expr)
    )


def by_input(predictions, inputs: list[str]) -> dict:
    """Top-1 per input of the run over its test images (``predictions``: path, rank, fruit_rank),
    fine and fruit level (the overall numbers mix them: Fruits-360's Test and shop photos are
    different questions); one aggregation in Spark. An image counts for the deepest folder input
    that holds it, else for ``other`` (a manifest's)."""
    from pyspark.sql import functions as F

    from fruitspark.sources import InputSpec, local_path_of

    folders = []
    for text in inputs:
        spec = InputSpec.parse(text)
        if not spec.is_manifest:
            folders.append(((local_path_of(spec.uri) or spec.uri).rstrip("/") + "/", text))
    local = F.regexp_replace("path", "^file:/*", "/")  # as local_path_of, in Spark
    owner = F.lit("other")
    for root, text in sorted(folders, key=lambda folder: len(folder[0])):  # deepest wins
        owner = F.when(local.startswith(root), F.lit(text)).otherwise(owner)
    hits = {name: F.sum((F.col(name) == 0).cast("int")) for name in ("rank", "fruit_rank")}
    groups = predictions.groupBy(owner.alias("owner")).agg(
        F.count(F.lit(1)).alias("images"),
        F.count("rank").alias("tested"),
        hits["rank"].alias("hits"),
        F.count("fruit_rank").alias("fruit_tested"),
        hits["fruit_rank"].alias("fruit_hits"),
    )
    return {
        row["owner"]: {
            "images": row["images"],
            "tested": row["tested"],
            "top1": row["hits"] / row["tested"] if row["tested"] else None,
            "fruit_tested": row["fruit_tested"],
            "fruit_top1": row["fruit_hits"] / row["fruit_tested"] if row["fruit_tested"] else None,
        }
        for row in groups.collect()
    }


def _with_weights_and_folds(train, folds: int, counts: dict[str, int]):
    """Unit and balanced (n / (classes * count)) weights, and a fold per label x file-number run.

    Files named with consecutive numbers (``r_120_100.jpg``, ``Avocado_013.jpg``: the first number
    counts) are frames of one rotation or one shop visit: a run of FILE_RUN numbers stays in one
    fold, so validation images are not near-copies of training ones. Names without a number fall
    back to the whole name. The runs are dealt to the folds in turn, so no fold is empty; a train
    split of fewer runs than ``folds`` gets as many folds as it has runs. ``counts``: training
    images per class. Returns the rows and the fold count.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    total, classes = sum(counts.values()), len(counts)
    balanced = F.create_map(
        *[
            item
            for label, n in counts.items()
            for item in (F.lit(label), F.lit(total / (classes * n)))
        ]
    )
    name = F.element_at(F.split("path", "/"), -1)
    number = F.regexp_extract(name, r"(\d+)", 1)
    run = F.when(number == "", name).otherwise(
        F.floor(number.cast("long") / FILE_RUN).cast("string")
    )
    runs = train.select("label", run.alias("run")).distinct()
    folds = min(folds, runs.count())
    dealt = runs.select(
        "label",
        "run",
        F.pmod(F.row_number().over(Window.orderBy("label", "run")), F.lit(max(folds, 1)))
        .cast("int")
        .alias("fold"),
    )
    weighted = train.select(
        "*",
        run.alias("run"),
        F.lit(1.0).alias(WEIGHTS["none"]),
        balanced[F.col("label")].alias(WEIGHTS["balanced"]),
    )
    return weighted.join(dealt, ["label", "run"]).drop("run"), folds


def _widths(described) -> dict[str, tuple[int, tuple[int, int] | None]]:
    """Per input: its width, and the colour block's columns in it (the last COLOUR_DIM values of
    the raw features when the descriptor has both blocks; None when it has no colour)."""
    from fruitspark.preprocess import COLOUR_DIM

    raw, k = described.model.feature_dim, described.pca.k
    colour = {"both": (raw - COLOUR_DIM, raw), "colour": (0, raw)}.get(described.model.descriptor)
    return {"features": (raw, colour), "pca": (k, None), "both": (raw + k, colour)}


def _boost_vector(width: int, colour: tuple[int, int] | None, boost: float):
    from pyspark.ml.linalg import Vectors

    scale = np.ones(width)
    if colour is not None:
        scale[colour[0] : colour[1]] = boost
    return Vectors.dense(scale)


def _candidates(options: EvaluateOptions, widths: dict) -> list[dict]:
    """The grid's points: input x colour boost (inputs with a colour block) x regParam x weight."""
    candidates = []
    for name in options.features:
        boosts = options.colour_boost if widths[name][1] is not None else (1.0,)
        for boost in dict.fromkeys(float(value) for value in boosts):
            for reg_param in options.reg_params:
                candidates += [
                    {
                        "features": name,
                        "colour_boost": boost,
                        "reg_param": float(reg_param),
                        "class_weight": weight,
                    }
                    for weight in options.class_weights
                ]
    return candidates


def _cross_validate(train, options: EvaluateOptions, widths: dict):
    """The chosen candidate refitted on all of ``train``, and the selection: every candidate's
    k-fold accuracy at the last rung it reached (:func:`_search`; the grid search is one rung).

    Each candidate standardises its input (fitted on the fold's train rows), multiplies the colour
    block by its boost, then fits the logistic regression without further standardisation: with
    a boost of 1 this is Spark ML's ``standardization=True`` objective; a boost b > 1 makes the
    colour columns b^2 times cheaper to use under the L2 penalty (Fruits-360's varieties differ in
    colour, which real photos do not need as much).
    """
    pipeline, grid = _pipeline_and_grid(options, widths, candidates := _candidates(options, widths))
    selection = {"search": options.search, "folds": options.folds, "metric": "accuracy"}
    if options.search == "halving":
        selection["halving_factor"] = options.halving_factor
    if options.folds < 2:  # a single run of images: nothing to hold out, the first candidate
        model = pipeline.fit(train, grid[0])
        chosen = {**candidates[0], "rung": None, "cv_accuracy": None}
        return model, {**selection, "rungs": [], "grid": [], "chosen": chosen}
    if options.search == "halving":
        schedule = halving_schedule(len(grid), options.halving_factor)
    else:
        schedule = [len(grid)]
    model, rungs, reached = _search(pipeline, grid, train, options, schedule)
    scored = [
        {**candidate, "rung": rung, "cv_accuracy": accuracy}
        for candidate, (rung, accuracy) in zip(candidates, reached, strict=True)
    ]
    best = _ranked(reached, range(len(grid)))[0]
    return model, {**selection, "rungs": rungs, "grid": scored, "chosen": scored[best]}


def _pipeline_and_grid(options: EvaluateOptions, widths: dict, candidates: list[dict]):
    """The candidates' Spark ML pipeline (scaler, colour boost, logistic regression) and a param
    map per candidate."""
    from pyspark.ml import Pipeline
    from pyspark.ml.classification import LogisticRegression
    from pyspark.ml.feature import ElementwiseProduct, StandardScaler

    scaler = StandardScaler(withMean=True, withStd=True, outputCol="scaled")
    booster = ElementwiseProduct(inputCol="scaled", outputCol="boosted")
    estimator = LogisticRegression(
        featuresCol="boosted",
        labelCol="target",
        family="multinomial",
        elasticNetParam=0.0,
        maxIter=options.max_iter,
        standardization=False,
    )
    grid = [
        {
            scaler.inputCol: VECTORS[candidate["features"]],
            booster.scalingVec: _boost_vector(
                *widths[candidate["features"]], candidate["colour_boost"]
            ),
            estimator.regParam: candidate["reg_param"],
            estimator.weightCol: WEIGHTS[candidate["class_weight"]],
        }
        for candidate in candidates
    ]
    return Pipeline(stages=[scaler, booster, estimator]), grid


def _ranked(reached: list[tuple[int, float]], indices) -> list[int]:
    """Candidates best first: the later rung, then the higher accuracy, then grid order."""
    return sorted(indices, key=lambda index: (-reached[index][0], -reached[index][1], index))


def _search(pipeline, grid: list, train, options: EvaluateOptions, schedule: list[int]):
    """Successive halving over ``schedule`` (candidates per rung; one rung: the grid search): a
    CrossValidator per rung on its sample of ``train`` (its ``DRAW`` column, see
    :func:`sample_plan`), the best ``schedule[r + 1]`` going on. Returns the last rung's best
    refitted on all of ``train``, the rungs (rows, candidates, seconds) and, per candidate, the
    last rung it reached with its accuracy there."""
    last = len(schedule) - 1
    total = train.count()
    if last:
        counts = train.groupBy("label", "fold").count().collect()
        strata = {(row["label"], row["fold"]): row["count"] for row in counts}
    alive, reached, rungs = list(range(len(grid))), [(-1, 0.0)] * len(grid), []
    for rung, size in enumerate(schedule):
        started = time.perf_counter()
        alive = sorted(_ranked(reached, alive)[:size])
        rows, count = train, total
        if rung < last:
            rows, count = _sample(
                train, sample_plan(strata, options.halving_factor ** (last - rung))
            )
        fitted = _cv(pipeline, [grid[index] for index in alive], rows, options)
        for index, metric in zip(alive, fitted.avgMetrics, strict=True):
            reached[index] = (rung, float(metric))
        if rows is not train:
            rows.unpersist()
        seconds = round(time.perf_counter() - started, 1)
        rungs.append({"rung": rung, "rows": count, "candidates": size, "seconds": seconds})
    best = _ranked(reached, alive)[0]
    model = fitted.bestModel if alive[int(np.argmax(fitted.avgMetrics))] == best else None
    return model or pipeline.fit(train, grid[best]), rungs, reached


def _with_draw(train):
    """The ``DRAW`` column: the rows of each (class, fold) numbered 1, 2, ... in the order of a
    seeded hash of the path (then the path): a sample's first n of a stratum are the same rows
    in every run, for every candidate, and include a smaller sample's."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    order = Window.partitionBy("label", "fold").orderBy(
        F.xxhash64(F.lit(SAMPLE_SEED), "path"), "path"
    )
    return train.withColumn(DRAW, F.row_number().over(order))


def _sample(train, plan: dict[tuple[str, int], int]):
    """The rows of ``train`` a rung's plan keeps ((class, fold) -> rows), cached, and their
    count."""
    from pyspark.sql import functions as F

    quota = F.create_map(
        *[F.lit(item) for (label, fold), n in plan.items() for item in (f"{fold}/{label}", n)]
    )
    stratum = F.concat_ws("/", F.col("fold").cast("string"), F.col("label"))
    return train.where(F.col(DRAW) <= quota[stratum]).cache(), sum(plan.values())


def _cv(pipeline, maps: list, rows, options: EvaluateOptions):
    from pyspark.ml.evaluation import MulticlassClassificationEvaluator
    from pyspark.ml.tuning import CrossValidator

    validator = CrossValidator(
        estimator=pipeline,
        estimatorParamMaps=maps,
        evaluator=MulticlassClassificationEvaluator(labelCol="target", metricName="accuracy"),
        numFolds=options.folds,
        foldCol="fold",
        parallelism=options.parallelism,
    )
    return validator.fit(rows)


def folded(mean, std, scale, coefficients, intercepts) -> tuple[np.ndarray, np.ndarray]:
    """The same logits on the unscaled input: W ((x - mean) / std * scale) + b = W' x + b'
    (a column of zero std is 0 after Spark's StandardScaler, so it gets no weight)."""
    per_column = np.asarray(scale, np.float64) / np.where(std > 0, std, np.inf)
    weights = np.asarray(coefficients, np.float64) * per_column
    return weights, np.asarray(intercepts, np.float64) - weights @ np.asarray(mean, np.float64)


def _predictions(classifier, test, labels: list[str], fruit_of: list[str]):
    """Per test image: fine class, its probability and rank; the same for fruits (summed)."""
    from pyspark.ml.functions import vector_to_array
    from pyspark.sql import functions as F

    fruits = sorted(set(fruit_of))
    scored = classifier.transform(test).select(
        "path", "label", "fruit", vector_to_array("probability").alias("scores")
    )
    members = [[i for i, name in enumerate(fruit_of) if name == fruit] for fruit in fruits]
    fruit_scores = F.array(
        *[sum((F.col("scores")[i] for i in indices), F.lit(0.0)) for indices in members]
    )
    scored = scored.withColumn("fruit_scores", fruit_scores)
    return scored.select(
        "path",
        "label",
        _pick(labels, "scores").alias("predicted"),
        F.array_max("scores").alias("probability"),
        F.col("scores").alias("probabilities"),
        _rank("scores", F.col("label"), labels).alias("rank"),
        "fruit",
        _pick(fruits, "fruit_scores").alias("predicted_fruit"),
        F.array_max("fruit_scores").alias("fruit_probability"),
        _rank("fruit_scores", F.col("fruit"), fruits).alias("fruit_rank"),
    )


def _pick(names: list[str], scores: str):
    from pyspark.sql import functions as F

    # SQL form: PySpark 3.5's array_position takes a literal, not a column, as the value
    position = F.expr(f"array_position(`{scores}`, array_max(`{scores}`))")
    return F.element_at(F.array(*[F.lit(name) for name in names]), position.cast("int"))


def _rank(scores: str, truth, names: list[str]):
    """How many classes score above the true one; null if the true class is not a class."""
    from pyspark.sql import functions as F

    index = F.create_map(*[F.lit(item) for i, name in enumerate(names) for item in (name, i + 1)])
    position = F.coalesce(index[truth], F.lit(0))  # 1-based, 0: not a class (as array_position)
    true_score = F.element_at(F.col(scores), F.greatest(position, F.lit(1)).cast("int"))
    above = F.size(F.filter(scores, lambda score: score > true_score))
    return F.when(position > 0, above)


def _level(predictions, truth: str, guess: str, rank: str, classes: list[str]) -> dict:
    """Top-1, top-5 and per-class scores at one label level (rows whose truth is a class)."""
    from pyspark.sql import functions as F

    known = predictions.where(F.col(rank).isNotNull())
    totals = known.agg(
        F.count(F.lit(1)).alias("tested"),
        F.avg((F.col(rank) == 0).cast("double")).alias("top1"),
        F.avg((F.col(rank) < 5).cast("double")).alias("top5"),
    ).first()
    pairs = Counter(
        {
            (row[truth], row[guess]): row["count"]
            for row in known.groupBy(truth, guess).count().collect()
        }
    )
    scores = class_scores(pairs, classes)
    return {
        "top1": None if totals["top1"] is None else float(totals["top1"]),
        "top5": None if totals["top5"] is None else float(totals["top5"]),
        "tested": int(totals["tested"]),
        "per_class": scores,
        "confused_pairs": confused_pairs(pairs),
        "confusion": worst_confusion(pairs, scores),
    }


def _misclassified(predictions) -> list[dict]:
    from pyspark.sql import functions as F

    wrong = predictions.where(F.col("rank") > 0)
    return [
        row.asDict()
        for row in wrong.orderBy(F.col("probability").desc(), "path")
        .select("path", "label", "predicted", "probability")
        .limit(MAX_MISCLASSIFIED)
        .collect()
    ]


def _save(storage, classifier, labels: list[str], fruit_of: list[str], features: str) -> None:
    """The Spark model (a PipelineModel: scaler, colour boost, logistic regression), and its
    parameters folded onto the unscaled input for ``predict`` (no Spark): one fruit per class."""
    classifier.write().overwrite().save(storage.uri(CLASSIFIER))
    scaler, booster, model = classifier.stages
    coefficients, intercepts = folded(
        scaler.mean.toArray(),
        scaler.std.toArray(),
        booster.getScalingVec().toArray(),
        model.coefficientMatrix.toArray(),
        model.interceptVector.toArray(),
    )
    buffer = io.BytesIO()
    np.savez(
        buffer,
        coefficients=coefficients,
        intercepts=intercepts,
        labels=np.array(labels),
        fruits=np.array(fruit_of),
        features=np.array(features),
    )
    storage.write_bytes(CLASSIFIER_NPZ, buffer.getvalue())
