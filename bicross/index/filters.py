"""Metadata filters: which documents a search may return, as a boolean mask over a collection's documents.

A filter spec maps a field to a condition; every condition must hold (AND):

    {"lang": "en"}                                  equality (a list is shorthand for "in")
    {"journal": {"in": ["Nature", "Cell"]}}         set membership; "not_in" for the opposite
    {"year": {"gte": 2010, "lt": 2020}}             ranges: gt, gte, lt, lte (numbers, or strings such as
                                                    ISO dates, compared as strings)
    {"lang": {"ne": "en"}}                          inequality

Fields are metadata keys, plus "id" and "title" for the document's own id and title. The mask is applied
inside the searches (dense search never scores excluded rows, BM25 drops them before its top-k cut), so a
filtered search still returns `top_k` documents whenever that many pass the filter.

Matching rules, and why:
- Numbers compare as numbers (2010 == 2010.0) and never equal strings or booleans: "2010" != 2010. The
  CLI parses a value that looks like a number as a number; quote it (`id="2010"`) to keep a string.
- A document without the field fails every condition except "ne" and "not_in" (it is not equal to the
  value), as in most search engines.
- A list-valued field (tags, authors) satisfies a condition when any element does; for "ne"/"not_in",
  when no element equals a value.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from bicross.errors import InvalidInput
from bicross.types import Document

__all__ = ["Condition", "Filters", "Operator", "filter_mask", "parse_filter_expressions", "parse_filters"]

Filters = Mapping[str, Any]
Operator = Literal["eq", "ne", "in", "not_in", "gt", "gte", "lt", "lte"]
Scalar = str | int | float | bool
_OPERATORS = ("eq", "ne", "in", "not_in", "gt", "gte", "lt", "lte")
_RANGES = {"gt": lambda a, b: a > b, "gte": lambda a, b: a >= b, "lt": lambda a, b: a < b, "lte": lambda a, b: a <= b}
_MISSING = object()
# `field OP value` on the command line; the field is anything up to the first operator character.
_EXPRESSION = re.compile(r"^\s*([^<>=!\s]+)\s*(>=|<=|!=|==|=|>|<)\s*(.*?)\s*$", re.DOTALL)
_CLI_OPERATORS = {">=": "gte", "<=": "lte", ">": "gt", "<": "lt", "=": "eq", "==": "eq", "!=": "ne"}


@dataclass(frozen=True)
class Condition:
    """One checked condition: `field operator value` (value is a tuple for "in" and "not_in")."""

    field: str
    operator: Operator
    value: Scalar | tuple[Scalar, ...]


def parse_filters(filters: Filters | None) -> tuple[Condition, ...]:
    """Check a filter spec and turn it into conditions (sorted, so equal specs give equal tuples).

    >>> parse_filters({"year": {"gte": 2010}, "lang": "en"})
    (Condition(field='lang', operator='eq', value='en'), Condition(field='year', operator='gte', value=2010))
    """
    if filters is None:
        return ()
    if not isinstance(filters, Mapping):
        raise InvalidInput(f"filters must be a mapping of field -> condition, got {type(filters).__name__}; "
                           'e.g. {"year": {"gte": 2010}, "lang": "en"}')
    conditions = []
    for field, spec in filters.items():
        if not isinstance(field, str) or not field:
            raise InvalidInput(f"filter field names must be non-empty strings, got {field!r}")
        if isinstance(spec, Mapping):
            if not spec:
                raise InvalidInput(f"filter on {field!r} has no condition; give e.g. {{'eq': ...}} or {{'gte': ...}}")
            conditions += [_condition(field, operator, value) for operator, value in spec.items()]
        elif isinstance(spec, list | tuple):
            conditions.append(_condition(field, "in", spec))
        else:
            conditions.append(_condition(field, "eq", spec))
    return tuple(sorted(conditions, key=lambda c: (c.field, c.operator, json.dumps(c.value))))


def filter_mask(documents: Sequence[Document], conditions: Iterable[Condition]) -> np.ndarray:
    """Boolean mask `(len(documents),)`: True where a document satisfies every condition.

    >>> docs = [Document("a", "x", metadata={"year": 2009}), Document("b", "y", metadata={"year": 2015})]
    >>> filter_mask(docs, parse_filters({"year": {"gte": 2010}})).tolist()
    [False, True]
    """
    mask = np.ones(len(documents), dtype=bool)
    for condition in conditions:
        matches = _matcher(condition)
        candidates = np.flatnonzero(mask)  # later conditions only look at what earlier ones kept
        mask[candidates] = [matches(_field_values(documents[position], condition.field)) for position in candidates]
    return mask


def parse_filter_expressions(expressions: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Command-line filters (`year>=2010`, `journal=Nature,Cell`, `lang!=en`) as a filter spec.

    A comma-separated value after `=` or `!=` is a set ("in" / "not_in"). Values that look like numbers are
    numbers; quote a value ('"2010"') to keep it a string. Several expressions on one field combine (AND).

    >>> parse_filter_expressions(["year>=2010", "year<2020", "journal=Nature,Cell"])
    {'year': {'gte': 2010, 'lt': 2020}, 'journal': {'in': ['Nature', 'Cell']}}
    """
    spec: dict[str, dict[str, Any]] = {}
    for expression in expressions:
        match = _EXPRESSION.match(expression)
        # `year>>2` or `year=>2` is a typo, not a comparison with the string ">2" (quote it to mean that)
        if match is None or not match.group(3) or match.group(3)[0] in "<>=!":
            raise InvalidInput(f"cannot read the filter {expression!r}; write FIELD OP VALUE with OP one of "
                               "= != > >= < <=, e.g. 'year>=2010' or 'journal=Nature,Cell'")
        field, symbol, text = match.groups()
        operator = _CLI_OPERATORS[symbol]
        values = [_cli_value(part) for part in _split_unquoted(text)]
        if len(values) > 1 and operator not in ("eq", "ne"):
            raise InvalidInput(f"filter {expression!r}: a list of values only goes with = or !=")
        value: Any = values[0]
        if len(values) > 1:
            operator, value = ("in" if operator == "eq" else "not_in"), values
        if operator in spec.setdefault(field, {}):
            raise InvalidInput(f"filter {expression!r}: {field} already has a {symbol} condition; give it once")
        spec[field][operator] = value
    parse_filters(spec)  # report a bad value now, naming the expression's field
    return spec


