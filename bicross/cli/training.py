"""`bicross train bi-encoder|cross-encoder DATA` and `bicross mine DATA`: options and TOML config -> recipe."""

from __future__ import annotations

import sys
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

from rich.console import Console

from bicross.errors import InvalidInput

__all__ = ["load_recipe", "read_toml", "refuse_unknown", "run_mine", "run_train", "setting_names"]


def load_recipe(config_file: Path | None, options: dict[str, Any]):
    """The default recipe, then the TOML file's values ([train], [mining] tables and top-level keys), then the
    options given on the command line (None = not given). Unknown keys are refused, naming them."""
    from bicross.training.mining import MiningConfig
    from bicross.training.recipes import Recipe
    from bicross.training.trainer import TrainConfig

    values: dict[str, Any] = {}
    if config_file is not None:
        values = read_toml(config_file)
    recipe = Recipe()
    sections = {"train": (TrainConfig, recipe.train), "mining": (MiningConfig, recipe.mining)}
    top = {key: value for key, value in values.items() if key not in sections}
    parts: dict[str, Any] = {}
    for name, (kind, default) in sections.items():
        given = dict(values.get(name, {}))
        given.update({key: value for key, value in options.items() if value is not None and key in setting_names(kind)
                      and key not in setting_names(Recipe)})
        refuse_unknown(given, kind, f"[{name}]")
        parts[name] = replace(default, **given)
    top.update({key: value for key, value in options.items() if value is not None and key in setting_names(Recipe)})
    refuse_unknown(top, Recipe, "top level")
    return replace(recipe, **top, **parts)


def run_train(kind: str, data: Path, base: str, out: Path, recipe, index: Path | None, console: Console) -> None:
    """Train, then print where the model is, its dev metric before and after, and how to evaluate it."""
    from bicross.training.recipes import train_model

    if kind not in ("bi-encoder", "cross-encoder"):
        raise InvalidInput(f"train what? 'bi-encoder' or 'cross-encoder', got {kind!r}")
    command = " ".join(["bicross", *sys.argv[1:]])
    result = train_model(kind, data, base, out, recipe, index, command)  # type: ignore[arg-type]
    metric = recipe.train.metric
    console.print(f"trained {result.train.steps} steps in {result.train.seconds:.0f} s "
                  f"({result.train.examples_per_second:.1f} examples/s); dev {metric}: "
                  f"{result.dev_before.get(metric, float('nan')):.4f} before, "
                  f"{(result.dev_after or float('nan')):.4f} best")
    if result.mining is not None:
        console.print(f"mined {result.mining.examples} examples; the false-negative guard dropped "
                      f"{result.mining.dropped_share:.1%} of {result.mining.candidates} candidates")
    console.print(f"model: {result.model} (training log and plot in {out / 'run'})")
    flag = "--model" if kind == "bi-encoder" else "--reranker"
    console.print(f"evaluate it once on the test split: bicross eval {data} {flag} {result.model} ...")


def run_mine(data: Path, index: Path, out: Path, config, teacher: str | None, split: str, console: Console) -> None:
    """Mine hard negatives for a split's judged queries from an existing collection."""
    from bicross.encoders import BiEncoder
    from bicross.index.collection import Collection
    from bicross.rerankers import CrossEncoder
    from bicross.training.data import load_beir_training
    from bicross.training.mining import mine_hard_negatives

    queries, _ = load_beir_training(data, split)
    collection = Collection.open(index)
    encoder = BiEncoder.load(collection.manifest["model"]["name"])
    guard = None if teacher is None else CrossEncoder.load(teacher, max_length=256)
    report = mine_hard_negatives(collection, encoder, queries, out, config, guard, show_progress=True)
    console.print(f"wrote {report.examples} examples for {report.queries} queries to {out}"
                  + (f" ({report.resumed_queries} queries were already there)" if report.resumed_queries else "")
                  + (f"; the guard dropped {report.dropped_share:.1%} of {report.candidates} candidates" if guard else ""))


def setting_names(kind: type) -> set[str]:
    return {field.name for field in fields(kind)}


def refuse_unknown(values: dict[str, Any], kind: type, where: str) -> None:
    unknown = sorted(set(values) - setting_names(kind))
    if unknown:
        raise InvalidInput(f"unknown {where} setting(s) {unknown}; known: {sorted(setting_names(kind))}")


def read_toml(path: Path) -> dict[str, Any]:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    from bicross.textfiles import read_text

    try:
        return tomllib.loads(read_text(path, "config file"))
    except tomllib.TOMLDecodeError as error:
        raise InvalidInput(f"{path}: not valid TOML ({error})") from None
