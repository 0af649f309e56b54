"""The engines a user would pick instead: Daft and Ray Data, same images, model and preprocessing.

Each peer runs in its own virtual environment under /work/venvs (created here from PyPI when
missing, with fruitspark's source on its PYTHONPATH), calling fruitspark's own
``describe_images`` (decode, pad, resize, normalise, model; descriptor ``cnn``) in two model
processes with one ONNX Runtime thread each, batch 8, in 64-image batches: the only difference
is the engine around it. fruitspark runs in the same section (``fruitspark run --descriptor
cnn``, fresh JVM). Every run is watched through /proc: CPU ms per image over all its processes
and the peak of their summed RSS. Each peer's features are checked against ``describe_images``
run here on a sample of the same paths (cosine similarity).
"""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.common import (
    Context,
    cpu_ms_per_image,
    fruitspark_run,
    log,
    mb,
    median,
    ratio,
    run_python,
    spread,
    table,
)
from fruitspark.cloud.node_requirements import project_name

TITLE = "Peers: Daft and Ray Data"
SLOW = True
VENVS = Path("/work/venvs")
# fruitspark's own requirements (what describe_images imports, the default model's weights),
# less pyspark: read from its installed metadata, so that the list never drifts from pyproject
SHARED = [
    requirement
    for requirement in importlib.metadata.requires("fruitspark") or []
    if "extra ==" not in requirement and project_name(requirement) != "pyspark"
]
ENGINES = {  # name -> pip requirements of its venv
    "daft": ["daft==0.7.26", *SHARED],
    "ray": ["ray[data]==2.60.0", "pandas", *SHARED],
}
MODEL_PROCESSES, ROWS = 2, 64
ROUNDS, QUICK_ROUNDS = 2, 1  # medians of interleaved rounds: single runs here vary by 10-30 %
CHECKED = 64  # paths whose features are compared with describe_images run here


def venv_python(engine: str) -> str:
    """The engine's venv interpreter: the venv created if it is missing, its requirements
    installed every time (a no-op when they are there, a fix when the list has grown)."""
    python = VENVS / engine / "bin" / "python"
    if not python.exists():
        log(f"peers: creating {python.parent.parent} ({' '.join(ENGINES[engine])})")
        subprocess.run([sys.executable, "-m", "venv", str(python.parent.parent)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", *ENGINES[engine]], check=True)
    return str(python)


def _describer(precision: str):
    """What a model process holds: spec, session, options (as a fruitspark Python worker)."""
    from fruitspark.featurize import FeaturizeOptions
    from fruitspark.model import new_session, resolve_model

    spec = resolve_model(precision=precision)
    session = new_session(Path(spec.path).read_bytes(), threads=1)
    return spec, session, FeaturizeOptions(descriptor="cnn", threads=1)


def _describe(state, contents: list[bytes]) -> np.ndarray:
    from fruitspark.featurize import describe_images

    spec, session, options = state
    results = describe_images(contents, session, spec, options)
    return np.stack([result.features for result in results]).astype(np.float32)


def _save(out: str, paths: list[str], features: np.ndarray, seconds: float) -> dict:
    np.savez(out, paths=np.asarray(paths), features=features)
    return {"images": len(paths), "model_stage_s": round(seconds, 2)}


def daft_job(root: str, out: str, precision: str) -> dict:
    """Daft's native runner: glob, download the bytes, a class UDF in MODEL_PROCESSES processes."""
    import daft

    _importable_here()

    @daft.udf(
        return_dtype=daft.DataType.list(daft.DataType.float32()),
        batch_size=ROWS,
        concurrency=MODEL_PROCESSES,
        use_process=True,
    )
    class Featurize:
        def __init__(self) -> None:
            self.state = _describer(precision)

        def __call__(self, contents):
            return list(_describe(self.state, contents.to_pylist()))

    started = time.perf_counter()
    frame = daft.from_glob_path(f"{root}/**/*.jpg").select("path")
    frame = frame.with_column("content", daft.col("path").download())
    frame = frame.select("path", Featurize(daft.col("content")).alias("features"))
    table = frame.to_arrow()
    seconds = time.perf_counter() - started
    features = np.asarray(table.column("features").to_pylist(), np.float32)
    return _save(out, table.column("path").to_pylist(), features, seconds)


class _RayFeaturize:
    def __init__(self, precision: str) -> None:
        self.state = _describer(precision)

    def __call__(self, batch: dict) -> dict:
        return {"path": batch["path"], "features": _describe(self.state, list(batch["bytes"]))}


def ray_job(root: str, out: str, precision: str) -> dict:
    """Ray Data: read_binary_files, map_batches over an actor pool of MODEL_PROCESSES actors."""
    import ray

    _importable_here()
    # One CPU slot more than the actors hold: with exactly MODEL_PROCESSES the two actors take
    # every slot and the read task waits for ever (seen: "backpressured: ResourceBudget").
    ray.init(num_cpus=MODEL_PROCESSES + 1, include_dashboard=False, log_to_driver=False)
    started = time.perf_counter()
    data = ray.data.read_binary_files(root, include_paths=True, file_extensions=["jpg"])
    data = data.map_batches(
        _RayFeaturize,
        fn_constructor_args=(precision,),
        batch_size=ROWS,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=MODEL_PROCESSES),
        num_cpus=1,
    )
    rows = data.take_all()
    seconds = time.perf_counter() - started
    paths = ["file:" + str(Path(row["path"]).resolve()) for row in rows]
    return _save(out, paths, np.stack([row["features"] for row in rows]), seconds)


def _check(out: Path, precision: str) -> dict:
    """Cosine of a peer's features to describe_images run here, on CHECKED of its paths."""
    saved = np.load(out)
    paths = [str(path).removeprefix("file:").removeprefix("//") for path in saved["paths"]]
    picked = spread(list(range(len(paths))), CHECKED)
    state = _describer(precision)
    ours = _describe(state, [Path(paths[i]).read_bytes() for i in picked])
    theirs = saved["features"][picked]
    cosine = (ours * theirs).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(theirs, axis=1)
    return {"checked": len(picked), "cosine_min": round(float(cosine.min()), 5)}


def _engine_numbers(run: dict) -> dict:
    images = run["images"]
    processes = run["processes"]
    return {
        "images": images,
        "model_images_per_s": round(images / run["model_stage_s"], 2),
        "wall_s": run["wall_s"],
        "cpu_ms_per_image": round(1000 * processes["cpu_s"] / images, 2),
        "peak_total_rss_mb": processes["peak_total_rss_mb"],
        "others_cores": processes["others_cores"],
    }


def _importable_here() -> None:
    """The engines' venvs and the model processes they spawn must import this module and
    fruitspark: the repository root and its ``src`` on PYTHONPATH."""
    root = Path(__file__).resolve().parents[2]
    paths = os.environ.get("PYTHONPATH", "").split(os.pathsep)
    wanted = [str(root), str(root / "src")]
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [*wanted, *(path for path in paths if path and path not in wanted)]
    )


