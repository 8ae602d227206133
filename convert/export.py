"""``edgedet export``: a checkpoint -> ONNX / TFLite (fp32, fp16, dynamic range, int8), then parity.

    edgedet export --checkpoint runs/ssd/best.pt --out models/ --formats onnx,tflite \\
        --int8 --calib voc:data/faces:train --calib-images 200

Files are named after the checkpoint: ``best.onnx``, ``best_int8.onnx``, ``best_fp32.tflite`` (+ its
``best_fp32.json`` spec), ``best_fp16``, ``best_dynamic``, ``best_int8`` (int8 in and out),
``best_int8_float_io`` (int8 inside, float in and out). Parity against the checkpoint runs by default
(:mod:`edgedet.convert.parity`); its table is printed and written to ``parity.txt`` in the output folder.
A QAT checkpoint (``edgedet train ... qat.enabled=true``) gets int8 files with its trained quantisation
scales instead of calibrated ones (:mod:`edgedet.convert.qat_export`), checked against its fake-quantised model.
``--int8-budget POINTS --val DATA`` keeps the fewest layers float that bring each int8 model within that many
AP50 points of fp32 (:mod:`edgedet.convert.mixed_precision`; ``int8_budget.md``); exit status 4 when no
tried set meets it (the best found is still written).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from edgedet.convert.calibration import CalibSource, calibration_tensors
from edgedet.convert.checkpoint_input import open_checkpoint
from edgedet.convert.mixed_precision import BudgetResult, budget_markdown, check_budget, ort_budget, tflite_budget
from edgedet.convert.onnx_export import export_onnx
from edgedet.convert.parity import ParityReport, check_parity
from edgedet.convert.qat_export import (
    export_qat_onnx,
    keep_tflite_softmax_float,
    open_qat_checkpoint,
    patch_tflite_files,
)
from edgedet.convert.quantize_onnx import quantize_onnx
from edgedet.convert.tflite_export import FLOAT_VARIANTS, INT8_IO, INT8_VARIANTS, export_tflite
from edgedet.edge.datasets.sample import Dataset

__all__ = ["FORMATS", "cli", "export_all", "parse_formats"]

log = logging.getLogger("edgedet.export")

FORMATS = ("onnx", "tflite")
PARITY_IMAGES = 50


def parse_formats(text: str | Sequence[str]) -> tuple[str, ...]:
    """``"onnx,tflite"`` (or a sequence) -> ``("onnx", "tflite")``; unknown names are a ``ValueError``."""
    items = text.split(",") if isinstance(text, str) else list(text)
    formats = tuple(dict.fromkeys(f.strip().lower() for f in items if f.strip()))
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise ValueError(f"--formats: expected a comma list of {', '.join(FORMATS)}, got {text!r}")
    return formats


def export_all(
    ckpt: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    formats: Sequence[str] = ("onnx",),
    int8: bool = False,
    calib: CalibSource | None = None,
    calib_images: int = 200,
    parity: bool = True,
    *,
    head: str | None = None,
    boxes_in_graph: bool = False,
    peaks: bool = False,
    calib_method: str = "minmax",
    parity_images: int = PARITY_IMAGES,
    show_progress: bool = True,
    on_report: Callable[[ParityReport], None] | None = None,
    int8_budget: float | None = None,
    val: str | None = None,
    val_class_map: Mapping[str, str] | None = None,
    on_budget: Callable[[BudgetResult], None] | None = None,
) -> dict[str, Path]:
    """Export ``ckpt`` into ``out_dir``; returns the files written by key (``onnx``, ``onnx_int8``,
    ``tflite_fp32``, ... as in :data:`edgedet.convert.tflite_export.VARIANTS`).

    ``formats``: ``onnx`` and/or ``tflite`` (the ONNX model is made either way; it is kept only when
    asked for). ``int8`` needs ``calib`` (a dataset spec, an image folder or a ``Dataset``), of which
    ``calib_images`` images calibrate both int8 paths. With ``parity`` the models are checked against
    the checkpoint on the calibration images (a few noise frames without them); the table is printed
    and saved as ``parity.txt``; a failed check is logged and handed to ``on_report``, not raised.

    ``int8_budget`` (AP50 points, needs ``val``: a dataset spec) replaces each int8 file by the mixed-precision
    model of :mod:`edgedet.convert.mixed_precision` (fewest layers float within the budget on ``val``); the
    report goes to ``int8_budget.md`` / ``.json`` and each result to ``on_budget``.
    """
    formats = parse_formats(formats)
    if int8 and calib is None:
        raise ValueError("--int8 needs calibration images: give --calib DATA (a dataset spec or an image folder)")
    if calib_images <= 0:
        raise ValueError(f"--calib-images: expected a positive number, got {calib_images}")
    val_set = _budget_val(int8_budget, int8, val, val_class_map)
    _, spec = open_checkpoint(ckpt, head)  # a bad checkpoint fails here, before anything is written
    qat = open_qat_checkpoint(ckpt) if int8 else None  # QAT: int8 files with the trained scales
    if qat is not None and int8_budget is not None:
        raise ValueError(f"--int8-budget: {ckpt} is a QAT checkpoint, whose int8 files keep its trained scales")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = Path(ckpt).stem
    written: dict[str, Path] = {}
    calib_nchw = calibration_tensors(spec, calib, calib_images, "nchw", show_progress) if int8 else None
    with tempfile.TemporaryDirectory(prefix="edgedet-export-") as tmp:
        onnx_dir = out_dir if "onnx" in formats else Path(tmp)
        onnx_path = export_onnx(ckpt, onnx_dir / f"{stem}.onnx", boxes_in_graph=boxes_in_graph, peaks=peaks, head=head)
        log.info("wrote %s", onnx_path)
        if "onnx" in formats:
            written["onnx"] = onnx_path
            if qat is not None:
                written["onnx_int8"] = export_qat_onnx(
                    qat, out_dir / f"{stem}_int8.onnx", boxes_in_graph=boxes_in_graph, peaks=peaks
                )
            elif int8:
                written["onnx_int8"] = quantize_onnx(
                    onnx_path,
                    out_dir / f"{stem}_int8.onnx",
                    calib_nchw,
                    method=calib_method,
                    calib_images=calib_images,
                    show_progress=show_progress,
                )
        if "tflite" in formats:
            variants = FLOAT_VARIANTS + (INT8_VARIANTS if int8 else ())
            calib_nhwc = calib_nchw.transpose(0, 2, 3, 1) if calib_nchw is not None else None
            written.update(
                export_tflite(
                    onnx_path, out_dir, variants, calib_nhwc=calib_nhwc, stem=stem, show_progress=show_progress
                )
            )
            if qat is not None:  # the converter's calibrated int8 files, activation scales set to the trained ones
                keep_tflite_softmax_float(onnx_path, written, calib_nchw, show_progress)
                patch_tflite_files(qat, written, INT8_VARIANTS)
        if val_set is not None and int8_budget is not None:
            results = _apply_budget(onnx_path, written, calib_nchw, val_set, int8_budget, show_progress)
            _publish_budget(results, out_dir)
            for result in results:
                if on_budget is not None:
                    on_budget(result)
        if parity:
            report = check_parity(
                ckpt, written, calib, max_images=parity_images if calib is not None else 4, show_progress=show_progress
            )
            if val_set is not None and int8_budget is not None:
                accept_budgeted(report, results)
            _publish(report, out_dir)
            if on_report is not None:
                on_report(report)
    return written


def _budget_val(
    budget: float | None, int8: bool, val: str | None, class_map: Mapping[str, str] | None
) -> Dataset | None:
    """The val dataset of an ``--int8-budget`` export (``None`` without a budget); checked before any work."""
    if budget is None:
        return None
    if not int8:
        raise ValueError("--int8-budget applies to int8 models: add --int8 (and --calib DATA)")
    if not val:
        raise ValueError("--int8-budget needs labelled val data to judge accuracy: give --val DATA (a dataset spec)")
    check_budget(budget)
    from edgedet.edge.datasets.spec import load_dataset

    dataset = load_dataset(val, class_map=dict(class_map) if class_map else None)
    if not len(dataset):
        raise ValueError(f"--val {val}: no labelled image to judge the int8 budget on")
    return dataset


def _apply_budget(
    onnx_path: Path, written: dict[str, Path], calib_nchw: Any, val: Dataset, budget: float, show: bool
) -> list[BudgetResult]:
    """Replace the int8 files in ``written`` by their mixed-precision versions; one result per path."""
    results = []
    if "onnx_int8" in written:
        results.append(ort_budget(onnx_path, written["onnx_int8"], calib_nchw, val, budget, show_progress=show))
    if "tflite_int8_float_io" in written:
        outs = {io: written[key] for key, io in INT8_IO.items() if key in written}
        plain = written["tflite_int8_float_io"]
        results.append(tflite_budget(onnx_path, outs, plain, calib_nchw, val, budget, show_progress=show))
    for result in results:
        (log.info if result.met else log.warning)("int8 budget: %s", result.line())
    return results


_BUDGET_FILES = {"onnxruntime": ("onnx_int8",), "litert": INT8_VARIANTS}  # the files each budget search chose


def accept_budgeted(report: ParityReport, results: Sequence[BudgetResult]) -> None:
    """Pass the int8 parity rows that failed on detection recall alone where the budget search chose the file
    and scored it on labelled val within the budget: that is the stronger check. A calibration method other
    than MinMax clips ranges and moves detections (the BCCD CenterNet's entropy-calibrated ORT file: 93 %
    recall against float, and +2.2 AP50 points on val)."""
    for result in results:
        if not result.met:
            continue
        for row in report.rows:
            if row.name in _BUDGET_FILES[result.runtime] and not row.passed and not row.exact and row.steps_p99 is None:
                row.passed = True
                row.note = f"{row.note}; accepted: within the {result.budget_points:g}-point AP50 budget on val"


def _publish_budget(results: Sequence[BudgetResult], out_dir: Path) -> None:
    text = budget_markdown(results)
    (out_dir / "int8_budget.md").write_text(text, encoding="utf-8")
    payload = [r.to_dict() for r in results]
    (out_dir / "int8_budget.json").write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    for result in results:
        print(result.line())


def _publish(report: ParityReport, out_dir: Path) -> None:
    table = report.table()
    (out_dir / "parity.txt").write_text(table + "\n", encoding="utf-8")
    print(table)
    if not report.passed:
        failed = ", ".join(r.name for r in report.rows if not r.passed)
        log.warning("parity check failed for: %s (see %s)", failed, out_dir / "parity.txt")


def cli(args: argparse.Namespace) -> int:
    """``edgedet export``; exit status 0, or 3 when a parity check failed (the files are still written)."""
    from edgedet.edge.eval.evaluate import parse_class_map

    reports: list[ParityReport] = []
    budgets: list[BudgetResult] = []
    written = export_all(
        args.checkpoint,
        args.out,
        formats=parse_formats(args.formats),
        int8=bool(args.int8),
        calib=args.calib,
        calib_images=int(args.calib_images),
        parity=not args.no_parity,
        boxes_in_graph=bool(args.boxes_in_graph),
        peaks=bool(args.peaks),
        calib_method=args.calib_method,
        on_report=reports.append,
        int8_budget=args.int8_budget,
        val=args.val,
        val_class_map=parse_class_map(args.class_map),
        on_budget=budgets.append,
    )
    for key, path in written.items():
        print(f"{key:<22} {path}  ({path.stat().st_size / 1024:.0f} KB)")
    if any(not r.passed for r in reports):
        return 3
    if any(not b.met for b in budgets):
        print("int8 budget not met: the best model found was exported (see int8_budget.md)")
        return 4
    return 0
