"""`bicross train bi-encoder|cross-encoder|colbert|poly DATA` and `bicross mine DATA`: options and TOML config -> recipe."""

from __future__ import annotations

import sys
from dataclasses import fields, is_dataclass, replace
from pathlib import Path
from typing import Any

from rich.console import Console

from bicross.errors import InvalidInput

__all__ = ["KINDS", "eval_command", "load_recipe", "read_toml", "refuse_unknown", "run_mine", "run_train",
           "setting_names"]


KINDS = ("bi-encoder", "cross-encoder", "colbert", "poly")


def load_recipe(config_file: Path | None, options: dict[str, Any], kind: str = "bi-encoder"):
    """The default recipe for `kind`, then the TOML file's values (a table per section: [train], [mining], and for
    colbert/poly [model] and [loss]; top-level keys), then the options given on the command line (None = not
    given). Unknown keys are refused, naming them, and so are options that do not apply to `kind`."""
    values: dict[str, Any] = read_toml(config_file) if config_file is not None else {}
    recipe = _default_recipe(kind)
    top_names = setting_names(type(recipe))
    sections = {field.name: getattr(recipe, field.name) for field in fields(recipe)
                if is_dataclass(getattr(recipe, field.name))}
    given_options = {key: value for key, value in options.items() if value is not None}
    used: set[str] = set()
    parts: dict[str, Any] = {}
    for name, default in sections.items():
        given = values.get(name, {})
        if not isinstance(given, dict):
            raise InvalidInput(f"[{name}] in {config_file} must be a table of settings, got {given!r}")
        picked = {key: value for key, value in given_options.items()
                  if key in setting_names(type(default)) and key not in top_names}
        used.update(picked)
        given = {**given, **picked}
        refuse_unknown(given, type(default), f"[{name}]")
        parts[name] = replace(default, **given)
    top = {key: value for key, value in values.items() if key not in sections}
    picked = {key: value for key, value in given_options.items() if key in top_names and key not in sections}
    used.update(picked)
    top.update(picked)
    refuse_unknown(top, type(recipe), "top level")
    unused = sorted(set(given_options) - used)
    if unused:
        flags = ", ".join("--" + name.replace("_", "-") for name in unused)
        raise InvalidInput(f"not a {kind} setting: {flags}; leave {'it' if len(unused) == 1 else 'them'} out")
    return replace(recipe, **top, **parts)


def _default_recipe(kind: str):
    if kind not in KINDS:
        raise InvalidInput(f"train what? one of {', '.join(KINDS)}, got {kind!r}")
    if kind in ("colbert", "poly"):
        from bicross.training.late_interaction_recipe import late_interaction_recipe

        return late_interaction_recipe(kind)  # type: ignore[arg-type]
    from bicross.training.recipes import default_recipe

    return default_recipe(kind)  # type: ignore[arg-type]


def run_train(kind: str, data: Path, base: str | None, out: Path, recipe, index: Path | None, console: Console) -> None:
    """Train, then print where the model is, its dev metric before and after, and the command that evaluates it."""
    if kind not in KINDS:
        raise InvalidInput(f"train what? one of {', '.join(KINDS)}, got {kind!r}")
    command = " ".join(["bicross", *sys.argv[1:]])
    if kind in ("colbert", "poly"):
        from bicross.training.late_interaction_recipe import train_late_interaction

        result = train_late_interaction(kind, data, base, out, recipe, index, command)  # type: ignore[arg-type]
    else:
        from bicross.training.recipes import train_model

        if base is None:
            raise InvalidInput(f"--base is required for a {kind}: the model to fine-tune (hub id or folder)")
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
    console.print("evaluate it once on the test split: " + eval_command(kind, data, result.model,
                                                                        index or out / "base-index", out),
                  markup=False, highlight=False, soft_wrap=True)


def eval_command(kind: str, data: Path, model: Path, index: Path, out: Path) -> str:
    """The `bicross eval` command that measures a trained model on DATA's test split: a bi-encoder over a new
    index built with it, a reranker over the collection it was trained with (`index`).

    >>> eval_command("colbert", Path("scifact"), Path("run/model"), Path("run/base-index"), Path("run"))
    'bicross eval scifact --index run/base-index --reranker colbert:run/model'
    """
    import shlex

    if kind == "bi-encoder":
        parts = ["--model", str(model), "--index", str(out / "test-index")]
    else:
        parts = ["--index", str(index), "--reranker", f"{kind}:{model}" if kind in ("colbert", "poly") else str(model)]
    return " ".join(shlex.quote(part) for part in ["bicross", "eval", str(data), *parts])


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