def measure(ctx: Context) -> dict:
    from fruitspark.model import DEFAULT_MODEL, default_precision

    _importable_here()  # the peers' interpreters import this module, and fruitspark, from here

    files = spread(ctx.files(), 600) if ctx.quick else ctx.files()
    tree = ctx.input_tree(f"peers-{len(files)}", files)
    precision = default_precision(DEFAULT_MODEL)
    pythons = {engine: venv_python(engine) for engine in ENGINES}
    rounds: dict[str, list[dict]] = {"fruitspark": [], **{engine: [] for engine in ENGINES}}
    for number in range(QUICK_ROUNDS if ctx.quick else ROUNDS):  # interleaved: same conditions
        rounds["fruitspark"].append(_fruitspark_numbers(ctx, tree, precision, number))
        for engine in ENGINES:
            out = ctx.work / f"peers-{engine}.npz"
            out.parent.mkdir(parents=True, exist_ok=True)
            job = f"benchmarks.sections.peers:{engine}_job"
            args = [str(tree), str(out), precision]
            peer = run_python(ctx, job, args, f"peers-{engine}-{number}", python=pythons[engine])
            rounds[engine].append({**_engine_numbers(peer), **_check(out, precision)})
            log(f"peers: {engine} {rounds[engine][-1]}")
    result: dict = {"images": len(files), "precision": precision, "rounds": rounds}
    for name, numbers in rounds.items():
        result[name] = {key: median([one[key] for one in numbers]) for key in numbers[0]}
    return result


def _fruitspark_numbers(ctx: Context, tree, precision: str, number: int) -> dict:
    extra = ("--descriptor", "cnn", "--precision", precision, "--no-report")
    run = fruitspark_run(ctx, tree, f"peers-fruitspark-{number}", extra)
    return {
        "images": run["images"],
        "featurize_images_per_s": run["featurize_images_per_s"],
        "wall_s": run["wall_s"],
        "cpu_ms_per_image": cpu_ms_per_image(run)["all"],
        "peak_total_rss_mb": run["processes"]["peak_total_rss_mb"],
        "others_cores": run["processes"]["others_cores"],
    }


def render(result: dict) -> str:
    names = {"daft": "Daft (native runner)", "ray": "Ray Data (actor pool)"}
    rows = [
        [
            "fruitspark, featurize stage (`--descriptor cnn`)",
            f"{result['fruitspark']['featurize_images_per_s']:.1f}",
            f"{result['fruitspark']['cpu_ms_per_image']:.2f}",
            mb(result["fruitspark"]["peak_total_rss_mb"]),
            f"{result['fruitspark']['wall_s']:.1f}",
            "(reference)",
        ]
    ]
    for engine in ENGINES:
        if engine in result:
            r = result[engine]
            rows.append(
                [names[engine], f"{r['model_images_per_s']:.1f}", f"{r['cpu_ms_per_image']:.2f}",
                 mb(r["peak_total_rss_mb"]), f"{r['wall_s']:.1f}", f"{r['cosine_min']:.4f}"]
            )  # fmt: skip
    daft = result.get("daft", {})
    headers = ["engine", "model stage images/s", "CPU ms per image", "peak memory, all processes"]
    headers += ["wall s", "min cosine to ours"]
    speed = ratio(result["fruitspark"]["featurize_images_per_s"], daft.get("model_images_per_s"))
    cpu = ratio(result["fruitspark"]["cpu_ms_per_image"], daft.get("cpu_ms_per_image"))
    return (
        f"{result['images']} images, EfficientNet-Lite0 {result['precision']}, "
        f"{MODEL_PROCESSES} model processes x 1 ONNX Runtime thread, batch 8, fruitspark's "
        "`describe_images` in every engine; each in a fresh process tree, one after the other in "
        f"the same run, {len(result.get('rounds', {}).get('daft', [])) or 1} interleaved "
        "round(s), medians (shared machine: read the ratios). Model stage: the engine's "
        "featurisation (read, decode, model, collect) after start-up; fruitspark's featurize "
        "stage caches its rows, and its wall time also holds PCA, the Parquet write and the "
        "accounting, which the peers do not do. CPU: all processes, whole command.\n\n"
        + table(headers, rows)
        + f"\n\nfruitspark / Daft: model stage {speed} x, CPU per image {cpu} x.\n"
    )
