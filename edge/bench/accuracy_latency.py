"""``edgedet bench``: the accuracy-vs-latency report over model files.

    edgedet bench --models m.onnx m_int8.onnx m_int8.tflite --data voc:data/shapes:val --out report/

For every model file (``.onnx``, ``.tflite``, ``.pt``, any mix) and thread count (default: 1 and all
cores): the backend's latency (warm-up, then at least 50 timed runs: median, p90, min), the end-to-end
frame time through :class:`edgedet.edge.runtime.detector.Detector` (pre-processing, inference, decoding + NMS: median),
size on disk, params and MFLOPs from the graph (:mod:`edgedet.edge.bench.model_stats`), and with ``--data`` AP50
and AP through the same detector (:func:`edgedet.edge.eval.evaluate.evaluate_detector`). Writes ``report.md``,
``report.json``, ``report.csv`` and ``pareto.png`` into ``--out``. Needs only the ``edge`` extra: torch is
imported only for a ``.pt`` model, matplotlib and tqdm only when installed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from edgedet.edge.bench.latency import frame_timings, time_backend, warmup_runs
from edgedet.edge.bench.machine_info import machine_info
from edgedet.edge.bench.model_stats import model_stats
from edgedet.edge.bench.pareto_plot import write_pareto_plot
from edgedet.edge.bench.report import mark_pareto, write_csv, write_json, write_markdown
from edgedet.edge.core.model_spec import ModelSpec
from edgedet.edge.datasets.sample import Dataset
from edgedet.edge.eval.evaluate import EVAL_SCORE_THRESHOLD, evaluate_detector
from edgedet.edge.runtime.backends import SUFFIXES, default_threads
from edgedet.edge.runtime.backends.base import failure_reason
from edgedet.edge.runtime.detector import Detector

__all__ = ["MIN_RUNS", "cli", "default_thread_counts", "parse_threads", "run_bench", "short_names"]

MIN_RUNS = 50
_REASON_LIMIT = 400  # characters of an exception's message kept in the report
MAX_FRAMES = 16  # real frames cycled through by the timing loops
GENERATED_FRAME_SIZE = (640, 480)  # a camera-sized frame when no --data is given


def default_thread_counts() -> list[int]:
    """1 and all usable cores (just ``[1]`` on a single core)."""
    return sorted({1, default_threads()})


def parse_threads(text: str | Sequence[int] | None) -> list[int]:
    """``"1,4"`` -> ``[1, 4]``; ``None`` -> :func:`default_thread_counts`."""
    if text is None or text == "":
        return default_thread_counts()
    items = text.split(",") if isinstance(text, str) else list(text)
    try:
        counts = [int(str(v).strip()) for v in items if str(v).strip()]
    except ValueError:
        counts = []
    if not counts or any(c < 1 for c in counts):
        raise ValueError(f"--threads: expected a comma list of positive integers such as 1,4, got {text!r}")
    return list(dict.fromkeys(counts))


def short_names(paths: Sequence[Path]) -> list[str]:
    """The fewest trailing path parts that tell the files apart: ``ssd/last.onnx``, ``centernet/last.onnx``."""
    longest = max((len(p.parts) for p in paths), default=1)
    for n in range(1, longest + 1):
        names = ["/".join(p.parts[-n:]) for p in paths]
        if len(set(names)) == len(names):
            return names
    return [str(p) for p in paths]


def _check_models(models: Sequence[str | os.PathLike[str]]) -> list[Path]:
    paths = list(dict.fromkeys(Path(m).resolve() for m in models))
    if not paths:
        raise ValueError("--models: give at least one model file")
    for path in paths:
        if path.suffix.lower() not in SUFFIXES:
            raise ValueError(f"{path}: unknown model type {path.suffix!r}; expected one of {list(SUFFIXES)}")
        if not path.is_file():
            raise FileNotFoundError(f"model file not found: {path}")
    return paths


def _frames(dataset: Dataset | None, data: str | None) -> tuple[list[np.ndarray], str]:
    """Frames for the timing loops: the first dataset images, or generated camera-sized scenes."""
    frames = []
    for sample in (dataset.samples if dataset is not None else [])[: MAX_FRAMES * 2]:
        try:
            frames.append(sample.load_image())
        except OSError:  # evaluate_detector reports it; the timing loops just use other images
            continue
        if len(frames) == MAX_FRAMES:
            break
    if frames:
        return frames, f"{len(frames)} images of {data}"
    from edgedet.edge.datasets.synthetic_scene import render_scene

    w, h = GENERATED_FRAME_SIZE
    frames = [render_scene(np.random.default_rng(i), GENERATED_FRAME_SIZE).image for i in range(8)]
    return frames, f"{len(frames)} generated {w}x{h} scenes"


class _Progress:
    """A tqdm bar when tqdm is installed, else numbered lines."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total, self.done, self.enabled = total, 0, enabled
        self._bar: Any = None
        if enabled:
            try:
                from tqdm import tqdm

                self._bar = tqdm(total=total, unit="step", dynamic_ncols=True, leave=False, disable=None)
            except ImportError:
                pass

    def start(self, text: str) -> None:
        if self._bar is not None:
            self._bar.set_description_str(text)
        elif self.enabled:
            print(f"[{self.done + 1}/{self.total}] {text} ...", flush=True)

    def finish(self, text: str = "") -> None:
        self.done += 1
        if self._bar is not None:
            self._bar.update(1)
        if text and self.enabled:
            (self._bar.write if self._bar is not None else print)(f"  {text}")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def _row(name: str, path: Path, det: Detector, stats: dict[str, Any], threads: int) -> dict[str, Any]:
    spec = det.spec
    return {
        "name": name,
        "model": str(path),
        "head": spec.head,
        "input": f"{spec.input_width}x{spec.input_height}",
        "runtime": stats["runtime"],
        "precision": stats["precision"],
        "kind": f"{stats['runtime']} {stats['precision']}",
        "threads": threads,
        "size_kb": stats["size_kb"],
        "params": stats["params"],
        "mflops": stats["mflops"],
    }


