"""The accuracy-vs-latency report files: ``report.json``, ``report.csv`` and ``report.md``, and the
Pareto front they mark.

A result row is a dict (the JSON schema, one per model file and thread count)::

    {"name", "model", "head", "input", "runtime", "precision", "kind", "threads",
     "size_kb", "params", "mflops",
     "latency_ms": {"median", "p90", "min", "runs", "warmup"},   # backend.run alone
     "frame_ms", "frame_p90_ms", "stages_ms": {"preprocess", "inference", "decode"},  # Detector.detect
     "AP50", "AP", "pareto"}

Values that could not be computed are ``null`` in JSON and ``n/a`` in the CSV and Markdown.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["CSV_COLUMNS", "flat_row", "pareto_front", "write_csv", "write_json", "write_markdown"]

NA = "n/a"
PARETO_X = "frame_ms"  # end-to-end frame time: what a device sees
PARETO_Y = "AP50"

CSV_COLUMNS = (
    "name",
    "model",
    "head",
    "input",
    "runtime",
    "precision",
    "threads",
    "size_kb",
    "params",
    "mflops",
    "latency_median_ms",
    "latency_p90_ms",
    "latency_min_ms",
    "frame_ms",
    "frame_p90_ms",
    "preprocess_ms",
    "inference_ms",
    "decode_ms",
    "AP50",
    "AP",
    "pareto",
)


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def pareto_front(points: Sequence[tuple[float | None, float | None]]) -> list[int]:
    """Indices of the points ``(cost, value)`` that no other point beats: none has a cost as low and a
    value as high with one of them strictly better. Lower cost (latency) and higher value (AP50) are
    better; points with a missing or non-finite coordinate are never on the front; exact duplicates of
    a front point are on it too. Returned in increasing order."""
    valid = [i for i, (x, y) in enumerate(points) if _finite(x) and _finite(y)]
    valid.sort(key=lambda i: (points[i][0], -points[i][1]))  # type: ignore[operator]
    front: list[int] = []
    best: tuple[float, float] | None = None
    for i in valid:
        x, y = points[i]
        if best is None or y > best[1]:  # type: ignore[operator]
            front.append(i)
            best = (x, y)  # type: ignore[assignment]
        elif (x, y) == best:
            front.append(i)
    return sorted(front)


def mark_pareto(rows: list[dict[str, Any]]) -> list[int]:
    """Set each row's ``pareto`` flag (frame time vs AP50) and return the front's indices."""
    front = pareto_front([(r.get(PARETO_X), r.get(PARETO_Y)) for r in rows])
    for i, row in enumerate(rows):
        row["pareto"] = i in front
    return front


def flat_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """One result row with the nested timings flattened into :data:`CSV_COLUMNS`."""
    latency = row.get("latency_ms") or {}
    stages = row.get("stages_ms") or {}
    flat = dict(row)
    flat.update({f"latency_{k}_ms": latency.get(k) for k in ("median", "p90", "min")})
    flat.update({f"{k}_ms": stages.get(k) for k in ("preprocess", "inference", "decode")})
    return {k: flat.get(k) for k in CSV_COLUMNS}


def write_json(path: Path, report: Mapping[str, Any]) -> Path:
    path.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    return path


def _csv_value(value: Any) -> Any:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return NA
    if isinstance(value, float):
        return round(value, 4)
    return value


def write_csv(path: Path, rows: Sequence[Mapping[str, Any]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _csv_value(v) for k, v in flat_row(row).items()})
    return path


# --------------------------------------------------------------------------- Markdown


def _num(value: Any, digits: int = 2) -> str:
    return f"{value:.{digits}f}" if _finite(value) else NA


def _params(value: Any) -> str:
    return f"{value:,}" if _finite(value) else NA


def _mflops(value: Any) -> str:
    if not _finite(value):
        return NA
    return f"{value:.1f}" if value >= 10 else f"{value:.3g}"


def _table(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    head = (
        "| model | runtime / precision | threads | size KB | params | MFLOPs "
        "| backend ms median (p90, min) | frame ms median | AP50 | AP | Pareto |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        lat = r.get("latency_ms") or {}
        latency = f"{_num(lat.get('median'))} ({_num(lat.get('p90'))}, {_num(lat.get('min'))})"
        cells = [
            f"`{r['name']}`",
            f"{r.get('runtime', NA)} {r.get('precision', NA)}",
            str(r.get("threads", NA)),
            _num(r.get("size_kb"), 0),
            _params(r.get("params")),
            _mflops(r.get("mflops")),
            latency,
            _num(r.get("frame_ms")),
            _num(r.get("AP50"), 3),
            _num(r.get("AP"), 3),
            "**yes**" if r.get("pareto") else "",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


HOW_TO_READ = """\
## How to read it

