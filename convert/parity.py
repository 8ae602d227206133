"""Parity of exported models with the PyTorch checkpoint they came from, through the device code path.

Every model runs in :class:`edgedet.edge.runtime.detector.Detector` (its own pre-processing, layout and output roles)
on the same images as the checkpoint (:class:`edgedet.training.module_backend.ModuleBackend`).

* **fp32 models** (spec ``extra["quantization"]`` absent or ``"none"``): raw outputs within ``atol``
  (default 1e-4) of PyTorch's, relative to the magnitude where it exceeds 1 (``|diff| <= atol *
  max(1, |ref|)``: scores, offsets and SSD regressions are O(1), where this is the absolute bound; a
  CenterNet size of 60 cells carries float32 rounding of ~1e-6 relative, which no absolute 1e-4 bound
  fits), and identical detections after decode + NMS: same count, same classes, boxes within
  ``box_tol`` (1e-3 px). Detections scoring within ``atol`` of the score threshold are left out of the
  comparison (either side may legitimately drop them).
* **reduced-precision models** (int8, fp16 weights, dynamic range): PyTorch's detections are matched
  (same class, IoU >= 0.5, greedy by score) and the recall must reach ``min_recall`` (95%). Detections
  scoring within one int8 score step (``SCORE_STEP``, 1/256) of the threshold are left out: int8 moves a
  score by about that much, so either side may drop them. A briefly trained model can put every detection
  there (a half-minute raccoon SSD scored all 98 of its detections within 3e-4 of its threshold, and its
  int8 copy within 3e-4 of it, yet "lost" 46 of them); its row then reads ``n/a`` and passes.
* **int8 files of a QAT checkpoint** (spec ``extra["qat"]``, :mod:`edgedet.convert.qat_export`): compared
  with the checkpoint's fake-quantised model (in its folded device form) instead of the float one:
  detections as above (the QAT model's tail is float; TFLite's int8 softmax / sigmoid output moves a score
  by up to ``SCORE_STEP``), and 99 % of the raw output values within ``QAT_MAX_STEPS`` (4) int8 steps of it
  (:func:`edgedet.convert.qat_export.output_steps`; the rest are rounding ties that flipped and spread
  through the layers: each requantisation may round a tie the other way, and these add up with depth. Measured
  p99: 1 step on the demo's 160x120 models, 3 on a 320x240 raccoon CenterNet, whose detections all matched).
  The table's ``max|diff|`` column shows that 99th percentile and the maximum.

Detections are compared at the checkpoint's score threshold, the same for every model. Where the
checkpoint finds nothing at it on the parity images (a briefly trained CenterNet peaks at 0.2-0.3, below
a default of 0.4), they are compared at ``PARITY_SCORE_THRESHOLD`` (0.1) instead, so the check never
compares empty lists.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from edgedet.convert.calibration import CalibSource, calibration_images
from edgedet.convert.checkpoint_input import open_checkpoint
from edgedet.convert.output_layout import to_layout_of
from edgedet.edge.core.box_coder import decode_to_corners
from edgedet.edge.core.heatmap_decode import peak_map
from edgedet.edge.core.model_spec import ModelSpec
from edgedet.edge.datasets.image_files import read_image
from edgedet.edge.eval.coco_metrics import ImageDetections, ImageTruth
from edgedet.edge.eval.operating_point import match_detections
from edgedet.edge.runtime.detector import Detection, Detector
from edgedet.edge.runtime.progress import progress

__all__ = ["ParityReport", "ParityRow", "check_parity", "count_matches", "is_exact"]

ATOL = 1e-4
BOX_TOL = 1e-3
MIN_RECALL = 0.95
MATCH_IOU = 0.5
PARITY_SCORE_THRESHOLD = 0.1
QAT_MAX_STEPS = 4.0  # int8 steps within which 99 % of a QAT int8 file's outputs must follow the QAT model
SCORE_STEP = 1 / 256  # an int8 score's step: reference detections this close to the threshold may go either way


@dataclass
class ParityRow:
    """One exported model against the checkpoint."""

    name: str
    path: Path
    exact: bool
    images: int = 0
    max_abs_diff: float = 0.0
    reference_detections: int = 0
    borderline: int = 0  # reduced precision: reference detections within SCORE_STEP of the threshold, not compared
    matched: int = 0
    extra_detections: int = 0
    mismatched_images: int = 0
    passed: bool = False
    note: str = ""
    steps_p99: float | None = None  # QAT int8 files: |output - fake-quantised model's| in int8 steps
    steps_max: float | None = None

    @property
    def recall(self) -> float:
        return self.matched / self.reference_detections if self.reference_detections else 1.0

    @property
    def size_kb(self) -> float:
        return self.path.stat().st_size / 1024 if self.path.is_file() else float("nan")


@dataclass
class ParityReport:
    rows: list[ParityRow] = field(default_factory=list)
    atol: float = ATOL
    min_recall: float = MIN_RECALL

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.rows)

    def table(self) -> str:
        """A plain-text table, one line per model."""
        head = ("model", "kind", "KB", "images", "max|diff|", "ref dets", "recall", "extra", "result")
        lines = []
        for r in self.rows:
            diff = f"{r.max_abs_diff:.2e}" if r.exact else "-"
            if r.steps_p99 is not None:
                diff = f"{r.steps_p99:.1f}/{r.steps_max:.1f} steps"
            kind = f"fp32 (<= {self.atol:g})" if r.exact else f"approx (>= {self.min_recall:.0%})"
            result = ("ok" if r.passed else "FAIL") + (f": {r.note}" if r.note else "")
            refs = str(r.reference_detections) + (f" (+{r.borderline} borderline)" if r.borderline else "")
            lines.append(
                (r.name, kind, f"{r.size_kb:.0f}", str(r.images), diff, refs,
                 f"{r.recall:.1%}" if r.reference_detections else "n/a", str(r.extra_detections), result)
            )  # fmt: skip
        widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(head)]
        fmt = "  ".join(f"{{:<{w}}}" for w in widths)
        out = [fmt.format(*head), fmt.format(*("-" * w for w in widths))]
        out += [fmt.format(*line) for line in lines]
        return "\n".join(out)


def is_exact(spec: ModelSpec) -> bool:
    """Whether a model with this spec should match PyTorch to float32 precision."""
    return str(spec.extra.get("quantization", "none")) == "none"


def _canonical(detector: Detector, outputs: Mapping[str, np.ndarray], ref: Mapping[str, np.ndarray]):
    """``(candidate, reference)`` dicts keyed by role, in the reference's layout."""
    spec = detector.spec
    if spec.head == "ssd":
        scores, boxes, role = detector.decoder.resolve(outputs)
        cand = {"scores": np.asarray(outputs[scores]), role: np.asarray(outputs[boxes])}
        want = {"scores": ref["scores"], "locations": ref["locations"]}
        if role == "boxes":
            assert spec.priors is not None
            corners = decode_to_corners(
                ref["locations"][0], detector.decoder.priors, spec.priors.center_variance, spec.priors.size_variance
            )
            want = {"scores": ref["scores"], "boxes": corners[None]}
        return cand, want
    roles = detector.decoder.resolve(outputs)
    cand = {role: np.asarray(outputs[name]) for role, name in roles.items()}
    want = {"heatmap": ref["heatmap"], "size": ref["size"], "offset": ref["offset"]}
    if "peaks" in roles:
        want["peaks"] = peak_map(ref["heatmap"])
        if "heatmap" not in roles:
            want.pop("heatmap")
    return cand, want


