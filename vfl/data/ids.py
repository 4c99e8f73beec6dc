"""The one rule for what counts as the same ID.

IDs are compared as exact text after stripping surrounding whitespace:

* a string is kept as written (``"007"`` stays ``"007"``);
* a Python or numpy integer becomes its decimal string (``7`` → ``"7"``);
* a float that holds a whole number becomes its integer string (``7.0`` → ``"7"``),
  because spreadsheets and pandas turn integer ID columns into floats;
* anything else (None, NaN, other floats, bytes that are not UTF-8, empty or
  whitespace-only strings) is an error naming the position and the fix.

So ``"007"`` and ``7`` are different IDs. If one party zero-pads and the other
does not, give that party's dataset normalisation rules (:class:`IdRules`:
strip leading zeros, drop a trailing ``.0``, change case, remove whitespace or
a prefix), applied by that party to its own IDs before the PSI and to every ID
it is asked to score. CSV files are read as text, so what is in the file is
what is compared.

:func:`profile_ids` describes an ID column coarsely (counts and shares of
formats, never an ID), and :func:`likely_causes` compares two profiles: what
the services exchange when an intersection is far smaller than expected.
:func:`explain_mismatch` is for ``vfl simulate``, where both files are local.

Duplicated IDs are an error too: alignment must map each person to one row.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Iterable
from numbers import Integral
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from vfl.errors import DataError

#: The longest ID accepted anywhere (characters): longer ones are refused, not truncated.
MAX_ID_LENGTH = 256


class IdRules(BaseModel):
    """How one party normalises its own IDs before the PSI (``ids = {...}`` in a ``[datasets.NAME]`` table).

    Applied in this order after the usual rule (surrounding whitespace stripped,
    ``7.0`` read as ``7``): remove whitespace, drop a trailing ``.0``, remove
    the prefix, strip leading zeros (``"007"`` → ``"7"``, ``"000"`` → ``"0"``),
    change case.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    remove_whitespace: bool = Field(False, description="remove every space or tab inside an ID")
    drop_trailing_dot_zero: bool = Field(False, description='"133.0" → "133" (a spreadsheet wrote numbers)')
    remove_prefix: str | None = Field(None, min_length=1, description='e.g. "CUST-": "CUST-42" → "42"')
    strip_leading_zeros: bool = Field(False, description='"0099" → "99"')
    case: Literal["lower", "upper"] | None = Field(None, description="compare IDs in one case")

    @property
    def active(self) -> bool:
        return bool(self.remove_whitespace or self.drop_trailing_dot_zero or self.remove_prefix
                    or self.strip_leading_zeros or self.case)

    def apply(self, text: str) -> str:
        if self.remove_whitespace:
            text = re.sub(r"\s+", "", text)
        if self.drop_trailing_dot_zero and text.endswith(".0"):
            text = text[:-2]
        if self.remove_prefix and text.startswith(self.remove_prefix):
            text = text[len(self.remove_prefix):]
        if self.strip_leading_zeros:
            text = text.lstrip("0") or ("0" if text else text)
        if self.case == "lower":
            text = text.lower()
        elif self.case == "upper":
            text = text.upper()
        return text


def normalize_id(value: object, *, source: str, position: int, rules: IdRules | None = None) -> str:
    """One ID as its canonical string, or a :class:`DataError` saying why not."""
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DataError(f"{source}: ID at row {position} is not valid UTF-8 text") from exc
    if isinstance(value, str):
        text = value.strip()
    elif isinstance(value, bool):
        raise DataError(f"{source}: ID at row {position} is a boolean ({value}); IDs must be text or integers")
    elif isinstance(value, Integral):
        text = str(int(value))
    elif isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            raise DataError(f"{source}: ID at row {position} is missing (NaN); every row needs an ID")
        if not value.is_integer():
            raise DataError(
                f"{source}: ID at row {position} is the non-integer number {value!r}; "
                "store IDs as text or integers"
            )
        text = str(int(value))
    elif value is None:
        raise DataError(f"{source}: ID at row {position} is missing; every row needs an ID")
    else:
        raise DataError(f"{source}: ID at row {position} has unsupported type {type(value).__name__}")
    if rules is not None:
        text = rules.apply(text)
    if not text:
        raise DataError(f"{source}: ID at row {position} is empty; every row needs an ID")
    if len(text) > MAX_ID_LENGTH:
        raise DataError(f"{source}: ID at row {position} has {len(text)} characters; IDs have at most "
                        f"{MAX_ID_LENGTH}")
    return text


