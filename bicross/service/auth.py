"""API keys: who may read (search, rerank, embed) and who may write (add, delete documents).

Keys come from a file (one per line: `KEY` for read and write, `KEY:read` for read only; `#` starts a
comment) and/or an environment variable (the same entries, comma-separated). Only their sha256 hashes
are kept, and a presented key is hashed and compared with `hmac.compare_digest` against every stored
hash, so neither the comparison's time nor a memory dump gives a key away.

Rules: with no keys configured, reads are open; writes always need a key with write access unless the
operator allowed anonymous writes (then a request without a key may read and write). A wrong key is
refused even where no key would have been accepted: a client with a typo should hear about it.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from bicross.errors import InvalidInput

__all__ = ["Access", "ApiKeys", "Denied"]


class Access(Enum):
    """What a request needs."""

    READ = "read"
    WRITE = "write"


class Denied(Exception):
    """A request without the access it needs: `status` 401 (no or wrong key) or 403 (read-only key)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class ApiKeys:
    """sha256 hashes of the configured keys, each with whether it may write."""

    hashes: tuple[tuple[bytes, bool], ...] = ()
    allow_anonymous_writes: bool = False

    @classmethod
    def from_entries(cls, entries: Iterable[str], allow_anonymous_writes: bool = False) -> ApiKeys:
        """Keys from `KEY` / `KEY:read` entries (blank entries and `#` comments skipped).

        >>> keys = ApiKeys.from_entries(["s3cret", "viewer:read", "# a comment"])
        >>> keys.check("Bearer viewer", Access.READ), len(keys.hashes)
        (None, 2)
        """
        hashes = []
        for raw in entries:
            entry = raw.split("#", 1)[0].strip()
            if not entry:
                continue
            key, _, scope = entry.rpartition(":") if entry.endswith((":read", ":write")) else (entry, "", "write")
            if not key:
                raise InvalidInput(f"an API key entry is empty before ':{scope}'; write KEY or KEY:read")
            hashes.append((_digest(key), scope == "write"))
        return cls(tuple(hashes), allow_anonymous_writes)

    @classmethod
    def load(cls, file: Path | None, env_var: str | None, allow_anonymous_writes: bool = False) -> ApiKeys:
        """Keys from `file` (one entry per line) plus the comma-separated entries in `$env_var`."""
        entries: list[str] = []
        if file is not None:
            try:
                entries += Path(file).read_text(encoding="utf-8").splitlines()
            except OSError as error:
                raise InvalidInput(f"cannot read the API key file {file}: {error.strerror}") from error
            if not any(line.split("#", 1)[0].strip() for line in entries):
                raise InvalidInput(f"the API key file {file} holds no key; write one KEY or KEY:read per line")
        if env_var and os.environ.get(env_var):
            entries += os.environ[env_var].split(",")
        return cls.from_entries(entries, allow_anonymous_writes)

    @property
    def configured(self) -> bool:
        """Whether any key was configured (if not, reads are open)."""
        return bool(self.hashes)

    def check(self, authorization: str | None, needed: Access) -> None:
        """Return if a request with this `Authorization` header value may do `needed`; raise Denied if not.

        >>> keys = ApiKeys.from_entries(["viewer:read"])
        >>> keys.check("Bearer viewer", Access.WRITE)
        Traceback (most recent call last):
        ...
        bicross.service.auth.Denied: this API key is read-only; writing documents needs a key with write access
        """
        presented = _bearer(authorization)
        if presented is None:
            if self.allow_anonymous_writes or (needed is Access.READ and not self.configured):
                return
            if needed is Access.WRITE and not self.configured:
                raise Denied(401, "writes need an API key and none is configured; start the server with "
                                  "--api-key-file (or --allow-anonymous-writes on a trusted network)")
            raise Denied(401, "this server needs an API key: send 'Authorization: Bearer KEY'")
        can_write = self._match(presented)
        if can_write is None:
            raise Denied(401, "unknown API key")
        if needed is Access.WRITE and not can_write:
            raise Denied(403, "this API key is read-only; writing documents needs a key with write access")

    def _match(self, key: str) -> bool | None:
        """Whether the key may write, or None for no match; every stored hash is compared (constant time)."""
        digest = _digest(key)
        found: bool | None = None
        for stored, can_write in self.hashes:
            if hmac.compare_digest(stored, digest):
                found = can_write if found is None else (found or can_write)
        return found


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


def _bearer(authorization: str | None) -> str | None:
    """The key in `Bearer KEY` (or a bare `KEY`); None when the header is absent or blank."""
    value = (authorization or "").strip()
    scheme, _, rest = value.partition(" ")
    if scheme.lower() == "bearer":
        value = rest.strip()
    return value or None
