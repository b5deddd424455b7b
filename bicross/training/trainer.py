"""The training loop: AdamW + warmup/linear decay, bf16 autocast, dev evaluation, early stopping, exact resume.

Built from torch's AdamW and transformers' `get_linear_schedule_with_warmup`; the loop itself is ours, for
three things transformers' Trainer does not do for these models: GradCache (the contrastive step encodes
and backpropagates in chunks, so plain gradient accumulation, which would shrink the in-batch negatives,
is not used), evaluation through bicross's own retrieval and reranking path, and a resume that ends with
the same weights as an uninterrupted run (model, optimizer, scheduler, every RNG and the position in the
epoch's shuffled order are checkpointed; the order of epoch e is a permutation seeded by seed + e).

Optionally the negatives are refreshed every `refresh_every` steps by a `refresh` callable that mines them
again with the model being trained (ANCE-style: the negatives stay hard for the current model, not only for
the one that mined them first).

The model-specific part is a `step` callable: it computes the loss of one batch of examples and calls
`backward` itself (directly or through GradCache), returning the loss value.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from bicross.errors import InvalidInput

__all__ = ["TrainConfig", "TrainResult", "Trainer", "resolve_training_dtype"]

CHECKPOINT = "checkpoint.pt"
LOG = "train_log.jsonl"
RESULT = "result.json"
PLOT = "training.png"
# Parameters that start untrained (a learned pooling's zeros, a Poly-encoder's random codes), not from a
# checkpoint: they get `pooling_learning_rate`, without weight decay.
_UNTRAINED_PARAMETERS = ("pooling_weight", "codes")


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one run; every field is also a CLI option and a TOML key."""

    epochs: int = 1
    batch_size: int = 32
    learning_rate: float = 2e-5
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    seed: int = 13
    dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    eval_every: int = 0  # steps between dev evaluations; 0: at the end of each epoch
    patience: int = 0  # stop after this many evaluations without improvement; 0: never stop early
    checkpoint_every: int = 50  # steps between resumable checkpoints
    metric: str = "ndcg@10"
    refresh_every: int = 0  # steps between re-mining negatives with the model being trained; 0: never
    pooling_learning_rate: float = 1e-3  # learned pooling weights, poly codes: untrained, 2e-5 would hardly move them

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "checkpoint_every"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise InvalidInput(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if not isinstance(self.refresh_every, int) or self.refresh_every < 0:
            raise InvalidInput(f"refresh_every must be 0 (never) or a positive number of steps, got {self.refresh_every!r}")
        if not self.learning_rate > 0 or not self.pooling_learning_rate > 0 or not 0 <= self.warmup_ratio < 1:
            raise InvalidInput("learning_rate and pooling_learning_rate must be > 0 and warmup_ratio in [0, 1)")
        if self.dtype not in ("auto", "float32", "bfloat16"):
            raise InvalidInput(f"dtype must be auto, float32 or bfloat16, got {self.dtype!r}")


@dataclass(frozen=True)
class TrainResult:
    """What a run did: steps, the best dev score and where its model is, seconds and examples per second."""

    steps: int
    best_metric: float | None
    best_step: int | None
    seconds: float
    examples_per_second: float
    stopped_early: bool


def resolve_training_dtype(dtype: str) -> Literal["float32", "bfloat16"]:
    """`auto`: bfloat16 autocast where the CPU (or GPU) computes bf16 natively, else float32 (emulated bf16
    is slower than fp32); see `bicross.models.backends.resolve_dtype`."""
    from bicross.models.backends import resolve_dtype

    return resolve_dtype(dtype)  # type: ignore[arg-type]


Refresh = Callable[[int, Sequence[Any]], Sequence[Any]]


class Trainer:
    """Run `step` over shuffled batches of `examples`, evaluating, checkpointing and keeping the best model.

    `refresh(step, examples)`, called every `config.refresh_every` steps with the model in eval mode, returns
    the examples with new negatives (same length and order, so the shuffled data position stays valid). It
    must persist what it computes per step: a run resumed after step R reads refresh R back (the weights it
    was computed from are gone); a checkpoint is written at every refresh step before refreshing, so a run
    killed during a refresh recomputes it from the same weights.
    """

    def __init__(self, model: torch.nn.Module, config: TrainConfig, out: str | Path,
                 step: Callable[[Sequence[Any]], float], evaluate: Callable[[], dict[str, float]] | None = None,
                 save_best: Callable[[Path], None] | None = None, show_progress: bool = True,
                 refresh: Refresh | None = None) -> None:
        self.model, self.config, self.out = model, config, Path(out)
        self.step, self.evaluate, self.save_best = step, evaluate, save_best
        self.refresh = refresh if config.refresh_every else None
        self.show_progress = show_progress
        self.dtype = resolve_training_dtype(config.dtype)

    def fit(self, examples: Sequence[Any], stop_after: int | None = None) -> TrainResult:
        """Train (resuming from `out/checkpoint.pt` if it is there); `stop_after` N ends after step N as a
        kill would (a checkpoint is written there), for tests of resuming."""
        config = self.config
        finished = self.out / RESULT
        if finished.is_file():  # a finished run is not trained again; its best model is in out/best
            saved = json.loads(finished.read_text(encoding="utf-8"))
            if saved.pop("config") == asdict(config):
                return TrainResult(**saved)
        if len(examples) < config.batch_size:
            raise InvalidInput(f"{len(examples)} training examples are fewer than one batch ({config.batch_size})")
        self.out.mkdir(parents=True, exist_ok=True)
        steps_per_epoch = len(examples) // config.batch_size  # the last partial batch is dropped (fixed shapes)
        total = steps_per_epoch * config.epochs
        optimizer = torch.optim.AdamW(self._parameter_groups(), lr=config.learning_rate)
        from transformers import get_linear_schedule_with_warmup

        scheduler = get_linear_schedule_with_warmup(optimizer, math.ceil(config.warmup_ratio * total), total)
        state = {"step": 0, "best": None, "best_step": None, "bad_evaluations": 0, "seconds": 0.0}
        _seed_everything(config.seed)
        if (self.out / CHECKPOINT).is_file():
            state = self._load_checkpoint(optimizer, scheduler)
            _truncate_log(self.out / LOG, state["step"])  # steps logged after the checkpoint will run again
        else:
            (self.out / LOG).unlink(missing_ok=True)
        started, first_step = time.perf_counter(), state["step"]
        stopped_early = False
        original, examples = examples, self._refreshed(examples, state["step"], total)
        with _progress(total, state["step"], self.show_progress) as advance:
            while state["step"] < total and not stopped_early:
                epoch, position = divmod(state["step"], steps_per_epoch)
                order = torch.randperm(len(examples), generator=torch.Generator().manual_seed(config.seed + epoch))
                rows = order[position * config.batch_size:(position + 1) * config.batch_size].tolist()
                self.model.train()
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.dtype == "bfloat16"):
                    loss = self.step([examples[row] for row in rows])
                if not math.isfinite(loss):
                    raise InvalidInput(f"the loss became {loss} at step {state['step'] + 1}: lower the learning rate")
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), config.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                state["step"] += 1
                elapsed = state["seconds"] + time.perf_counter() - started
                record: dict[str, Any] = {"step": state["step"], "epoch": epoch + (position + 1) / steps_per_epoch,
                                          "loss": loss, "learning_rate": scheduler.get_last_lr()[0],
                                          "examples_per_second": (state["step"] - first_step) * config.batch_size
                                          / max(time.perf_counter() - started, 1e-9)}
                end_of_epoch = state["step"] % steps_per_epoch == 0
                if self.evaluate is not None and ((config.eval_every and state["step"] % config.eval_every == 0)
                                                  or (not config.eval_every and end_of_epoch) or state["step"] == total):
                    stopped_early = self._evaluate(state, record)
                _append_log(self.out / LOG, record)
                advance(loss, record["examples_per_second"])
                refresh_now = self._is_refresh_step(state["step"], total)
                if state["step"] % config.checkpoint_every == 0 or state["step"] == stop_after or refresh_now:
                    self._save_checkpoint(optimizer, scheduler, {**state, "seconds": elapsed})
                if state["step"] == stop_after:
                    break
                if refresh_now:
                    examples = self._refreshed(original, state["step"], total)
        seconds = state["seconds"] + time.perf_counter() - started
        if state["step"] >= total or stopped_early:
            (self.out / CHECKPOINT).unlink(missing_ok=True)  # done: nothing to resume
            _plot_log(self.out / LOG, self.out / PLOT, config.metric)
        done = state["step"] - first_step
        result = TrainResult(state["step"], state["best"], state["best_step"], seconds,
                             done * config.batch_size / max(time.perf_counter() - started, 1e-9), stopped_early)
        if state["step"] >= total or stopped_early:
            finished.write_text(json.dumps({**asdict(result), "config": asdict(config)}) + "\n", encoding="utf-8")
        return result

    def _is_refresh_step(self, step: int, total: int) -> bool:
        return self.refresh is not None and 0 < step < total and step % self.config.refresh_every == 0

    def _refreshed(self, examples: Sequence[Any], step: int, total: int) -> Sequence[Any]:
        """The examples as of the last refresh at or before `step` (the originals before the first)."""
        if self.refresh is None:
            return examples
        last = step // self.config.refresh_every * self.config.refresh_every
        if not self._is_refresh_step(last, total):
            return examples
        rng = _rng_state()  # mining must not move the training's random streams
        self.model.eval()
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.dtype == "bfloat16"):
            fresh = self.refresh(last, examples)
        _set_rng_state(rng)
        if len(fresh) != len(examples):
            raise InvalidInput(f"a negative refresh returned {len(fresh)} examples for {len(examples)}")
        return fresh

    def _evaluate(self, state: dict[str, Any], record: dict[str, Any]) -> bool:
        assert self.evaluate is not None
        rng = _rng_state()  # evaluation must not move the training's random streams
        self.model.eval()
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.dtype == "bfloat16"):
            metrics = self.evaluate()
        _set_rng_state(rng)
        record["dev"] = metrics
        value = metrics[self.config.metric]
        if state["best"] is None or value > state["best"]:
            state.update(best=value, best_step=state["step"], bad_evaluations=0)
            if self.save_best is not None:
                self.save_best(self.out / "best")
            return False
        state["bad_evaluations"] += 1
        return bool(self.config.patience) and state["bad_evaluations"] >= self.config.patience

    def _parameter_groups(self) -> list[dict[str, Any]]:
        decay, no_decay, pooling = [], [], []
        for name, parameter in self.model.named_parameters():
            if not parameter.requires_grad:
                continue
            if name in _UNTRAINED_PARAMETERS:
                pooling.append(parameter)
            else:
                (no_decay if parameter.ndim < 2 or "LayerNorm" in name else decay).append(parameter)
        groups = [{"params": decay, "weight_decay": self.config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        if pooling:
            groups.append({"params": pooling, "weight_decay": 0.0, "lr": self.config.pooling_learning_rate})
        return groups

    def _save_checkpoint(self, optimizer: torch.optim.Optimizer, scheduler: Any, state: dict[str, Any]) -> None:
        partial = self.out / (CHECKPOINT + ".partial")
        torch.save({"model": self.model.state_dict(), "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(), "rng": _rng_state(), "state": state,
                    "config": asdict(self.config)}, partial)
        with partial.open("rb") as handle:
            os.fsync(handle.fileno())
        os.replace(partial, self.out / CHECKPOINT)  # a kill mid-save leaves the previous checkpoint

    def _load_checkpoint(self, optimizer: torch.optim.Optimizer, scheduler: Any) -> dict[str, Any]:
        try:
            saved = torch.load(self.out / CHECKPOINT, map_location="cpu", weights_only=False)
            self.model.load_state_dict(saved["model"])
            optimizer.load_state_dict(saved["optimizer"])
            scheduler.load_state_dict(saved["scheduler"])
        except Exception as error:  # noqa: BLE001 - any unreadable checkpoint gets the same advice
            raise InvalidInput(f"cannot resume from {self.out / CHECKPOINT} ({type(error).__name__}: {error}); "
                               "delete it to start the run afresh") from error
        if saved["config"] != asdict(self.config):
            raise InvalidInput(f"{self.out / CHECKPOINT} was written with other settings ({saved['config']}); "
                               "resume with the same ones or delete it to start afresh")
        _set_rng_state(saved["rng"])
        return saved["state"]


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _rng_state() -> dict[str, Any]:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def _truncate_log(path: Path, step: int) -> None:
    if path.is_file():
        kept = [line for line in path.read_text(encoding="utf-8").splitlines()
                if line.strip() and json.loads(line)["step"] <= step]
        path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")


def _append_log(path: Path, record: dict[str, Any]) -> None:
    with path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")


class _progress:  # noqa: N801 - a context manager
    """A rich bar with loss, examples/s and ETA; plain lines (each tenth of the run) when stderr is a file."""

    def __init__(self, total: int, done: int, enabled: bool) -> None:
        self.total, self.done, self.enabled = total, done, enabled
        self.bar: Any = None

    def __enter__(self) -> Callable[[float, float], None]:
        if not self.enabled:
            return lambda loss, speed: None
        from bicross.progress import LineProgress, stderr_console

        console = stderr_console()
        if not console.is_terminal:
            lines = LineProgress("training", self.total, lambda line: console.print(line, markup=False, highlight=False),
                                 done=self.done)
            return lambda loss, speed: lines.advance(1, f"loss {loss:.4f}, {speed:.1f} examples/s")
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.bar = Progress(TextColumn("training"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("loss {task.fields[loss]:.4f}, {task.fields[speed]:.1f} examples/s"),
                            TimeRemainingColumn(), console=console)
        self.bar.__enter__()
        task = self.bar.add_task("training", total=self.total, completed=self.done, loss=float("nan"), speed=0.0)
        return lambda loss, speed: self.bar.update(task, advance=1, loss=loss, speed=speed)

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)  # type: ignore[arg-type]


def _plot_log(log: Path, target: Path, metric: str) -> None:
    """Loss per step and the dev metric per evaluation, on two y axes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    records = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not records:
        return
    figure = Figure(figsize=(8, 4.5), dpi=110, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.plot([r["step"] for r in records], [r["loss"] for r in records], color="tab:blue", label="training loss")
    axes.set_xlabel("step")
    axes.set_ylabel("training loss", color="tab:blue")
    evaluated = [r for r in records if "dev" in r]
    if evaluated:
        dev = axes.twinx()
        dev.plot([r["step"] for r in evaluated], [r["dev"][metric] for r in evaluated], "o-", color="tab:green")
        dev.set_ylabel(f"dev {metric}", color="tab:green")
    axes.set_title("training loss and dev metric")
    figure.savefig(target)
