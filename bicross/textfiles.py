"""Read a user's text files whatever their editor saved: UTF-8 with or without a byte-order mark, UTF-16/32.

Windows editors and Excel start UTF-8 files with a byte-order mark (EF BB BF), which `json.loads` and `csv`
would read as part of the first id or header; it is dropped. Excel's "Unicode text" export is UTF-16 with a
byte-order mark: such files (and UTF-32 ones) are recognised by their mark and decoded. UTF-16 without a
mark cannot be told from binary noise reliably; it shows as NUL bytes on the first line and is refused with
a message naming it, as is any byte that is not valid in the file's encoding (with file, line and column).
Every corpus, query, qrels, run and training-file reader of bicross goes through here.
"""

from __future__ import annotations

import codecs
import io
import json
from collections.abc import Iterator
from pathlib import Path

from bicross.errors import InvalidInput

__all__ = ["detect_encoding", "iter_lines", "json_object", "read_text"]

# Longest marks first: the UTF-32-LE mark begins with the UTF-16-LE one.
_MARKS = [
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
]
_NAMES = {"utf-32": "UTF-32", "utf-16": "UTF-16", "utf-8-sig": "UTF-8 with a byte-order mark", "utf-8": "UTF-8"}


def detect_encoding(head: bytes) -> str:
    """The codec for a file starting with `head`: the one its byte-order mark names, else "utf-8".

    >>> detect_encoding(b"\\xef\\xbb\\xbf{}"), detect_encoding(b"\\xff\\xfe{\\x00"), detect_encoding(b"{}")
    ('utf-8-sig', 'utf-16', 'utf-8')
    """
    return next((encoding for mark, encoding in _MARKS if head.startswith(mark)), "utf-8")


def iter_lines(path: str | Path, what: str = "file", keep_ends: bool = False) -> Iterator[tuple[int, str]]:
    """Yield (1-based line number, text) for every line of `path`, blank ones included, decoded as above.

    `what` names the expected content ("corpus", "TREC run file") in the error messages; `keep_ends` keeps
    the line endings (the csv module needs them to read a quoted field that spans lines).
    """
    path = Path(path)
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        raise InvalidInput(f"{what} {str(path)!r} does not exist: check the path") from None
    except IsADirectoryError:
        raise InvalidInput(f"{what} {str(path)!r} is a directory: pass the file inside it") from None
    with handle:
        encoding = detect_encoding(handle.peek(4)[:4])
        lines = _utf8_lines(handle, path, what) if encoding.startswith("utf-8") else _wide_lines(handle, encoding, path, what)
        for number, text in lines:
            yield number, text if keep_ends else text.rstrip("\r\n")


def read_text(path: str | Path, what: str = "file") -> str:
    """The whole text of `path`, decoded as `iter_lines` does (a byte-order mark is not part of it)."""
    return "".join(text for _, text in iter_lines(path, what, keep_ends=True))


def json_object(line: str, where: str) -> dict:
    """One JSONL line parsed as an object; InvalidInput naming `where` ("file:line") otherwise.

    >>> json_object('{"id": 1}', "f:1")
    {'id': 1}
    """
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        raise InvalidInput(f"{where}: malformed JSON ({error.msg} at column {error.colno})") from None
    if not isinstance(record, dict):
        raise InvalidInput(f"{where}: expected a JSON object, got {type(record).__name__}")
    return record


def _utf8_lines(handle: io.BufferedReader, path: Path, what: str) -> Iterator[tuple[int, str]]:
    # Decoded line by line (not through a TextIOWrapper) so an error can name its line and column.
    for number, raw in enumerate(handle, start=1):
        if number == 1:
            raw = raw.removeprefix(codecs.BOM_UTF8)
            if b"\x00" in raw:
                raise InvalidInput(f"{path}:1: {what} holds NUL bytes: it looks like UTF-16 without a byte-order "
                                   "mark (or a binary file); save it as UTF-8 (or UTF-16 with a byte-order mark)")
        try:
            yield number, raw.decode("utf-8")
        except UnicodeDecodeError as error:
            raise InvalidInput(
                f"{path}:{number}: {what} is not valid UTF-8 (byte {raw[error.start]:#04x} at column "
                f"{error.start + 1}): re-encode the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)"
            ) from None


def _wide_lines(handle: io.BufferedReader, encoding: str, path: Path, what: str) -> Iterator[tuple[int, str]]:
    # newline="" splits on \n, \r\n and \r but leaves the endings in place, as the UTF-8 path does.
    text = io.TextIOWrapper(handle, encoding=encoding, newline="")
    number = 0
    try:
        for number, line in enumerate(text, start=1):  # noqa: B007 (number is reported on a decode error)
            yield number, line
    except UnicodeDecodeError as error:
        raise InvalidInput(
            f"{path}:{number + 1}: {what} is {_NAMES[encoding]} by its byte-order mark, but holds bytes that are "
            f"not valid {_NAMES[encoding]} ({error.reason}): re-save it as UTF-8"
        ) from None
    finally:
        text.detach()
