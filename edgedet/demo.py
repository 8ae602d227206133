"""``edgedet demo``: the main job end to end on data the project generates itself.

Generate a synthetic dataset -> train the SSD and the CenterNet head briefly on CPU -> export and
quantise -> parity checks -> evaluate -> accuracy-vs-latency report -> run the detector over a generated
video and save an annotated copy. A stage that fails stops the demo with a non-zero status, and so does
a model that did not learn (AP50 below :data:`MIN_AP50`).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2

from edgedet.convert.export import export_all
from edgedet.edge.bench.accuracy_latency import run_bench
from edgedet.edge.datasets.synthetic import generate_synthetic, render_video
from edgedet.edge.runtime.detector import Detector
from edgedet.edge.runtime.draw import draw_detections
from edgedet.edge.runtime.media import iter_video
from edgedet.training.config import load_config
from edgedet.training.train import train

__all__ = ["DemoSettings", "cli", "run_demo"]

MIN_AP50 = 0.15  # an untrained model scores ~0.00 here; below this, training did not learn


@dataclass
class DemoSettings:
    out: Path
    images: int = 600
    val_fraction: float = 0.15
    input_size: tuple[int, int] = (160, 120)
    epochs: int = 40
    time_limit_minutes: float = 5.0
    batch_size: int = 16
    workers: int = 2
    video_frames: int = 90
    formats: tuple[str, ...] = ("onnx", "tflite")
    int8: bool = True
    quick: bool = False

    @classmethod
    def quick_settings(cls, out: Path) -> DemoSettings:
        """Tiny sizes: proves the pipeline runs, not that it learns (no AP gate)."""
        return cls(
            out=out,
            images=24,
            epochs=1,
            time_limit_minutes=1.0,
            batch_size=8,
            workers=0,
            video_frames=6,
            formats=("onnx",),
            int8=False,
            quick=True,
        )


@dataclass
class StageResult:
    name: str
    status: str  # ok | failed
    detail: str = ""
    seconds: float = 0.0
    outputs: dict[str, Any] = field(default_factory=dict)


def _stage_data(s: DemoSettings, state: dict[str, Any]) -> dict[str, Any]:
    root = s.out / "data"
    generate_synthetic(root, s.images, size=s.input_size, seed=0, val_fraction=s.val_fraction)
    state["data_root"] = root
    return {"dataset": str(root)}


def _train_config(s: DemoSettings, head: str, state: dict[str, Any]) -> dict[str, Any]:
    root = state["data_root"]
    return load_config(
        None,
        [
            f"out={s.out / ('train_' + head)}",
            f"model.head={head}",
            f"model.input_size=[{s.input_size[0]}, {s.input_size[1]}]",
            "model.base_channel=16",
            f"data.train=voc:{root}:train",
            f"data.val=voc:{root}:val",
            f"epochs={s.epochs}",
            f"time_limit_minutes={s.time_limit_minutes}",
            f"batch_size={s.batch_size}",
            f"workers={s.workers}",
            "optimizer.name=adamw",
            "optimizer.lr=0.004",
            "optimizer.weight_decay=0.0001",
            "loss.match_iou=0.35",
            "augment.zoom_out=1.5",
            f"eval.every={max(1, s.epochs)}",
        ],
    )


def _stage_train(head: str) -> Callable[[DemoSettings, dict[str, Any]], dict[str, Any]]:
    def run(s: DemoSettings, state: dict[str, Any]) -> dict[str, Any]:
        summary = train(_train_config(s, head, state))
        ap50 = summary["metrics"].get("AP50", -1.0)
        state.setdefault("checkpoints", {})[head] = summary["last"]
        state.setdefault("ap50", {})[head] = ap50
        if not s.quick and ap50 < MIN_AP50:
            raise RuntimeError(
                f"the {head} model did not learn: AP50 {ap50:.3f} < {MIN_AP50} on the synthetic val split"
            )
        return {
            "checkpoint": summary["last"],
            "AP50": ap50,
            "AP": summary["metrics"].get("AP", -1.0),
            "epochs": summary["epochs_run"],
            "minutes": round(summary["wall_s"] / 60, 2),
        }

    return run


def _stage_export(s: DemoSettings, state: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for head, ckpt in state.get("checkpoints", {}).items():
        out[head] = export_all(
            ckpt,
            s.out / "models" / head,
            formats=s.formats,
            int8=s.int8,
            calib=f"voc:{state['data_root']}:train" if s.int8 else None,
        )
    state["exported"] = out
    return out


def _stage_report(s: DemoSettings, state: dict[str, Any]) -> dict[str, Any]:
    models = [p for files in state["exported"].values() for p in files.values()]
    return run_bench(models, data=f"voc:{state['data_root']}:val", out=s.out / "report")


def _stage_video(s: DemoSettings, state: dict[str, Any]) -> dict[str, Any]:
    ckpts = state["checkpoints"]
    exported = state.get("exported", {}).get("ssd", {})
    # the file a device would run: int8 TFLite when there is one, else ONNX, else the checkpoint
    model = next((exported[k] for k in ("tflite_int8", "onnx") if k in exported), None) or ckpts.get("ssd")
    model = model or next(iter(ckpts.values()))
    video = s.out / "video" / "input.avi"
    video.parent.mkdir(parents=True, exist_ok=True)
    render_video(video, frames=s.video_frames, size=s.input_size, seed=1)
    detector = Detector.from_model(model)
    annotated = s.out / "video" / "annotated.avi"
    writer = cv2.VideoWriter(str(annotated), cv2.VideoWriter_fourcc(*"MJPG"), 15.0, s.input_size)
    frames = found = 0
    for _, frame in iter_video(video):
        dets = detector.detect(frame)
        frames += 1
        found += len(dets)
        writer.write(draw_detections(frame, dets))
    writer.release()
    return {
        "model": str(model),
        "input": str(video),
        "annotated": str(annotated),
        "frames": frames,
        "detections": found,
    }


STAGES: tuple[tuple[str, Callable[[DemoSettings, dict[str, Any]], dict[str, Any]]], ...] = (
    ("generate synthetic dataset", _stage_data),
    ("train SSD", _stage_train("ssd")),
    ("train CenterNet", _stage_train("centernet")),
    ("export + quantise + parity", _stage_export),
    ("accuracy-vs-latency report", _stage_report),
    ("detector on a generated video", _stage_video),
)


def run_demo(settings: DemoSettings, log: Callable[[str], None] = print) -> list[StageResult]:
    settings.out.mkdir(parents=True, exist_ok=True)
    state: dict[str, Any] = {}
    results: list[StageResult] = []
    for name, stage in STAGES:
        log(f"== {name}")
        t0 = time.monotonic()
        try:
            outputs = stage(settings, state)
            results.append(StageResult(name, "ok", "", time.monotonic() - t0, outputs))
        except Exception as exc:
            results.append(StageResult(name, "failed", f"{type(exc).__name__}: {exc}", time.monotonic() - t0))
            log(f"   FAILED: {type(exc).__name__}: {exc}")
            break
    summary = [
        {"stage": r.name, "status": r.status, "detail": r.detail, "seconds": round(r.seconds, 1), "outputs": r.outputs}
        for r in results
    ]
    (settings.out / "demo_summary.json").write_text(json.dumps(summary, indent=2, default=str))
    return results


def _shown(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def cli(args: argparse.Namespace) -> int:
    out = Path(args.out)
    settings = DemoSettings.quick_settings(out) if args.quick else DemoSettings(out=out)
    t0 = time.monotonic()
    results = run_demo(settings)
    print("\nedgedet demo — summary")
    for r in results:
        print(f"  {r.status:8s} {r.name:32s} {r.seconds:7.1f} s  {r.detail}")
        for key, value in r.outputs.items():
            if isinstance(value, dict):  # e.g. the exported files of one head, one per line
                print(f"           {key}:")
                for name, item in value.items():
                    print(f"             {name}: {_shown(item)}")
            else:
                print(f"           {key}: {_shown(value)}")
    print(
        f"  total {(time.monotonic() - t0) / 60:.1f} min; everything is under {out}/ "
        f"(summary: {out / 'demo_summary.json'})"
    )
    return 1 if any(r.status == "failed" for r in results) else 0