def _bench_model(
    name: str,
    path: Path,
    threads: Sequence[int],
    frames: Sequence[np.ndarray],
    runs: int,
    dataset: Dataset | None,
    spec: ModelSpec | None,
    progress: _Progress,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The rows of one model file (one per thread count) and its problems."""
    rows: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    stats = model_stats(path).to_dict()
    detector: Detector | None = None
    for t in threads:
        progress.start(f"{name} · {t} thread(s)")
        try:
            detector = Detector.from_model(path, spec=spec, threads=t)
            row = _row(name, path, detector, stats, t)
            row["latency_ms"] = time_backend(detector, frames, runs)
            row.update(frame_timings(detector, frames, runs))
            row.update({"AP50": None, "AP": None, "pareto": False})
            rows.append(row)
            progress.finish(
                f"{name} {row['kind']} {t}t: backend {row['latency_ms']['median']:.2f} ms, "
                f"frame {row['frame_ms']:.2f} ms (medians)"
            )
        except Exception as exc:  # one bad file must not lose the others' results
            reason = failure_reason(exc, limit=_REASON_LIMIT)
            errors.append({"name": name, "model": str(path), "stage": f"timing, {t} thread(s)", "error": reason})
            progress.finish(f"{name} {t}t: FAILED {reason}")
    if dataset is not None and detector is not None and rows:
        progress.start(f"{name} · AP on {len(dataset)} images")
        try:
            threshold = min(EVAL_SCORE_THRESHOLD, detector.spec.score_threshold)
            evaluator = Detector(detector.backend, replace(detector.spec, score_threshold=threshold))
            metrics = evaluate_detector(evaluator, dataset, progress=False)
            for row in rows:
                row["AP50"], row["AP"] = float(metrics["AP50"]), float(metrics["AP"])
            progress.finish(f"{name}: AP50 {metrics['AP50']:.3f}, AP {metrics['AP']:.3f}")
        except Exception as exc:
            reason = failure_reason(exc, limit=_REASON_LIMIT)
            errors.append({"name": name, "model": str(path), "stage": "accuracy", "error": reason})
            progress.finish(f"{name}: accuracy FAILED {reason}")
    return rows, errors


def _summary(rows: Sequence[dict[str, Any]], n_models: int, threads: Sequence[int], errors: Sequence[Any]) -> str:
    if not rows:
        return f"no model could be benchmarked ({len(errors)} problem(s))"
    parts = [f"{n_models} model(s) x {'/'.join(map(str, threads))} thread(s)"]
    fastest = min(rows, key=lambda r: r["frame_ms"])
    parts.append(f"fastest frame: {fastest['name']} {fastest['threads']}t {fastest['frame_ms']:.2f} ms")
    scored = [r for r in rows if r.get("AP50") is not None]
    if scored:
        best = max(scored, key=lambda r: (r["AP50"], -r["frame_ms"]))
        parts.append(f"best AP50: {best['name']} {best['AP50']:.3f}")
        front = [f"{r['name']} {r['threads']}t" for r in rows if r.get("pareto")]
        parts.append(f"Pareto: {', '.join(front)}")
    if errors:
        parts.append(f"{len(errors)} problem(s), see report.md")
    return "; ".join(parts)


def run_bench(
    models: Sequence[str | os.PathLike[str]],
    data: str | None = None,
    out: str | os.PathLike[str] = "report",
    threads: str | Sequence[int] | None = None,
    runs: int = MIN_RUNS,
    *,
    spec: ModelSpec | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Benchmark ``models`` and write the report into ``out``.

    Returns ``report_md``, ``report_json``, ``report_csv``, ``pareto_png`` (``None`` when skipped, with
    the reason in ``notes``), ``summary`` (one line) and ``problems`` (how many steps failed). A model that
    fails is reported and the others go on; ``RuntimeError`` when none could be timed.
    """
    from edgedet.edge.datasets.spec import load_dataset

    if runs < MIN_RUNS:
        raise ValueError(f"--runs: expected at least {MIN_RUNS} timed runs, got {runs}")
    paths = _check_models(models)
    counts = parse_threads(threads)
    dataset = load_dataset(data) if data else None
    if dataset is not None and len(dataset.report):
        log(dataset.report.summary())
    frames, frames_text = _frames(dataset, data)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    names = short_names(paths)
    steps = len(paths) * (len(counts) + (1 if dataset is not None else 0))
    bar = _Progress(steps, progress)
    rows: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    try:
        for name, path in zip(names, paths, strict=True):
            model_rows, model_errors = _bench_model(name, path, counts, frames, runs, dataset, spec, bar)
            rows += model_rows
            errors += model_errors
    finally:
        bar.close()
    mark_pareto(rows)
    report: dict[str, Any] = {
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "settings": {
            "runs": runs,
            "warmup": warmup_runs(runs),
            "threads": counts,
            "data": data,
            "frames": frames_text,
            "eval_score_threshold": EVAL_SCORE_THRESHOLD,
            "pareto": "frame_ms (lower is better) vs AP50 (higher is better)",
        },
        "summary": _summary(rows, len(paths), counts, errors),
        "results": rows,
        "errors": errors,
    }
    result: dict[str, Any] = {
        "report_md": write_markdown(out / "report.md", report),
        "report_json": write_json(out / "report.json", report),
        "report_csv": write_csv(out / "report.csv", rows),
    }
    why_not = write_pareto_plot(out / "pareto.png", rows, title=f"accuracy vs latency — {report['machine']['cpu']}")
    result["pareto_png"] = None if why_not else out / "pareto.png"
    if why_not:
        log(f"pareto.png skipped: {why_not}")
        result["notes"] = f"pareto.png skipped: {why_not}"
    result["summary"] = report["summary"]
    result["problems"] = len(errors)
    if not rows:
        raise RuntimeError(f"no model could be benchmarked; see {out / 'report.md'}: " + errors[0]["error"])
    return result


def cli(args: argparse.Namespace) -> int:
    """``edgedet bench``; exit status 0, or 1 when any model (or its accuracy) failed."""
    from edgedet.edge.runtime.detector import load_spec

    spec_arg = getattr(args, "spec", None)
    try:
        result = run_bench(
            args.models,
            data=args.data,
            out=args.out,
            threads=args.threads,
            runs=int(args.runs),
            spec=load_spec(spec_arg) if spec_arg else None,
        )
    except RuntimeError as exc:
        print(f"edgedet bench: {exc}", file=sys.stderr)
        return 1
    print(Path(result["report_md"]).read_text(encoding="utf-8").split("## How to read it")[0].rstrip())
    print()
    for key in ("report_md", "report_json", "report_csv", "pareto_png"):
        if result.get(key):
            print(f"wrote {result[key]}")
    print(result["summary"])
    return 1 if result["problems"] else 0
