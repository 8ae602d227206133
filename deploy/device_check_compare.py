#!/usr/bin/env python3
"""Compare arm64 detections with the x86 reference for ``deploy/device-check.sh``.

Standalone: needs only Python 3.10+ and numpy (no edgedet import), so it runs with any Python that has
numpy.

    python3 deploy/device_check_compare.py --summary summary.json \\
        --group in_ "input-size" --group photo_ "photos" \\
        --case "onnx fp32" x86/onnx_fp32.json arm/onnx_fp32.json \\
        --case "tflite int8" x86/tflite_int8.json arm/tflite_int8.json --threshold "tflite int8" 0.7 \\
        --events "camera tflite int8" x86/tflite_int8.json arm/events.jsonl \\
        --allow "* photos" 0.05 0.9 "OpenCV's INTER_LINEAR resize rounds differently on NEON" \\
        --resize-probe x86/resize.npz arm/resize.npz --bench arm/bench/report.json

``--case``: two ``edgedet detect --json`` files (a list of ``{"image", "width", "height",
"detections": [{"box", "score", "class_id", "label"}]}``); images are paired by file name.
``--events``: a reference ``detect --json`` file and the daemon's JSON-lines events (those of
``"type": "detections"``, or without a type; others are left out); an event's ``source_position``
is the index of its image in the folder in name order (the reference's file names, sorted).
``--group PREFIX LABEL``: images whose name starts with PREFIX make the row "NAME · LABEL" (images in
no group are left out). Per image: the same number of detections, paired greedily by IoU
within a class; every pair must have IoU >= ``--iou`` (0.98) and |score difference| <= ``--score-tol``
(1e-3), or the looser criteria of the first ``--allow`` whose pattern (fnmatch) matches the row's
name: a kernel that legitimately differs, named in the reason. A detection without a partner whose
score lies within the tolerance of the model's score threshold (``--threshold NAME SCORE``) is
"borderline": reported, not a failure. ``--resize-probe``: ``.npz`` files of the same photos resized
on each side (keys ``IMAGE|INTERPOLATION``), reported as information. ``--bench``: an ``edgedet bench
report`` JSON that must hold a row for every model (``--bench-models``) and no errors.

Prints the table, writes ``--summary`` (JSON, with ``--meta``'s object as ``run``) and exits 0 when
every row matches, 1 otherwise (a missing or unreadable file is a failed row).
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import math
import os
import sys
from typing import Any

import numpy as np

IOU_MIN = 0.98
SCORE_TOL = 1e-3


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in ``a`` (N, 4: x1, y1, x2, y2) with every box in ``b`` (M, 4)."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(union > 0, inter / union, np.where(np.all(a[:, None] == b[None, :], axis=2), 1.0, 0.0))
    return out


def match(ref: list[dict[str, Any]], got: list[dict[str, Any]]) -> tuple[list[tuple[int, int, float]], list, list]:
    """Greedy pairing by IoU (highest first) within a class: ``(pairs (i, j, iou), unmatched ref, unmatched got)``."""
    a = np.asarray([d["box"] for d in ref], dtype=np.float64).reshape(-1, 4)
    b = np.asarray([d["box"] for d in got], dtype=np.float64).reshape(-1, 4)
    ious = iou_matrix(a, b)
    if ious.size:
        same = np.asarray([[r.get("class_id") == g.get("class_id") for g in got] for r in ref], dtype=bool)
        ious = np.where(same, ious, -1.0)
    pairs: list[tuple[int, int, float]] = []
    used_r: set[int] = set()
    used_g: set[int] = set()
    if ious.size:
        order = np.dstack(np.unravel_index(np.argsort(-ious, axis=None), ious.shape))[0]
        for i, j in order:
            if ious[i, j] <= 0 or i in used_r or j in used_g:
                continue
            pairs.append((int(i), int(j), float(ious[i, j])))
            used_r.add(int(i))
            used_g.add(int(j))
    unmatched_r = [ref[i] for i in range(len(ref)) if i not in used_r]
    unmatched_g = [got[j] for j in range(len(got)) if j not in used_g]
    return pairs, unmatched_r, unmatched_g


class Case:
    """The running statistics of one row: a model (or the camera events) on one group of images."""

    def __init__(self, name: str, kind: str, iou_min: float, score_tol: float, allow: Allowance | None):
        self.name, self.kind = name, kind
        self.strict_iou, self.strict_tol = iou_min, score_tol
        self.iou_min = min(iou_min, allow.iou_min) if allow else iou_min
        self.tol = max(score_tol, allow.score_tol) if allow else score_tol
        self.allow_reason = allow.reason if allow else None
        self.threshold: float | None = None
        self.seen: set[str] = set()
        self.frames = 0
        self.ref_dets = 0
        self.got_dets = 0
        self.count_mismatch: list[str] = []
        self.borderline: list[str] = []
        self.min_iou = math.inf
        self.max_score_diff = 0.0
        self.over_strict = 0  # pairs beyond the strict criteria (only possible under an allowance)
        self.bad_pairs: list[str] = []
        self.problems: list[str] = []

    @property
    def images(self) -> int:
        return len(self.seen)

    def add_image(self, image: str, label: str, ref: list[dict[str, Any]], got: list[dict[str, Any]]) -> None:
        self.seen.add(image)
        self.frames += 1
        self.ref_dets += len(ref)
        self.got_dets += len(got)
        pairs, lost, extra = match(ref, got)
        for i, j, iou in pairs:
            diff = abs(float(ref[i]["score"]) - float(got[j]["score"]))
            self.min_iou = min(self.min_iou, iou)
            self.max_score_diff = max(self.max_score_diff, diff)
            if diff > self.strict_tol or iou < self.strict_iou:
                self.over_strict += 1
            if iou < self.iou_min or diff > self.tol:
                self.bad_pairs.append(
                    f"{label}: box {np.round(ref[i]['box'], 1).tolist()} IoU {iou:.4f}, "
                    f"score {ref[i]['score']:.5f} vs {got[j]['score']:.5f}"
                )
        for side, dets in (("only on x86", lost), ("only on arm64", extra)):
            for d in dets:
                text = f"{label}: {side}: score {float(d['score']):.5f} box {np.round(d['box'], 1).tolist()}"
                if self.threshold is not None and abs(float(d["score"]) - self.threshold) <= self.tol:
                    self.borderline.append(text + f" (within {self.tol:g} of the threshold {self.threshold:g})")
                else:
                    self.count_mismatch.append(text)

    @property
    def ok(self) -> bool:
        return not (self.count_mismatch or self.bad_pairs or self.problems) and self.images > 0

    def status(self) -> str:
        if self.problems:
            return "FAILED"
        if self.images == 0:
            return "NO DATA"
        if not self.ok:
            return "MISMATCH"
        return "ok (allowance)" if self.over_strict else "ok"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "status": self.status(),
            "ok": self.ok,
            "images": self.images,
            "frames": self.frames,
            "detections_x86": self.ref_dets,
            "detections_arm64": self.got_dets,
            "min_iou": None if self.min_iou == math.inf else round(self.min_iou, 6),
            "max_score_diff": round(self.max_score_diff, 7),
            "criteria": {"iou_min": self.strict_iou, "score_tol": self.strict_tol},
            "allowance": (
                {"iou_min": self.iou_min, "score_tol": self.tol, "reason": self.allow_reason}
                if self.allow_reason
                else None
            ),
            "pairs_beyond_strict": self.over_strict,
            "threshold": self.threshold,
            "count_mismatches": self.count_mismatch[:50],
            "borderline": self.borderline[:50],
            "bad_pairs": self.bad_pairs[:50],
            "problems": self.problems,
        }


class Allowance:
    """Looser criteria for rows whose name matches ``pattern`` (fnmatch), with the reason."""

    def __init__(self, pattern: str, score_tol: str, iou_min: str, reason: str):
        self.pattern, self.score_tol, self.iou_min, self.reason = pattern, float(score_tol), float(iou_min), reason


class Rows:
    """The rows of the table: one per (case, image group), created on first use, in order."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.groups: list[tuple[str, str]] = [tuple(g) for g in args.group]
        self.allow = [Allowance(*a) for a in args.allow]
        self.thresholds = {name: float(t) for name, t in args.threshold}
        self.rows: dict[str, Case] = {}

    def group_of(self, image: str) -> str | None:
        """The group label of ``image`` (``""`` without groups; ``None``: in no group, left out)."""
        if not self.groups:
            return ""
        return next((label for prefix, label in self.groups if image.startswith(prefix)), None)

    def row(self, case: str, kind: str, group: str) -> Case:
        name = f"{case} · {group}" if group else case
        if name not in self.rows:
            allow = next((a for a in self.allow if fnmatch.fnmatchcase(name, a.pattern)), None)
            row = Case(name, kind, self.args.iou, self.args.score_tol, allow)
            row.threshold = self.thresholds.get(case)
            self.rows[name] = row
        return self.rows[name]

    def declare(self, case: str, kind: str) -> list[Case]:
        """Every row of ``case`` (so that a group without data shows as NO DATA, not nothing)."""
        return [self.row(case, kind, label) for label in ([g[1] for g in self.groups] or [""])]


