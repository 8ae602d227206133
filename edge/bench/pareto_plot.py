"""``pareto.png``: end-to-end frame time (x) against AP50 (y), one colour per runtime + precision, one
marker per thread count, the Pareto front drawn as a staircase and its points ringed.

matplotlib is optional (the ``train`` extra has it, a device usually does not): without it the plot is
skipped and :func:`write_pareto_plot` says why.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgedet.edge.bench.report import PARETO_X, PARETO_Y, pareto_front

__all__ = ["write_pareto_plot"]

MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
LOG_X_RATIO = 20  # a log time axis when the slowest row is this many times the fastest


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
    threads = sorted({int(rows[i]["threads"]) for i in usable})
    colours = plt.get_cmap("tab10")
    fig, ax = plt.subplots(figsize=(8, 5.5), dpi=120)
    try:
        for i in usable:
            row = rows[i]
            kind = kinds.index(f"{row['runtime']} {row['precision']}")
            marker = MARKERS[threads.index(int(row["threads"])) % len(MARKERS)]
            ax.scatter(*points[i], color=colours(kind % 10), marker=marker, s=48, zorder=3)
        front = pareto_front(points)
        if front:
            fx = [points[i][0] for i in front]
            fy = [points[i][1] for i in front]
            order = sorted(range(len(front)), key=lambda k: fx[k])
            ax.step([fx[k] for k in order], [fy[k] for k in order], where="post", color="grey", lw=1, zorder=2)
            ax.scatter(fx, fy, s=190, facecolors="none", edgecolors="black", lw=1.2, zorder=4, label="Pareto front")
            for i in front:
                label = f"{rows[i]['name']} ({rows[i]['threads']}t)"
                ax.annotate(label, points[i], textcoords="offset points", xytext=(6, 6), fontsize=7)
        for k, kind in enumerate(kinds):
            ax.scatter([], [], color=colours(k % 10), marker="o", label=kind)
        for t in threads:
            ax.scatter([], [], color="grey", marker=MARKERS[threads.index(t) % len(MARKERS)], label=f"{t} thread(s)")
        xs = [points[i][0] for i in usable]
        if min(xs) > 0 and max(xs) / min(xs) > LOG_X_RATIO:
            ax.set_xscale("log")
        ax.set_xlabel("end-to-end frame time, median (ms) — lower is better")
        ax.set_ylabel("AP50 — higher is better")
        ax.set_title(title or "accuracy vs latency")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, loc="best")
        fig.tight_layout()
        fig.savefig(path)
    finally:
        plt.close(fig)
    return None
