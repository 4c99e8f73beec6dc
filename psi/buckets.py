"""The PSI's IDs on disk: spilled into hash buckets, so that no side holds its whole set at once.

A party's IDs are read once, as a stream (a list, a CSV/Parquet/SQL source's
``iter_ids``), normalised (:mod:`vfl.data.ids`) and appended to one of ``K`` bucket
files chosen by a public hash of the ID (:func:`bucket_of`: SHA-256 under a
domain tag, no key, no salt). Each record is the ID's row number in the
dataset and its UTF-8 bytes, length-prefixed, so any text survives. Memory
while spilling is one write buffer per bucket; a bucket is read back whole
(one ~1M-ID bucket at a time) when the PSI reaches it, and checked there for
duplicates, which can only collide inside one bucket.

With ``K = 1`` and an in-memory list nothing is written: :class:`IdBuckets`
keeps the list, so a small job runs exactly as before.

:class:`OwnTagCache` is party A's optional store of its signed own-ID tags for
a key it reuses with the same partner (``[psi] reuse_own_signatures``); see
:mod:`psi.protocol` for what reuse reveals.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import shutil
import struct
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vfl.data.ids import normalize_id
from vfl.errors import DataError
from vfl.files import atomic_write

BUCKET_DOMAIN = b"vfl/psi/bucket/v1\x00"
#: Default most IDs per bucket: K is chosen so that a bucket holds about this many.
DEFAULT_BUCKET_IDS = 1_000_000
#: Spill write buffer per bucket, in bytes.
BUFFER_BYTES = 1 << 20
_RECORD = struct.Struct("<QI")  # row number, ID length in bytes


def bucket_of(identifier: str, buckets: int) -> int:
    """The bucket of a normalised ID: a public hash, the same at both parties and in every job."""
    if buckets == 1:
        return 0
    digest = hashlib.sha256(BUCKET_DOMAIN + identifier.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % buckets


def bucket_count(size_a: int, size_b: int, bucket_ids: int) -> int:
    """K for two declared set sizes: the fewest buckets in which the larger set has ≤ ``bucket_ids`` per bucket."""
    return max(1, -(-max(size_a, size_b) // max(1, bucket_ids)))


class IdBuckets:
    """A party's IDs split into K buckets: their row numbers and IDs, bucket by bucket.

    Build one with :meth:`spill`. ``sizes[k]`` is the number of IDs in bucket k;
    ``digest`` is the SHA-256 of the IDs in stream order (what :class:`OwnTagCache`
    keys on); ``size`` the total.
    """

    def __init__(self, buckets: int, sizes: list[int], digest: str, *, directory: Path | None = None,
                 memory: list[str] | None = None, partition: list[np.ndarray] | None = None,
                 owned: bool = False) -> None:
        self.buckets = buckets
        self.sizes = sizes
        self.digest = digest
        self.directory = directory
        self._memory = memory
        self._partition = partition
        self._owned = owned

    @property
    def size(self) -> int:
        return sum(self.sizes)

    @classmethod
    def spill(
        cls, ids: Iterable[object], buckets: int, directory: Path | str | None = None, *, source: str = "IDs",
        normalized: bool = False,
    ) -> IdBuckets:
        """Read ``ids`` once and file each under its bucket.

        ``directory`` None: a private temporary folder, removed by :meth:`close`
        (a list is kept in memory instead, with each bucket's row numbers).
        ``normalized``: the IDs are canonical strings already (skip :func:`normalize_id`).
        """
        digest = hashlib.sha256()
        if directory is None and isinstance(ids, list):  # already in memory: keep it there
            out = ids if normalized else [normalize_id(v, source=source, position=i) for i, v in enumerate(ids)]
            if not out:
                raise DataError(f"{source}: no IDs; the table is empty")
            for x in out:
                digest.update(x.encode("utf-8") + b"\n")
            if buckets == 1:
                check_unique(out, source)
                return cls(1, [len(out)], digest.hexdigest(), memory=out)
            parts: list[list[int]] = [[] for _ in range(buckets)]
            for row, x in enumerate(out):
                parts[bucket_of(x, buckets)].append(row)
            return cls(buckets, [len(p) for p in parts], digest.hexdigest(), memory=out,
                       partition=[np.asarray(p, dtype=np.int64) for p in parts])
        owned = directory is None
        folder = Path(tempfile.mkdtemp(prefix="vfl-psi-")) if owned else Path(directory)
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        for old in folder.glob("bucket-*.ids"):
            old.unlink()
        buffers: list[bytearray] = [bytearray() for _ in range(buckets)]
        sizes = [0] * buckets
        handles: dict[int, Any] = {}

        def flush(k: int) -> None:
            handle = handles.get(k)
            if handle is None:
                handle = handles[k] = open(folder / f"bucket-{k}.ids", "ab")  # noqa: SIM115 - closed below
            handle.write(buffers[k])
            buffers[k].clear()

        row = -1
        try:
            for row, value in enumerate(ids):
                x = value if normalized else normalize_id(value, source=source, position=row)
                data = x.encode("utf-8")
                digest.update(data + b"\n")
                k = bucket_of(x, buckets)
                buffer = buffers[k]
                buffer += _RECORD.pack(row, len(data))
                buffer += data
                sizes[k] += 1
                if len(buffer) >= BUFFER_BYTES:
                    flush(k)
            for k in range(buckets):
                flush(k)
        finally:
            for handle in handles.values():
                handle.close()
        if row < 0:
            if owned:
                shutil.rmtree(folder, ignore_errors=True)
            raise DataError(f"{source}: no IDs; the table is empty")
        return cls(buckets, sizes, digest.hexdigest(), directory=folder, owned=owned)

    def read(self, k: int, *, source: str = "IDs") -> tuple[np.ndarray, list[str]]:
        """Bucket k: its row numbers (ascending) and IDs. A duplicated ID is a :class:`DataError`."""
        if self._memory is not None:
            if self._partition is None:
                return np.arange(len(self._memory), dtype=np.int64), self._memory
            rows = self._partition[k]
            ids = [self._memory[i] for i in rows]
            check_unique(ids, source)
            return rows, ids
        data = (self.directory / f"bucket-{k}.ids").read_bytes()
        rows = np.empty(self.sizes[k], dtype=np.int64)
        ids: list[str] = []
        offset, i = 0, 0
        unpack, head = _RECORD.unpack_from, _RECORD.size
        while offset < len(data):
            row, length = unpack(data, offset)
            offset += head
            ids.append(data[offset : offset + length].decode("utf-8"))
            offset += length
            rows[i] = row
            i += 1
        if i != self.sizes[k]:
            raise DataError(f"{source}: bucket {k} holds {i} IDs, {self.sizes[k]} were written; the spill is damaged")
        check_unique(ids, source)
        return rows, ids

    def close(self) -> None:
        """Remove the spill folder if this object made it."""
        if self._owned and self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)

    def describe(self) -> dict[str, Any]:
        return {"buckets": self.buckets, "sizes": self.sizes, "digest": self.digest}


def check_unique(ids: list[str], source: str) -> None:
    if len(set(ids)) != len(ids):
        dups = [(v, n) for v, n in Counter(ids).items() if n > 1]
        shown = ", ".join(f"{v!r} ×{n}" for v, n in dups[:5])
        raise DataError(f"{source}: {len(dups)} duplicated ID(s): {shown}; each ID must appear once. "
                        "Drop or merge the duplicate rows")


class OwnTagCache:
    """Party A's signed own-ID tags for one partner and dataset, kept for a reused RSA key.

    One folder: ``key.json`` (the private key's CRT parts and the salt: 0600,
    A's secret) and ``tags-<salt>-<k>.bin`` (bucket k's tags under that salt,
    in the bucket's row order). The cache is valid only for the same ID digest
    and bucket count; a changed dataset replaces it with a fresh key. Tag files
    are named by the salt they were made with, so a job still using a replaced
    key can never mix its tags into the new key's.
    """

    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory)

    def _meta(self) -> dict[str, Any] | None:
        file = self.directory / "key.json"
        if not file.is_file():
            return None
        try:
            content = json.loads(file.read_text())
            data = content["data"]
            if hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest() != content["sha256"]:
                return None
            return data
        except (ValueError, KeyError, TypeError, OSError):
            return None

    def load(self, digest: str, buckets: int) -> dict[str, Any] | None:
        """The stored key material when it matches this dataset and bucket count, else None."""
        meta = self._meta()
        if meta is None or meta.get("digest") != digest or meta.get("buckets") != buckets:
            return None
        return meta

    def reset(self, digest: str, buckets: int, key: dict[str, Any], salt: bytes) -> None:
        """Start over for this dataset: the new key and salt, no tags yet."""
        shutil.rmtree(self.directory, ignore_errors=True)
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        data = {"digest": digest, "buckets": buckets, "key": key, "salt": salt.hex()}
        text = json.dumps({"sha256": hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest(),
                           "data": data})
        _write_private(self.directory / "key.json", text.encode())

    def tags(self, salt: bytes, k: int, count: int) -> list[bytes] | None:
        """Bucket k's stored tags under ``salt``, if there are exactly ``count``."""
        from psi.hashing import TAG_BYTES

        file = self.directory / f"tags-{salt.hex()[:16]}-{k}.bin"
        if not file.is_file():
            return None
        data = file.read_bytes()
        if len(data) != count * TAG_BYTES:
            return None
        return [data[i * TAG_BYTES : (i + 1) * TAG_BYTES] for i in range(count)]

    def save_tags(self, salt: bytes, k: int, tags: list[bytes]) -> None:
        if self.directory.is_dir():  # not if the cache was removed meanwhile
            _write_private(self.directory / f"tags-{salt.hex()[:16]}-{k}.bin", b"".join(tags))


class PsiIds:
    """A party's IDs for the PSI, read on demand: a list, or a re-readable stream.

    ``read`` returns a fresh iterator over the IDs in row order each time it is
    called (a source's ``iter_ids``), so a large set is never held at once: it
    is counted in one pass and spilled into buckets in another. A list is
    simply kept. ``spill_dir`` is where buckets go (None: a private temporary
    folder, removed by :meth:`close`).
    """

    def __init__(self, read: Callable[[], Iterable[object]] | None = None, *, ids: list[str] | None = None,
                 source: str = "IDs", normalized: bool = False, spill_dir: Path | str | None = None,
                 size: int | None = None) -> None:
        if (read is None) == (ids is None):
            raise TypeError("give either read (a stream of IDs) or ids (a list)")
        self._read = read
        self._list = ids
        self.source = source
        self.normalized = normalized
        self.spill_dir = Path(spill_dir) if spill_dir is not None else None
        self._size = len(ids) if ids is not None else size
        self._buckets: IdBuckets | None = None

    @classmethod
    def of(cls, ids: PsiIds | Sequence[object], *, source: str) -> PsiIds:
        """Wrap a list (or other sequence) of IDs; a :class:`PsiIds` passes through."""
        if isinstance(ids, PsiIds):
            return ids
        return cls(ids=list(ids), source=source)

    @property
    def size(self) -> int:
        """How many IDs there are (one counting pass over a stream, the first time)."""
        if self._size is None:
            self._size = sum(1 for _ in self._read())
        return self._size

    def buckets(self, count: int) -> IdBuckets:
        """The IDs in ``count`` buckets (spilled once; the same object on later calls)."""
        if self._buckets is not None and self._buckets.buckets == count:
            return self._buckets
        self.close()
        if self._list is not None and self.spill_dir is None:
            self._buckets = IdBuckets.spill(self._list, count, source=self.source, normalized=self.normalized)
        else:
            stream = self._list if self._list is not None else self._read()
            directory = None if self.spill_dir is None else self.spill_dir / f"k{count}"
            self._buckets = IdBuckets.spill(stream, count, directory, source=self.source,
                                            normalized=self.normalized)
            self._buckets._owned = True  # noqa: SLF001 - ours to remove, wherever it was put
        self._size = self._buckets.size
        return self._buckets

    def close(self) -> None:
        if self._buckets is not None:
            self._buckets.close()
            self._buckets = None


class BucketResults:
    """The intersection, bucket by bucket: each bucket's common IDs and own rows, sorted by ID.

    Kept in memory; :class:`DiskBucketResults` keeps them in files so that an
    alignment stopped midway resumes at its first unfinished bucket.
    :meth:`merged_rows` gives the rows in the order of the whole intersection by
    ID, which does not depend on K.
    """

    def __init__(self) -> None:
        self._parts: dict[int, tuple[list[str], np.ndarray]] = {}

    def open(self, fingerprint: dict[str, Any]) -> int:
        """Begin (or continue) an alignment described by ``fingerprint``; the number of buckets already done."""
        self._parts = {}
        return 0

    def finished(self) -> int:
        """Buckets finished in a row from bucket 0."""
        k = 0
        while k in self._parts:
            k += 1
        return k

    def save(self, bucket: int, ids: list[str], rows: np.ndarray) -> None:
        """Bucket ``bucket``'s result: the common IDs sorted, and this party's row of each."""
        self._parts[bucket] = (ids, rows)

    def _iter(self, bucket: int) -> Iterator[tuple[str, int]]:
        ids, rows = self._parts[bucket]
        return zip(ids, (int(r) for r in rows))

    def merged_rows(self, buckets: int) -> np.ndarray:
        """This party's rows of the whole intersection, ordered by ID."""
        merged = heapq.merge(*(self._iter(k) for k in range(buckets)))
        return np.fromiter((row for _, row in merged), dtype=np.int64)

    def clear(self) -> None:
        self._parts = {}


class DiskBucketResults(BucketResults):
    """Bucket results in ``directory`` (0700): ``meta.json`` and one ``result-<k>.bin`` per finished bucket.

    ``meta.json`` holds the alignment's fingerprint (this party's ID digest, K,
    its per-bucket sizes); a restart with another fingerprint (the data
    changed) starts over. Each bucket file is written atomically, so a kill
    leaves a bucket either whole or absent.
    """

    def __init__(self, directory: Path | str) -> None:
        super().__init__()
        self.directory = Path(directory)

    def open(self, fingerprint: dict[str, Any]) -> int:
        meta = self.directory / "meta.json"
        try:
            same = json.loads(meta.read_text()) == fingerprint
        except (OSError, ValueError):
            same = False
        if not same:
            self.clear()
            _write_private(meta, json.dumps(fingerprint).encode())
        return self.finished()

    def finished(self) -> int:
        k = 0
        while (self.directory / f"result-{k}.bin").is_file():
            k += 1
        return k

    def save(self, bucket: int, ids: list[str], rows: np.ndarray) -> None:
        out = bytearray()
        for x, row in zip(ids, rows):
            data = x.encode("utf-8")
            out += _RECORD.pack(int(row), len(data))
            out += data
        _write_private(self.directory / f"result-{bucket}.bin", bytes(out))

    def _iter(self, bucket: int) -> Iterator[tuple[str, int]]:
        data = (self.directory / f"result-{bucket}.bin").read_bytes()
        offset, head = 0, _RECORD.size
        while offset < len(data):
            row, length = _RECORD.unpack_from(data, offset)
            offset += head
            yield data[offset : offset + length].decode("utf-8"), row
            offset += length

    def clear(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


def _write_private(path: Path, data: bytes) -> None:
    """Atomically write ``data`` (0600), making the folder (0700) if needed."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    atomic_write(path, data)


__all__ = ["DEFAULT_BUCKET_IDS", "BucketResults", "DiskBucketResults", "IdBuckets", "OwnTagCache", "PsiIds", "bucket_count", "bucket_of", "check_unique"]