def load_json(path: str) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def by_name(records: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    return {os.path.basename(r["image"]): r.get("detections", []) for r in records}


def compare_case(rows: Rows, name: str, ref_path: str, got_path: str) -> None:
    declared = rows.declare(name, "detect")
    try:
        ref, got = by_name(load_json(ref_path)), by_name(load_json(got_path))
    except FileNotFoundError as exc:
        declared[0].problems.append(f"missing: {exc.filename}")
        return
    if set(ref) != set(got):
        declared[0].problems.append(f"different images: x86 {sorted(ref)} vs arm64 {sorted(got)}")
    for image in sorted(set(ref) & set(got)):
        group = rows.group_of(image)
        if group is not None:
            rows.row(name, "detect", group).add_image(image, image, ref[image], got[image])


def compare_events(rows: Rows, name: str, ref_path: str, events_path: str) -> None:
    declared = rows.declare(name, "events")
    try:
        ref = by_name(load_json(ref_path))
        lines = open(events_path, encoding="utf-8").read().splitlines()
    except FileNotFoundError as exc:
        declared[0].problems.append(f"missing: {exc.filename}")
        return
    names = sorted(ref)
    frames = 0
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        event = json.loads(line)
        if event.get("type", "detections") != "detections" or "detections" not in event:
            continue  # other kinds of event (tracking: new/update/end) carry no frame's detections
        pos = event.get("source_position")
        if not isinstance(pos, int) or not 0 <= pos < len(names):
            declared[0].problems.append(f"line {lineno}: source_position {pos!r} is not an image of the folder")
            continue
        frames += 1
        image = names[pos]
        group = rows.group_of(image)
        if group is not None:
            label = f"frame {event.get('frame_index')} ({image})"
            rows.row(name, "events", group).add_image(image, label, ref[image], event["detections"])
    if not frames:
        declared[0].problems.append(f"{events_path}: no events")


def resize_probe(x86_path: str, arm_path: str) -> list[dict[str, Any]]:
    """Per interpolation: how the arm64 resize of the same photos differs from x86's (information)."""
    out: list[dict[str, Any]] = []
    with np.load(x86_path) as a, np.load(arm_path) as b:
        interps = sorted({k.split("|")[1] for k in a.files})
        for interp in interps:
            keys = sorted(k for k in a.files if k.endswith("|" + interp))
            diff_px = total_px = max_diff = 0
            missing = [k for k in keys if k not in b.files]
            for k in keys:
                if k in b.files:
                    d = np.abs(a[k].astype(np.int16) - b[k].astype(np.int16))
                    diff_px += int(np.count_nonzero(d.max(axis=-1) if d.ndim == 3 else d))
                    total_px += int(d.shape[0] * d.shape[1])
                    max_diff = max(max_diff, int(d.max()))
            out.append(
                {
                    "interpolation": interp,
                    "images": len(keys) - len(missing),
                    "pixels_differing": diff_px,
                    "fraction_differing": round(diff_px / total_px, 5) if total_px else None,
                    "max_abs_diff": max_diff,
                    "status": "missing" if missing or not keys else ("identical" if diff_px == 0 else "differs"),
                }
            )
    return out


def check_bench(path: str, expect: int | None) -> dict[str, Any]:
    report = load_json(path)
    rows, errors = report.get("results", []), report.get("errors", [])
    models = sorted({r["name"] for r in rows})
    ok = bool(rows) and not errors and (expect is None or len(models) >= expect)
    return {
        "name": "bench report",
        "kind": "bench",
        "status": "ok" if ok else "FAILED",
        "ok": ok,
        "models": models,
        "rows": [
            {
                "name": r["name"],
                "kind": r.get("kind"),
                "threads": r.get("threads"),
                "backend_median_ms": (r.get("latency_ms") or {}).get("median"),
                "frame_ms": r.get("frame_ms"),
            }
            for r in rows
        ],
        "errors": errors,
        "cpu": (report.get("machine") or {}).get("cpu"),
        "runs": (report.get("settings") or {}).get("runs"),
    }


def fmt(x: float | None, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def table(cases: list[dict[str, Any]], bench: dict[str, Any] | None, probe: list[dict[str, Any]] | None) -> str:
    head = ("check", "images", "dets x86", "dets arm64", "min IoU", "max |dscore|", "result")
    rows: list[tuple[str, ...]] = [head]
    for c in cases:
        images = str(c["images"]) + (f" ({c['frames']} frames)" if c["kind"] == "events" else "")
        rows.append(
            (
                c["name"],
                images,
                str(c["detections_x86"]),
                str(c["detections_arm64"]),
                fmt(c["min_iou"], ".4f"),
                fmt(c["max_score_diff"], ".2e"),
                c["status"],
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = []
    for k, r in enumerate(rows):
        lines.append("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    for p in probe or []:
        lines.append(
            f"OpenCV resize {p['interpolation']}: {p['status']} on {p['images']} photo(s)"
            + (
                f" ({100 * p['fraction_differing']:.1f}% of pixels, at most {p['max_abs_diff']} level(s))"
                if p["status"] == "differs"
                else ""
            )
        )
    if bench is not None:
        timed = ", ".join(f"{r['name']} {r['threads']}t {fmt(r['backend_median_ms'], '.0f')} ms" for r in bench["rows"])
        lines.append(
            f"bench report: {bench['status']}, {len(bench['models'])} model(s) ({timed}; emulated, not timings)"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--case", nargs=3, action="append", default=[], metavar=("NAME", "X86_JSON", "ARM_JSON"))
    p.add_argument("--events", nargs=3, action="append", default=[], metavar=("NAME", "X86_JSON", "EVENTS_JSONL"))
    p.add_argument("--group", nargs=2, action="append", default=[], metavar=("PREFIX", "LABEL"))
    p.add_argument(
        "--allow", nargs=4, action="append", default=[], metavar=("PATTERN", "SCORE_TOL", "IOU_MIN", "REASON")
    )
    p.add_argument("--threshold", nargs=2, action="append", default=[], metavar=("NAME", "SCORE_THRESHOLD"))
    p.add_argument("--resize-probe", nargs=2, metavar=("X86_NPZ", "ARM_NPZ"))
    p.add_argument("--bench", metavar="REPORT_JSON")
    p.add_argument("--bench-models", type=int, default=None, help="models the bench report must hold")
    p.add_argument("--iou", type=float, default=IOU_MIN)
    p.add_argument("--score-tol", type=float, default=SCORE_TOL)
    p.add_argument("--summary", metavar="JSON")
    p.add_argument("--meta", metavar="JSON", help="a JSON object stored as the summary's 'run' (timings, versions)")
    p.add_argument("--details", type=int, default=5, help="problem lines printed per row")
    args = p.parse_args(argv)

    rows = Rows(args)
    for kind, items in (("detect", args.case), ("events", args.events)):
        for name, ref, got in items:
            try:
                (compare_case if kind == "detect" else compare_events)(rows, name, ref, got)
            except (ValueError, KeyError, TypeError, OSError) as exc:
                rows.declare(name, kind)[0].problems.append(f"unreadable: {type(exc).__name__}: {exc}")
    bench = None
    if args.bench:
        try:
            bench = check_bench(args.bench, args.bench_models)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            bench = {"name": "bench report", "kind": "bench", "status": "FAILED", "ok": False, "rows": []}
            bench.update({"models": [], "errors": [f"{type(exc).__name__}: {exc}"]})
    probe = None
    if args.resize_probe:
        try:
            probe = resize_probe(*args.resize_probe)
        except (OSError, ValueError) as exc:
            probe = [{"interpolation": "?", "status": f"unreadable: {exc}", "images": 0}]

    dicts = [c.to_dict() for c in rows.rows.values()]
    text = table(dicts, bench, probe)
    print(text)
    for c in dicts:
        if c["allowance"] and c["pairs_beyond_strict"]:
            a = c["allowance"]
            print(
                f"  {c['name']}: {c['pairs_beyond_strict']} pair(s) beyond IoU {c['criteria']['iou_min']:g} / "
                f"score {c['criteria']['score_tol']:g}, within the allowance (IoU {a['iou_min']:g}, score "
                f"{a['score_tol']:g}): {a['reason']}"
            )
        for key in ("problems", "count_mismatches", "bad_pairs", "borderline"):
            for line in c[key][: args.details]:
                print(f"  {c['name']}: {key.replace('_', ' ')}: {line}")
    if bench is not None:
        for err in bench["errors"][: args.details]:
            print(f"  bench report: error: {err}")
    ok = bool(dicts) and all(c["ok"] for c in dicts) and (bench is None or bench["ok"])
    meta = None
    if args.meta:
        try:
            meta = load_json(args.meta)
        except (OSError, ValueError) as exc:
            meta = {"error": f"{args.meta}: {exc}"}
    summary = {
        "ok": ok,
        "run": meta,
        "criteria": {"iou_min": args.iou, "score_tol": args.score_tol},
        "cases": dicts,
        "resize_probe": probe,
        "bench": bench,
        "table": text,
    }
    if args.summary:
        with open(args.summary, "w", encoding="utf-8") as f:
            json.dump(summary, f, indent=1)
            f.write("\n")
    print("result: " + ("every check matches x86" if ok else "MISMATCH (see above)"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
