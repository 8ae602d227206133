"""``pareto.png``: end-to-end frame time (x) against AP50 (y). Colour = runtime + precision, marker shape
= model (its file name without the precision suffix, so ``ssd/last.onnx`` and ``ssd/last_int8.tflite``
share one), filled = 1 thread, hollow = more. The Pareto front is drawn as a staircase, its points ringed
and numbered; the numbers are explained in a list beside the plot, so no two labels print on top of each
other however close the points are.

matplotlib is optional (the ``train`` extra has it, a device usually does not): without it the plot is
skipped and :func:`write_pareto_plot` says why.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgedet.edge.bench.report import PARETO_X, PARETO_Y, pareto_front

__all__ = ["front_legend", "model_family", "write_pareto_plot"]

MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "h", "<", ">")
LOG_X_RATIO = 20  # a log time axis when the slowest row is this many times the fastest
_PRECISION_TOKENS = re.compile(r"(_(int8|uint8|fp16|fp32|float|io|dynamic|dr|qdq|f16|f32|quant|qat))+$")


def model_family(name: str) -> str:
    """``"ssd/last_int8_float_io.tflite"`` -> ``"ssd/last"``: one model, whatever its format and precision."""
    stem = re.sub(r"\.(onnx|tflite|pt)$", "", name)
    return _PRECISION_TOKENS.sub("", stem) or stem


def front_legend(rows: Sequence[dict[str, Any]], front: Sequence[int]) -> list[str]:
    """One entry per front point, fastest first, numbered as on the plot:
    ``"1  ssd/last_fp32.tflite\n   litert fp32, 2 threads: 1.01 ms, AP50 0.318"``."""
    order = sorted(front, key=lambda i: rows[i][PARETO_X])
    return [
        f"{k:<2} {rows[i]['name']}\n   {rows[i]['runtime']} {rows[i]['precision']}, {rows[i]['threads']} thread(s): "
        f"{rows[i][PARETO_X]:.2f} ms, AP50 {rows[i][PARETO_Y]:.3f}"
        for k, i in enumerate(order, 1)
    ]


def write_pareto_plot(path: Path, rows: Sequence[dict[str, Any]], title: str = "") -> str | None:
    """Draw the rows that have both a frame time and an AP50 into ``path``; returns ``None`` when written,
    else the reason it was not (no matplotlib, no AP50)."""
    points = [(r.get(PARETO_X), r.get(PARETO_Y)) for r in rows]
    usable = [i for i, (x, y) in enumerate(points) if x is not None and y is not None]
    if not usable:
        return "no row has both a frame time and an AP50 (give --data for AP50)"
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (pip install matplotlib)"
    kinds = list(dict.fromkeys(f"{rows[i]['runtime']} {rows[i]['precision']}" for i in usable))
    families = list(dict.fromkeys(model_family(str(rows[i]["name"])) for i in usable))
    colours = plt.get_cmap("tab10")
    fig, (ax, side) = plt.subplots(1, 2, figsize=(11, 5.5), dpi=120, gridspec_kw={"width_ratios": [2.2, 1]})
    try:
        for i in usable:
            row = rows[i]
            colour = colours(kinds.index(f"{row['runtime']} {row['precision']}") % 10)
            marker = MARKERS[families.index(model_family(str(row["name"]))) % len(MARKERS)]
            filled = int(row["threads"]) == 1
            ax.scatter(
                *points[i], marker=marker, s=52, zorder=3, linewidths=1.4,
                facecolors=colour if filled else "none", edgecolors=colour,
            )  # fmt: skip
        front = [i for i in pareto_front(points) if i in usable]
        if front:
            order = sorted(front, key=lambda i: points[i][0])
            ax.step([points[i][0] for i in order], [points[i][1] for i in order], where="post", color="grey", lw=1)
            ax.scatter(*zip(*(points[i] for i in order), strict=True), s=200, facecolors="none", edgecolors="black")
            for k, i in enumerate(order, 1):
                ax.annotate(str(k), points[i], textcoords="offset points", xytext=(7, 5), fontsize=8, weight="bold")
        for k, kind in enumerate(kinds):
            ax.scatter([], [], color=colours(k % 10), marker="o", label=kind)
        for f, family in enumerate(families):
            ax.scatter([], [], facecolors="none", edgecolors="black", marker=MARKERS[f % len(MARKERS)], label=family)
        ax.scatter([], [], color="grey", marker="o", label="filled: 1 thread")
        ax.scatter([], [], facecolors="none", edgecolors="grey", marker="o", label="hollow: more threads")
        xs = [points[i][0] for i in usable]
        if min(xs) > 0 and max(xs) / min(xs) > LOG_X_RATIO:
            ax.set_xscale("log")
        ax.set_xlabel("end-to-end frame time, median (ms) — lower is better")
        ax.set_ylabel("AP50 — higher is better")
        ax.set_title(title or "accuracy vs latency", fontsize=9)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, loc="best")
        side.axis("off")
        text = "\n".join(front_legend(rows, front)) if front else "(no Pareto front)"
        side.text(0, 1, "Pareto front (fastest first)\n\n" + text, va="top", ha="left", fontsize=7, family="monospace")
        fig.tight_layout()
        fig.savefig(path)
    finally:
        plt.close(fig)
    return None