* **backend ms**: the runtime alone (`backend.run` on an already pre-processed input) after warm-up runs;
  median of the timed runs, with the 90th percentile and the fastest run. This is what the model costs.
* **frame ms**: one whole `Detector.detect(frame)` on real frames, the code path the device runs:
  resize + normalise, inference, decode + NMS at the model's own score threshold. Median. This is what a
  camera loop pays per frame (capture and drawing not included).
* **size KB**: the file on disk. **params**: weights and biases of the convolution / matrix layers (BatchNorm
  folded). **MFLOPs**: 2 x multiply-accumulates / 1e6 of those layers for one frame (bias, activations,
  pooling, softmax and (de)quantisation not counted); a quantised model counts the same operations as its
  float twin, it just does them in cheaper arithmetic.
* **AP50 / AP**: COCO-style AP at IoU 0.5 and averaged over IoU 0.50:0.95, through the same
  `Detector` (score threshold 0.01 or the model's own if lower). The same model file gives the same AP on
  any thread count.
* **Pareto**: no other row is both as fast (frame ms) and as accurate (AP50) with one of them strictly
  better. Pick from these rows; every other row has a better choice. `pareto.png` plots them.
* Timings are medians on this machine only; another CPU (a Raspberry Pi, a Jetson) ranks runtimes
  differently, so run `edgedet bench` there. `n/a`: not computable here (e.g. a `.pt` without torch).
"""


def _machine_lines(machine: Mapping[str, Any]) -> list[str]:
    packages = machine.get("packages") or {}
    versions = ", ".join(f"{k} {v}" for k, v in packages.items() if v)
    cores = f"{machine.get('cores')} cores ({machine.get('usable_cores')} usable)"
    return [
        f"* CPU: {machine.get('cpu')} ({machine.get('arch')}), {cores}, {machine.get('memory_gb')} GB RAM",
        f"* OS: {machine.get('os')}; Python {machine.get('python')}",
        f"* packages: {versions}",
    ]


def write_markdown(path: Path, report: Mapping[str, Any]) -> Path:
    """``report.md``: settings and machine, the table, how to read it, errors."""
    s = report["settings"]
    rows = report["results"]
    lines = [
        "# edgedet accuracy-vs-latency report",
        "",
        f"{len({r['model'] for r in rows})} model file(s) on {', '.join(map(str, s['threads']))} thread(s); "
        f"{s['runs']} timed runs after {s['warmup']} warm-up runs each; frames: {s['frames']}; "
        f"accuracy data: {s['data'] or 'none (no AP)'}. Generated {report['created']}.",
        "",
        *_machine_lines(report["machine"]),
        "",
        *_table(rows),
        "",
        HOW_TO_READ,
    ]
    if report.get("summary"):
        lines[3:3] = ["", f"**Summary**: {report['summary']}"]
    errors = report.get("errors") or []
    if errors:
        lines += ["## Problems", ""]
        lines += [f"* `{e['name']}` ({e.get('stage', '')}): {e['error']}" for e in errors]
        lines.append("")
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
