"""Where ONNX Runtime spends a model's time, by kind of operator: ``edgedet bench profile``.

ONNX Runtime's own profiler (``SessionOptions.enable_profiling``) records every node's kernel time on
every run. :func:`profile_onnx` runs a model ``runs`` times on one fixed input, takes each node's median,
and sums the medians by operator type of the graph ORT actually executes (after its fusions: an int8
QDQ model shows ``QLinearConv``, not ``DequantizeLinear -> Conv -> QuantizeLinear``). Convolutions with
``group > 1`` are reported as ``OP/dw`` (depthwise), so int8-vs-fp32 tables separate pointwise from
depthwise layers, where int8 wins and where it loses on a CPU without int8 dot-product instructions.
Telling depthwise apart reads the optimised graph with the ``onnx`` package (the ``convert`` extra);
with only the ``edge`` extra, operators are summed by type alone.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["cli", "print_profiles", "profile_onnx"]

_DTYPES = {"tensor(float)": np.float32, "tensor(uint8)": np.uint8, "tensor(int8)": np.int8}


def _depthwise_nodes(optimized_model: Path) -> set[str]:
    """Names of the grouped convolutions in ORT's optimised graph (empty without the ``onnx`` package)."""
    try:
        import onnx
    except ImportError:
        return set()
    return {
        node.name
        for node in onnx.load(optimized_model).graph.node
        if any(a.name == "group" and a.i > 1 for a in node.attribute)
    }


def profile_onnx(path: str | os.PathLike[str], runs: int = 200, threads: int = 1) -> dict[str, float]:
    """Milliseconds per run by operator kind (sum of per-node medians over ``runs`` runs), largest first,
    plus ``"total"``. The input is random, of the model's own static shape and dtype."""
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such model file")
    if runs < 1:
        raise ValueError(f"runs: expected >= 1, got {runs}")
    with tempfile.TemporaryDirectory(prefix="edgedet-profile-") as tmp:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.enable_profiling = True
        options.log_severity_level = 3  # not the "optimised model is hardware specific" warning
        options.profile_file_prefix = str(Path(tmp) / "ort")
        options.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
        try:
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # ORT raises its own exception types for unreadable models
            raise ValueError(f"{path}: ONNX Runtime cannot load it ({exc})") from exc
        feed = {}
        for i in session.get_inputs():
            if any(not isinstance(d, int) for d in i.shape):
                raise ValueError(f"{path}: input {i.name!r} has a dynamic shape {i.shape}; export it static")
            dtype = _DTYPES.get(i.type)
            if dtype is None:
                raise ValueError(f"{path}: input {i.name!r} is {i.type}; expected one of {list(_DTYPES)}")
            feed[i.name] = np.random.default_rng(0).uniform(0, 1, i.shape).astype(dtype)
        for _ in range(runs):
            session.run(None, feed)
        trace = json.loads(Path(session.end_profiling()).read_text())
        depthwise = _depthwise_nodes(Path(tmp) / "optimized.onnx")
    per_node: dict[tuple[str, str], list[float]] = defaultdict(list)
    for event in trace:
        name = event.get("name", "")
        if event.get("cat") == "Node" and name.endswith("_kernel_time"):
            node = name.removesuffix("_kernel_time")
            per_node[node, event.get("args", {}).get("op_name", "?")].append(event["dur"] / 1e3)
    totals: dict[str, float] = defaultdict(float)
    for (node, op), times in per_node.items():
        totals[op + ("/dw" if node in depthwise else "")] += float(np.median(times))
    ordered = dict(sorted(totals.items(), key=lambda kv: -kv[1]))
    return {**ordered, "total": sum(ordered.values())}


def print_profiles(profiles: Mapping[str, Mapping[str, float]], threads: int) -> None:
    """One column per model, one row per operator kind (ms per run)."""
    names: Sequence[str] = list(profiles)
    kinds = [k for k in dict.fromkeys(k for p in profiles.values() for k in p) if k != "total"]
    width = max(len(k) for k in [*kinds, "total"]) + 2
    cols = [max(12, len(Path(n).name) + 2) for n in names]
    print(f"ONNX Runtime profile, {threads} thread(s), ms per run (sum of per-node medians):")
    print("".ljust(width) + "".join(Path(n).name.rjust(c) for n, c in zip(names, cols, strict=True)))
    for kind in [*kinds, "total"]:
        cells = (f"{profiles[n][kind]:.3f}" if kind in profiles[n] else "-" for n in names)
        print(kind.ljust(width) + "".join(v.rjust(c) for v, c in zip(cells, cols, strict=True)))


def cli(args: Any) -> int:
    """``edgedet bench profile --models A.onnx B.onnx ...``."""
    from edgedet.edge.bench.figures import print_figures

    profiles = {m: profile_onnx(m, args.runs, args.threads) for m in args.models}
    return print_figures(profiles, lambda figures: print_profiles(figures, args.threads), args.json)
