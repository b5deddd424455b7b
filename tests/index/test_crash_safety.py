"""Crash safety and concurrency: writers killed with SIGKILL mid-commit, readers racing writers, one writer.

A writer subprocess replays a fixed plan of commits (add with an update, delete, compact) on a collection
built with the tiny model. Every plan step is one commit, so generation g holds exactly steps 1..g-1 and
the test knows the documents of every generation. After each kill the folder must open, hold exactly the
documents of some generation, include every commit the writer reported, and search consistently.

The writer embeds with the tiny model's vectors, computed here and handed over in a file, so it starts
without importing torch (a few tenths of a second instead of five): the commits it makes are the real ones.

No outcome here depends on the machine's speed: kills, pauses and reader checks are tied to the writer's own
progress (the commit steps of `store._step_hook`, its "committed" reports, or lines the test sends it), never
to a sleep, and a writer that runs out of plan waits for the test instead of exiting.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import bicross.index.segments as segments_module
from bicross.encoders import BiEncoder
from bicross.errors import IndexLocked
from bicross.index.collection import Collection
from bicross.index.store import MANIFEST
from bicross.scoring.similarity import normalize_rows
from bicross.types import Document

STEPS = 150  # plan length; the tests use fewer
MAX_SEGMENTS = 4  # the writer's, so that some adds compact by themselves
WORDS = "berlin paris city people river vitamin cancer cell gene protein study heart blood museum art dog fox".split()

WRITER = r"""
import json, os, signal, sys, time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

import bicross.index.collection as collection_module
import bicross.index.store as store
from bicross.index.collection import Collection
from bicross.types import Document

folder, table_file, plan_file, action, last_step = sys.argv[1:6]
table = np.load(table_file)
vectors = dict(zip(table["texts"].tolist(), table["vectors"]))
plan = json.loads(Path(plan_file).read_text())


class ReplayEncoder:
    # the tiny model's embeddings of the plan's texts, computed by the test
    def __init__(self, manifest):
        self.name, self.fingerprint = manifest["model"]["name"], manifest["model"]["fingerprint"]
        self.similarity = manifest["similarity"]

    def encode(self, texts, kind, show_progress=False):
        return SimpleNamespace(embeddings=np.stack([vectors[text] for text in texts]), truncated=0)


# action: "-" (run the plan), "step" (wait for a line on stdin before each commit), or
# "kill:STEP#N" / "pause:STEP#N" (at the Nth time a commit reaches STEP), optionally "@C" (counting only
# from the writer's C-th commit of this run on: "kill:file-staged#2@3").
what, _, point = action.partition(":")
point, _, from_commit = point.partition("@")
name, _, nth = point.partition("#")
seen, done = [0], [0]

def hook(step):
    if step == name and done[0] + 1 >= int(from_commit or 1):
        seen[0] += 1
        if seen[0] == int(nth or 1):
            if what == "pause":
                print("paused", flush=True)
                time.sleep(600)
            os.kill(os.getpid(), signal.SIGKILL)

if what in ("kill", "pause"):
    store._step_hook = hook

collection_module.MAX_SEGMENTS = 4  # as the test's plan expects: some adds compact by themselves
collection = Collection.open(folder)
encoder = ReplayEncoder(collection.manifest)
step = collection.manifest["generation"]  # generation g holds plan steps 1..g-1
print("ready", step, flush=True)
while step <= int(last_step):
    if what == "step" and not sys.stdin.readline():
        break
    operation = plan[step - 1]
    if operation["kind"] == "add":
        collection.add([Document(doc_id, text) for doc_id, text in operation["documents"]], encoder)
    elif operation["kind"] == "delete":
        collection.delete(operation["ids"])
    else:
        assert collection.compact()
    print("committed", step, flush=True)
    done[0] += 1
    step += 1
print("finished", flush=True)
sys.stdin.readline()  # stay alive until the test closes stdin (or kills us): the test decides when we end
"""


def _text(step: int, tag: str) -> str:
    words = " ".join(WORDS[(step * 7 + position * 3 + len(tag)) % len(WORDS)] for position in range(4))
    return f"{words} m{step}{tag}"  # the last word is unique: BM25 finds the document by it


def _plan(steps: int) -> tuple[list[dict], list[dict[str, str]]]:
    """The writer's operations, and the documents (id -> text, in collection order) after each step."""
    state = {f"b{i}": _text(0, f"b{i}") for i in range(8)}
    states, operations = [dict(state)], []
    segments, dead = 1, 0  # to know when a compaction has something to do (else it would not commit)
    for step in range(1, steps + 1):
        live = list(state)
        if step % 6 == 0:
            victim = live[step % len(live)]
            operations.append({"kind": "delete", "ids": [victim]})
            del state[victim]
            dead += 1
        elif step % 11 == 0 and (segments > 1 or dead):
            operations.append({"kind": "compact"})
            segments, dead = 1, 0
        else:
            updated = live[(3 * step) % len(live)]
            documents = [[f"n{step}", _text(step, "a")], [updated, _text(step, "u")]]
            operations.append({"kind": "add", "documents": documents})
            del state[updated]
            state.update(dict(documents))
            segments, dead = (segments + 1, dead + 1) if segments < MAX_SEGMENTS else (1, 0)
        states.append(dict(state))
    return operations, states


