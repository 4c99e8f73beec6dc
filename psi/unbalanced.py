"""Unbalanced ECDH PSI: the large side encrypts its set once, offline; a query then costs what the small side holds.

When one side is much larger (a bank's 20M customers against a partner's 200k
applicants), the balanced ECDH PSI (:mod:`psi.suites`) still multiplies every
ID of the large set twice per job. Here the large side L keeps a long-lived
secret scalar k (one per partner, rotated at will) and does that work once:

Offline (once per key; reused by every later query of the same partner)
    L computes the tag t(x) = H3(k·H(x)) of every x in its set X and sends
    the tags to the small side S (:class:`OfflineTags`), which keeps them
    (:class:`PeerTags`, sorted, on disk if wanted). L keeps the same tags in
    row order (:class:`LargeSet`) to map matches back to its rows.

Online (per query; work and bytes in proportion to S's set Y only)
    1. S draws a fresh scalar r and sends r·H(y) for every y (:class:`BlindedQuery`);
    2. L checks every point and answers k·(r·H(y)) (:class:`EvaluatedQuery`);
    3. S multiplies by r⁻¹ (mod ℓ, written as a clamped X25519 scalar:
       :func:`psi.ec.new_invertible_scalar`), which gives k·H(y), hashes it to t(y) and
       looks it up among L's tags: S now knows Y ∩ X;
    4. S sends the matched tags, sorted (:class:`QueryMatches`); L maps each to
       its row. Both sides hold the rows of the intersection, in one order.

S's work is |Y| hashes and 2|Y| multiplications, L's |Y| multiplications and
|Y ∩ X| lookups; 64|Y| + 16|Y ∩ X| bytes cross the wire (plus message framing).

What each side learns, and what reuse costs
-------------------------------------------
* S learns |X| (the number of tags) and Y ∩ X, as in the balanced PSI. The
  tags are outputs of a PRF keyed by k (DDH on curve25519), so a tag of an
  ID S does not query says nothing; S can test an ID only by querying it,
  and L counts every query against its caps (``max_peer_ids``).
* L learns |Y| and Y ∩ X (step 4), as in the balanced PSI. The query points
  r·H(y) hide y from L as any DH share does: r is a fresh X25519 scalar
  (about 2^250 values), so telling r·H(y) from r·H(y') is a DDH problem.
* **Linkability, the price of reuse.** While k is kept, t(x) is the same in
  every job with this partner: S sees which of L's entries stayed, left or
  arrived between two offline sets (not which IDs they are, unless S holds
  them), and can link its matches across jobs. Rotating k (a new
  :class:`OfflineKey`) ends the linking and costs one offline pass. The balanced
  ECDH PSI draws fresh scalars per job and links nothing.
* A deviating L can use another scalar for some queries or put tags of IDs
  it does not hold in its set; both only change which of S's IDs "match",
  which a party can always do by choosing its own set, and the declared
  sizes bound how many. A deviating S can query any IDs, as many as L's caps
  allow. Neither side ever receives a value that identifies an ID unmasked,
  and every point received is checked (:func:`psi.ec.check_points`) before a
  secret scalar touches it.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydantic import Field

from psi import ec
from psi.messages import MAX_CHUNK, PsiMessage
from psi.protocol import check_declared_size
from psi.suites import check_point_payload, on_points
from psi.tasks import mask_ids, remask
from vfl.compute.engine import Engine, as_engine
from vfl.compute.pool import split_evenly
from vfl.errors import ConfigError, ProtocolError, PSIError
from vfl.protocol.messages import Message, register_message
from vfl.protocol.role import Envelope, Role
from vfl.protocol.roster import RoleKind, Roster
from vfl.protocol.wire import decode_message, encode_message

#: Bytes of a tag: 128 bits, so a false match among 10^8 × 10^8 IDs has probability below 2^-75.
TAG_BYTES = 16
TAG_DOMAIN = b"vfl/psi/unbalanced-tag/v1"
#: Bytes of the set digest that names one offline set (hex in messages).
DIGEST_BYTES = 32
DEFAULT_CHUNK = 50_000


# -- tags ------------------------------------------------------------------------------------------


def point_tags(points: bytes, salt: bytes) -> bytes:
    """H3(P) of packed 32-byte points, packed: SHA-256 under the unbalanced domain and the key's salt, 16 bytes each."""
    prefix = hashlib.sha256(TAG_DOMAIN + len(salt).to_bytes(2, "big") + salt)
    size = ec.POINT_BYTES
    out = bytearray()
    for at in range(0, len(points), size):
        h = prefix.copy()
        h.update(points[at : at + size])
        out += h.digest()[:TAG_BYTES]
    return bytes(out)


