"""Many small encrypted values in one ciphertext, so that their owner's key decrypts them at once.

A Paillier plaintext has ~2,048 bits; a fixed-point score needs well under 100.
:func:`pack` folds k ciphertexts [[x_1]] … [[x_k]] into one,

    [[Σ_j (x_j + offset)·2^(slot_bits·(j−1))]]        (Horner: acc ← acc^(2^slot_bits) · [[x_j + offset]])

and :func:`unpack` reads the slots back from the decrypted residue. The offset
makes every slot non-negative, so no slot borrows from the next.

Invariants (checked by :func:`unpack`, which the key's owner runs on whatever it
was sent):

* each x_j is a fixed-point residue with |x_j| < 2^(slot_bits − 2), i.e. either
  x_j or n − |x_j| for a negative value;
* a slot holds x_j + offset with offset = 2^(slot_bits − 2), so in [0, 2^(slot_bits − 1));
* k·slot_bits ≤ n's bits − 2, so the packed plaintext stays below n: nothing wraps.

Costs (2048-bit key): the packer pays slot_bits squarings mod n² per value
(~0.2 ms at 72 bits); the owner decrypts one ciphertext per k values instead of
k (a decryption is ~3 ms). Used by party B to send the arbiter a batch's
shuffled scores (:mod:`vfl.protocol.label_party`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import gmpy2
from gmpy2 import mpz

from vfl.compute.engine import Engine, as_engine
from vfl.compute.pool import split_evenly
from vfl.crypto.codec import pack_ints, unpack_ints
from vfl.crypto.keys import PublicKey
from vfl.errors import CiphertextError

#: Bits a slot adds above the values' fixed-point precision: values up to 2^37 in magnitude fit.
HEADROOM_BITS = 40
#: Below this many groups the packing stays in-process.
PARALLEL_GROUPS = 64


@dataclass(frozen=True)
class Layout:
    """How values of one fixed-point precision are packed under one key."""

    slot_bits: int
    slots: int  # values per ciphertext

    @classmethod
    def for_key(cls, key_bits: int, frac_bits: int) -> Layout:
        slot_bits = frac_bits + HEADROOM_BITS
        return cls(slot_bits, (key_bits - 2) // slot_bits)

    @property
    def offset(self) -> int:
        return 1 << (self.slot_bits - 2)

    def ciphertexts_for(self, count: int) -> int:
        return -(-count // self.slots)


def _pack_list(cts: Sequence[mpz], n: mpz, nsq: mpz, slot_bits: int, slots: int) -> list[mpz]:
    shift = mpz(1) << slot_bits
    # [[x + offset]] = [[x]]·(1 + offset·n): the offset makes the slot non-negative.
    with_offset = (1 + (mpz(1) << (slot_bits - 2)) * n) % nsq
    out = []
    for start in range(0, len(cts), slots):
        acc = mpz(1)
        for c in reversed(cts[start:start + slots]):  # Horner from the last slot down: slot j at 2^(slot_bits·j)
            acc = gmpy2.powmod(acc, shift, nsq) * (c * with_offset % nsq) % nsq
        out.append(acc)
    return out


def _pack_task(n: int, nsq: int, width: int, packed: bytes, count: int, slot_bits: int, slots: int) -> bytes:
    """One worker's share of :func:`pack`, as bytes in and out (cheap to ship to a process)."""
    return pack_ints(_pack_list(unpack_ints(packed, width, count), mpz(n), mpz(nsq), slot_bits, slots), width)


def pack(public_key: PublicKey, ciphertexts: Sequence[mpz], layout: Layout, engine: Engine | int | None = None,
         ) -> list[mpz]:
    """[[x_1]] … [[x_m]] → ⌈m / slots⌉ ciphertexts, in order (value i in ciphertext i // slots, slot i % slots)."""
    engine = as_engine(engine)
    groups = layout.ciphertexts_for(len(ciphertexts))
    if engine.workers <= 1 or groups < PARALLEL_GROUPS:
        return _pack_list(ciphertexts, public_key.n, public_key.nsquare, layout.slot_bits, layout.slots)
    width = public_key.ciphertext_bytes
    # Whole groups per task, so that no group is split.
    parts = [(s.start * layout.slots, min(s.stop * layout.slots, len(ciphertexts)))
             for s in split_evenly(groups, engine.workers)]
    tasks = [(int(public_key.n), int(public_key.nsquare), width, pack_ints(ciphertexts[a:b], width), b - a,
              layout.slot_bits, layout.slots) for a, b in parts]
    results = engine.map(_pack_task, tasks)
    return [c for part, (a, b) in zip(results, parts) for c in unpack_ints(part, width, -(-(b - a) // layout.slots))]


def unpack(residues: Sequence[mpz], count: int, layout: Layout, n: int) -> list[int]:
    """The ``count`` fixed-point residues (in [0, n), negatives as n − |x|) packed in ``residues``.

    Refuses a packing that breaks the layout: a slot beyond ``count`` that is not empty, or bits above
    the last slot. (Either only comes from a sender that did not pack as agreed.)
    """
    if len(residues) != layout.ciphertexts_for(count):
        raise CiphertextError(f"{count} packed values take {layout.ciphertexts_for(count)} ciphertexts, "
                              f"not {len(residues)}")
    mask, offset = (1 << layout.slot_bits) - 1, layout.offset
    values: list[int] = []
    for i, packed in enumerate(residues):
        packed = int(packed)
        here = min(layout.slots, count - i * layout.slots)
        for _ in range(here):
            values.append((packed & mask) - offset)
            packed >>= layout.slot_bits
        if packed:
            raise CiphertextError("a packed ciphertext holds more than its slots: it was not packed as agreed")
    return [v % n for v in values]


__all__ = ["HEADROOM_BITS", "Layout", "pack", "unpack"]
