"""Mask the variable parts of a log / error message with typed placeholders.

`mask("Attempt 1 for c53f1db3-... failed after 8406ms")` -> `"Attempt <NUM> for <UUID> failed after <DURATION>"`.

The rules run in a fixed order, and the order is the point: a later, more general rule must never see
the raw material an earlier, more specific rule owns.

1. URL first: a URL embeds paths, tweet ids, hex query ids and numbers; masked piecewise it would
   leave a different template per endpoint shape.
2. EMAIL before anything that could eat its host or its digits.
3. Quoted values next: what sits in quotes without a space is a value (a column, a constraint, a
   selector), whatever it looks like; masking it later would only mask its digits and keep its words.
   A quoted phrase (it holds a space) is text, often the message itself (`"GET /v2/... HTTP/1.1"`,
   `"Whoops! You already said that."`): its parts are masked by the rules below like any other text.
4. UUID before HEX and NUM: a uuid is made of hex groups and digits.
5. TS before IP, DURATION and NUM: `2026-11-27T04:52:58.35+00:00` would otherwise become a pile of
   numbers, and `04:52:58` is not three numbers.
6. IP (with optional port) before PATH and NUM: `10.0.102.72:5432` is one value. HOST likewise: a DNS
   name with a port (`db-1.internal:5432`) or with three labels or more (`MSRA-SA-41.fareast.corp.com`)
   is one value, masked the same way whether it stands alone or after `key=`. Only letters, digits and
   hyphens, ending in a lowercase label: `ib_sm_sweep.c:1831` (underscore) and `org.apache.Foo` stay.
7. PATH: file paths and stack frames (`/app/dist/x.js:591:7`) with their line numbers.
8. TWEET_ID (15-20 digits) before HEX (a long digit run is valid hex) and NUM.
9. HEX: needs a digit and a letter a-f, so English words ("facade") and plain numbers stay out.
10. DURATION and SIZE before NUM: the unit belongs to the value (`30000ms`, `2.5s`, `5 min`, `1433MB`).
11. NUM last: whatever digits are left, when they stand alone (not inside a word like `gpt-4o`, nor glued
    to an identifier like `RATE_LIMITED_429`, which is a code, not a value).
"""

from __future__ import annotations

import re

_NOT_ALNUM_BEFORE = r"(?<![A-Za-z0-9])"
_NOT_ALNUM_AFTER = r"(?![A-Za-z0-9])"
_UNITS_TIME = r"(?:ms|msec|millis(?:econds?)?|us|µs|ns|s|secs?|seconds?|m|mins?|minutes?|h|hrs?|hours?|d|days?)"
_UNITS_SIZE = r"(?:[KMGT]i?B|bytes?|B)"
# A sign belongs to the value unless glued to a word or number on its left:
# `blk_-42` -> `blk_<NUM>`, while `1-5` stays a range `<NUM>-<NUM>`.
_SIGN = r"(?:(?<![A-Za-z0-9])[-+])?"
_MONTH = r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"

# (placeholder, compiled regex) in application order -- see the module docstring for why this order.
RULES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("<URL>", re.compile(r"\b(?:https?|wss?|ftp|postgres(?:ql)?|redis)://[^\s'\"<>()\[\]{}]*[^\s'\"<>()\[\]{}.,;:!?]")),
    ("<EMAIL>", re.compile(r"\b[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")),
    # quotes: opening quote not glued to a word on its left (so "can't ... don't" is not a quoted value)
    ("<STR>", re.compile(r"(?<![\w'])'[^'\s]{1,200}'(?![\w'])|(?<![\w\"])\"[^\"\s]{1,200}\"(?![\w\"])")),
    (
        "<UUID>",
        re.compile(
            _NOT_ALNUM_BEFORE + r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
            r"[0-9a-fA-F]{12}" + _NOT_ALNUM_AFTER
        ),
    ),
    (
        "<TS>",
        re.compile(
            _NOT_ALNUM_BEFORE
            + r"(?:\d{4}[-/.]\d{1,2}[-/.]\d{1,2}"  # date, then optional time, fraction and zone
            + r"(?:[T :-]\d{2}[:.]\d{2}(?:[:.]\d{2}(?:[.,]\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?"
            + r"|"
            + _MONTH
            + r" {1,2}\d{1,2}(?: \d{4})? \d{2}:\d{2}:\d{2}"
            + r"|\d{1,2}:\d{2}:\d{2}(?:[.,]\d+)?)"
            + _NOT_ALNUM_AFTER
        ),
    ),
    ("<IP>", re.compile(_NOT_ALNUM_BEFORE + r"\d{1,3}(?:\.\d{1,3}){3}(?::\d{1,5})?" + r"(?![A-Za-z0-9.])")),
    (
        "<HOST>",
        re.compile(
            r"(?<![\w.:/@-])[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
            r"(?:(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*\.[a-z]{2,}:\d{1,5}"
            r"|(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+\.[a-z]{2,})(?![\w.:-])"
        ),
    ),
    ("<PATH>", re.compile(r"(?<![\w.:/<>-])(?:/[\w.@%+~-]+){2,}/?(?::\d+)*")),
    ("<TWEET_ID>", re.compile(_SIGN + _NOT_ALNUM_BEFORE + r"\d{15,20}" + _NOT_ALNUM_AFTER)),
    (
        "<HEX>",
        re.compile(
            _NOT_ALNUM_BEFORE
            + r"(?:0[xX][0-9a-fA-F]+|(?=[0-9a-f]*[a-f])(?=[0-9a-f]*\d)[0-9a-f]{6,})"
            + _NOT_ALNUM_AFTER
        ),
    ),
    ("<DURATION>", re.compile(r"(?<![\w.])\d+(?:\.\d+)? ?" + _UNITS_TIME + _NOT_ALNUM_AFTER)),
    ("<SIZE>", re.compile(r"(?<![\w.])\d+(?:\.\d+)? ?" + _UNITS_SIZE + _NOT_ALNUM_AFTER)),
    ("<NUM>", re.compile(_SIGN + r"(?<![\w])\d+(?:[._]\d+)*" + _NOT_ALNUM_AFTER)),
)

# <JOB> is not produced by `mask` itself: the API substitutes the event's known job name (see api.py).
JOB_PLACEHOLDER = "<JOB>"
PLACEHOLDERS: frozenset[str] = frozenset({*(name for name, _ in RULES), JOB_PLACEHOLDER})
_WHITESPACE = re.compile(r"\s+")


def mask(text: str | None) -> str:
    """Replace variable parts of `text` with typed placeholders; whitespace is collapsed to single spaces."""
    if not text:
        return ""
    out = text
    for placeholder, pattern in RULES:
        out = pattern.sub(placeholder, out)
    return _WHITESPACE.sub(" ", out).strip()


def has_placeholder(token: str) -> bool:
    """True when a token holds a placeholder (used by the miner's prefix tree, which routes those as `<*>`)."""
    return "<" in token and any(p in token for p in PLACEHOLDERS)