def _max_diff(cand: Mapping[str, np.ndarray], want: Mapping[str, np.ndarray], source: str) -> float:
    worst = 0.0
    for role, ref in want.items():
        same = to_layout_of(cand[role], ref)
        if same is None:
            raise ValueError(f"{source}: output {role!r} {list(np.shape(cand[role]))} does not fit {list(ref.shape)}")
        want64 = ref.astype(np.float64)
        diff = np.abs(same.astype(np.float64) - want64) / np.maximum(1.0, np.abs(want64))
        worst = max(worst, float(np.max(diff)))
    return worst


def _image_arrays(dets: Sequence[Detection]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(boxes [N, 4], scores [N], class ids [N])`` of one image's detections."""
    boxes = np.array([d.box for d in dets], dtype=np.float64).reshape(-1, 4)
    return boxes, np.array([d.score for d in dets], dtype=np.float64), np.array([d.class_id for d in dets], np.int64)


def count_matches(
    reference: Sequence[Detection], candidate: Sequence[Detection], iou: float = MATCH_IOU
) -> tuple[int, int]:
    """``(matched, unmatched candidates)``: the reference detections (best first) each take the same-class
    candidate of highest IoU >= ``iou``, by :func:`edgedet.edge.eval.operating_point.match_detections`
    with the candidates as the ground truth."""
    cand_boxes, _, cand_labels = _image_arrays(candidate)
    truth = ImageTruth("candidate", 0, 0, cand_boxes, cand_labels)  # the size plays no part in matching
    matched = int(match_detections(truth, ImageDetections("reference", *_image_arrays(reference)), iou).sum())
    return matched, len(candidate) - matched


def _identical(reference: list[Detection], candidate: list[Detection], threshold: float, atol: float, tol: float):
    """Whether two detection lists agree exactly (up to ``tol`` px and borderline scores)."""
    ref = [d for d in reference if d.score > threshold + atol]
    cand = [d for d in candidate if d.score > threshold + atol]
    if len(ref) != len(cand):
        return False
    used = [False] * len(cand)
    for r in ref:
        for j, c in enumerate(cand):
            close = max(abs(a - b) for a, b in zip(r.box, c.box, strict=True)) <= tol
            if not used[j] and c.class_id == r.class_id and close and abs(r.score - c.score) <= atol:
                used[j] = True
                break
        else:
            return False
    return True


def _images(images: CalibSource | Sequence[np.ndarray] | None, count: int) -> list[np.ndarray]:
    """BGR frames: from ``images`` (a dataset, folder or list of paths / arrays), or seeded noise."""
    if images is None:
        rng = np.random.default_rng(0)
        return [rng.integers(0, 256, (240 + 16 * i, 320 + 24 * i, 3), dtype=np.uint8) for i in range(count)]
    if isinstance(images, (list, tuple)) and images and isinstance(images[0], np.ndarray):
        return list(images)[:count]
    return [read_image(p) for p in calibration_images(images, count)]  # type: ignore[arg-type]


def check_parity(
    ckpt: str | os.PathLike[str],
    exported: Mapping[str, str | os.PathLike[str]] | Sequence[str | os.PathLike[str]],
    images: CalibSource | Sequence[np.ndarray] | None = None,
    *,
    max_images: int = 50,
    atol: float = ATOL,
    box_tol: float = BOX_TOL,
    min_recall: float = MIN_RECALL,
    show_progress: bool = True,
) -> ParityReport:
    """Compare every exported model (name -> path, or paths) with checkpoint ``ckpt`` on up to
    ``max_images`` images (``None``: a few noise frames, enough for the fp32 checks)."""
    from edgedet.training.module_backend import ModuleBackend

    model, spec = open_checkpoint(ckpt)
    named = dict(exported) if isinstance(exported, Mapping) else {Path(p).name: p for p in exported}
    reference = Detector(ModuleBackend(model, spec), spec)
    quantized, steps = _qat_reference(ckpt, spec)  # a QAT checkpoint's fake-quantised model, else None
    detectors: dict[str, Detector] = {}
    for name, path in named.items():
        det = Detector.from_model(path, threads=1)
        if det.spec.head != spec.head:
            raise ValueError(f"{path}: a {det.spec.head!r} model, but the checkpoint {ckpt} is {spec.head!r}")
        if det.spec.input_size != spec.input_size:
            raise ValueError(
                f"{path}: input {det.spec.input_width}x{det.spec.input_height}, but the checkpoint {ckpt} "
                f"was built for {spec.input_width}x{spec.input_height}"
            )
        detectors[name] = det
    frames = _images(images, max_images)
    ref_runs, qat_runs = [], []
    for frame in frames:
        tensor, transform = reference.preprocess(frame)
        ref_runs.append((reference.backend.run(tensor), transform))
        if quantized is not None:
            qat_runs.append(quantized.backend.run(tensor))
    threshold = spec.score_threshold
    if not any(reference.decode(out, t) for out, t in ref_runs):
        threshold = min(threshold, PARITY_SCORE_THRESHOLD)  # nothing reaches the default: compare lower
        reference = Detector(reference.backend, replace(spec, score_threshold=threshold))
    if quantized is not None:
        quantized = Detector(quantized.backend, replace(spec, score_threshold=threshold))
    for name, det in list(detectors.items()):
        detectors[name] = Detector(det.backend, replace(det.spec, score_threshold=threshold))
    report = ParityReport(atol=atol, min_recall=min_recall)
    rows = {n: ParityRow(n, Path(p), is_exact(detectors[n].spec)) for n, p in named.items()}
    step_diffs: dict[str, list[np.ndarray]] = {}
    for i, (frame, (ref_out, transform)) in enumerate(
        progress(zip(frames, ref_runs, strict=True), len(frames), "parity", show_progress)
    ):
        ref_dets = reference.decode(ref_out, transform)
        for name, det in detectors.items():
            row = rows[name]
            x, t = det.preprocess(frame)
            out = det.backend.run(x)
            dets = det.decode(out, t)
            row.images += 1
            against = ref_dets
            if quantized is not None and "qat" in det.spec.extra and not row.exact:  # vs the fake-quantised model
                against = quantized.decode(qat_runs[i], t)
                step_diffs.setdefault(name, []).append(_step_diff(det, out, qat_runs[i], steps))
            required = [d for d in against if row.exact or d.score > threshold + SCORE_STEP]
            row.borderline += len(against) - len(required)
            row.reference_detections += len(required)
            matched, extra = count_matches(required, dets)
            if len(required) < len(against):  # extra: matching no reference, borderline or not
                extra = count_matches(against, dets)[1]
            row.matched += matched
            row.extra_detections += extra
            if row.exact:
                cand, want = _canonical(det, out, ref_out)
                row.max_abs_diff = max(row.max_abs_diff, _max_diff(cand, want, str(row.path)))
                if not _identical(ref_dets, dets, threshold, atol, box_tol):
                    row.mismatched_images += 1
    for row in rows.values():
        if row.exact:
            problems = []
            if row.max_abs_diff > atol:
                problems.append(f"max |diff| / max(1, |ref|) {row.max_abs_diff:.2e} > {atol:g}")
            if row.mismatched_images:
                problems.append(f"detections differ on {row.mismatched_images} image(s)")
            row.passed, row.note = not problems, "; ".join(problems)
        else:
            row.passed = row.recall >= min_recall
            row.note = "" if row.passed else f"recall {row.recall:.1%} < {min_recall:.0%}"
            diffs = np.concatenate(step_diffs.get(row.name, [np.zeros(0)]))
            if diffs.size:
                row.steps_p99, row.steps_max = float(np.quantile(diffs, 0.99)), float(diffs.max())
                if row.steps_p99 > QAT_MAX_STEPS + 0.01:  # steps are integers up to float rounding
                    row.passed = False
                    far = (
                        f"99 % of outputs within {row.steps_p99:.1f} int8 steps of the QAT model (> {QAT_MAX_STEPS:g})"
                    )
                    row.note = "; ".join(filter(None, [row.note, far]))
        report.rows.append(row)
    return report


def _qat_reference(ckpt: str | os.PathLike[str], spec: ModelSpec) -> tuple[Detector | None, dict[str, float]]:
    """A QAT checkpoint's fake-quantised model (folded device form) as a detector and one int8 step per
    output role; ``(None, {})`` for a float checkpoint."""
    from edgedet.convert.qat_export import export_model, open_qat_checkpoint, output_steps
    from edgedet.training.module_backend import ModuleBackend

    qat = open_qat_checkpoint(ckpt)
    if qat is None:
        return None, {}
    return Detector(ModuleBackend(export_model(qat.model), spec), spec), output_steps(qat.model)


def _step_diff(det: Detector, out: Mapping[str, np.ndarray], ref: Mapping[str, np.ndarray], steps: Mapping[str, float]):
    """|candidate - fake-quantised model| in int8 steps, every value of the roles that have a step."""
    cand, want = _canonical(det, out, ref)
    parts = []
    for role, value in want.items():
        same = to_layout_of(cand[role], value)
        if role in steps and same is not None:
            parts.append((np.abs(same.astype(np.float64) - value.astype(np.float64)) / steps[role]).reshape(-1))
    return np.concatenate(parts) if parts else np.zeros(0)
