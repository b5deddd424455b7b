"""Progress on stderr: plain lines when stderr is not a terminal, so a log file shows how far a run got."""

from __future__ import annotations

import pytest

from bicross.progress import LineProgress, progress_task


def test_a_log_gets_one_line_per_tenth_of_the_work(capsys: pytest.CaptureFixture[str]) -> None:
    with progress_task("mining", 100, enabled=True) as advance:
        for _ in range(100):
            advance(1)
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(",")[0] for line in lines] == [f"mining: {n}/100 ({n}%)" for n in range(10, 101, 10)]
    assert all("elapsed, ETA" in line for line in lines)


def test_nothing_is_printed_when_progress_is_off(capsys: pytest.CaptureFixture[str]) -> None:
    with progress_task("mining", 10, enabled=False) as advance:
        advance(10)
    assert capsys.readouterr().err == ""


def test_a_resumed_loop_counts_from_where_it_was_and_adds_the_detail() -> None:
    lines: list[str] = []
    ticks = iter([0.0, 30.0])
    LineProgress("training", 10, lines.append, done=5, clock=lambda: next(ticks)).advance(1, "loss 0.5000")
    assert lines == ["training: 6/10 (60%), 0:00:30 elapsed, ETA 0:02:00, loss 0.5000"]
