"""How well the features recognise fruit: a multinomial logistic regression in Spark ML.

Trained on the Training split's PCA features, scored on the Test split (paths never overlap), saved
next to the PCA model; its coefficients are exported too so that ``predict`` needs no Spark.
"""

from __future__ import annotations

import io
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from fruitspark.layout import CLASSIFIER, CLASSIFIER_NPZ, EVALUATION, FEATURES, PREDICTIONS, SUMMARY
from fruitspark.progress import tracked

MAX_MISCLASSIFIED = 48
WORST_CLASSES = 12


@dataclass(frozen=True)
class EvaluateOptions:
    """Chosen on a validation part of Training (benchmarks/quality.py), never on Test."""

    features: str = field(
        default="pca",
        metadata={"help": "what the classifier reads", "choices": ("pca", "features")},
    )
    reg_param: float = field(default=1.5e-5, metadata={"help": "L2 regularisation strength"})
    max_iter: int = field(default=200, metadata={"help": "iterations of L-BFGS at most"})


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
    features: np.ndarray, coefficients: np.ndarray, intercepts: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Class indices and probabilities of the k most likely classes, per row."""
    logits = np.atleast_2d(features) @ coefficients.T + intercepts
    logits -= logits.max(axis=1, keepdims=True)
    probabilities = np.exp(logits)
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    order = np.argsort(-probabilities, axis=1)[:, :k]
    return order, np.take_along_axis(probabilities, order, axis=1)


@tracked("evaluate")
def evaluate(output: str, spark=None, options: EvaluateOptions | None = None) -> dict:
    """Train on ``split = train``, test on ``split = test``; write evaluation.json and the model."""
    from pyspark.ml.classification import LogisticRegression
    from pyspark.ml.feature import StringIndexer
    from pyspark.ml.functions import array_to_vector, vector_to_array
    from pyspark.sql import functions as F

    from fruitspark.output import OutputError
    from fruitspark.session import spark_session
    from fruitspark.storage import Storage

    options = options or EvaluateOptions()
    spark = spark or spark_session()
    storage = Storage(spark, output)
    if not storage.exists(SUMMARY):
        raise OutputError(f"{output} is not a complete fruitspark output (no {SUMMARY})")
    rows = (
        spark.read.parquet(storage.uri(FEATURES))
        .where(F.col(options.features).isNotNull())
        .withColumn("vector", array_to_vector(options.features))
    )
    train = rows.where(F.col("split") == "train")
    indexer = StringIndexer(inputCol="label", outputCol="target", stringOrderType="alphabetAsc")
    indexer_model = indexer.fit(train)
    labels = list(indexer_model.labels)
    known = F.col("label").isin(labels)
    test_all = rows.where(F.col("split") == "test")
    test = test_all.where(known)
    if train.limit(1).count() == 0 or test.limit(1).count() == 0:
        raise OutputError(
            f"{output} needs images in both a train and a test split "
            "(folders named Training/train and Test/test) to evaluate"
        )
    classifier = LogisticRegression(
        featuresCol="vector",
        labelCol="target",
        family="multinomial",
        regParam=options.reg_param,
        elasticNetParam=0.0,
        maxIter=options.max_iter,
        standardization=True,
    ).fit(indexer_model.transform(train))
    scored = classifier.transform(indexer_model.transform(test)).select(
        "path", "label", "target", "prediction", vector_to_array("probability").alias("scores")
    )
    true_score = F.element_at("scores", F.col("target").cast("int") + 1)
    label_names = F.array(*[F.lit(label) for label in labels])
    predictions = scored.select(
        "path",
        "label",
        F.element_at(label_names, F.col("prediction").cast("int") + 1).alias("predicted"),
        F.array_max("scores").alias("probability"),
        F.col("scores").alias("probabilities"),
        F.size(F.filter("scores", lambda score: score > true_score)).alias("rank"),
    )
    predictions.write.mode("overwrite").parquet(storage.uri(PREDICTIONS))
    predictions = spark.read.parquet(storage.uri(PREDICTIONS))
    totals = predictions.agg(
        F.count(F.lit(1)).alias("tested"),
        F.avg((F.col("rank") == 0).cast("double")).alias("top1"),
        F.avg((F.col("rank") < 5).cast("double")).alias("top5"),
    ).first()
    pairs = Counter(
        {
            (row["label"], row["predicted"]): row["count"]
            for row in predictions.groupBy("label", "predicted").count().collect()
        }
    )
    misclassified = (
        predictions.where(F.col("label") != F.col("predicted"))
        .orderBy(F.col("probability").desc(), "path")
        .select("path", "label", "predicted", "probability")
        .limit(MAX_MISCLASSIFIED)
        .collect()
    )
    scores = class_scores(pairs, labels)
    train_count = train.count()
    report = {
        "top1": float(totals["top1"]),
        "top5": float(totals["top5"]),
        "per_class": scores,
        "confused_pairs": confused_pairs(pairs),
        "confusion": worst_confusion(pairs, scores),
        "trained_on": {
            "split": "train",
            "images": train_count,
            "classes": len(labels),
            "features": options.features,
            "classifier": "multinomial logistic regression (Spark ML), standardised",
            "reg_param": options.reg_param,
        },
        "tested_on": {
            "split": "test",
            "images": int(totals["tested"]),
            "excluded_unknown_class": test_all.count() - int(totals["tested"]),
        },
        "misclassified": [row.asDict() for row in misclassified],
    }
    classifier.write().overwrite().save(storage.uri(CLASSIFIER))
    buffer = io.BytesIO()
    np.savez(
        buffer,
        coefficients=classifier.coefficientMatrix.toArray(),
        intercepts=classifier.interceptVector.toArray(),
        labels=np.array(labels),
        features=np.array(options.features),
    )
    storage.write_bytes(CLASSIFIER_NPZ, buffer.getvalue())
    storage.write_json(EVALUATION, report)
    return report
