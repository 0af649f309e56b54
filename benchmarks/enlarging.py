"""A study (also a script): does OpenCV's enlarging change what the features recognise?

``preprocess`` enlarges small pictures (every Fruits-360 image, 100 px to 224) with OpenCV
instead of Pillow: the same bilinear interpolation to within one grey level. This featurises
the Fruits-360 sample both ways with ``describe_images`` (the Pillow way patched in for the
"pillow" side), fits the same classifier on Training (standardised descriptor, scikit-learn's
logistic regression, C = 0.1) and prints Test top-1 and the features' cosine similarity::

    PYTHONPATH=src python benchmarks/enlarging.py --data ../shared/data/fruits360-sample int8
"""

from __future__ import annotations

import argparse
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

ROWS = 64  # the pipeline's Arrow batch


def pillow_views(image: Image.Image, size: int, views: str = "pad") -> list[Image.Image]:
    """The padded view as ``preprocess`` made it before OpenCV (square pictures: one view)."""
    from fruitspark.preprocess import pillow_resize_square

    return [pillow_resize_square(image, size)]


def features(job: tuple[str, str, list[str]]) -> np.ndarray:
    """The default descriptor of ``files``, enlarged the ``side`` way, in this process."""
    side, precision, files = job
    import fruitspark.featurize as featurize
    from fruitspark import preprocess
    from fruitspark.model import new_session, resolve_model

    spec = resolve_model(precision=precision)
    session = new_session(Path(spec.path).read_bytes(), threads=1)
    # set on both sides: the pool's processes serve one side, then the other
    featurize.model_views = pillow_views if side == "pillow" else preprocess.model_views
    options = featurize.FeaturizeOptions()
    rows = []
    for start in range(0, len(files), ROWS):
        contents = [Path(name).read_bytes() for name in files[start : start + ROWS]]
        rows += [r.features for r in featurize.describe_images(contents, session, spec, options)]
    return np.stack(rows)


def main() -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="folder with Training/, Test/")
    parser.add_argument("precision", choices=("fp32", "int8"))
    args = parser.parse_args()
    train = sorted(str(p) for p in args.data.glob("Training/*/*.jpg"))
    classes = sorted({Path(p).parent.name for p in train})
    test = sorted(str(p) for p in args.data.glob("Test/*/*.jpg") if p.parent.name in classes)
    labels = {name: index for index, name in enumerate(classes)}
    y_train, y_test = ([labels[Path(p).parent.name] for p in part] for part in (train, test))
    described = {}
    with ProcessPoolExecutor(2) as pool:
        for side in ("pillow", "opencv"):
            files = train + test
            halves = [(side, args.precision, files[i::2]) for i in (0, 1)]
            even, odd = pool.map(features, halves)
            rows = np.empty((len(files), even.shape[1]), np.float32)
            rows[0::2], rows[1::2] = even, odd
            described[side] = rows
            scaler = StandardScaler().fit(rows[: len(train)])
            model = LogisticRegression(C=0.1, max_iter=300)
            model.fit(scaler.transform(rows[: len(train)]), y_train)
            top1 = float(np.mean(model.predict(scaler.transform(rows[len(train) :])) == y_test))
            print(f"{args.precision} {side}: Fruits-360 Test top-1 {top1:.4f} ({len(test)} images)")
    a, b = described["pillow"], described["opencv"]
    cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    print(f"cosine pillow vs opencv: median {np.median(cosine):.4f}, minimum {cosine.min():.4f}")


if __name__ == "__main__":
    main()
