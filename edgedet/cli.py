"""The ``edgedet`` command line.

Every subcommand's arguments are declared here, so ``--help`` works everywhere without importing
anything heavy. Each subcommand names the module that implements it; that module is imported only when
the subcommand runs, so ``edgedet detect`` / ``edgedet camera`` on an ONNX or TFLite model never import
torch or TensorFlow (a test holds this).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = ["build_parser", "main"]


@dataclass(frozen=True)
class Command:
    name: str
    handler: str  # "package.module:function", imported lazily
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    subcommands: tuple[Command, ...] = ()  # e.g. `edgedet bench frame`; the first is the default


def _train(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="training YAML (model, data, optimiser, schedule, eval)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="override config keys, e.g. epochs=5")
    p.add_argument("--resume", metavar="CKPT", help="continue a run exactly from its checkpoint")
    p.add_argument("--out", metavar="DIR", help="run directory (default: from the config)")


def _eval(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="checkpoint (.pt), .onnx or .tflite")
    p.add_argument(
        "--data", required=True, help="dataset YAML or voc:ROOT[:SPLIT], coco:JSON:DIR, yolo:ROOT[:SPLIT], ..."
    )
    p.add_argument("--json", metavar="OUT", help="write the metrics (AP, AP50, images, ...) as JSON")
    p.add_argument("--score-threshold", type=float, default=None, help="default: 0.01 for mAP")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument(
        "--class-map", metavar="SRC=DST,...", default=None, help="rename dataset classes, e.g. a=face,b=face"
    )
    p.add_argument("--spec", default=None, help="spec JSON for a model without metadata, or 'ultraface[:WxH]'")
    p.add_argument(
        "--compare",
        metavar="BASE",
        default=None,
        help="also score BASE (e.g. the fp32 model) and print the AP50 / AP difference with a paired-bootstrap CI",
    )
    p.add_argument("--resamples", type=int, default=1000, help="bootstrap draws for --compare (default: 1000)")


def _export(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, help="training checkpoint (.pt)")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--formats", default="onnx", help="comma list of onnx, tflite (default: onnx)")
    p.add_argument("--int8", action="store_true", help="also write int8 models (needs --calib)")
    p.add_argument("--calib", metavar="DATA", help="calibration images: a dataset spec or an image folder")
    p.add_argument("--calib-images", type=int, default=200, help="how many calibration images")
    p.add_argument(
        "--calib-method",
        default="minmax",
        choices=("minmax", "entropy", "percentile"),
        help="ONNX Runtime activation calibration (default: minmax)",
    )
    p.add_argument("--boxes-in-graph", action="store_true", help="SSD: decode boxes inside the graph")
    p.add_argument("--peaks", action="store_true", help="CenterNet: 3x3 max-pool peak map inside the graph")
    p.add_argument("--no-parity", action="store_true", help="skip the parity checks")
    p.add_argument(
        "--int8-budget",
        type=float,
        metavar="POINTS",
        help="keep the fewest layers float that bring each int8 model within POINTS AP50 of fp32 on --val "
        "(searches the calibration method too); exit status 4 when not met",
    )
    p.add_argument("--val", metavar="DATA", help="labelled val data judging --int8-budget (a dataset spec)")
    p.add_argument("--class-map", help="rename --val classes to the model's labels, e.g. a=face,b=face")


def _int8_explain(p: argparse.ArgumentParser) -> None:
    p.add_argument("--fp32", required=True, metavar="MODEL", help="the float ONNX model (.onnx, with its spec)")
    p.add_argument(
        "--int8", required=True, metavar="MODEL", help="its int8 copy (edgedet export --int8): QDQ .onnx or .tflite"
    )
    p.add_argument("--images", required=True, metavar="DATA", help="dataset spec or image folder to compare on")
    p.add_argument("--limit", type=int, default=20, help="how many images (default: 20)")
    p.add_argument("--top-k", type=int, default=5, help="re-quantise this many worst layers alone (0: skip)")
    p.add_argument("--calib", metavar="DATA", help="the export's calibration data (default: --images)")
    p.add_argument("--calib-images", type=int, default=200, help="the export's --calib-images (default: 200)")
    p.add_argument(
        "--calib-method", default="minmax", choices=("minmax", "entropy", "percentile"), help="the export's method"
    )
    p.add_argument("--all-layers", action="store_true", help="also list the nodes left in float")
    p.add_argument("--val", metavar="DATA", help="labelled data: also AP50 with each top-k layer kept float")
    p.add_argument("--class-map", metavar="SRC=DST,...", default=None, help="rename --val classes, e.g. a=face")
    p.add_argument("--threads", type=int, default=None, help="ONNX Runtime threads")
    p.add_argument("--out", metavar="REPORT.md", help="write the table as markdown")
    p.add_argument("--json", metavar="OUT", help="write the table as JSON")
    p.add_argument("--plot", metavar="FILE.png", help="plot SQNR and local SQNR per layer (needs matplotlib)")


def _import_ultraface(p: argparse.ArgumentParser) -> None:
    p.add_argument("pth", help="UltraFace version-slim state dict (.pth)")
    p.add_argument("--out", required=True, metavar="CKPT", help="checkpoint to write (.pt)")
    p.add_argument("--input-size", default=None, metavar="WxH", help="input size, default 320x240")


def _detect(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="checkpoint (.pt), .onnx or .tflite")
    p.add_argument("sources", nargs="+", metavar="SOURCE", help="images, folders of images, or videos")
    p.add_argument("--json", metavar="OUT", help="write detections (boxes in source pixels) as JSON")
    p.add_argument("--save-dir", metavar="DIR", help="write annotated images here")
    p.add_argument("--score-threshold", type=float, default=None, help="default: the model's own")
    p.add_argument("--threads", type=int, default=None, help="inference threads (default: all cores)")
    p.add_argument("--spec", default=None, help="spec JSON for a model without metadata, or 'ultraface[:WxH]'")


def _bench(p: argparse.ArgumentParser) -> None:
    p.add_argument("--models", nargs="+", required=True, metavar="MODEL")
    p.add_argument("--data", default=None, help="dataset for AP50/mAP through the device code path")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--threads", default=None, help="comma list of thread counts (default: 1 and all cores)")
    p.add_argument("--runs", type=int, default=50, help="timed runs per model (>= 50)")
    p.add_argument("--spec", default=None, help="spec JSON for models without metadata, or 'ultraface[:WxH]'")


def _json_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print the figures as JSON too")


def _bench_decode(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="UltraFace without post-processing (.onnx / .tflite)")
    p.add_argument("--images", required=True, help="folder of photos (or one image)")
    p.add_argument("--spec", default="ultraface", help="'ultraface' (320x240) or 'ultraface:WxH', e.g. 640x480")
    p.add_argument("--thresholds", type=float, nargs="+", default=[0.7, 0.3], help="score thresholds (first: target)")
    p.add_argument("--repeat", type=int, default=30, help="timed rounds over all photos")
    p.add_argument("--target-ms", type=float, default=0.3)
    p.add_argument("--target-speedup", type=float, default=5.0)
    _json_flag(p)


def _bench_frame(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help=".onnx / .tflite (spec from its metadata, or --spec)")
    p.add_argument("--spec", help="'ultraface' or a spec JSON file, for a model without metadata")
    p.add_argument("--source", help="video file, image folder or image (default: synthetic frames)")
    p.add_argument("--size", help="resize source frames to WIDTHxHEIGHT first (e.g. 640x480)")
    p.add_argument("--threads", type=int, help="inference threads (default: the runtime's)")
    p.add_argument("--seconds", type=float, default=5.0, help="timed seconds for each of the two loops")
    p.add_argument("--camera-fps", type=float, help="emulated camera rate (default: always one frame ahead)")
    p.add_argument("--live", action="store_true", help="decode --source in the capture thread (no replay)")
    p.add_argument("--no-daemon", action="store_true", help="skip the run through the real daemon loop")
    p.add_argument("--score-threshold", type=float, help="override the spec's")
    p.add_argument("--target-share", type=float, default=0.15)
    p.add_argument("--target-fps-ratio", type=float, default=0.15)
    _json_flag(p)


def _bench_compare(p: argparse.ArgumentParser) -> None:
    p.add_argument("--base", required=True, help="the reference model (e.g. the fp32 .onnx / .tflite)")
    p.add_argument("--models", nargs="+", required=True, help="models to compare with it (e.g. int8)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=40)
    p.add_argument("--runs", type=int, default=20, help="back-to-back runs per model per round")
    _json_flag(p)


def _bench_profile(p: argparse.ArgumentParser) -> None:
    p.add_argument("--models", nargs="+", required=True, help=".onnx models (e.g. fp32 and its int8 twin)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--runs", type=int, default=200)
    _json_flag(p)


def _bench_tracking(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--trackers",
        default=None,
        help="comma list of ours, norfair-frigate, norfair-iou, sv-bytetrack, trackers-bytetrack "
        "(default: all; those that do not import are skipped)",
    )
    p.add_argument("--seeds", type=int, default=5, help="synthetic videos per frame rate")
    p.add_argument("--seed-base", type=int, default=100, help="first seed (the tracker was tuned on seeds 0-5)")
    p.add_argument("--seconds", type=float, default=20.0, help="length of each video")
    p.add_argument("--fps", nargs="+", type=float, default=[5.0, 15.0, 30.0], help="frame rates")
    p.add_argument(
        "--drop", type=float, default=0.3, help="also the 15 fps videos with this fraction of frames dropped"
    )
    p.add_argument("--objects", nargs="+", type=int, default=[5, 20, 50], help="object counts of the cost streams")
    p.add_argument("--cost-seconds", type=float, default=20.0, help="length of each cost stream (15 fps)")
    p.add_argument("--rounds", type=int, default=3, help="timed rounds per tracker and stream")
    p.add_argument("--model", default=None, help="run this detector (.onnx/.tflite) on the rendered videos instead")
    p.add_argument("--threads", type=int, default=None, help="inference threads for --model")
    p.add_argument("--target-us", type=float, default=300.0)
    _json_flag(p)


def _bench_gating(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seconds", type=float, default=60.0, help="length of the synthetic video")
    p.add_argument("--fps", type=float, default=15.0, help="its frame rate")
    p.add_argument("--size", default="640x480", metavar="WxH", help="its frame size (default: 640x480)")
    p.add_argument("--still-s", type=float, default=15.0, help="length of the stretch where nothing moves")
    p.add_argument("--seed", type=int, default=100, help="the video's seed")
    p.add_argument("--no-flicker", action="store_true", help="no lighting flicker")
    p.add_argument(
        "--stationary-s",
        type=float,
        default=None,
        help="objects.stationary_s for both passes (default: the daemon's, 10): a stopped object keeps the gate "
        "open until it is stationary",
    )
    p.add_argument("--model", default=None, help="run this detector (.onnx/.tflite) on the rendered video instead")
    p.add_argument("--threads", type=int, default=None, help="inference threads for --model")
    p.add_argument("--target-still-skip", type=float, default=0.7, help="goal: share skipped on the still stretch")
    p.add_argument("--target-loss-pct", type=float, default=1.0, help="goal: track-frames lost, %% of ground truth")
    p.add_argument("--json", metavar="PATH", default=None, help="write the figures as JSON to this file")


def _bench_clips(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seconds", type=float, default=20.0, help="video-seconds fed per pass (default: 20)")
    p.add_argument("--fps", type=float, default=15.0, help="the camera's frame rate (default: 15)")
    p.add_argument("--size", default="640x480", metavar="WxH", help="frame size (default: 640x480)")
    p.add_argument("--pre-s", type=float, default=5.0, help="clips.pre_s: seconds of pre-roll (default: 5)")
    p.add_argument("--post-s", type=float, default=5.0, help="clips.post_s (default: 5)")
    p.add_argument("--quality", type=int, default=80, help="clips.jpeg_quality of the ring (default: 80)")
    p.add_argument("--seed", type=int, default=100, help="the synthetic video's seed")
    p.add_argument("--unique-s", type=float, default=10.0, help="seconds of video rendered, then looped")
    p.add_argument("--realtime", action="store_true", help="pace frames at --fps (default: accelerated)")
    p.add_argument("--dir", default=None, help="write the clips here (default: a temporary folder)")
    p.add_argument("--target-share", type=float, default=0.05, help="goal: share of a core while buffering")
    p.add_argument("--json", metavar="PATH", default=None, help="write the figures as JSON to this file")


def _bench_cameras(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model",
        default=None,
        help=".onnx / .tflite for every daemon (default: an untrained UltraFace-slim SSD at 320x240, built now; "
        "needs the train and convert extras)",
    )
    p.add_argument("--spec", default=None, help="spec JSON for a model without metadata, or 'ultraface[:WxH]'")
    p.add_argument("--cameras", type=int, default=4, help="cameras: N in one process, then N processes (default: 4)")
    p.add_argument("--seconds", type=float, default=30.0, help="measured seconds per phase (default: 30)")
    p.add_argument("--warmup", type=float, default=10.0, help="seconds run before each measurement (default: 10)")
    p.add_argument("--clients", type=int, default=10, help="MJPEG stream clients in the load phase (0: none)")
    p.add_argument("--cores", type=int, default=2, help="pin every daemon to this many CPUs (0: no pinning)")
    p.add_argument("--threads", type=int, default=None, help="inference threads per daemon (default: --cores)")
    p.add_argument("--size", default="640x480", metavar="WxH", help="the videos' frame size (default: 640x480)")
    p.add_argument("--fps", type=float, default=15.0, help="the videos' frame rate (default: 15)")
    p.add_argument("--source-fps", type=float, default=15.0, help="the daemons' source_fps (0: unpaced)")
    p.add_argument("--unique-s", type=float, default=10.0, help="seconds of video rendered per camera, looped")
    p.add_argument("--seed", type=int, default=100, help="the first camera's video seed (then +1 per camera)")
    p.add_argument("--sample-s", type=float, default=1.0, help="memory sampling period (default: 1 s)")
    p.add_argument("--target-memory", type=float, default=0.40, help="goal: one process / N processes' RSS")
    p.add_argument("--target-drop", type=float, default=0.15, help="goal: most fps lost with the stream clients")
    p.add_argument("--json", metavar="PATH", default=None, help="write the figures as JSON to this file")


def _bench_train_throughput(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default=None, help="training YAML (default: the built-in defaults)")
    p.add_argument("overrides", nargs="*", metavar="key=value")
    p.add_argument("--batches", type=int, default=30)


def _camera(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default=None, help="daemon YAML; the flags below override it")
    p.add_argument("--model", default=None)
    p.add_argument("--source", default=None, help="V4L2 index/path, GStreamer pipeline, URL, video or folder")
    p.add_argument("--http", default=None, metavar="HOST:PORT", help="serve /healthz, /metrics, ... here")
    p.add_argument("--events", default=None, metavar="FILE", help="JSON-lines events file ('-' for stdout)")
    p.add_argument("--spec", default=None, help="spec JSON for a model without metadata, or 'ultraface[:WxH]'")
    p.add_argument("--name", default=None, help="camera name (events, MQTT topics)")
    p.add_argument("--threads", type=int, default=None, help="inference threads")
    p.add_argument("--score-threshold", type=float, default=None, help="default: the model's own")
    p.add_argument("--token", default=None, help="bearer token required by the HTTP API (except /healthz)")


def _demo(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="outputs/demo", metavar="DIR", help="where everything is written")
    p.add_argument("--quick", action="store_true", help="tiny sizes, for tests: proves the pipeline, not accuracy")


COMMANDS: tuple[Command, ...] = (
    Command("train", "edgedet.training.train:cli", "train a model from a YAML config", _train),
    Command("eval", "edgedet.edge.eval.evaluate:cli", "COCO-style AP/AP50 of a model on a dataset", _eval),
    Command("export", "edgedet.convert.export:cli", "export a checkpoint to ONNX / TFLite (fp32, fp16, int8)", _export),
    Command(
        "int8-explain",
        "edgedet.convert.int8_explain:cli",
        "where int8 goes wrong: per-layer SQNR / cosine of an int8 ONNX or TFLite model against its fp32 model",
        _int8_explain,
    ),
    Command(
        "import-ultraface",
        "edgedet.training.ultraface:cli",
        "build a checkpoint from the published UltraFace slim weights",
        _import_ultraface,
    ),
    Command("detect", "edgedet.edge.runtime.detect:cli", "run a model over images, folders and videos", _detect),
    Command(
        "bench",
        "edgedet.edge.bench.accuracy_latency:cli",
        "measure: the accuracy-vs-latency report (the default: bench --models ... --out DIR), or one runtime bench",
        _bench,
        (
            Command("report", "edgedet.edge.bench.accuracy_latency:cli", "accuracy-vs-latency report", _bench),
            Command(
                "frame",
                "edgedet.edge.bench.frame_bench:cli",
                "per-frame stage times in the daemon's loop",
                _bench_frame,
            ),
            Command("decode", "edgedet.edge.bench.decode_bench:cli", "decode + NMS vs UltraFace's own", _bench_decode),
            Command(
                "compare", "edgedet.edge.bench.paired_bench:cli", "paired latency against a base model", _bench_compare
            ),
            Command(
                "profile", "edgedet.edge.bench.ort_profile:cli", "ONNX Runtime time by operator kind", _bench_profile
            ),
            Command(
                "tracking",
                "edgedet.edge.bench.tracking_bench:cli",
                "our tracker vs norfair (Frigate) and ByteTrack: MOTA/IDF1/HOTA and cost per update",
                _bench_tracking,
            ),
            Command(
                "gating",
                "edgedet.edge.bench.gating_bench:cli",
                "motion gating: inferences skipped, recall lost, gate cost; object events vs per-frame messages",
                _bench_gating,
            ),
            Command(
                "clips",
                "edgedet.edge.bench.clip_bench:cli",
                "event clips: CPU per camera while buffering and writing, ring memory per second of pre-roll",
                _bench_clips,
            ),
            Command(
                "cameras",
                "edgedet.bench_cameras:cli",
                "N cameras in one daemon vs N daemons: fps, fairness, memory; fps under MJPEG stream load",
                _bench_cameras,
            ),
            Command(
                "train-throughput",
                "edgedet.training.throughput:cli",
                "is data loading on the training loop's critical path?",
                _bench_train_throughput,
            ),
        ),
    ),
    Command("camera", "edgedet.edge.camera.daemon:cli", "the on-device camera daemon", _camera),
    Command("demo", "edgedet.demo:cli", "the main job end to end on generated data", _demo),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgedet", description="Tiny conv_dw detectors from desktop training to an edge camera."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for cmd in COMMANDS:
        p = sub.add_parser(cmd.name, help=cmd.help, description=cmd.help)
        p.set_defaults(_command=cmd)
        if not cmd.subcommands:
            cmd.add_arguments(p)
            continue
        nested = p.add_subparsers(dest=f"{cmd.name}_command", metavar="KIND")
        for child in cmd.subcommands:
            c = nested.add_parser(child.name, help=child.help, description=child.help)
            child.add_arguments(c)
            c.set_defaults(_command=child, _parent=cmd.name)
    return parser


def _with_default_subcommand(argv: Sequence[str]) -> list[str]:
    """``edgedet bench --models ...`` is ``edgedet bench report --models ...`` (the first subcommand)."""
    argv = list(argv)
    if not argv:
        return argv
    cmd = next((c for c in COMMANDS if c.name == argv[0]), None)
    if (
        cmd
        and cmd.subcommands
        and (len(argv) == 1 or argv[1] not in {c.name for c in cmd.subcommands} | {"-h", "--help"})
    ):
        argv.insert(1, cmd.subcommands[0].name)
    return argv


def _resolve(cmd: Command) -> Callable[[argparse.Namespace], int]:
    module_name, func_name = cmd.handler.split(":")
    return getattr(importlib.import_module(module_name), func_name)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(_with_default_subcommand(sys.argv[1:] if argv is None else argv))
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    cmd: Command = args._command
    handler = _resolve(cmd)
    try:
        return int(handler(args) or 0)
    except (ValueError, FileNotFoundError) as exc:
        # Bad input: say what and where, without a traceback.
        name = f"{args._parent} {cmd.name}" if getattr(args, "_parent", None) else cmd.name
        print(f"edgedet {name}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
