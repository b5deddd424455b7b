"""Report plots: valid PNGs from plain numbers, the Pareto front, and no global matplotlib state."""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

from bicross.evaluation.plots import FrontierPoint, pareto_front, plot_frontier, plot_recall_curves, write_plots

POINTS = [
    FrontierPoint("bm25", "bm25", False, 1.2, 0.66),
    FrontierPoint("dense", "dense", False, 3.1, 0.65),
    FrontierPoint("hybrid", "hybrid", False, 4.0, 0.70),
    FrontierPoint("dense + rerank top 20", "dense", True, 450.0, 0.69),
    FrontierPoint("hybrid + rerank top 100", "hybrid", True, 2100.0, 0.73),
]


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", "not a PNG file"
    assert len(data) > 10_000, f"{path.name} is only {len(data)} bytes: nothing was drawn"
    return struct.unpack(">II", data[16:24])


def test_pareto_front_keeps_points_nothing_beats_on_both_axes() -> None:
    front = pareto_front(POINTS)
    # dense is slower than bm25 and worse; the reranked dense is slower than hybrid and worse.
    assert [point.name for point in front] == ["bm25", "hybrid", "hybrid + rerank top 100"]
    assert pareto_front([]) == []


def test_frontier_plot_is_a_png(tmp_path: Path) -> None:
    path = plot_frontier(POINTS, tmp_path / "frontier.png", latency_note="per-query mode")
    assert path == tmp_path / "frontier.png"
    width, height = _png_size(path)
    assert width > 600 and height > 400


def test_recall_plot_is_a_png(tmp_path: Path) -> None:
    curves = {"bm25": [min(1.0, 0.3 + 0.01 * k) for k in range(100)], "dense": [min(1.0, 0.2 + 0.02 * k) for k in range(100)]}
    width, height = _png_size(plot_recall_curves(curves, tmp_path / "recall.png", rerank_depths=[10, 20, 50]))
    assert width > 600 and height > 400


def test_write_plots_draws_what_the_report_has(tmp_path: Path) -> None:
    report = {
        "dataset": {"path": "data/tiny", "split": "test", "queries": 3},
        "latency_mode": "batch",
        "recall_curves": {},  # only reranked rows: no first-stage curve to draw
        "rows": [{"name": p.name, "first_stage": p.first_stage, "reranked": p.reranked, "sample": False,
                  "latency_ms": {"total": {"mean": p.ms_per_query, "p95": None}}, "metrics": {"ndcg@10": p.ndcg_at_10}}
                 for p in POINTS],
    }
    written = write_plots(report, tmp_path)
    assert set(written) == {"ndcg_vs_latency.png"}
    _png_size(written["ndcg_vs_latency.png"])


def test_plotting_leaves_no_global_matplotlib_state(tmp_path: Path) -> None:
    """Importing the module loads no matplotlib; plotting uses Agg without pyplot or a backend switch."""
    code = (
        "import sys\n"
        "import bicross.evaluation.plots as plots\n"
        "assert 'matplotlib' not in sys.modules, 'imported matplotlib at import time'\n"
        "import matplotlib\n"
        "backend = dict.__getitem__(matplotlib.rcParams, 'backend')  # raw value: reading it resolves nothing\n"
        f"plots.plot_recall_curves({{'bm25': [0.5, 1.0]}}, {str(tmp_path / 'r.png')!r})\n"
        "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot was imported'\n"
        "assert dict.__getitem__(matplotlib.rcParams, 'backend') is backend, 'the global backend was switched'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "r.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
