"""Mixed precision under an accuracy budget: the fewest layers kept float so that int8 stays within
``budget`` AP50 points of fp32 on the val split.

    edgedet export --checkpoint best.pt --out models --formats onnx,tflite --int8 --calib voc:data:train \\
        --int8-budget 0.5 --val voc:data:val

For each int8 path (ONNX Runtime QDQ, TFLite full-integer):

1. **Calibration method** where the runtime offers a choice (ONNX Runtime: MinMax, entropy, percentile; the
   TFLite converter calibrates MinMax only): plain PTQ with each, the best AP50 is kept for what follows.
2. **Layers ranked** by the error each adds itself (local SQNR, :mod:`edgedet.convert.int8_explain`, on
   calibration images: no labels needed, and stable where AP50 on a small val split is not).
3. **Search** (:func:`search_keep_float`): float prefixes of the ranking of doubling length until one meets
   the budget; then bisection for the shortest prefix that still does, whose last layer is needed and set
   aside, and again on what precedes it (with the layers set aside kept float) until those alone meet the
   budget: each needed layer costs about log2(layers) trials, wherever the ranking put it (TFLite's int8
   Softmax, last in the ranking of a raccoon SSD, was the one layer that mattered). Each layer set aside is
   then tried back in int8 once more. The result is 1-minimal (no single layer can go back to int8), not
   necessarily the smallest set; each trial costs a
   quantisation (ORT: the calibration is done once per method, :class:`CalibratedQuantizer`) or a TFLite
   conversion, plus one evaluation, so the search is capped at ``max_trials``.

**The budget** is met when AP50(mixed) >= AP50(fp32) - budget on the val split (point estimates, the same
images, the device code path). The paired bootstrap of :mod:`edgedet.edge.eval.ap_compare` then gives the
interval of that difference for the model chosen: on a small val split it is wide (±2 points on 23 images),
so a budget of 0.5 is a point-estimate target, and the interval says how far to trust it.
**Latency**: the chosen model against all-int8, interleaved rounds (:func:`bench_paired`), median ratio.
A budget that no tried set meets is reported, the best found is exported, and :func:`budget_cli_status`
says to exit non-zero.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgedet.convert.quantize_onnx import CALIBRATION_METHODS, CalibratedQuantizer
from edgedet.edge.datasets.sample import Dataset
from edgedet.edge.eval.ap_compare import PairedDelta, paired_bootstrap
from edgedet.edge.eval.coco_metrics import ImageDetections, ImageTruth, coco_metrics
from edgedet.edge.runtime.progress import progress

__all__ = [
    "BudgetResult",
    "Trial",
    "budget_markdown",
    "check_budget",
    "ort_budget",
    "search_keep_float",
    "tflite_budget",
]

log = logging.getLogger("edgedet.mixed_precision")

MAX_TRIALS = 24
RANKING_IMAGES = 20
LATENCY_ROUNDS = 15


@dataclass(frozen=True)
class Trial:
    """One evaluated candidate: the layers kept float and the AP50 it reached."""

    keep_float: tuple[str, ...]
    ap50: float
    method: str = ""


def search_keep_float(
    score: Callable[[tuple[str, ...]], float],
    ranking: Sequence[str],
    target: float,
    max_trials: int = MAX_TRIALS,
    on_trial: Callable[[Trial], None] | None = None,
) -> tuple[tuple[str, ...], list[Trial], bool]:
    """A 1-minimal set of layers of ``ranking`` (worst first) whose float copy scores ``>= target``.

    ``score(keep_float)`` evaluates a candidate (the layers in ranking order). Returns the chosen set, every
    trial in order and whether the target was met; when it was not, the best-scoring set tried (fewest
    layers among equals). At most ``max_trials`` candidates are scored (cached: a set is never scored twice).
    """
    order = {name: i for i, name in enumerate(ranking)}
    trials: list[Trial] = []
    cache: dict[tuple[str, ...], float] = {}

    def run(keep: Sequence[str]) -> float | None:
        key = tuple(sorted(keep, key=order.__getitem__))
        if key in cache:
            return cache[key]
        if len(trials) >= max_trials:
            return None
        value = float(score(key))
        cache[key] = value
        trials.append(Trial(key, value))
        if on_trial is not None:
            on_trial(trials[-1])
        return value

    def met(keep: Sequence[str]) -> bool | None:
        """Whether ``keep`` meets the target; ``None`` once the trials are spent."""
        value = run(keep)
        return None if value is None else value >= target

    def ordered(keep: Sequence[str]) -> tuple[str, ...]:
        return tuple(sorted(keep, key=order.__getitem__))

    if met(()):
        return (), trials, True
    n, k, passed, failed = len(ranking), 1, None, 0
    while k <= n or (passed is None and failed < n):
        k = min(k, n)
        if met(ranking[:k]):
            passed = k
            break
        if len(trials) >= max_trials:
            break
        failed, k = k, 2 * k
    if passed is None:
        best = max(trials, key=lambda t: (t.ap50, -len(t.keep_float)))
        return best.keep_float, trials, False
    # core + rest meets the target, core + rest[:lo] does not: bisect for the shortest prefix of rest that
    # still meets it; its last layer is needed (without it, not even all the layers before it are enough)
    core: list[str] = []
    rest, lo = list(ranking[:passed]), failed
    while True:
        hi = len(rest)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            ok = met(core + rest[:mid])
            if ok is None:  # out of trials: the last set known to meet the target
                return ordered(core + rest[:hi]), trials, True
            hi, lo = (mid, lo) if ok else (hi, mid)
        core.append(rest[hi - 1])
        rest, lo = rest[: hi - 1], 0
        ok = met(core)
        if ok is None:
            return ordered(core + rest), trials, True
        if ok:
            break
    for layer in reversed(list(core)):  # 1-minimal even where AP50 is not monotone in the set (cached trials are free)
        candidate = [c for c in core if c != layer]
        if candidate and met(candidate):
            core = candidate
    return ordered(core), trials, True


@dataclass
class BudgetResult:
    """What the search kept float for one int8 path, and what it cost."""

    runtime: str  # "onnxruntime" or "litert"
    budget_points: float
    model: str  # the file written
    method: str  # calibration method chosen
    methods_ap50: dict[str, float]  # plain PTQ AP50 per calibration method tried
    keep_float: list[str]
    layers: int  # quantisable layers ranked
    ap50_fp32: float
    ap50_int8: float  # plain PTQ with the chosen method
    ap50_mixed: float
    delta_low: float  # paired bootstrap interval of AP50(mixed) - AP50(fp32)
    delta_high: float
    resamples: int
    met: bool
    latency_ratio: float | None  # mixed / all-int8, median of interleaved rounds
    trials: list[Trial] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        pts = 100.0
        kept = ", ".join(f"`{k}`" for k in self.keep_float) or "none"
        lat = "-" if self.latency_ratio is None else f"{self.latency_ratio:.2f}x all-int8"
        verdict = "met" if self.met else "NOT met"
        return (
            f"{self.runtime}: budget {self.budget_points:g} {verdict}; fp32 {self.ap50_fp32:.4f}, int8 "
            f"({self.method}) {self.ap50_int8:.4f}, mixed {self.ap50_mixed:.4f} "
            f"({pts * (self.ap50_mixed - self.ap50_fp32):+.1f} points, 95 % CI {pts * self.delta_low:+.1f} .. "
            f"{pts * self.delta_high:+.1f}); kept float: {kept} ({len(self.keep_float)} of {self.layers}); "
            f"latency {lat}"
        )


def budget_markdown(results: Sequence[BudgetResult]) -> str:
    """The report: one table row per int8 path, then each path's trials."""
    lines = [
        "# int8 under an accuracy budget",
        "",
        "| runtime | budget (AP50 points) | met | method | AP50 fp32 | int8 | mixed | mixed - fp32 (95 % CI) "
        "| layers float | latency vs all-int8 |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        d = 100.0 * (r.ap50_mixed - r.ap50_fp32)
        lat = "-" if r.latency_ratio is None else f"{r.latency_ratio:.2f}x"
        lines.append(
            f"| {r.runtime} | {r.budget_points:g} | {'yes' if r.met else '**no**'} | {r.method} | "
            f"{r.ap50_fp32:.4f} | {r.ap50_int8:.4f} | {r.ap50_mixed:.4f} | {d:+.1f} "
            f"({100 * r.delta_low:+.1f} .. {100 * r.delta_high:+.1f}) | {len(r.keep_float)} of {r.layers} | {lat} |"
        )
    for r in results:
        lines += ["", f"## {r.runtime}: `{r.model}`", ""]
        methods = ", ".join(f"{m} {v:.4f}" for m, v in r.methods_ap50.items())
        lines.append(f"Plain PTQ AP50 by calibration method: {methods}.")
        lines.append("Kept float: " + (", ".join(f"`{k}`" for k in r.keep_float) or "nothing") + ".")
        lines += ["", "| trial | layers float | AP50 |", "|---|---|---|"]
        for i, t in enumerate(r.trials, 1):
            lines.append(f"| {i} | {', '.join(t.keep_float) or '-'} | {t.ap50:.4f} |")
    return "\n".join(lines) + "\n"


class _Scorer:
    """AP50 of model files on one labelled dataset through the device code path, keeping the detections."""

    def __init__(self, dataset: Dataset, threads: int | None) -> None:
        self.dataset = dataset
        self.threads = threads
        self.labels: Sequence[str] = ()

    def detections(self, path: str | os.PathLike[str]) -> tuple[list[ImageTruth], list[ImageDetections]]:
        from edgedet.edge.eval.evaluate import EVAL_SCORE_THRESHOLD, run_detector
        from edgedet.edge.runtime.detector import Detector

        detector = Detector.from_model(path, threads=self.threads, score_threshold=EVAL_SCORE_THRESHOLD)
        if self.labels and tuple(self.labels) != tuple(detector.labels):
            raise ValueError(f"{path}: labels {list(detector.labels)} differ from the fp32 model's {list(self.labels)}")
        self.labels = tuple(detector.labels)
        truth, dets, _ = run_detector(detector, self.dataset, progress=False)
        return truth, dets

    def ap50(self, path: str | os.PathLike[str]) -> float:
        truth, dets = self.detections(path)
        return float(coco_metrics(truth, dets, self.labels)["AP50"])


def check_budget(budget: float) -> float:
    if not np.isfinite(budget) or budget < 0:
        raise ValueError(f"--int8-budget: expected AP50 points >= 0 (e.g. 0.5), got {budget}")
    return float(budget)


def _baseline(
    fp32_onnx: Path, val: Dataset, budget: float, threads: int | None
) -> tuple[_Scorer, tuple[list[ImageTruth], list[ImageDetections]], float]:
    """The scorer on ``val``, the fp32 model's truth and detections, and the AP50 a candidate must reach."""
    scorer = _Scorer(val, threads)
    fp32 = scorer.detections(fp32_onnx)
    return scorer, fp32, float(coco_metrics(*fp32, scorer.labels)["AP50"]) - budget / 100.0


# TFLite layers that only move data: keeping them float changes no arithmetic, so the search skips them
_DATA_OPS = frozenset({"RESHAPE", "CONCATENATION", "TRANSPOSE", "PAD", "SQUEEZE", "PACK", "UNPACK", "QUANTIZE",
                       "DEQUANTIZE", "GATHER", "SLICE", "STRIDED_SLICE", "SPLIT"})  # fmt: skip


def _ranking(
    fp32_onnx: Path, int8_model: Path, inputs: np.ndarray, threads: int | None, skip: frozenset[str] = frozenset()
) -> list[str]:
    """Quantised layers of ``int8_model`` (ONNX Runtime QDQ or TFLite), worst local SQNR first
    (:func:`explain_int8`, no re-quantisation), without the layers in ``skip``."""
    from edgedet.convert.int8_explain import explain_int8

    report = explain_int8(fp32_onnx, int8_model, inputs, limit=len(inputs), top_k=0, threads=threads,
                          show_progress=False)  # fmt: skip
    return [r.node for r in report.layers if r.quantized and r.node not in skip]


def _finish(
    runtime: str,
    budget: float,
    scorer: _Scorer,
    fp32: tuple[list[ImageTruth], list[ImageDetections]],
    out_path: Path,
    plain_path: Path,
    method: str,
    methods_ap50: Mapping[str, float],
    chosen: tuple[str, ...],
    layers: int,
    trials: list[Trial],
    met: bool,
    resamples: int,
    threads: int | None,
    show: bool,
) -> BudgetResult:
    """Bootstrap the chosen model against fp32 and time it against all-int8."""
    truth, dets_fp32 = fp32
    truth_mixed, dets_mixed = scorer.detections(out_path)
    if [t.image_id for t in truth_mixed] != [t.image_id for t in truth]:
        raise RuntimeError(f"{out_path}: did not see the same val images as the fp32 model")
    delta: PairedDelta = paired_bootstrap(truth, dets_fp32, dets_mixed, scorer.labels, "AP50", resamples,
                                          show_progress=show)  # fmt: skip
    ratio = None
    if chosen:
        from edgedet.edge.bench.paired_bench import bench_paired

        rows = bench_paired(plain_path, [out_path], threads=threads or 1, rounds=LATENCY_ROUNDS, runs=10, warmup=10)
        ratio = float(rows[1]["ratio_vs_base"])
    else:
        ratio = 1.0
    return BudgetResult(
        runtime, budget, str(out_path), method, dict(methods_ap50), list(chosen), layers, delta.a,
        methods_ap50[method], delta.b, delta.low, delta.high, resamples, met, ratio,
        [Trial(t.keep_float, t.ap50, method) for t in trials],
    )  # fmt: skip


def _report_trial(runtime: str, show: bool) -> Callable[[Trial], None]:
    def report(t: Trial) -> None:
        if show:
            print(f"  {runtime} trial: {len(t.keep_float)} layers float -> AP50 {t.ap50:.4f}", flush=True)

    return report


def ort_budget(
    fp32_onnx: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    calib_nchw: np.ndarray,
    val: Dataset,
    budget: float,
    *,
    methods: Sequence[str] = CALIBRATION_METHODS,
    max_trials: int = MAX_TRIALS,
    resamples: int = 200,
    threads: int | None = 1,
    show_progress: bool = True,
) -> BudgetResult:
    """The ONNX Runtime int8 model at ``out_path`` with the fewest nodes kept float (see the module doc)."""
    budget = check_budget(budget)
    fp32_onnx, out_path = Path(fp32_onnx), Path(out_path)
    scorer, fp32, target = _baseline(fp32_onnx, val, budget, threads)
    with tempfile.TemporaryDirectory(prefix="edgedet-budget-ort-") as tmp:
        quantizers: dict[str, CalibratedQuantizer] = {}
        methods_ap50: dict[str, float] = {}
        try:
            for method in progress(methods, len(methods), "int8 budget (ORT): calibration methods", show_progress):
                q = CalibratedQuantizer(fp32_onnx, calib_nchw, method=method, calib_images=len(calib_nchw),
                                        show_progress=False)  # fmt: skip
                quantizers[method] = q
                methods_ap50[method] = scorer.ap50(q.quantize(Path(tmp) / f"plain_{method}.onnx"))
            method = max(methods_ap50, key=lambda m: (methods_ap50[m], m == "minmax"))
            q = quantizers[method]
            plain = Path(tmp) / f"plain_{method}.onnx"
            ranking = _ranking(fp32_onnx, plain, calib_nchw[:RANKING_IMAGES], threads)
            count = iter(range(10**9))

            def score(keep: tuple[str, ...]) -> float:
                if not keep:
                    return methods_ap50[method]
                return scorer.ap50(q.quantize(Path(tmp) / f"trial_{next(count)}.onnx", exclude_nodes=keep))

            chosen, trials, met = search_keep_float(score, ranking, target, max_trials,
                                                    _report_trial("ORT", show_progress))  # fmt: skip
            q.quantize(out_path, exclude_nodes=chosen)
        finally:
            for quantizer in quantizers.values():
                quantizer.close()
        return _finish("onnxruntime", budget, scorer, fp32, out_path, plain, method, methods_ap50, chosen,
                       len(ranking), trials, met, resamples, threads, show_progress)  # fmt: skip


def tflite_budget(
    fp32_onnx: str | os.PathLike[str],
    out_paths: Mapping[str, str | os.PathLike[str]],
    plain_int8: str | os.PathLike[str],
    calib_nchw: np.ndarray,
    val: Dataset,
    budget: float,
    *,
    max_trials: int = 16,
    resamples: int = 200,
    threads: int | None = 1,
    show_progress: bool = True,
) -> BudgetResult:
    """The TFLite int8 models (``out_paths``: I/O ``"float"`` and/or ``"int8"`` -> file) with the fewest
    layers kept float; ``plain_int8`` is the all-int8 float-I/O export (the baseline and the ranking's model).
    The TFLite converter calibrates MinMax only, so the method is not searched."""
    from edgedet.convert.tflite_mixed import export_tflite_int8_keep_float, tflite_layer_ops

    budget = check_budget(budget)
    fp32_onnx, plain_int8 = Path(fp32_onnx), Path(plain_int8)
    scorer, fp32, target = _baseline(fp32_onnx, val, budget, threads)
    methods_ap50 = {"minmax": scorer.ap50(plain_int8)}
    ops = tflite_layer_ops(fp32_onnx, show_progress=show_progress)
    moves_data = frozenset(k for k, v in ops.items() if set(v.split("+")) <= _DATA_OPS)
    ranking = _ranking(fp32_onnx, plain_int8, calib_nchw[:RANKING_IMAGES], threads, moves_data)
    with tempfile.TemporaryDirectory(prefix="edgedet-budget-tflite-") as tmp:
        count = iter(range(10**9))

        def convert(keep: Sequence[str], out: Path, io: str = "float", sidecar: bool = False) -> Path:
            return export_tflite_int8_keep_float(fp32_onnx, out, calib_nchw, list(keep), calib_images=len(calib_nchw),
                                                 io=io, show_progress=False, sidecar=sidecar)  # fmt: skip

        def score(keep: tuple[str, ...]) -> float:
            if not keep:
                return methods_ap50["minmax"]
            return scorer.ap50(convert(keep, Path(tmp) / f"trial_{next(count)}.tflite"))

        chosen, trials, met = search_keep_float(score, ranking, target, max_trials,
                                                _report_trial("TFLite", show_progress))  # fmt: skip
        baseline = Path(tmp) / "plain.tflite"
        shutil.copyfile(plain_int8, baseline)
        written = []
        for io, path in out_paths.items():
            path = Path(path)
            if chosen:  # the export's sidecar spec, where it wrote one, must list the float layers too
                convert(chosen, path, io, sidecar=path.with_suffix(".json").exists())
            elif path != plain_int8 and not path.exists():
                raise ValueError(f"{path}: no all-int8 TFLite to keep (nothing needed float)")
            written.append(path)
        float_io = Path(out_paths.get("float", written[0]))
        return _finish("litert", budget, scorer, fp32, float_io, baseline, "minmax", methods_ap50, chosen,
                       len(ranking), trials, met, resamples, threads, show_progress)  # fmt: skip
