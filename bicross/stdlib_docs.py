"""A real corpus every machine with Python has: the docstrings of the standard library, read from its sources.

One document per public module, class, function and method that has a docstring: id and title are the
qualified name (`csv.DictReader`, `subprocess.run`), the text is the signature (for functions) and the
docstring. The .py files are parsed with `ast`, never imported: several modules act when imported
(`antigravity` opens a browser, `this` prints a poem, `tkinter` may look for a display).

Shortcuts, and why: objects implemented in C have no Python source, so they are missing (`csv.reader` lives
in `_csv`; the `csv` module's own docstring, which describes it, is here); test suites, IDLE, demos and
bundled installers are skipped (they document the standard library's development, not its use), as are
distutils (deprecated, removed in Python 3.12), private modules and names (a leading underscore) and
docstrings under 40 characters ("Return self." says nothing a search could use). A function defined twice
(per-platform branches) is kept once. `bicross demo` indexes this corpus when no data folder is given;
`DEMO_QUESTIONS` are hand-judged.
"""

from __future__ import annotations

import ast
import sysconfig
from collections.abc import Iterator, Sequence
from pathlib import Path

from bicross.errors import InvalidInput
from bicross.textfiles import read_text
from bicross.types import Document

__all__ = ["DEMO_QUESTIONS", "stdlib_documents", "stdlib_root"]

# Questions a person asks of the standard library, each with the objects a reader of its documentation would
# accept as an answer (judged by hand from the docs, before any search was run).
DEMO_QUESTIONS: dict[str, frozenset[str]] = {
    "read a csv file": frozenset({"csv", "csv.DictReader"}),
    "run a command and capture its output": frozenset({"subprocess", "subprocess.run", "subprocess.check_output",
                                                       "subprocess.getoutput", "subprocess.getstatusoutput",
                                                       "subprocess.Popen.communicate"}),
    "parse command line arguments": frozenset({"argparse", "argparse.ArgumentParser",
                                               "argparse.ArgumentParser.parse_args", "getopt", "getopt.getopt",
                                               "getopt.gnu_getopt", "optparse", "optparse.OptionParser",
                                               "optparse.OptionParser.parse_args"}),
    "compare two dates": frozenset({"datetime", "datetime.date", "datetime.datetime", "datetime.timedelta"}),
    "copy a file": frozenset({"shutil.copy", "shutil.copy2", "shutil.copyfile", "shutil.copyfileobj"}),
    "find files whose names match a pattern": frozenset({"glob", "glob.glob", "glob.iglob", "fnmatch",
                                                         "fnmatch.fnmatch", "fnmatch.filter", "pathlib.Path.glob",
                                                         "pathlib.Path.rglob", "pathlib.PurePath.match"}),
    "turn a Python object into a JSON string": frozenset({"json", "json.dumps", "json.dump", "json.JSONEncoder",
                                                          "json.JSONEncoder.encode", "json.encoder.JSONEncoder",
                                                          "json.encoder.JSONEncoder.encode"}),
    "generate a secure random token for a password reset link": frozenset({"secrets", "secrets.token_urlsafe",
                                                                           "secrets.token_hex",
                                                                           "secrets.token_bytes"}),
}

_SKIPPED_FOLDERS = frozenset({"test", "tests", "idle_test", "idlelib", "turtledemo", "ensurepip", "lib2to3", "distutils",
                              "pydoc_data", "site-packages", "dist-packages", "lib-dynload", "__pycache__"})
_MIN_DOCSTRING = 40
_Definition = ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef


def stdlib_root() -> Path:
    """The folder of the running Python's standard library sources; InvalidInput if they are not installed."""
    root = Path(sysconfig.get_path("stdlib"))
    if not (root / "csv.py").is_file():
        raise InvalidInput(f"the Python standard library sources are not at {root} (some distributions ship them "
                           "separately, e.g. Debian's libpython3-stdlib); pass a data folder to bicross demo instead")
    return root


def stdlib_documents(root: Path | None = None, modules: Sequence[str] | None = None) -> list[Document]:
    """Documents for the standard library at `root` (default: this Python's), optionally only some top-level
    `modules` (e.g. ["csv", "json"] for a small slice); sorted by file, then source order."""
    root = stdlib_root() if root is None else Path(root)
    wanted = None if modules is None else set(modules)
    documents: dict[str, Document] = {}
    for path in sorted(root.rglob("*.py")):
        module = _module_name(path.relative_to(root))
        if module is None or (wanted is not None and module.split(".")[0] not in wanted):
            continue
        for document in _file_documents(path, module, root):
            documents.setdefault(document.id, document)
    if not documents:
        raise InvalidInput(f"no documented modules found under {root}" + (f" among {sorted(wanted)}" if wanted else ""))
    return list(documents.values())


def _module_name(relative: Path) -> str | None:
    """`email/mime/text.py` -> "email.mime.text", `json/__init__.py` -> "json"; None for what is skipped."""
    *folders, file = relative.parts
    if any(folder in _SKIPPED_FOLDERS or folder.startswith(("_", ".")) or "-" in folder for folder in folders):
        return None
    stem = file.removesuffix(".py")
    if stem == "__init__":
        return ".".join(folders) or None
    if stem.startswith("_") or "-" in stem:
        return None
    return ".".join([*folders, stem])


def _file_documents(path: Path, module: str, root: Path) -> Iterator[Document]:
    try:
        tree = ast.parse(read_text(path, "Python source"), filename=str(path))
    except (SyntaxError, ValueError, InvalidInput):
        return  # a file of another Python version's grammar (or broken); the rest of the library is still read
    source = path.relative_to(root).as_posix()
    docstring = ast.get_docstring(tree)
    if docstring and len(docstring) >= _MIN_DOCSTRING:
        yield _document(module, "", docstring, "module", source)
    yield from _definitions(tree.body, module, source)


def _definitions(body: list[ast.stmt], prefix: str, source: str) -> Iterator[Document]:
    for node in body:
        if isinstance(node, ast.If | ast.Try):  # per-platform or fallback definitions at module or class level
            branches = [node.body, node.orelse] + ([handler.body for handler in node.handlers] + [node.finalbody]
                                                   if isinstance(node, ast.Try) else [])
            for branch in branches:
                yield from _definitions(branch, prefix, source)
        elif isinstance(node, _Definition) and not node.name.startswith("_"):
            name = f"{prefix}.{node.name}"
            docstring = ast.get_docstring(node)
            if docstring and len(docstring) >= _MIN_DOCSTRING:
                kind = "class" if isinstance(node, ast.ClassDef) else "function"
                yield _document(name, _signature(node), docstring, kind, source)
            if isinstance(node, ast.ClassDef):
                yield from _definitions(node.body, name, source)


def _signature(node: _Definition) -> str:
    """`run(*popenargs, input=None, ...)` for a function; "" for a class (its docstring describes it)."""
    if isinstance(node, ast.ClassDef):
        return ""
    arguments = ast.unparse(node.args)
    return f"{node.name}({arguments})"


def _document(name: str, signature: str, docstring: str, kind: str, source: str) -> Document:
    text = f"{signature}\n{docstring}" if signature else docstring
    return Document(id=name, text=text, title=name, metadata={"kind": kind, "source": source})