def _condition(field: str, operator: object, value: object) -> Condition:
    if operator not in _OPERATORS:
        raise InvalidInput(f"unknown filter operator {operator!r} on {field!r}; use one of {', '.join(_OPERATORS)}")
    if operator in ("in", "not_in"):
        if isinstance(value, str) or not isinstance(value, list | tuple | set | frozenset):
            raise InvalidInput(f"filter {field!r} {operator}: expected a list of values, got {value!r}")
        if not value:
            raise InvalidInput(f"filter {field!r} {operator}: the list is empty (it would match "
                               f"{'nothing' if operator == 'in' else 'everything'}); give at least one value")
        values = tuple(_scalar(field, operator, item) for item in value)
        return Condition(field, operator, values)  # type: ignore[arg-type]
    scalar = _scalar(field, operator, value)  # type: ignore[arg-type]
    if operator in _RANGES and isinstance(scalar, bool):
        raise InvalidInput(f"filter {field!r} {operator}: a range needs a number or a string, got {value!r}")
    return Condition(field, operator, scalar)  # type: ignore[arg-type]


def _scalar(field: str, operator: str, value: object) -> Scalar:
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidInput(f"filter {field!r} {operator}: {value!r} is not a finite number")
    if isinstance(value, str | int | float | bool):
        return value
    raise InvalidInput(f"filter {field!r} {operator}: values must be strings, numbers or booleans, "
                       f"got {type(value).__name__} {value!r}")


def _key(value: object) -> tuple[str, Any] | None:
    """What a value compares as: booleans, numbers and strings are three separate kinds."""
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, int | float) and not (isinstance(value, float) and math.isnan(value)):
        return ("number", value)
    if isinstance(value, str):
        return ("str", value)
    return None


def _matcher(condition: Condition) -> Callable[[list[Any]], bool]:
    """A function of a document's values for the field (several for a list field) -> does it match."""
    if condition.operator in ("eq", "ne", "in", "not_in"):
        values = condition.value if isinstance(condition.value, tuple) else (condition.value,)
        keys = {_key(value) for value in values}
        if condition.operator in ("ne", "not_in"):
            return lambda found: not any(_key(value) in keys for value in found)
        return lambda found: any(_key(value) in keys for value in found)
    kind, bound = _key(condition.value)  # type: ignore[misc]
    compare = _RANGES[condition.operator]

    def in_range(found: list[Any]) -> bool:
        return any(key is not None and key[0] == kind and compare(key[1], bound) for key in map(_key, found))

    return in_range


def _field_values(document: Document, field: str) -> list[Any]:
    """The document's values for `field`: [] when absent, the elements of a list, else [value]."""
    if field == "id":
        return [document.id]
    if field == "title":
        return [document.title]
    value = document.metadata.get(field, _MISSING)
    if value is _MISSING:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


def _split_unquoted(text: str) -> list[str]:
    """Split on commas outside quotes: 'a,"b,c"' -> ['a', '"b,c"']."""
    parts, current, quote = [], "", ""
    for character in text:
        if quote:
            quote = "" if character == quote else quote
        elif character in "\"'":
            quote = character
        elif character == ",":
            parts.append(current)
            current = ""
            continue
        current += character
    parts.append(current)
    if quote:
        raise InvalidInput(f"unbalanced quote in the filter value {text!r}")
    return [part.strip() for part in parts]


def _cli_value(text: str) -> Scalar:
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        return text[1:-1]
    if not text:
        raise InvalidInput("empty value in a filter list; remove the extra comma")
    for kind in (int, float):
        try:
            number = kind(text)
        except ValueError:
            continue
        if isinstance(number, float) and not math.isfinite(number):
            break  # "nan" and "inf" stay strings
        return number
    return text
