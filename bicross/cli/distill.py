"""`bicross distill DATA --index DIR --student M --out DIR`: options and TOML config -> DistillConfig -> print."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from rich.console import Console

from bicross.cli.training import read_toml, refuse_unknown, setting_names
from bicross.errors import InvalidInput

__all__ = ["load_distill_config", "run_distill"]


def load_distill_config(config_file: Path | None, options: dict[str, Any]):
    """The default DistillConfig, then the TOML file's values ([train], [mining], [loss] tables and top-level
    keys), then the options given on the command line (None = not given). Unknown keys are refused."""
    from bicross.training.distill import DistillConfig

    values: dict[str, Any] = read_toml(config_file) if config_file is not None else {}
    config = DistillConfig()
    sections = {"train": config.train, "mining": config.mining, "loss": config.loss}
    top = {key: value for key, value in values.items() if key not in sections}
    parts: dict[str, Any] = {}
    for name, default in sections.items():
        given = values.get(name, {})
        if not isinstance(given, dict):
            raise InvalidInput(f"[{name}] in {config_file} must be a table of settings, got {given!r}")
        given = {**given, **{key: value for key, value in options.items() if value is not None
                             and key in setting_names(type(default)) and key not in setting_names(DistillConfig)}}
        refuse_unknown(given, type(default), f"[{name}]")
        parts[name] = replace(default, **given)
    top.update({key: value for key, value in options.items() if value is not None and key in setting_names(DistillConfig)})
    refuse_unknown(top, DistillConfig, "top level")
    return replace(config, **top, **parts)


def run_distill(kind: str, data: Path, student: str, out: Path, index: Path, config, console: Console) -> None:
    """Distil, then print the dev numbers (before, teacher, best) and where the model and its index are."""
    from bicross.training.distill import distill

    command = " ".join(["bicross", *sys.argv[1:]])
    result = distill(kind, data, student, out, index, config, command=command)  # type: ignore[arg-type]
    metric = config.train.metric
    if result.mining is not None:
        console.print(f"mined {result.mining.examples} examples for {result.mining.queries} queries")
    if result.labels is not None:
        console.print(f"teacher scored {result.labels.scored_pairs} pairs ({result.labels.cached_pairs} read from "
                      f"{out / 'teacher-scores.json'})")
    teacher = "" if result.dev_teacher is None else (
        f", teacher {result.dev_teacher.get(metric, float('nan')):.4f} (reranking the first stage's top "
        f"{config.dev_depth})")
    console.print(f"trained {result.train.steps} steps in {result.train.seconds:.0f} s "
                  f"({result.train.examples_per_second:.1f} examples/s); dev {metric}: "
                  f"{result.dev_before.get(metric, float('nan')):.4f} before, "
                  f"{(result.dev_after or float('nan')):.4f} best{teacher}")
    console.print(f"model: {result.model} (training log and plot in {out / 'run'})")
    if result.index is not None:
        console.print(f"index: {result.index} (the collection re-indexed with the student; {index} is unchanged)")
        console.print(f"evaluate it once on the test split: bicross eval {data} --index {result.index} ...")
    else:
        console.print(f"evaluate it once on the test split: bicross eval {data} --index {index} --reranker "
                      f"{result.model} ...")