def as_tag_array(packed: bytes) -> np.ndarray:
    """Packed 16-byte tags as a numpy array of ``S16`` (sortable, searchable)."""
    if len(packed) % TAG_BYTES:
        raise PSIError(f"{len(packed)} bytes is not a whole number of {TAG_BYTES}-byte tags (truncated or garbled)")
    return np.frombuffer(packed, dtype=f"S{TAG_BYTES}")


def _offline_task(ids: list[str], dst: bytes, scalar: ec.Scalar, salt: bytes) -> bytes:
    """Worker task: the packed tags H3(k·H(x)) of a chunk of L's own (normalised) IDs, in order."""
    return point_tags(ec.pack_points(mask_ids(ids, dst, scalar)), salt)


def _unblind_task(points: bytes, inverse: ec.Scalar, salt: bytes) -> bytes | None:
    """Worker task: H3(r⁻¹·P) of packed received points, or None if one is not a valid non-identity point."""
    unblinded = remask(points, inverse)
    return None if unblinded is None else point_tags(unblinded, salt)


def _on_points(engine: Engine, task: object, packed: bytes, what: str, *args: object) -> bytes:
    """Run a point task over the engine, one slice per worker (the balanced PSI's driver); the packed results."""
    return b"".join(on_points(engine, task, packed, len(packed) // ec.POINT_BYTES, what, *args))


# -- the large side's key and offline set ----------------------------------------------------------


@dataclass(frozen=True, repr=False)
class OfflineKey:
    """L's long-lived secret for one partner: the scalar k and the salt its hash's DST and tags derive from.

    ``label`` names the pair of parties (e.g. "party-b->party-a"): the DST binds
    the tags to it, so a set made for one partner is no use with another.
    """

    scalar: ec.Scalar
    salt: bytes
    label: str

    @classmethod
    def new(cls, label: str) -> OfflineKey:
        """A fresh key: a new scalar and salt (rotating the key starts a new, unlinkable offline set)."""
        return cls(ec.new_scalar(), secrets.token_bytes(32), label)

    @property
    def dst(self) -> bytes:
        return ec.job_dst(f"unbalanced:{self.label}", self.salt)

    def __repr__(self) -> str:
        return f"OfflineKey({self.label!r}, <secret>)"

    def save(self, path: Path | str) -> None:
        """Write the key to ``path`` readable by its owner only (0600); it never leaves the party."""
        record = {"group": ec.SUITE_ID.decode(), "scalar": self.scalar.encoded.hex(), "salt": self.salt.hex(),
                  "label": self.label}
        target = Path(path)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(record, out)

    @classmethod
    def load(cls, path: Path | str) -> OfflineKey:
        try:
            record = json.loads(Path(path).read_text())
            if record.get("group") != ec.SUITE_ID.decode():
                raise ConfigError(f"the unbalanced-PSI key at {path} is for another group ({record.get('group')!r}, "
                                  f"this version uses {ec.SUITE_ID.decode()!r}); rotate it: make a new key and "
                                  "offline set, and send the partner the new set")
            return cls(ec.Scalar(bytes.fromhex(record["scalar"])), bytes.fromhex(record["salt"]), str(record["label"]))
        except FileNotFoundError:
            raise ConfigError(f"no unbalanced-PSI key at {path}: make one with OfflineKey.new(label).save(path)") from None
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"the unbalanced-PSI key at {path} is damaged ({exc}); rotate it: make a new key and "
                              "offline set, and send the partner the new set") from None


@dataclass
class LargeSet:
    """L's offline table: the tag of each of its rows (row order), sorted for lookups, and the set's digest."""

    salt: bytes
    label: str
    tags: np.ndarray  # S16, row order
    sorted_tags: np.ndarray = field(init=False, repr=False)
    order: np.ndarray = field(init=False, repr=False)
    digest: str = field(init=False)

    def __post_init__(self) -> None:
        self.order = np.argsort(self.tags, kind="stable")
        self.sorted_tags = self.tags[self.order]
        self.digest = hashlib.sha256(self.salt + self.sorted_tags.tobytes()).hexdigest()

    @property
    def size(self) -> int:
        return len(self.tags)

    @classmethod
    def build(cls, ids: Sequence[str] | Iterable[Sequence[str]], key: OfflineKey, engine: Engine, *,
              chunk_size: int = DEFAULT_CHUNK, on_chunk: Callable[[int], None] | None = None) -> LargeSet:
        """The offline pass: H3(k·H(x)) for every ID (normalised strings), in row order.

        ``ids`` is a list, or an iterable of chunks (a stream from a large
        source): only one chunk's IDs and the tags (16 bytes per row) are held.
        ``on_chunk(ids_done)`` is called after each chunk: a service marks the
        job active with it, since tens of millions of IDs take minutes.
        """
        chunks = [ids[i : i + chunk_size] for i in range(0, len(ids), chunk_size)] if isinstance(ids, Sequence) \
            else ids
        dst, scalar, salt = key.dst, key.scalar, key.salt
        parts: list[bytes] = []
        done = 0
        for chunk in chunks:
            chunk = list(chunk)
            if not chunk:
                continue
            slices = split_evenly(len(chunk), engine.workers)
            parts.extend(engine.map(_offline_task, [(chunk[s], dst, scalar, salt) for s in slices]))
            done += len(chunk)
            if on_chunk is not None:
                on_chunk(done)
        return cls(salt, key.label, as_tag_array(b"".join(parts)).copy())

    def rows_of(self, tags: np.ndarray) -> np.ndarray:
        """L's row of each tag, in order; refuses a tag that is not in the set (a deviating or confused S)."""
        at = np.searchsorted(self.sorted_tags, tags)
        at_clipped = np.minimum(at, max(self.size - 1, 0))
        found = (at < self.size) & (self.sorted_tags[at_clipped] == tags) if self.size else np.zeros(len(tags), bool)
        if not found.all():
            first = int(np.flatnonzero(~found)[0])
            raise PSIError(f"the small side reported matched tag {first} that is not in this party's offline set: "
                           "refusing the query (a correct peer reports only tags it received from this set)")
        return self.order[at]

    def offline_messages(self, job_id: str, *, chunk_size: int = DEFAULT_CHUNK) -> list[OfflineTags]:
        """The set as messages for S: the sorted tags (no row order leaves L), ``chunk_size`` per message."""
        total = max(1, -(-self.size // chunk_size))
        return [OfflineTags(job_id=job_id, digest=self.digest, salt=self.salt, label=self.label, size=self.size,
                            chunk=i, total_chunks=total,
                            tags=self.sorted_tags[i * chunk_size : (i + 1) * chunk_size].tobytes())
                for i in range(total)]

    def save(self, folder: Path | str) -> None:
        target = Path(folder)
        target.mkdir(parents=True, exist_ok=True)
        np.save(target / "tags.npy", self.tags)
        (target / "set.json").write_text(json.dumps({"salt": self.salt.hex(), "label": self.label,
                                                     "digest": self.digest, "size": self.size}))

    @classmethod
    def load(cls, folder: Path | str) -> LargeSet:
        target = Path(folder)
        try:
            meta = json.loads((target / "set.json").read_text())
            loaded = cls(bytes.fromhex(meta["salt"]), meta["label"], np.load(target / "tags.npy"))
        except FileNotFoundError:
            raise ConfigError(f"no offline set in {target}: build it with LargeSet.build(...).save(folder)") from None
        if loaded.digest != meta["digest"]:
            raise ConfigError(f"the offline set in {target} does not match its recorded digest (damaged or edited): "
                              "build it again from the IDs and the key")
        return loaded


# -- messages --------------------------------------------------------------------------------------


@register_message
class OfflineTags(PsiMessage):
    """L → S, offline: one chunk of L's sorted tags, with the set's digest, salt and size."""

    KIND = "psi_unbalanced_offline_tags"
    STEP = 1
    SENDERS = ("feature", "label")
    RECIPIENTS = ("feature", "label")

    digest: str = Field(pattern=r"^[0-9a-f]{64}$")
    salt: bytes = Field(min_length=16, max_length=64)
    label: str = Field(min_length=1, max_length=200)
    size: int = Field(ge=0)
    chunk: int = Field(ge=0)
    total_chunks: int = Field(ge=1)
    tags: bytes = Field(max_length=MAX_CHUNK * TAG_BYTES)


@register_message
class BlindedQuery(PsiMessage):
    """S → L: r·H(y) for one chunk of S's IDs, against the offline set named by ``digest``."""

    KIND = "psi_unbalanced_blinded_query"
    STEP = 2
    SENDERS = ("feature", "label")
    RECIPIENTS = ("feature", "label")

    digest: str = Field(pattern=r"^[0-9a-f]{64}$")
    size: int = Field(ge=0, description="S's whole query size, the same in every chunk")
    chunk: int = Field(ge=0)
    total_chunks: int = Field(ge=1)
    count: int = Field(ge=0, le=MAX_CHUNK)
    points: bytes = Field(max_length=MAX_CHUNK * ec.POINT_BYTES)


@register_message
class EvaluatedQuery(PsiMessage):
    """L → S: k·(r·H(y)) for the blinded chunk of the same number, in its order."""

    KIND = "psi_unbalanced_evaluated_query"
    STEP = 3
    SENDERS = ("feature", "label")
    RECIPIENTS = ("feature", "label")

    chunk: int = Field(ge=0)
    count: int = Field(ge=0, le=MAX_CHUNK)
    points: bytes = Field(max_length=MAX_CHUNK * ec.POINT_BYTES)


@register_message
class QueryMatches(PsiMessage):
    """S → L: the tags of L's set that S's query matched, sorted (L maps them to its rows)."""

    KIND = "psi_unbalanced_query_matches"
    STEP = 4
    SENDERS = ("feature", "label")
    RECIPIENTS = ("feature", "label")

    count: int = Field(ge=0)
    tags: bytes


@register_message
class OfflineRequest(PsiMessage):
    """S → L, first: S's query size, and the digest of L's set it holds (either party may be the small side)."""

    KIND = "psi_unbalanced_offline_request"
    STEP = 1
    SENDERS = ("feature", "label")
    RECIPIENTS = ("feature", "label")

    size: int = Field(ge=0, description="S's query size (its IDs); L caps it as any declared size")
    cached_digest: str | None = Field(None, pattern=r"^[0-9a-f]{64}$",
                                      description="the digest of L's offline set S kept from an earlier job, if any")


@register_message
class OfflineCurrent(PsiMessage):
    """L → S: the offline set S holds is current (no tags are sent again)."""

    KIND = "psi_unbalanced_offline_current"
    STEP = 1
    SENDERS = ("feature", "label")
    RECIPIENTS = ("feature", "label")

    digest: str = Field(pattern=r"^[0-9a-f]{64}$")


# -- the small side's copy of L's tags -------------------------------------------------------------


@dataclass
class PeerTags:
    """S's copy of L's offline set: sorted tags, digest, salt and size, checked as they arrive."""

    digest: str
    salt: bytes
    label: str
    sorted_tags: np.ndarray

    @property
    def size(self) -> int:
        return len(self.sorted_tags)

    @classmethod
    def receive(cls, messages: Sequence[OfflineTags], *, own_size: int, max_peer_ids: int | None = None,
                max_peer_ratio: float | None = None, peer: str = "L", me: str = "S") -> PeerTags:
        """Assemble the offline set from its chunks; check the declared size (caps), order, count and digest."""
        if not messages:
            raise PSIError("no offline tags received: the large side sent an empty offline set")
        first = messages[0]
        check_declared_size(first.size, own_size, peer=peer, me=me, max_peer_ids=max_peer_ids,
                            max_peer_ratio=max_peer_ratio)
        if [m.chunk for m in messages] != list(range(first.total_chunks)):
            raise PSIError(f"the offline set arrived as chunks {[m.chunk for m in messages][:5]}..., not 0.."
                           f"{first.total_chunks - 1} in order: refusing it")
        for m in messages:
            if (m.digest, m.salt, m.label, m.size, m.total_chunks) != (first.digest, first.salt, first.label,
                                                                          first.size, first.total_chunks):
                raise PSIError(f"offline tag chunk {m.chunk} names another set than chunk 0: refusing the set")
        packed = b"".join(m.tags for m in messages)
        tags = as_tag_array(packed)
        if len(tags) != first.size:
            raise PSIError(f"the offline set declares {first.size} tags and carries {len(tags)}: refusing it")
        if len(tags) > 1 and not bool(np.all(tags[1:] > tags[:-1])):
            raise PSIError("the offline set's tags are not sorted and distinct: refusing it (a correct large side "
                           "sends its tags sorted, each once)")
        if hashlib.sha256(first.salt + packed).hexdigest() != first.digest:
            raise PSIError("the offline set's tags do not match its digest: refusing it (damaged in transit)")
        return cls(first.digest, first.salt, first.label, tags.copy())

    def contains(self, tags: np.ndarray) -> np.ndarray:
        """A boolean mask: which of ``tags`` are in L's set."""
        if not self.size:
            return np.zeros(len(tags), dtype=bool)
        at = np.searchsorted(self.sorted_tags, tags)
        return self.sorted_tags[np.minimum(at, self.size - 1)] == tags

    def save(self, folder: Path | str) -> None:
        target = Path(folder)
        target.mkdir(parents=True, exist_ok=True)
        np.save(target / "peer_tags.npy", self.sorted_tags)
        (target / "peer_set.json").write_text(json.dumps({"digest": self.digest, "salt": self.salt.hex(),
                                                          "label": self.label}))

    @classmethod
    def load(cls, folder: Path | str) -> PeerTags:
        target = Path(folder)
        try:
            meta = json.loads((target / "peer_set.json").read_text())
            # Memory-mapped: a copy of a 20M-ID set (320 MB) is read from disk as the lookups need it.
            tags = np.load(target / "peer_tags.npy", mmap_mode="r")
        except FileNotFoundError:
            raise ConfigError(f"no copy of a partner's offline set in {target}: receive it first") from None
        return cls(meta["digest"], bytes.fromhex(meta["salt"]), meta["label"], tags)


# -- the online query: the two sides as sans-I/O objects -------------------------------------------


class LargeSide:
    """L online: answers blinded chunks with its key, then maps the reported matches to its rows."""

    def __init__(self, job_id: str, key: OfflineKey, table: LargeSet, engine: Engine, *,
                 max_peer_ids: int | None = None, max_peer_ratio: float | None = None) -> None:
        if (key.salt, key.label) != (table.salt, table.label):
            raise ConfigError("the offline set was not made with this key: build the set again with the current key")
        self.job_id, self.key, self.table, self.engine = job_id, key, table, engine
        self.max_peer_ids, self.max_peer_ratio = max_peer_ids, max_peer_ratio
        self.next_chunk = 0
        self.total_chunks: int | None = None
        self.query_size: int | None = None
        self.answered = 0
        self.rows: np.ndarray | None = None

    def evaluate(self, message: BlindedQuery) -> EvaluatedQuery:
        if message.digest != self.table.digest:
            raise PSIError("the query names an offline set this party no longer serves (its key was rotated or the "
                           "set rebuilt): fetch the offline set again, then query")
        if message.chunk != self.next_chunk:
            raise PSIError(f"blinded query chunk {message.chunk} arrived where chunk {self.next_chunk} was expected")
        if self.total_chunks is None:
            check_declared_size(message.size, self.table.size, peer="S", me="L", max_peer_ids=self.max_peer_ids,
                                max_peer_ratio=self.max_peer_ratio)
            self.total_chunks, self.query_size = message.total_chunks, message.size
        elif (message.total_chunks, message.size) != (self.total_chunks, self.query_size):
            raise PSIError(f"blinded query chunk {message.chunk} changes the declared query size: refusing it")
        if self.answered + message.count > (self.query_size or 0):
            raise PSIError(f"the query sends more than the {self.query_size} points it declared: refusing it")
        what = f"blinded query chunk {message.chunk}"
        check_point_payload(message.points, message.count, what)
        points = _on_points(self.engine, remask, message.points, f"{what}: point", self.key.scalar)
        self.next_chunk += 1
        self.answered += message.count
        return EvaluatedQuery(job_id=self.job_id, chunk=message.chunk, count=message.count, points=points)

    def learn(self, message: QueryMatches) -> np.ndarray:
        """L's rows of the intersection, in the order of S's sorted matched tags."""
        if self.total_chunks is None or self.next_chunk != self.total_chunks:
            raise PSIError("matches arrived before every blinded chunk was answered: refusing them")
        tags = as_tag_array(message.tags)
        if len(tags) != message.count or message.count > (self.query_size or 0):
            raise PSIError(f"the matches carry {len(tags)} tags for a declared {message.count} "
                           f"(at most the query's {self.query_size}): refusing them")
        if len(tags) > 1 and not bool(np.all(tags[1:] > tags[:-1])):
            raise PSIError("the matched tags are not sorted and distinct: refusing them")
        self.rows = self.table.rows_of(tags)
        return self.rows


class SmallSide:
    """S online: blinds its IDs with a fresh r, unblinds L's answers with r⁻¹ and looks them up in L's tags."""

    def __init__(self, job_id: str, ids: Sequence[str], peer: PeerTags, engine: Engine, *,
                 chunk_size: int = DEFAULT_CHUNK) -> None:
        self.job_id, self.ids, self.peer, self.engine = job_id, list(ids), peer, engine
        self.chunk_size = chunk_size
        self.blind, self.unblind = ec.new_invertible_scalar()
        self.dst = ec.job_dst(f"unbalanced:{peer.label}", peer.salt)
        self.total_chunks = max(1, -(-len(self.ids) // chunk_size))
        self._tags: list[bytes] = []
        self.rows: np.ndarray | None = None

    def queries(self) -> Iterable[BlindedQuery]:
        """The blinded chunks r·H(y), in order (a generator: one chunk's points at a time)."""
        for i in range(self.total_chunks):
            chunk = self.ids[i * self.chunk_size : (i + 1) * self.chunk_size]
            packed = b""
            if chunk:
                slices = split_evenly(len(chunk), self.engine.workers)
                pieces = self.engine.map(mask_ids, [(chunk[s], self.dst, self.blind) for s in slices])
                packed = b"".join(ec.pack_points(p) for p in pieces)
            yield BlindedQuery(job_id=self.job_id, digest=self.peer.digest, size=len(self.ids), chunk=i,
                               total_chunks=self.total_chunks, count=len(chunk), points=packed)

    def receive(self, message: EvaluatedQuery) -> QueryMatches | None:
        """Unblind one answer; after the last one, the matches to send (and ``rows`` is set)."""
        if message.chunk != len(self._tags):
            raise PSIError(f"evaluated chunk {message.chunk} arrived where chunk {len(self._tags)} was expected")
        expected = len(self.ids[message.chunk * self.chunk_size : (message.chunk + 1) * self.chunk_size])
        what = f"the large side's evaluated chunk {message.chunk}"
        if message.count != expected:
            raise PSIError(f"{what} has {message.count} points for {expected} sent: refusing it")
        check_point_payload(message.points, message.count, what)
        self._tags.append(_on_points(self.engine, _unblind_task, message.points, f"{what}: point", self.unblind,
                                     self.peer.salt))
        if len(self._tags) < self.total_chunks:
            return None
        tags = as_tag_array(b"".join(self._tags))
        matched = np.flatnonzero(self.peer.contains(tags))
        order = np.argsort(tags[matched], kind="stable")
        self.rows = matched[order]
        matched_tags = tags[self.rows]
        return QueryMatches(job_id=self.job_id, count=len(matched_tags), tags=matched_tags.tobytes())


# -- the two sides as roles of a job (the services run these) --------------------------------------
#
# At the services either party of a pair may be the large side: by default the label party B (a
# bank against a partner's applicants), or, with the job spec's ``"large_side": "feature"``, the
# feature party (a telecom's subscribers against a bank's customers). The large side keeps one key
# and offline set per partner and dataset; the small side keeps the large side's tags between jobs.
# Which party runs which role is only a mapping (``kind``): the flow is the same. After the small
# side S and the large side L have the job:
#
#   S → L  OfflineRequest (S's query size, the digest of L's set it holds)
#   L → S  OfflineCurrent, or OfflineTags chunk 0..N−1 (L's set changed, or its key was rotated)
#   S → L  BlindedQuery chunk 0..Q−1
#   L → S  EvaluatedQuery chunk 0..Q−1
#   S → L  QueryMatches; both sides now hold the rows of the intersection, in ID order.


def _pair(kind: RoleKind, party: str | None, peer: str | None) -> tuple[Roster, str, str, str, str]:
    """The pair's roster, this party's and its peer's ids, and how errors name them ("A" the feature party)."""
    if kind not in ("feature", "label"):
        raise ValueError(f"an unbalanced PSI role runs at the feature or the label party, not {kind!r}")
    me_name, peer_name = ("A", "B") if kind == "feature" else ("B", "A")
    party, peer = party or me_name, peer or peer_name
    roster = Roster.pair(party, peer) if kind == "feature" else Roster.pair(peer, party)
    return roster, party, peer, me_name, peer_name


class _PairSizes:
    """The sizes the services read, as from the balanced roles: A's and B's, whichever side this party is."""

    KIND: RoleKind
    own_size: int
    peer_size: int
    peer_declared: int | None

    @property
    def size_a(self) -> int:
        return self.own_size if self.KIND == "feature" else self.peer_size

    @property
    def size_b(self) -> int:
        return self.peer_size if self.KIND == "feature" else self.own_size

    @property
    def declared_size_b(self) -> int | None:
        return self.peer_declared if self.KIND == "feature" else self.own_size


class UnbalancedQuerier(_PairSizes, Role):
    """The small side in a job: fetches or reuses the large side's offline set, queries it, learns the rows.

    ``kind`` is the role this party has in the job: "feature" (party A queries
    B's set, the default) or "label" (party B queries a feature party's set).
    """

    def __init__(self, job_id: str, ids: Sequence[str], *, party: str | None = None, peer: str | None = None,
                 kind: RoleKind = "feature", engine: Engine | int | None = None, cached: PeerTags | None = None,
                 keep: Callable[[PeerTags], None] | None = None, max_peer_ids: int | None = None,
                 max_peer_ratio: float | None = None, expected_peer_size: int | None = None,
                 chunk_size: int = DEFAULT_CHUNK) -> None:
        roster, party, peer, self.me_name, self.peer_name = _pair(kind, party, peer)
        self.KIND = kind
        super().__init__(job_id, roster, party)
        self.peer = peer
        self.ids = list(ids)
        self.engine = as_engine(engine)
        self.cached, self.keep = cached, keep
        self.max_peer_ids, self.max_peer_ratio = max_peer_ids, max_peer_ratio
        self.expected_peer_size = expected_peer_size
        self.chunk_size = chunk_size
        self.own_size, self.peer_size, self.peer_declared = len(self.ids), 0, None
        self.n_buckets, self.own_cache, self.reused_offline_set = 1, None, False
        self.rows: np.ndarray | None = None
        self.progress = (0, len(self.ids))
        self._offline: list[OfflineTags] = []
        self._offline_chunks: int | None = None
        self._small: SmallSide | None = None

    @property
    def done(self) -> bool:
        return self.rows is not None

    def start(self) -> list[Envelope]:
        digest = self.cached.digest if self.cached is not None else None
        return [self.send(self.peer, OfflineRequest(job_id=self.job_id, size=len(self.ids), cached_digest=digest))]

    def position(self, message: Message) -> int:
        if isinstance(message, OfflineCurrent):
            return 0
        if isinstance(message, OfflineTags):
            return message.chunk
        if isinstance(message, EvaluatedQuery):
            if self._offline_chunks is None:
                return 1 << 30  # nothing is answered before the large side's set is here
            return self._offline_chunks + message.chunk
        raise ProtocolError(f"party {self.me_name} does not expect {message.KIND} during an unbalanced alignment "
                            "(it is the small side)")

    def process(self, message: Message) -> list[Envelope]:
        self.cursor += 1
        if isinstance(message, OfflineCurrent):
            if self.cached is None or message.digest != self.cached.digest:
                raise PSIError(f"party {self.peer_name} says the offline set this party holds is current, but it "
                               "holds another (or none): refusing it")
            self._check_size(self.cached.size)
            self.reused_offline_set = True
            return self._query(self.cached)
        if isinstance(message, OfflineTags):
            if not self._offline:  # the first chunk declares the set's size: refuse before holding any more
                self._check_size(message.size)
            self._offline.append(message)
            if len(self._offline) < message.total_chunks:
                return []
            peer = PeerTags.receive(self._offline, own_size=len(self.ids), peer=self.peer_name, me=self.me_name)
            self._offline = []
            if self.keep is not None:
                self.keep(peer)
            return self._query(peer)
        if not isinstance(message, EvaluatedQuery) or self._small is None:
            raise ProtocolError(f"party {self.me_name} does not expect {message.KIND} now")
        matches = self._small.receive(message)
        self.progress = (min(len(self.ids), (message.chunk + 1) * self.chunk_size), len(self.ids))
        if matches is None:
            return []
        self.rows = in_id_order(self._small.rows, self.ids)
        return [self.send(self.peer, matches)]

    def _check_size(self, size: int) -> None:
        """The large side's set size against this party's caps and the size the job was registered with."""
        check_declared_size(size, len(self.ids), peer=self.peer_name, me=self.me_name,
                            max_peer_ids=self.max_peer_ids, max_peer_ratio=self.max_peer_ratio)
        if self.expected_peer_size is not None and size != self.expected_peer_size:
            raise PSIError(f"party {self.peer_name}'s offline set has {size} IDs, but the job was registered with "
                           f"{self.expected_peer_size}: refusing it")

    def _query(self, peer: PeerTags) -> list[Envelope]:
        self._offline_chunks = self.cursor
        self.peer_size = self.peer_declared = peer.size
        self._small = SmallSide(self.job_id, self.ids, peer, self.engine, chunk_size=self.chunk_size)
        return [self.send(self.peer, q) for q in self._small.queries()]


class UnbalancedEvaluator(_PairSizes, Role):
    """The large side in a job: sends or confirms its offline set, answers the query, learns the rows.

    ``kind`` is the role this party has in the job: "label" (party B holds the
    large set, the default) or "feature" (a feature party holds it).
    """

    def __init__(self, job_id: str, ids: Sequence[str], *, key: OfflineKey, table: LargeSet,
                 party: str | None = None, peer: str | None = None, kind: RoleKind = "label",
                 engine: Engine | int | None = None, max_peer_ids: int | None = None,
                 max_peer_ratio: float | None = None, expected_peer_size: int | None = None,
                 chunk_size: int = DEFAULT_CHUNK) -> None:
        roster, party, peer, self.me_name, self.peer_name = _pair(kind, party, peer)
        self.KIND = kind
        super().__init__(job_id, roster, party)
        if table.size != len(ids):
            raise ConfigError(f"the offline set has {table.size} IDs and the dataset {len(ids)}: build it again")
        self.peer = peer
        self.ids = list(ids)
        self.chunk_size = chunk_size
        self.expected_peer_size = expected_peer_size
        self.large = LargeSide(job_id, key, table, as_engine(engine), max_peer_ids=max_peer_ids,
                               max_peer_ratio=max_peer_ratio)
        self.own_size, self.peer_size, self.peer_declared = len(self.ids), 0, None
        self.n_buckets, self.own_cache = 1, None
        self.sent_offline_set = False
        self.rows: np.ndarray | None = None
        self.progress = (0, 0)

    @property
    def done(self) -> bool:
        return self.rows is not None

    def start(self) -> list[Envelope]:
        """The large side waits for the small side's request: it sends nothing first."""
        return []

    def position(self, message: Message) -> int:
        if isinstance(message, OfflineRequest):
            return 0
        if isinstance(message, BlindedQuery):
            return 1 + message.chunk
        if isinstance(message, QueryMatches):
            total = self.large.total_chunks
            return 1 << 30 if total is None else 1 + total
        raise ProtocolError(f"party {self.me_name} does not expect {message.KIND} during an unbalanced alignment "
                            "(it is the large side)")

    def process(self, message: Message) -> list[Envelope]:
        self.cursor += 1
        if isinstance(message, OfflineRequest):
            check_declared_size(message.size, len(self.ids), peer=self.peer_name, me=self.me_name,
                                max_peer_ids=self.large.max_peer_ids, max_peer_ratio=self.large.max_peer_ratio)
            if self.expected_peer_size is not None and message.size != self.expected_peer_size:
                raise PSIError(f"party {self.peer_name}'s query declares {message.size} IDs, but the job was "
                               f"registered with {self.expected_peer_size}: refusing it")
            self.peer_size = self.peer_declared = message.size
            self.progress = (0, message.size)
            table = self.large.table
            if message.cached_digest == table.digest:
                return [self.send(self.peer, OfflineCurrent(job_id=self.job_id, digest=table.digest))]
            self.sent_offline_set = True
            return [self.send(self.peer, m) for m in table.offline_messages(self.job_id)]
        if isinstance(message, BlindedQuery):
            if message.size != self.peer_size:
                raise PSIError(f"party {self.peer_name}'s query declares {message.size} IDs after announcing "
                               f"{self.peer_size}")
            answer = self.large.evaluate(message)
            self.progress = (self.large.answered, self.peer_size)
            return [self.send(self.peer, answer)]
        if not isinstance(message, QueryMatches):
            raise ProtocolError(f"party {self.me_name} does not expect {message.KIND} now")
        self.rows = in_id_order(self.large.learn(message), self.ids)
        return []


@dataclass(frozen=True)
class UnbalancedResult:
    rows_large: np.ndarray
    rows_small: np.ndarray
    online_bytes: int
    offline_bytes: int

    @property
    def intersection_size(self) -> int:
        return len(self.rows_small)


def in_id_order(rows: np.ndarray, ids: Sequence[str]) -> np.ndarray:
    """A side's rows of the intersection re-sorted by ID, which each side does alone (the IDs are equal on both)."""
    keys = np.asarray([ids[int(r)] for r in rows], dtype=object)
    return rows[np.argsort(keys, kind="stable")] if len(rows) else rows


def run_unbalanced(large: LargeSide, small: SmallSide, *, ids_large: Sequence[str],
                   offline_bytes: int = 0) -> UnbalancedResult:
    """One online query between the two sides in one process, every message through the wire codec.

    The rows come out in ID order on both sides (as :func:`psi.run_psi` gives them).
    """
    sent = 0

    def wire(message: PsiMessage) -> PsiMessage:
        nonlocal sent
        frame = encode_message(message)
        sent += len(frame)
        return decode_message(frame)

    matches: QueryMatches | None = None
    for query in small.queries():
        answer = large.evaluate(wire(query))
        matches = small.receive(wire(answer)) or matches
    if matches is None:
        raise PSIError("the query ended without matches (no chunk was answered)")
    rows_large = in_id_order(large.learn(wire(matches)), ids_large)
    rows_small = in_id_order(small.rows, small.ids)
    return UnbalancedResult(rows_large=rows_large, rows_small=rows_small, online_bytes=sent,
                            offline_bytes=offline_bytes)


def transfer_offline(table: LargeSet, job_id: str, *, own_size: int, max_peer_ids: int | None = None,
                     max_peer_ratio: float | None = None, chunk_size: int = DEFAULT_CHUNK) -> tuple[PeerTags, int]:
    """L's offline set through the wire codec to S (in one process): S's copy and the bytes it took."""
    frames = [encode_message(m) for m in table.offline_messages(job_id, chunk_size=chunk_size)]
    received = [decode_message(f) for f in frames]
    peer = PeerTags.receive(received, own_size=own_size, max_peer_ids=max_peer_ids, max_peer_ratio=max_peer_ratio)
    return peer, sum(len(f) for f in frames)


__all__ = ["BlindedQuery", "EvaluatedQuery", "LargeSet", "LargeSide", "OfflineCurrent", "OfflineKey",
           "OfflineRequest", "OfflineTags", "PeerTags", "QueryMatches", "SmallSide", "UnbalancedEvaluator",
           "UnbalancedQuerier", "TAG_BYTES", "UnbalancedResult", "in_id_order", "point_tags", "run_unbalanced",
           "transfer_offline"]
