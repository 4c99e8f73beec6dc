"""A querier's side: cached tag sets per lender, blinding, unblinding with checks, matching (no I/O).

:class:`Querier` keeps, per lender, the tag set last fetched, under its key id.
:meth:`Querier.blind` makes one blinded value per ID under that key;
:meth:`Querier.match` checks the lender's answer (the key id it signed under is
the one we blinded for, every signature verifies, s^e = blinded value), divides
out the blinding factors and looks each tag up. A signature under another key
id is never matched: the cached set is dropped and the caller fetches the new
one (:class:`~vfl.lending.lender.StaleKey`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from gmpy2 import mpz

from psi.protocol import blind_many, unblind_many
from vfl.errors import PSIError
from vfl.errors import StaleKey
from vfl.lending.lender import TagSet

Answer = Literal["lenders", "count"]


@dataclass
class CachedSet:
    tag_set: TagSet
    index: frozenset[bytes] = field(repr=False)


@dataclass(frozen=True)
class Blinded:
    """One lender's share of a query: the key it is blinded for, the values sent, and r⁻¹ (kept here)."""

    lender: str
    key_id: str
    values: list[mpz]
    inverses: list[mpz]


class Querier:
    def __init__(self, *, min_key_bits: int = 2048, max_key_bits: int | None = None, max_tags: int | None = None) -> None:
        self.min_key_bits = min_key_bits
        self.max_key_bits = max_key_bits
        self.max_tags = max_tags
        self._cache: dict[str, CachedSet] = {}

    def accept(self, lender: str, data: object) -> TagSet:
        """Check a fetched tag set (JSON) and cache it for ``lender``, replacing any other key's."""
        tag_set = TagSet.from_public(data, min_key_bits=self.min_key_bits, max_key_bits=self.max_key_bits,
                                     max_tags=self.max_tags, source=f"lender {lender!r}")
        self._cache[lender] = CachedSet(tag_set, frozenset(tag_set.tag_list()))
        return tag_set

    def cached(self, lender: str) -> TagSet | None:
        entry = self._cache.get(lender)
        return None if entry is None else entry.tag_set

    def forget(self, lender: str) -> None:
        self._cache.pop(lender, None)

    def blind(self, lender: str, ids: list[str]) -> Blinded:
        """FDH(x)·r^e mod n for each ID under the lender's cached key, r fresh and uniform in Z_n*."""
        entry = self._cache.get(lender)
        if entry is None:
            raise PSIError(f"no tag set of lender {lender!r} is cached; fetch it first")
        ts = entry.tag_set
        inverses, values = blind_many(ids, ts.salt, ts.public.n, ts.public.e)
        return Blinded(lender, ts.key_id, values, inverses)

    def match(self, blinded: Blinded, key_id: str, signatures: list[mpz]) -> list[bool]:
        """Is each blinded ID in the lender's tag set? Every signature is checked first.

        A key id other than the one blinded for, or than the cached set's, raises
        :class:`StaleKey` and drops the cache: its tags belong to another key.
        """
        lender = blinded.lender
        entry = self._cache.get(lender)
        if entry is None or key_id != blinded.key_id or entry.tag_set.key_id != key_id:
            self.forget(lender)
            raise StaleKey(f"lender {lender!r} answered under key {key_id!r}, not the key {blinded.key_id!r} "
                           "the query was blinded for; its tag set is fetched again")
        if len(signatures) != len(blinded.values):
            raise PSIError(f"lender {lender!r} returned {len(signatures)} signatures for {len(blinded.values)} "
                           "blinded values")
        ts = entry.tag_set
        tags = unblind_many(signatures, blinded.inverses, blinded.values, ts.salt, ts.public.n, ts.public.e)
        if isinstance(tags, int):
            raise PSIError(f"lender {lender!r}: signature {tags} fails its check s^e = blinded value; "
                           "the answer is refused")
        return [t in entry.index for t in tags]


def answers(ids: list[str], found: dict[str, list[bool]], mode: Answer) -> list[dict[str, object]]:
    """Per ID, in order: the lenders that hold it (``"lenders"``), or only how many (``"count"``)."""
    out: list[dict[str, object]] = []
    for i, x in enumerate(ids):
        holders = [lender for lender, hits in found.items() if hits[i]]
        out.append({"id": x, "found_at": holders} if mode == "lenders" else {"id": x, "count": len(holders)})
    return out