class Scenario:
    """A collection folder plus everything the writer subprocess and the checks need."""

    def __init__(self, folder: Path, files: dict[str, Path], states: list[dict[str, str]],
                 vectors: dict[str, np.ndarray]) -> None:
        self.folder, self.files, self.states, self.vectors = folder, files, states, vectors

    def start(self, action: str = "-", last_step: int = STEPS) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(self.folder), str(self.files["table"]), str(self.files["plan"]), action,
             str(last_step)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        ready = process.stdout.readline()  # type: ignore[union-attr]
        assert ready.startswith("ready"), process.communicate()[1]
        return process

    def check(self, collection: Collection | None = None) -> int:
        """Open the folder (or check an open collection): exactly some generation's documents, consistent."""
        collection = collection or Collection.open(self.folder)
        generation = collection.manifest["generation"]
        expected = self.states[generation - 1]
        assert [(d.id, d.text) for d in collection.documents] == list(expected.items())
        vectors = normalize_rows(np.stack([self.vectors[text] for text in expected.values()]))
        np.testing.assert_allclose(collection.dense.embeddings, vectors, atol=1e-5)
        assert collection.bm25.num_documents == len(collection.dense) == len(expected)
        newest_id, newest_text = list(expected.items())[-1]
        ids, _ = collection.bm25.search(newest_text.split()[-1], top_k=3)
        assert [collection.documents[i].id for i in ids] == [newest_id]
        return generation


@pytest.fixture(scope="module")
def encoder(tiny_encoder_path: Path) -> BiEncoder:
    return BiEncoder.load(str(tiny_encoder_path), dtype="float32")


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory, encoder: BiEncoder):
    operations, states = _plan(STEPS)
    texts = sorted({text for state in states for text in state.values()})
    vectors = encoder.encode_documents(texts)
    folder = tmp_path_factory.mktemp("crash-plan")
    np.savez(folder / "table.npz", texts=np.array(texts), vectors=vectors)
    (folder / "plan.json").write_text(json.dumps(operations))
    return {"table": folder / "table.npz", "plan": folder / "plan.json"}, states, dict(zip(texts, vectors, strict=True))


@pytest.fixture()
def scenario(tmp_path: Path, prepared, encoder: BiEncoder) -> Scenario:
    files, states, vectors = prepared
    Collection.build(tmp_path / "collection", [Document(i, text) for i, text in states[0].items()], encoder)
    return Scenario(tmp_path / "collection", files, states, vectors)


# (where the writer is killed during its first commit, whether that commit survives)
KILL_POINTS = [
    ("file-staged#1", False),  # a data file written in the staging folder
    ("file-renamed#2", False),  # data files of the new generation in place, no manifest names them
    ("manifest-staged#1", False),  # the new manifest written aside and fsynced, not yet renamed
    ("manifest-replaced#1", True),  # renamed: the commit point
    ("committed#1", True),  # before old files are cleaned up
    ("file-removed#2", True),  # in the middle of the cleanup
]


def test_writer_killed_at_each_step_of_a_commit_leaves_the_old_or_the_new_state(scenario: Scenario) -> None:
    generation = scenario.check()
    for point, survives in KILL_POINTS:  # each over the leftovers of the kills before it
        writer = scenario.start(f"kill:{point}")
        _, errors = writer.communicate(timeout=600)
        assert writer.returncode == -signal.SIGKILL, f"{point} never reached: {errors}"
        after = scenario.check()
        assert after == generation + survives, point
        generation = after
    writer = scenario.start(last_step=generation + 2)  # the next writer finishes and sweeps the leftovers
    _, errors = writer.communicate(timeout=600)
    assert writer.returncode == 0, errors
    assert scenario.check() == generation + 3
    leftovers = [p.name for p in scenario.folder.iterdir() if p.name.startswith((".bicross-staging", ".manifest"))]
    assert leftovers == []


COMMIT_STEPS = [point.partition("#")[0] for point, _ in KILL_POINTS]


def _reported(lines: list[str]) -> list[int]:
    return [int(line.split()[1]) for line in lines if line.startswith("committed")]


