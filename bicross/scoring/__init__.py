"""Pure array functions that turn scores into scores: similarity and fusion; no I/O, no models."""

from __future__ import annotations