def normalize_ids(values: Iterable[object], *, source: str, rules: IdRules | None = None) -> list[str]:
    """All IDs as canonical strings; empty, missing or duplicated IDs are errors."""
    ids = [normalize_id(v, source=source, position=i, rules=rules) for i, v in enumerate(values)]
    if not ids:
        raise DataError(f"{source}: no IDs; the table is empty")
    if len(set(ids)) != len(ids):
        counts = Counter(ids)
        dups = [(v, n) for v, n in counts.items() if n > 1]
        shown = ", ".join(f"{v!r} ×{n}" for v, n in dups[:5])
        raise DataError(
            f"{source}: {len(dups)} duplicated ID(s): {shown}; each ID must appear once. "
            "Drop or merge the duplicate rows" + (" (the duplicates may come from the ID normalisation rules)"
                                                  if rules is not None and rules.active else "")
        )
    return ids


# -- profiles: what an ID column looks like, without any ID --------------------------------------------------

#: Below this share of the smaller table, an intersection is worth explaining.
EXPECTED_SHARE = 0.9


#: IDs a profile looks at, at most (evenly spread over the column): the shares need no more.
PROFILE_SAMPLE = 50_000


def profile_ids(ids: list[str]) -> dict[str, Any]:
    """A coarse description of an ID column: counts and shares of formats, rounded to 2 decimals; never an ID.

    This is a release when it leaves the party: it tells the other party how the
    IDs are written (lengths, leading zeros, case, letters, separators, ".0"), and
    nothing about which IDs exist. At most :data:`PROFILE_SAMPLE` IDs, evenly
    spread, are looked at; ``count`` is the column's size, which the PSI declares anyway.
    """
    n = 0
    lengths: Counter[int] = Counter()
    counts: Counter[str] = Counter()
    for text in ids[:: max(1, len(ids) // PROFILE_SAMPLE)]:
        n += 1
        lengths[len(text)] += 1
        counts["digits_only"] += text.isdigit()
        counts["leading_zero"] += len(text) > 1 and text[0] == "0" and text.isdigit()
        counts["dot_zero"] += text.endswith(".0")
        counts["lower"] += any(c.islower() for c in text)
        counts["upper"] += any(c.isupper() for c in text)
        counts["letter_first"] += text[:1].isalpha()
        counts["whitespace"] += any(c.isspace() for c in text)
        counts["separator"] += any(not c.isalnum() and not c.isspace() for c in text)
    share = {k: round(v / n, 2) if n else 0.0 for k, v in counts.items()}
    common = [length for length, _ in lengths.most_common(3)]
    return {"count": len(ids), "length_min": min(lengths) if lengths else 0, "length_max": max(lengths) if lengths else 0,
            "common_lengths": sorted(common), **{f"share_{k}": share.get(k, 0.0) for k in (
                "digits_only", "leading_zero", "dot_zero", "lower", "upper", "letter_first", "whitespace",
                "separator")}}


def likely_causes(mine: dict[str, Any], theirs: dict[str, Any], *, who: str = "the other party") -> list[str]:
    """Differences of two ID profiles that usually explain a small intersection, each with the fix."""
    causes: list[str] = []

    def differs(key: str, low: float = 0.02, high: float = 0.05) -> str | None:
        a, b = float(mine.get(key, 0.0)), float(theirs.get(key, 0.0))
        if a <= low < high <= b:
            return "theirs"
        if b <= low < high <= a:
            return "mine"
        return None

    def one_side(key: str, text: str) -> None:
        """A format only one side has: ``text`` names whose IDs have it ({holder})."""
        side = differs(key)
        if side:
            causes.append(text.format(holder="this party's" if side == "mine" else f"{who}'s"))

    one_side("share_leading_zero", "leading zeros: {holder} IDs start with 0 and the other's do not (e.g. '099' "
             "against '99'); fix: strip_leading_zeros = true in the ids rules of the zero-padded dataset")
    one_side("share_dot_zero", "a '.0' suffix: {holder} IDs end in .0 (numbers written by a spreadsheet), the "
             "other's do not; fix: drop_trailing_dot_zero = true in the ids rules of that dataset")
    if (differs("share_lower") and differs("share_upper")) or \
            (differs("share_lower") and not (mine.get("share_upper") or theirs.get("share_upper"))):
        causes.append("letter case: one party writes IDs in lower case, the other in upper case; fix: "
                      'case = "lower" in the ids rules of both datasets')
    one_side("share_letter_first", "a prefix: {holder} IDs start with letters, the other's do not; fix: "
             'remove_prefix = "..." in the ids rules of that dataset')
    side = differs("share_whitespace")
    if side:
        causes.append("whitespace inside IDs on one side; fix: remove_whitespace = true in the ids rules")
    if not causes and mine.get("common_lengths") and theirs.get("common_lengths") and \
            not set(mine["common_lengths"]) & set(theirs["common_lengths"]):
        causes.append(f"lengths: this party's IDs are mostly {mine['common_lengths']} characters long, {who}'s "
                      f"{theirs['common_lengths']}; check that both columns hold the same kind of ID")
    return causes


#: Rewrites tried by :func:`explain_mismatch`, with the rule that fixes each and its words.
_REWRITES: list[tuple[str, Callable[[str], str], str]] = [
    ("removing leading zeros", lambda t: t.lstrip("0") or "0", "strip_leading_zeros"),
    ("dropping a trailing '.0'", lambda t: t[:-2] if t.endswith(".0") else t, "drop_trailing_dot_zero"),
    ("ignoring case", str.lower, "case"),
    ("removing whitespace", lambda t: re.sub(r"\s+", "", t), "remove_whitespace"),
    ("removing a letter prefix", lambda t: re.sub(r"^[A-Za-z]+[-_:#/]?", "", t), "remove_prefix"),
]


def mismatch_warning(matched: int, size_mine: int, size_theirs: int, mine: dict[str, Any] | None,
                     theirs: dict[str, Any] | None, *, who: str) -> str | None:
    """At a service: a warning when the intersection is far below the smaller set, from the two ID profiles."""
    smaller = min(size_mine, size_theirs)
    if smaller == 0 or matched >= EXPECTED_SHARE * smaller:
        return None
    head = f"{matched} of {smaller} IDs matched with {who} ({matched / smaller:.0%} of the smaller set)"
    causes = likely_causes(mine, theirs, who=who) if mine and theirs else []
    if causes:
        return f"{head}; the two ID columns are written differently: " + "; ".join(causes)
    if matched < 0.5 * smaller:
        return (f"{head}; if more were expected, check how each party writes its IDs (leading zeros, a '.0' "
                "suffix, letter case, a prefix, spaces) and set ids rules in the dataset's config "
                "(strip_leading_zeros, drop_trailing_dot_zero, case, remove_prefix, remove_whitespace)")
    return None


def explain_mismatch(ids_b: list[str], ids_a: list[str], source_b: str, source_a: str) -> str | None:
    """For ``vfl simulate`` (both files local): how many IDs matched, and which rewrite would match more."""
    set_b, set_a = set(ids_b), set(ids_a)
    matched = len(set_b & set_a)
    smaller = min(len(set_b), len(set_a))
    if smaller == 0 or matched >= smaller:
        return None
    head = f"{matched} of {smaller} IDs matched between {source_b} and {source_a}"
    only_b, only_a = set_b - set_a, set_a - set_b
    best: tuple[int, str, str, str] | None = None
    for words, rewrite, rule in _REWRITES:
        by_b: dict[str, str] = {}
        for t in only_b:
            by_b.setdefault(rewrite(t), t)
        pairs = [(by_b[rewrite(t)], t) for t in only_a if rewrite(t) in by_b]
        if pairs and (best is None or len(pairs) > best[0]):
            pair = max(pairs, key=lambda p: (len(p[0]), p))
            best = (len(pairs), words, rule, f"{pair[0]!r} ↔ {pair[1]!r}")
    if best is None:  # an ordinary partial overlap
        return None
    count, words, rule, example = best
    return (f"{head}; {count} more of {source_a}'s IDs match after {words} (e.g. {example}): normalise the IDs "
            f"(--id-normalize {rule.replace('_', '-')}), or fix the files")