def test_writer_killed_at_random_moments_never_loses_a_reported_commit(scenario: Scenario) -> None:
    """Kill points come from the writer's own progress, never from a clock, so every round kills a working writer.

    Even rounds: the writer kills itself at a random step of a random commit (its 2nd to 4th of the round, at
    the 1st to 3rd time that commit reaches the step). Odd rounds: the test kills it as soon as it has read
    the writer's report of its 1st to 3rd commit, while the next commit runs (or, on a very fast machine, once
    it has finished: the writer then waits for the test, so it is still killed, never exits by itself).
    """
    rng = random.Random(7)
    generation, killed, mid_commit = scenario.check(), 0, 0
    for round_number in range(10):
        if round_number % 2 == 0:
            action = f"kill:{rng.choice(COMMIT_STEPS)}#{rng.randint(1, 3)}@{rng.randint(2, 4)}"
            writer = scenario.start(action, last_step=generation + 40)
            output, errors = writer.communicate(timeout=600)
            lines = output.splitlines()
        else:
            writer, lines, reports = scenario.start(last_step=generation + 40), [], rng.randint(1, 3)
            while len(_reported(lines)) < reports and (line := writer.stdout.readline()):  # type: ignore[union-attr]
                lines.append(line)
            writer.send_signal(signal.SIGKILL)
            output, errors = writer.communicate(timeout=600)
            lines += output.splitlines()
        assert "finished" not in lines or round_number % 2, (action, errors)  # a self-kill always lands
        killed += writer.returncode == -signal.SIGKILL
        reported = _reported(lines)
        last_reported = reported[-1] if reported else generation - 1
        after = scenario.check()
        # every commit the writer reported is there, plus at most the one it was killed right after
        assert after - 1 in (last_reported, last_reported + 1), (after, reported, errors)
        mid_commit += after - 1 == last_reported + 1
        generation = after
    print(f"{killed} kills, {generation - 1} commits, {mid_commit} killed between commit and report")
    assert killed == 10 and generation > 10  # every round committed at least once, then was killed


def test_readers_racing_a_writer_always_see_a_committed_state(scenario: Scenario) -> None:
    """The writer commits one step per line the test sends; the test checks the folder while each commit runs
    and again once it is reported, so the reader sees every generation whatever the machine's speed."""
    snapshot = Collection.open(scenario.folder)
    writer = scenario.start("step", last_step=scenario.check() + 14)
    seen = set()
    for _ in range(14):
        writer.stdin.write("go\n")  # type: ignore[union-attr]
        writer.stdin.flush()  # type: ignore[union-attr]
        seen.add(scenario.check())  # open + verify checksums + compare with the plan, racing the commit
        reported = writer.stdout.readline()  # type: ignore[union-attr]
        assert reported.startswith("committed"), writer.communicate(timeout=600)[1]
        generation = scenario.check()
        assert generation == int(reported.split()[1]) + 1
        seen.add(generation)
    _, errors = writer.communicate(timeout=600)
    assert writer.returncode == 0, errors
    assert seen >= set(range(2, 16))
    # a reader opened before all those commits still searches its own generation: its files stayed mapped
    assert scenario.check(snapshot) == 1
    assert snapshot.bm25.search("museum", top_k=3)[0].size >= 0
    assert snapshot.dense.search(np.asarray(snapshot.dense.embeddings[:1]), top_k=2)[0][0, 0] == 0


def test_paused_commit_is_invisible_to_readers_and_blocks_a_second_writer(scenario: Scenario,
                                                                          encoder: BiEncoder) -> None:
    writer = scenario.start("pause:manifest-staged#1")
    try:
        assert writer.stdout.readline().strip() == "paused"  # type: ignore[union-attr]
        assert scenario.check() == 1  # new files are in place and the new manifest is written aside
        with pytest.raises(IndexLocked, match="being written by another process"):
            Collection.open(scenario.folder).add([Document("x", "berlin")], encoder)
    finally:
        writer.kill()
        writer.communicate(timeout=600)
    assert scenario.check() == 1


def test_reader_overtaken_by_two_commits_while_opening_reads_the_newest(
        scenario: Scenario, encoder: BiEncoder, monkeypatch: pytest.MonkeyPatch) -> None:
    writer = Collection.open(scenario.folder)
    # Adds carry every segment's files over, so what goes away under a reader is a file that a later commit
    # replaced: here generation 2's tombstones, replaced by generation 3's and deleted when generation 4 lands.
    writer.delete(["b0"])
    verify_files = segments_module.verify_files
    raced: list[int] = []

    def verify_while_a_writer_commits(folder: Path, manifest: dict, checksums: bool = True) -> None:
        if not raced:  # the reader has read the manifest; two commits land before it reads the files
            raced.append(manifest["generation"])
            writer.delete(["b1"])
            writer.add([Document("r2", "zebra")], encoder)
        verify_files(folder, manifest, checksums)

    monkeypatch.setattr(segments_module, "verify_files", verify_while_a_writer_commits)
    opened = Collection.open(scenario.folder)
    assert raced == [2]
    assert opened.manifest["generation"] == 4
    assert [d.id for d in opened.documents][-1] == "r2" and "b0" not in opened and "b1" not in opened
    assert json.loads((scenario.folder / MANIFEST).read_text())["generation"] == 4
