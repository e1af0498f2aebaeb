"""The search language inside ``q``: parsed into terms, with errors that name the bad term.

``q`` is a list of terms separated by spaces; a dataset matches when it matches every term:

* ``word``: full text over the name, metadata names and values and file names (a prefix);
* ``"a phrase"``: those words next to each other; ``-word``, ``-"a phrase"``, ``-key:value``:
  datasets that do not match the term;
* ``key:value`` (equal; text without regard to case, numbers as numbers, a ``YYYY-MM-DD`` date
  as that day), ``key>N``, ``key>=N``, ``key<N``, ``key<=N``, ``key:N..M`` (inclusive; either
  side may be left out), ``key:*`` (has the key), on flattened metadata keys
  (``Microscope-Vendor:"Asylum Research"``); a quoted key (``"Stage Temp">300``) is always a
  metadata key, never one of the built-ins;
* built-ins: ``created:YYYY-MM-DD``, ``created:YYYY-MM-DD..YYYY-MM-DD`` (either side open),
  ``instrument:NAME_OR_ID``, ``creator:USERNAME``, ``file:TEXT`` (a file name containing TEXT);
* a bare ``YYYY-MM-DD``: created that day (UTC).

Nothing here knows SQL: :mod:`dataflow_lite.store.search` turns the terms into a query, always
with bound parameters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from typing import Literal

#: One line on the syntax, shown in every error and beside the web search box.
SYNTAX = (
    'words, "a phrase", -word, key:value, key>N, key>=N, key<N, key<=N, key:N..M, key:*, '
    "created:YYYY-MM-DD[..YYYY-MM-DD], instrument:NAME, creator:USERNAME, file:TEXT"
)
BUILT_INS = ("created", "instrument", "creator", "file")
#: Longest ``q`` accepted, and most terms: a query is typed by a person.
MAX_QUERY = 2000
MAX_TERMS = 32

Scalar = float | int | date | str
Op = Literal["eq", "gt", "ge", "lt", "le", "range", "has"]
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
_KEY = re.compile(r'([^\s"<>=:]+)(>=|<=|:|>|<)')
_OPS: dict[str, Op] = {">": "gt", ">=": "ge", "<": "lt", "<=": "le"}


class QueryError(ValueError):
    """A malformed query: ``term`` is the term at fault, ``problem`` what is wrong with it."""

    def __init__(self, term: str, problem: str) -> None:
        super().__init__(f"cannot read {term!r} in the search: {problem} (syntax: {SYNTAX})")
        self.term = term
        self.problem = problem


@dataclass(frozen=True)
class Text:
    """Full-text words (``phrase``: they must be adjacent, in order)."""

    words: str
    phrase: bool
    negated: bool = False


@dataclass(frozen=True)
class Qualifier:
    """A question on one key: metadata (``builtin`` False) or one of :data:`BUILT_INS`."""

    key: str
    op: Op
    #: The value for eq/gt/ge/lt/le; for a range, ``low`` and ``high`` (None: open).
    value: Scalar | None = None
    low: Scalar | None = None
    high: Scalar | None = None
    builtin: bool = False
    negated: bool = False
    #: The value as typed, for a text match of ``key:value`` (any value also equals its text).
    raw: str = ""


Term = Text | Qualifier


def day(text: str) -> date | None:
    """The date ``YYYY-MM-DD`` names, or None when ``text`` is not one."""
    if not _DAY.fullmatch(text):
        return None
    try:
        return datetime.strptime(text, "%Y-%m-%d").date()
    except ValueError:
        return None


def number(text: str) -> int | float | None:
    """The number ``text`` spells (an int when it has no point or exponent), or None."""
    if not _NUMBER.fullmatch(text):
        return None
    if re.fullmatch(r"[+-]?\d+", text):
        return int(text)
    value = float(text)
    return value if value not in (float("inf"), float("-inf")) else None


def _ordered(term: str, text: str) -> int | float | date:
    """A value that can be compared: a number or a date, else a QueryError."""
    found: int | float | date | None = day(text)
    if found is None:
        found = number(text)
    if found is None:
        raise QueryError(term, f"{text!r} is neither a number nor a YYYY-MM-DD date")
    return found


def _range(term: str, key: str, text: str, dates_only: bool) -> Qualifier:
    low_text, high_text = text.split("..", 1)
    if not low_text and not high_text:
        raise QueryError(term, "a range needs at least one end (N..M, N.., ..M)")
    ends = [_ordered(term, end) if end else None for end in (low_text, high_text)]
    present = [end for end in ends if end is not None]
    if len({isinstance(end, date) for end in present}) > 1:
        raise QueryError(term, "both ends of a range must be numbers, or both dates")
    if dates_only and not all(isinstance(end, date) for end in present):
        raise QueryError(term, "created: takes YYYY-MM-DD dates")
    low, high = ends
    if low is not None and high is not None and _above(low, high):
        raise QueryError(term, "the range's first end is above its second")
    return Qualifier(key, "range", low=low, high=high, builtin=dates_only, raw=text)


def _above(low: int | float | date, high: int | float | date) -> bool:
    """Whether ``low`` is above ``high`` (two dates, or two numbers: _range checks which)."""
    if isinstance(low, date) or isinstance(high, date):
        return isinstance(low, date) and isinstance(high, date) and low > high
    return low > high


def _qualifier(term: str, key: str, op: str, text: str, quoted_key: bool) -> Qualifier:
    builtin = not quoted_key and key in BUILT_INS
    if not text:
        raise QueryError(term, f"{key}{op} needs a value")
    if op != ":":
        if builtin:
            raise QueryError(term, f"{key}: takes ':' (created:D..D for a range), not {op!r}")
        return Qualifier(key, _OPS[op], value=_ordered(term, text), raw=text)
    if builtin and key == "created":
        if ".." in text:
            return _range(term, key, text, dates_only=True)
        when = day(text)
        if when is None:
            raise QueryError(term, "created: takes a YYYY-MM-DD date or a range of them")
        return Qualifier(key, "range", low=when, high=when, builtin=True, raw=text)
    if builtin:
        return Qualifier(key, "eq", value=text, builtin=True, raw=text)
    if text == "*":
        return Qualifier(key, "has", raw=text)
    if ".." in text:
        return _range(term, key, text, dates_only=False)
    value: Scalar | None = day(text)
    if value is None:
        value = number(text)
    return Qualifier(key, "eq", value=text if value is None else value, raw=text)


def _quoted(query: str, start: int) -> tuple[str, int]:
    """The text between the quote at ``start`` and the next one, and the index after it."""
    end = query.find('"', start + 1)
    if end < 0:
        raise QueryError(query[start:], "the quote is never closed")
    return query[start + 1 : end], end + 1


def _end_of_term(query: str, at: int) -> int:
    while at < len(query) and not query[at].isspace():
        at += 1
    return at


def parse(query: str) -> list[Term]:
    """The terms of ``query``; raise QueryError naming the first malformed one."""
    if len(query) > MAX_QUERY:
        raise QueryError(query[:40] + "…", f"a search holds at most {MAX_QUERY} characters")
    # Control characters (NUL among them) separate terms: no term carries one into the index.
    query = "".join(char if char.isprintable() else " " for char in query)
    terms: list[Term] = []
    at = 0
    while at < len(query):
        if query[at].isspace():
            at += 1
            continue
        start = at
        negated = query[at] == "-" and at + 1 < len(query) and not query[at + 1].isspace()
        at += negated
        if query[at] == '"':
            inner, at = _quoted(query, at)
            op = next((op for op in (">=", "<=", ":", ">", "<") if query.startswith(op, at)), "")
            if op:  # "a quoted key":value
                term, value, at = _value(query, start, at + len(op))
                found: Term = _qualifier(term, inner, op, value, quoted_key=True)
            else:
                found = Text(inner, phrase=True)
                if at < len(query) and not query[at].isspace():
                    raise QueryError(query[start : _end_of_term(query, at)],
                                     "put a space after the closing quote")  # fmt: skip
        elif key := _KEY.match(query, at):
            term, value, at = _value(query, start, key.end())
            found = _qualifier(term, key.group(1), key.group(2), value, quoted_key=False)
        else:
            at = _end_of_term(query, at)
            word = query[start + negated : at]
            if word[0] in ":<>=":
                raise QueryError(query[start:at], "a qualifier needs a key before its operator")
            when = day(word)
            if when is not None:
                found = Qualifier("created", "range", low=when, high=when, builtin=True, raw=word)
            elif not any(char.isalnum() for char in word):
                continue  # punctuation alone finds what no term would: it is left out
            else:
                found = Text(word, phrase=False)
        if isinstance(found, Text) and not any(char.isalnum() for char in found.words):
            continue
        terms.append(_negate(found) if negated else found)
        if len(terms) > MAX_TERMS:
            raise QueryError(query[start:at], f"a search holds at most {MAX_TERMS} terms")
    return terms


def _value(query: str, start: int, at: int) -> tuple[str, str, int]:
    """The term from ``start``, its value (quoted or up to the next space) from ``at``, the end."""
    if at < len(query) and query[at] == '"':
        value, end = _quoted(query, at)
        if end < len(query) and not query[end].isspace():
            raise QueryError(query[start : _end_of_term(query, end)],
                             "put a space after the closing quote")  # fmt: skip
        return query[start:end], value, end
    end = _end_of_term(query, at)
    return query[start:end], query[at:end], end


def _negate(term: Term) -> Term:
    if isinstance(term, Text):
        return Text(term.words, term.phrase, negated=True)
    return Qualifier(term.key, term.op, term.value, term.low, term.high, term.builtin, True,
                     term.raw)  # fmt: skip
