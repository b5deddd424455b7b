"""The report's plots as PNG files: Recall@k of each first stage, and nDCG@10 against latency per query.

Figures are drawn on matplotlib's Agg canvas chosen inside each function (a `Figure` with a
`FigureCanvasAgg`, no pyplot), so importing this module loads nothing, no global backend is switched, and
plotting works on machines without a display.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["FrontierPoint", "pareto_front", "plot_frontier", "plot_recall_curves", "write_plots"]

RECALL_PLOT = "recall_at_k.png"
FRONTIER_PLOT = "ndcg_vs_latency.png"
_COLORS = {"bm25": "tab:blue", "dense": "tab:orange", "hybrid": "tab:green"}
_OTHER_COLORS = ("tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan")
_LINE_STYLES = ("-", "--", "-.", ":")  # curves often coincide; dashes keep a hidden one visible


@dataclass(frozen=True)
class FrontierPoint:
    """One pipeline on the quality/speed plane."""

    name: str
    first_stage: str
    reranked: bool
    ms_per_query: float
    ndcg_at_10: float
    cascade: bool = False  # a cheap reranker pruned the candidates for the cross-encoder


def pareto_front(points: Sequence[FrontierPoint]) -> list[FrontierPoint]:
    """The points no other point beats on both speed and quality, fastest first.

    >>> a, b, c = (FrontierPoint(n, "dense", False, ms, q) for n, ms, q in [("a", 1, .5), ("b", 5, .4), ("c", 9, .7)])
    >>> [p.name for p in pareto_front([a, b, c])]
    ['a', 'c']
    """
    front: list[FrontierPoint] = []
    for point in sorted(points, key=lambda p: (p.ms_per_query, -p.ndcg_at_10)):
        if not front or point.ndcg_at_10 > front[-1].ndcg_at_10:
            front.append(point)
    return front


def plot_recall_curves(curves: Mapping[str, Sequence[float]], path: str | os.PathLike[str],
                       rerank_depths: Sequence[int] = (), title: str = "Recall@k of each first stage") -> Path:
    """Step plot of Recall@k (curve[k - 1]) against k (log x), one line per first stage; dotted lines at rerank
    depths."""
    figure, axes = _figure()
    longest = 1
    for index, (name, curve) in enumerate(curves.items()):
        longest = max(longest, len(curve))
        axes.plot(range(1, len(curve) + 1), curve, drawstyle="steps-post", color=_color(name, index), linewidth=2,
                  linestyle=_LINE_STYLES[index % len(_LINE_STYLES)],
                  label=f"{name} (Recall@{len(curve)} = {curve[-1]:.3f})" if curve else name)
    for depth in rerank_depths:
        axes.axvline(depth, color="gray", linestyle=":", linewidth=1)
        axes.annotate(f"rerank top {depth}", (depth, 0.02), rotation=90, fontsize=8, color="dimgray",
                      xytext=(3, 0), textcoords="offset points")
    axes.set(title=title, xlabel="k (candidates kept from the first stage, log scale)", ylabel="Recall@k",
             ylim=(0, 1.02))
    _log_x(axes)
    axes.set_xlim(1, max(longest, *rerank_depths, 2) * 1.15)  # room for the label of a line at the last k
    axes.grid(alpha=0.3)
    axes.legend(loc="upper left")  # recall curves rise to the right: the top left is where they are not
    return _save(figure, path)


def plot_frontier(points: Sequence[FrontierPoint], path: str | os.PathLike[str],
                  title: str = "Quality/speed frontier", latency_note: str = "") -> Path:
    """Scatter of nDCG@10 against mean latency per query (log x), labelled, with the Pareto front dashed."""
    from matplotlib.lines import Line2D

    figure, axes = _figure()
    stages = list(dict.fromkeys(point.first_stage for point in points))
    logs = [math.log10(max(point.ms_per_query, 1e-3)) for point in points]
    for point, log in zip(points, logs, strict=True):
        color = _color(point.first_stage, stages.index(point.first_stage))
        axes.scatter(10 ** log, point.ndcg_at_10, color=color, s=60, zorder=3,
                     marker="s" if point.cascade else "^" if point.reranked else "o", edgecolors="black",
                     linewidths=0.5)
        # Labels of the slowest points go on their left, so the figure edge does not cut them off.
        on_left = len(points) > 1 and log > min(logs) + 0.6 * (max(logs) - min(logs))
        axes.annotate(point.name, (10 ** log, point.ndcg_at_10), fontsize=7, ha="right" if on_left else "left",
                      xytext=(-6 if on_left else 6, 4), textcoords="offset points")
    front = pareto_front(points)
    axes.plot([max(p.ms_per_query, 1e-3) for p in front], [p.ndcg_at_10 for p in front], color="gray",
              linestyle="--", linewidth=1, zorder=2)
    _log_x(axes)
    axes.margins(x=0.25, y=0.15)
    xlabel = "mean latency per query (ms, log scale)" + (f" - {latency_note}" if latency_note else "")
    axes.set(title=title, xlabel=xlabel, ylabel="nDCG@10")
    axes.grid(alpha=0.3, which="both")
    handles = [Line2D([], [], marker="o", linestyle="", color=_color(stage, index), label=stage)
               for index, stage in enumerate(stages)]
    handles += [Line2D([], [], marker="o", linestyle="", color="white", markeredgecolor="black", label="first stage"),
                Line2D([], [], marker="^", linestyle="", color="white", markeredgecolor="black",
                       label="+ rerank (cross-encoder, ColBERT, ...)")]
    if any(point.cascade for point in points):
        handles.append(Line2D([], [], marker="s", linestyle="", color="white", markeredgecolor="black",
                              label="+ cascade (cheap reranker, then reranker)"))
    handles.append(Line2D([], [], linestyle="--", color="gray", label="Pareto front"))
    axes.legend(handles=handles, loc="best", fontsize=8)
    return _save(figure, path)


def write_plots(report: Mapping[str, Any], folder: str | os.PathLike[str]) -> dict[str, Path]:
    """Draw the plots of a `build_report` dict into `folder`; returns the written files by name."""
    folder = Path(folder)
    written: dict[str, Path] = {}
    dataset = report["dataset"]
    where = f"{Path(dataset['path']).name} ({dataset['split']}, {dataset['queries']} queries)"
    if report["recall_curves"]:
        written[RECALL_PLOT] = plot_recall_curves(report["recall_curves"], folder / RECALL_PLOT,
                                                  report.get("rerank_depths", ()), f"Recall@k of each first stage: {where}")
    points = [FrontierPoint(row["name"], row["first_stage"], row["reranked"], row["latency_ms"]["total"]["mean"],
                            row["metrics"]["ndcg@10"], bool(row.get("cascade_depth")))
              for row in report["rows"] if not row["sample"]]
    if points:
        mode = report["latency_mode"]
        written[FRONTIER_PLOT] = plot_frontier(points, folder / FRONTIER_PLOT, f"nDCG@10 vs latency: {where}",
                                               f"{mode} mode" if isinstance(mode, str) else "")
    return written


def _figure() -> tuple[Any, Any]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 5.5), dpi=110, layout="constrained")
    FigureCanvasAgg(figure)
    return figure, figure.add_subplot()


def _log_x(axes: Any) -> None:
    """Log x axis with plain-number labels at 1, 2, 5 times each power of ten (not just 10^n)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    axes.set_xscale("log")
    axes.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axes.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axes.xaxis.set_minor_formatter(NullFormatter())


def _save(figure: Any, path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    figure.savefig(path, format="png")
    return path


def _color(name: str, index: int) -> str:
    return _COLORS.get(name, _OTHER_COLORS[index % len(_OTHER_COLORS)])
