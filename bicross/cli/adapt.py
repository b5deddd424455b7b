"""`bicross adapt --index DIR --out DIR`: options and TOML config -> AdaptConfig -> adapt -> print."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from rich.console import Console

from bicross.cli.training import read_toml, refuse_unknown, setting_names
from bicross.errors import InvalidInput

__all__ = ["load_adapt_config", "run_adapt"]

_SECTIONS = ("queries", "train", "mining", "loss")


def load_adapt_config(config_file: Path | None, options: dict[str, Any]):
    """The default AdaptConfig, then the TOML file's values ([queries], [train], [mining], [loss] tables and
    top-level keys), then the command-line options (None = not given; each goes where its name is a setting).
    Unknown keys are refused."""
    from bicross.training.adapt import AdaptConfig

    values: dict[str, Any] = read_toml(config_file) if config_file is not None else {}
    config = AdaptConfig()
    given = {key: value for key, value in options.items() if value is not None}
    top = {key: value for key, value in values.items() if key not in _SECTIONS}
    parts: dict[str, Any] = {}
    for name in _SECTIONS:
        default = getattr(config, name)
        section = values.get(name, {})
        if not isinstance(section, dict):
            raise InvalidInput(f"[{name}] in {config_file} must be a table of settings, got {section!r}")
        section = {**section, **{key: value for key, value in given.items()
                                 if key in setting_names(type(default)) and key not in setting_names(AdaptConfig)}}
        refuse_unknown(section, type(default), f"[{name}]")
        parts[name] = replace(default, **section)
    top.update({key: value for key, value in given.items() if key in setting_names(AdaptConfig)})
    refuse_unknown(top, AdaptConfig, "top level")
    return replace(config, **top, **parts)


def run_adapt(index: Path, out: Path, config, queries: Path | None, qrels: Path | None, console: Console) -> None:
    """Adapt, then print what each step did, the pseudo-dev numbers, and the report when qrels were given."""
    from bicross.training.adapt import adapt

    if (queries is None) != (qrels is None):
        raise InvalidInput("--queries and --qrels go together: both (for the before/after report) or neither")
    command = " ".join(["bicross", *sys.argv[1:]])
    report = (queries, qrels) if queries is not None and qrels is not None else None
    result = adapt(index, out, config, report=report, command=command)
    metric = config.train.metric
    console.print(f"{result.pseudo_queries} pseudo-queries from the collection "
                  f"({', '.join(config.queries.generators)}; {result.details['dev_queries']} held out as pseudo-dev)")
    if result.mining is not None:
        console.print(f"mined candidates for {result.mining.queries} pseudo-queries ({result.mining.examples} examples)")
    if result.labels is not None:
        console.print(f"teacher scored {result.labels.scored_pairs} pairs ({result.labels.cached_pairs} read from "
                      f"{out / 'teacher-scores.json'})")
    console.print(f"trained {result.train.steps} steps in {result.train.seconds:.0f} s; pseudo-dev {metric} (no "
                  f"labels): {result.dev_before.get(metric, float('nan')):.4f} before, "
                  f"{(result.dev_after or float('nan')):.4f} best")
    console.print(f"model: {result.model}")
    console.print(f"index: {result.index} (the collection re-indexed with the adapted model; {index} is unchanged)")
    if result.report is not None:
        console.print(f"before/after on {result.report['queries']} judged queries (read only for this report; "
                      f"{out / 'report.json'}):")
        for name, sides in result.report["first_stages"].items():
            before, after = sides["before"]["ndcg@10"], sides["after"]["ndcg@10"]
            console.print(f"  {name}: nDCG@10 {before:.4f} -> {after:.4f} ({after - before:+.4f})")

