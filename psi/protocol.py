"""RSA blind-signature PSI (De Cristofaro–Tsudik, in FATE's RSA-intersect form) as two I/O-free roles.

The same roles run Diffie–Hellman PSI over X25519 (curve25519) with ``protocol="ecdh"``:
only the math of steps 1, 3 and 4 changes (:mod:`psi.suites` holds both,
behind one small interface); sizes, caps, buckets, chunks, the window, the
intersection and the rows by ID are this module's, the same for both. ECDH
in brief: A sends a salt (the hash's DST derives from it) and |A|; B declares
|B| and sends b·H(x) per chunk; A returns a·(b·H(x)) and sends a·H(y) for its
own IDs, shuffled; B compares H2'(a·b·H(x)) with H2'(b·(a·H(y))) and sends
back A's points that matched. Both scalars are fresh per session.

Party A, :class:`PsiKeyHolder`, holds a fresh RSA key (n, e, d) for the job.
Party B, :class:`PsiRequester`, learns signatures on its IDs without A seeing them:

1. A → B  ``PsiPublicKey``: n, e, a fresh salt, |A|. A starts signing its own
   IDs in the background at once (the costly half that does not depend on B).
2. B → A  ``DeclaredSize``: |B|, before anything else. A refuses a size above
   its caps (``max_peer_ids``, ``max_peer_ratio`` × |A|) before signing anything.
   B → A  ``BlindedChunk``: for each ID x of B, h(x)·r^e mod n, with h the
   full-domain hash and r fresh and uniform in Z_n*. A sees only uniform values.
   Chunk i holds exactly the IDs i·c … (i+1)·c − 1 of the declared |B| (c, the
   chunk size, is A's), so A never signs more values than B declared.
3. A → B  ``SignedChunk``: (h(x)·r^e)^d = h(x)^d·r mod n, signed by CRT and checked.
   B divides out r, hashes h(x)^d with H2, and keeps the tag. B sends at most
   ``window`` chunks ahead, so it never holds more than that many chunks of r.
4. A → B  ``KeyHolderTags``: H2(h(x)^d) for every ID of A, shuffled.
5. B → A  ``IntersectionTags``: the tags both hold, sorted. Each side maps them
   to its own rows and orders those rows by ID. Both now know the common IDs,
   so row i is the same person on both sides, and the order does not depend
   on the job's random salt: the same data always aligns the same way, which
   keeps validation splits and batches reproducible.

What each side learns: the intersection and the size the other declared.

Why the sizes are bounded. Every signature A returns lets B test one ID
against A's set, so a B that pads its set with guessed IDs learns which of
them A holds. A therefore signs exactly the values B declared, no more, and
refuses a declaration above its caps. The same holds the other way round: a
padded A learns, from the intersection B sends back, which guesses B holds,
so B checks A's declared |A| against its own caps, and that A's tags add up
to it. A guess inside the caps cannot be told from a real ID: the caps bound
the leak, they do not remove it.

Buckets. A set too large to hold is split by a public hash of the ID
(:mod:`psi.buckets`) into K buckets of at most ``bucket_ids`` IDs (A picks K
from both declared sizes) and steps 2–5 run bucket by bucket: each side holds
one bucket's IDs, blinding factors and tags at a time, and saves each
bucket's result, so a restart resumes at the first unfinished bucket with a
new key. The rows of all buckets, merged by ID, are the rows of one bucket:
the same for every K. With K > 1 each side also learns how many IDs the
other has in each bucket, a histogram of its set over a public, keyless
partition; no ID is revealed by it.

Reuse (opt in, ``[psi] reuse_own_signatures``). A may keep its key, salt and
own tags for the same partner and the same data, and skip signing its own
IDs in later jobs, half of its work. The price: B then sees the same tags in
every such job, so it can tell which of A's customers are the same from job
to job, and which left or joined (by their tags, not their IDs), and an
intersection B learned once stays linkable. A fresh key per job (the
default) makes the tags of two jobs unrelated.

Every value a role receives is checked: A refuses values outside [1, n−1] or
sharing a factor with n; B checks the key (e = 65537, size, and A's proof that
x ↦ x^e is a permutation, :mod:`psi.proof`, without which blinding could leak
part of each ID's hash) and that every signature verifies, s^e = blinded value.
"""

from __future__ import annotations

import bisect
import secrets
from collections.abc import Sequence
from concurrent.futures import Future
from typing import NamedTuple

import numpy as np

from psi.buckets import DEFAULT_BUCKET_IDS, BucketResults, IdBuckets, OwnTagCache, PsiIds, bucket_count
from psi.hashing import TAG_BYTES
from psi.keys import DEFAULT_PRIMES, MIN_RSA_BITS, RsaPrivateKey, generate_rsa_key
from psi.messages import MAX_BUCKETS, DeclaredSize, IntersectionTags, pack_tags, unpack_tags
from psi.suites import (  # noqa: F401 - PROOF_DOMAIN is also imported from here
    HELLO_TYPES,
    PROOF_DOMAIN,
    EcdhHolder,
    PsiProtocol,
    RsaHolder,
    check_protocol,
    requester_suite,
)
from psi.tasks import batch_invert, blind_many, own_tags, unblind_many  # noqa: F401 - also imported from here
from vfl.errors import ConfigError, DataError, LimitExceeded, ProtocolError, PSIError
from vfl.compute.engine import Engine, as_engine
from vfl.crypto.masking import secret_permutation
from vfl.protocol.messages import Message
from vfl.protocol.role import Envelope, Role
from vfl.protocol.roster import Roster

DEFAULT_CHUNK = 4096
#: Blinded chunks B keeps in flight; bounds the r values it must remember.
DEFAULT_WINDOW = 4
#: A's own IDs are signed in tasks of this size, fed to the pool a few at a
#: time so they fill the gaps while B's chunks are handled, instead of
#: queueing all at once ahead of B's chunks.
OWN_TASK_IDS = 512
#: How far ahead a PSI message may be held: B's window plus a bucket's tags and intersection.
BUCKET_LOOKAHEAD = 16


class BucketProgress(NamedTuple):
    """How far one side of a PSI is, for a progress line: read-only, it changes nothing in the role.

    ``buckets`` is 0 until the other side's first message fixes the bucket count. ``chunks`` counts the
    messages this side must handle in the running bucket (party B: A's signed chunks and A's tag chunks;
    party A: B's blinded chunks it signs); ``ids_done`` counts this side's own IDs in finished buckets.
    """

    buckets_done: int
    buckets: int
    chunks_done: int
    chunks: int
    ids_done: int
    ids: int


def chunk_count(size: int, chunk_size: int) -> int:
    """Chunks a set of ``size`` values travels in: at least one, so that an empty set still says "done"."""
    return max(1, -(-size // chunk_size))


def chunk_length(size: int, chunk_size: int, chunk: int) -> int:
    """Values in chunk number ``chunk`` of a set of ``size``: full chunks, then the rest."""
    return max(0, min(chunk_size, size - chunk * chunk_size))


def check_caps(max_peer_ids: int | None, max_peer_ratio: float | None) -> None:
    """Refuse caps that make no sense (they come from a service config or a caller)."""
    if max_peer_ids is not None and max_peer_ids < 1:
        raise ConfigError(f"limits.max_psi_ids must be at least 1, not {max_peer_ids}")
    if max_peer_ratio is not None and not max_peer_ratio > 0:
        raise ConfigError(f"limits.max_psi_ratio must be positive, not {max_peer_ratio}")


def check_declared_size(
    declared: int, own_size: int, *, peer: str, me: str, max_peer_ids: int | None, max_peer_ratio: float | None
) -> None:
    """Refuse a peer's declared set size above this party's caps; the message names the key to raise."""
    if max_peer_ids is not None and declared > max_peer_ids:
        raise LimitExceeded(
            f"party {peer} declares {declared} IDs for the PSI; party {me} accepts at most {max_peer_ids} "
            f"(limits.max_psi_ids). If a set this large is expected, raise limits.max_psi_ids in party {me}'s "
            "service config"
        )
    if max_peer_ratio is not None and declared > max_peer_ratio * own_size:
        raise LimitExceeded(
            f"party {peer} declares {declared} IDs for the PSI, more than {max_peer_ratio:g} × party {me}'s "
            f"{own_size} (limits.max_psi_ratio). If this is expected, raise or remove limits.max_psi_ratio in "
            f"party {me}'s service config"
        )


def _offsets(counts: list[int]) -> list[int]:
    """Start of each bucket's run of chunk numbers, and the total at the end."""
    out = [0]
    for c in counts:
        out.append(out[-1] + c)
    return out


def _bucket_at(offsets: list[int], index: int) -> int:
    """The bucket whose run of chunk numbers holds ``index`` (offsets from :func:`_offsets`)."""
    return bisect.bisect_right(offsets, index) - 1


def _sizes_ok(sizes: list[int], total: int, buckets: int) -> bool:
    return len(sizes) == buckets and sum(sizes) == total and all(s >= 0 for s in sizes)


class PsiKeyHolder(Role):
    """Party A's side: signs blindly, publishes its own tags, learns the intersection.

    ``max_peer_ids`` and ``max_peer_ratio`` cap the set size B may declare: at
    most that many IDs, and at most that multiple of A's own set (None: no cap).

    ``ids`` is a list, or a :class:`~psi.buckets.PsiIds` stream for sets too
    large to hold. A splits both sets into K buckets of at most ``bucket_ids``
    of the larger set's IDs (K from |A| and ``expected_size_b``, or |A|) and
    runs them one after the other. ``results`` keeps finished buckets (on disk,
    for a resumable alignment); the session starts at the first bucket not
    finished there, or at ``resume_bucket`` if that is earlier (party B's
    first unfinished bucket).

    ``protocol`` picks the math (:mod:`psi.suites`): "rsa" (the default) or
    "ecdh". The key arguments and ``own_cache`` are RSA's only.
    """

    KIND = "feature"

    def __init__(
        self,
        job_id: str,
        ids: Sequence[str] | PsiIds,
        *,
        party: str = "A",
        peer: str = "B",
        key_bits: int = 2048,
        min_key_bits: int = MIN_RSA_BITS,
        key: RsaPrivateKey | None = None,
        primes: int = DEFAULT_PRIMES,
        engine: Engine | int | None = None,
        chunk_size: int = DEFAULT_CHUNK,
        max_peer_ids: int | None = None,
        max_peer_ratio: float | None = None,
        expected_size_b: int | None = None,
        bucket_ids: int = DEFAULT_BUCKET_IDS,
        results: BucketResults | None = None,
        resume_bucket: int | None = None,
        own_cache: OwnTagCache | None = None,
        protocol: PsiProtocol = "rsa",
    ) -> None:
        super().__init__(job_id, Roster.pair(party, peer), party)
        self.peer = peer
        check_protocol(protocol)
        if protocol != "rsa" and (key is not None or own_cache is not None):
            raise ConfigError(f"an RSA key and the reuse of own signatures are for the RSA PSI, not {protocol!r}")
        check_caps(max_peer_ids, max_peer_ratio)
        if bucket_ids < 1:
            raise ConfigError(f"psi.bucket_ids must be at least 1, not {bucket_ids}")
        self.max_peer_ids = max_peer_ids
        self.max_peer_ratio = max_peer_ratio
        #: B's ID count as the job was registered with (a service knows it); the declaration must match.
        self.expected_size_b = expected_size_b
        self.own = PsiIds.of(ids, source="party A's IDs")
        self.size_a = self.own.size
        self.n_buckets = bucket_count(self.size_a, expected_size_b or self.size_a, bucket_ids)
        if self.n_buckets > MAX_BUCKETS:
            raise ConfigError(f"{self.n_buckets} PSI buckets are more than {MAX_BUCKETS}; raise psi.bucket_ids")
        self.buckets = self.own.buckets(self.n_buckets)
        self.results = results or BucketResults()
        done = self.results.open({"party": "A", "digest": self.buckets.digest, "sizes": self.buckets.sizes})
        self.first_bucket = min(done, resume_bucket) if resume_bucket is not None else done
        #: Reuse (opt in): the key, salt and own tags of an earlier job with this partner and data.
        self.own_cache = own_cache
        stored = own_cache.load(self.buckets.digest, self.n_buckets) if own_cache is not None else None
        self.protocol = protocol
        if protocol == "ecdh":  # a fresh scalar and salt for this session
            self.suite: RsaHolder | EcdhHolder = EcdhHolder(job_id)
            self.key, self.salt = None, self.suite.salt
        elif stored is not None and key is None:
            self.key = RsaPrivateKey.from_dict(stored["key"])
            self.salt = bytes.fromhex(stored["salt"])
            self.key.public.validate(min_bits=min_key_bits)
        else:
            self.key = key or generate_rsa_key(key_bits, min_bits=min_key_bits, primes=primes)
            self.salt = secrets.token_bytes(32)
            if own_cache is not None:
                own_cache.reset(self.buckets.digest, self.n_buckets, self.key.to_dict(), self.salt)
        if protocol == "rsa":
            self.suite = RsaHolder(self.key, self.salt)
        self.reused_buckets = 0  # own tag sets taken from the cache instead of signed again
        #: Where signing runs (this machine's pool, or party A's Ray cluster); only A's key and IDs reach it.
        self.engine = as_engine(engine)
        self.workers = self.engine.workers
        self.chunk_size = chunk_size
        self.lookahead = max(self.lookahead, BUCKET_LOOKAHEAD)  # B's window runs across bucket ends
        self.declared_size_b: int | None = None  # from B's DeclaredSize
        self.sizes_b: list[int] | None = None  # its per-bucket sizes
        self._b_offsets: list[int] = []  # chunk number where each of B's buckets starts
        self._tag_offsets = _offsets([chunk_count(s, chunk_size) for s in self.buckets.sizes])
        self.total_b_chunks: int | None = None  # follows from the declared sizes and our chunk size
        self.size_b = 0  # blinded values signed so far; never above declared_size_b
        self.rows: np.ndarray | None = None
        self._own_bucket = -1  # the bucket whose own tags are being signed
        self._own_waiting: list[tuple] = []  # own-ID tasks not yet given to the engine
        self._own_cached = False  # the current bucket's own tags came from the cache
        self._own: list[Future[list[bytes]] | list[bytes]] = []  # in order
        #: bucket → (its IDs, its rows, tag → index); kept from publishing the tags to the intersection.
        self._published: dict[int, tuple[list[str], np.ndarray, dict[bytes, int]]] = {}
        self._bucket_ids: tuple[list[str], np.ndarray] | None = None  # the signing bucket's IDs and rows
        self.progress = (0, self.size_a)
        self._buckets_learned = self.first_bucket  # buckets whose intersection B sent (for bucket_progress)
        self._b_chunks_signed = 0  # B's chunk numbers below this one are signed (they come in order)


    @property
    def done(self) -> bool:
        return self.rows is not None

    def bucket_progress(self) -> BucketProgress:
        """Buckets finished (B sent their intersection), and B's chunks signed in the running bucket."""
        learned, offsets = self._buckets_learned, self._b_offsets  # see PsiRequester.bucket_progress
        bucket = min(learned, self.n_buckets - 1)
        chunks = done = 0
        if learned < self.n_buckets and len(offsets) == self.n_buckets + 1:  # B's declaration is in
            first, end = offsets[bucket], offsets[bucket + 1]
            chunks, done = end - first, max(0, min(end, self._b_chunks_signed) - first)
        return BucketProgress(learned, self.n_buckets, done, chunks, self.progress[0], self.size_a)

    def start(self) -> list[Envelope]:
        """Publish the key and start signing our own IDs (the first bucket) in the background."""
        if self.first_bucket >= self.n_buckets:  # everything was finished before a restart
            self.rows = self.results.merged_rows(self.n_buckets)
        else:
            self._start_own(self.first_bucket)
        extra: dict[str, object] = {"resume_bucket": self.first_bucket}
        if self.n_buckets > 1:
            extra["bucket_sizes"] = self.buckets.sizes
        return [self.send(self.peer, self.suite.hello(self.job_id, self.size_a, self.chunk_size, **extra))]

    def _start_own(self, bucket: int) -> None:
        """Queue the signing of bucket ``bucket``'s own IDs."""
        self._own_bucket = bucket
        rows, ids = self.buckets.read(bucket, source="party A's IDs")
        self._bucket_ids = (ids, rows)
        cached = self.own_cache.tags(self.salt, bucket, len(ids)) if self.own_cache is not None else None
        if cached is not None:
            self._own, self._own_waiting, self._own_cached = [cached], [], True
            self.reused_buckets += 1
            return
        self._own_cached = False
        self._own = []
        self._own_waiting = self.suite.own_tasks(ids, OWN_TASK_IDS)  # (function, *arguments) each
        if self.workers <= 1:
            self._own = [task[0](*task[1:]) for task in self._own_waiting]
            self._own_waiting = []
        self._feed_own(2 * self.workers)

    def _feed_own(self, in_flight: int) -> None:
        """Keep ``in_flight`` own-ID tasks queued on the engine (all of them when in_flight is large)."""
        if not self._own_waiting:
            return
        pending = sum(1 for f in self._own if isinstance(f, Future) and not f.done())
        while self._own_waiting and pending < in_flight:
            task = self._own_waiting.pop(0)
            self._own.append(self.engine.submit(task[0], *task[1:]))
            pending += 1

    # Order: B's declaration (0); then per bucket k, its blinded chunks (1 + chunk + k) and the
    # bucket's intersection (1 + the next bucket's first chunk + k). A chunk that comes before the
    # declaration waits for it, so nothing is signed before A knows |B|.
    def position(self, message: Message) -> int:
        if isinstance(message, DeclaredSize):
            return 0
        if self.total_b_chunks is None:  # a place for now: renumbered once the declaration is in
            return 1 + message.chunk if isinstance(message, self.suite.request_type) else 1 << 30
        if isinstance(message, self.suite.request_type):
            return 1 + message.chunk + _bucket_at(self._b_offsets, message.chunk)
        if isinstance(message, IntersectionTags):
            if message.chunk >= self.n_buckets:
                raise PSIError(f"party B sent the intersection of bucket {message.chunk}; there are {self.n_buckets}")
            return 1 + self._b_offsets[message.chunk + 1] + message.chunk
        raise ProtocolError(f"party A does not expect {message.KIND} during alignment")

    def validate(self, message: Message) -> None:
        # These checks run as a message arrives (a service answers the sender with the refusal),
        # before the message is queued: a declaration above the caps, or a chunk that does not
        # fit a declaration already taken, never waits in line.
        if isinstance(message, DeclaredSize):
            if self.expected_size_b is not None and message.size_b != self.expected_size_b:
                raise PSIError(f"party B declares {message.size_b} IDs for the PSI, but registered the job "
                               f"with {self.expected_size_b}")
            check_declared_size(message.size_b, self.size_a, peer="B", me="A",
                                max_peer_ids=self.max_peer_ids, max_peer_ratio=self.max_peer_ratio)
            if not _sizes_ok(message.sizes, message.size_b, self.n_buckets):
                raise PSIError(f"party B's declaration must give its size in each of the {self.n_buckets} buckets, "
                               f"adding up to the {message.size_b} IDs it declares")
        elif isinstance(message, self.suite.request_type) and self.declared_size_b is not None:
            self._check_chunk(message)

    def process(self, message: Message) -> list[Envelope]:
        if isinstance(message, DeclaredSize):
            return self._accept_declaration(message)
        if isinstance(message, self.suite.request_type):
            return self._sign(message)
        if isinstance(message, IntersectionTags):
            return self._learn_intersection(message)
        raise ProtocolError(f"party A does not expect {message.KIND} during alignment")

    def _accept_declaration(self, message: DeclaredSize) -> list[Envelope]:
        # handle() has validated it against the caps already
        self.declared_size_b = message.size_b
        self.sizes_b = message.sizes
        self._b_offsets = _offsets([chunk_count(s, self.chunk_size) for s in self.sizes_b])
        self.total_b_chunks = self._b_offsets[-1]
        # Buckets finished before a restart are skipped: the session starts at the first open one.
        self.cursor = 1 + self._b_offsets[self.first_bucket] + self.first_bucket
        self._held = [(self.position(m), m) for _, m in self._held]  # chunks that came before it
        return []

    def _check_chunk(self, message: Message) -> None:
        """Refuse a chunk that does not fit B's declaration: its index, bucket, chunk total and length."""
        word = self.suite.chunk_word
        if message.chunk >= self.total_b_chunks:
            raise PSIError(
                f"party B sent {word} {message.chunk}, but its declared {self.declared_size_b} IDs "
                f"make {self.total_b_chunks} chunks (0 to {self.total_b_chunks - 1})"
            )
        if message.total_chunks != self.total_b_chunks:
            raise PSIError(
                f"{word} {message.chunk} says {message.total_chunks} chunks; party B's declared "
                f"{self.declared_size_b} IDs make {self.total_b_chunks}"
            )
        bucket = _bucket_at(self._b_offsets, message.chunk)
        if bucket < self.first_bucket:
            raise PSIError(f"{word} {message.chunk} is in bucket {bucket}, finished before this session")
        if message.bucket != bucket:
            raise PSIError(f"{word} {message.chunk} says bucket {message.bucket}; it is in bucket {bucket}")
        # Chunks are handled in order and each must hold exactly its share of the declared size,
        # so the count signed can never pass the declaration.
        expected = chunk_length(self.sizes_b[bucket], self.chunk_size, message.chunk - self._b_offsets[bucket])
        count = self.suite.count(message)
        if count != expected:
            raise PSIError(
                f"{word} {message.chunk} has {count} values; party B declared "
                f"{self.declared_size_b} IDs, so this chunk must have {expected}. "
                f"Refusing to {self.suite.work_word} more than party B declared"
            )

    def _sign(self, message: Message) -> list[Envelope]:
        if self.declared_size_b is None:  # unreachable through handle(): position() orders the declaration first
            raise PSIError("party B sent blinded values before declaring its set size; nothing was signed")
        # Again here: at a service the chunk may have arrived, and been validated, while the
        # declaration was still queued. Checked before anything is unpacked or signed.
        self._check_chunk(message)
        # Implied by the checks above; kept because it is the invariant that matters.
        count = self.suite.count(message)
        if self.size_b + count > self.declared_size_b:
            raise PSIError(f"signing chunk {message.chunk} would pass the {self.declared_size_b} IDs party B declared")
        answer = self.suite.answer(message, self.engine)  # checks every value before the secret touches it
        self._feed_own(2 * self.workers)  # keep the pool busy while B handles this chunk
        self.size_b += count
        self.cursor += 1
        self._b_chunks_signed = message.chunk + 1
        out = [self.send(self.peer, answer)]
        if message.chunk == self._b_offsets[message.bucket + 1] - 1:  # the bucket's last: B's part of it is signed
            out.extend(self._publish_own_tags(message.bucket))
        return out

    def _publish_own_tags(self, bucket: int) -> list[Envelope]:
        self._feed_own(len(self._own_waiting) + 2 * self.workers)
        tags: list[bytes] = []
        for piece in self._own:
            tags.extend(piece.result() if isinstance(piece, Future) else piece)
        ids, rows = self._bucket_ids
        if self.own_cache is not None and not self._own_cached:
            self.own_cache.save_tags(self.salt, bucket, tags)
        self._published[bucket] = (ids, rows, {t: i for i, t in enumerate(tags)})
        if bucket + 1 < self.n_buckets:  # sign the next bucket's own IDs while B works on this one
            self._start_own(bucket + 1)
        else:
            self._own, self._bucket_ids = [], None
        tags = [tags[i] for i in secret_permutation(len(tags))]  # the order must say nothing about A's rows
        size = self.chunk_size
        chunks = [tags[i : i + size] for i in range(0, len(tags), size)] or [[]]
        first = self._tag_offsets[bucket]
        return [
            self.send(self.peer, self.suite.own_message(self.job_id, first + j, bucket, len(chunks), c))
            for j, c in enumerate(chunks)
        ]

    def _learn_intersection(self, message: IntersectionTags) -> list[Envelope]:
        bucket = message.chunk
        ids, rows, tag_index = self._published[bucket]
        tags = unpack_tags(message.tags, message.count)
        if len(set(tags)) != len(tags):
            raise PSIError(f"the intersection party B sent for bucket {bucket} repeats a tag")
        try:
            found = sorted((tag_index[t] for t in tags), key=ids.__getitem__)
        except KeyError as exc:
            raise PSIError(f"party B claims an intersection tag in bucket {bucket} that party A never sent") from exc
        self.results.save(bucket, [ids[i] for i in found], rows[found] if found else np.empty(0, np.int64))
        del self._published[bucket]
        self.cursor += 1
        done = sum(self.buckets.sizes[: bucket + 1])
        self.progress = (done, self.size_a)
        self._buckets_learned = bucket + 1
        if bucket == self.n_buckets - 1:
            self.rows = self.results.merged_rows(self.n_buckets)
        return []


class PsiRequester(Role):
    """Party B's side: blinds its IDs, unblinds signatures, computes the intersection.

    ``max_peer_ids`` and ``max_peer_ratio`` cap the set size A may declare, as
    for the key holder: a padded A would learn from the intersection which of
    its guesses B holds. ``ids`` and ``results`` are as for the key holder; B
    takes the bucket count and the bucket to start at from A's key.
    ``protocol`` must be the one party A runs ("rsa", the default, or "ecdh").
    """

    KIND = "label"

    def __init__(
        self,
        job_id: str,
        ids: Sequence[str] | PsiIds,
        *,
        party: str = "B",
        peer: str = "A",
        min_key_bits: int = MIN_RSA_BITS,
        max_key_bits: int | None = None,
        window: int = DEFAULT_WINDOW,
        engine: Engine | int | None = None,
        max_peer_ids: int | None = None,
        max_peer_ratio: float | None = None,
        results: BucketResults | None = None,
        protocol: PsiProtocol = "rsa",
    ) -> None:
        super().__init__(job_id, Roster.pair(peer, party), party)
        self.protocol = protocol
        #: The protocol's math (psi.suites); an ECDH suite draws its fresh scalar here.
        self.suite = requester_suite(protocol, job_id, min_key_bits=min_key_bits, max_key_bits=max_key_bits)
        #: Where blinding and unblinding run; only B's own IDs and the public key reach it.
        self.engine = as_engine(engine)
        self.peer = peer
        check_caps(max_peer_ids, max_peer_ratio)
        self.own = PsiIds.of(ids, source="party B's IDs")
        self.size_b = self.own.size
        if not self.size_b:
            raise DataError("party B has no IDs to intersect; the table is empty")
        self.max_peer_ids = max_peer_ids
        self.max_peer_ratio = max_peer_ratio
        self.min_key_bits = min_key_bits
        self.max_key_bits = max_key_bits
        self.window = window
        # B's window of blinded chunks may run into the next bucket, past A's tags for this one.
        self.lookahead = max(self.lookahead, BUCKET_LOOKAHEAD)
        self.results = results or BucketResults()
        self.key: Message | None = None  # A's first message (PsiPublicKey, or EcdhPublicInfo)
        self.buckets: IdBuckets | None = None
        self.n_buckets = 1
        self.first_bucket = 0
        self.n_chunks = 0
        self.size_a = 0  # as A declared it in its PsiPublicKey; its tags must add up to it
        self.declared_size_b: int | None = None  # what we told A
        self._offsets: list[int] = []  # chunk number where each of our buckets starts
        self._tag_offsets: list[int] = []  # and each of A's tag buckets
        self._blinding: dict[int, object] = {}  # chunk → what unmasking it needs (RSA: r⁻¹ and blinded)
        self._loaded: dict[int, tuple[np.ndarray, list[str]]] = {}  # bucket → its rows and IDs, while in use
        self._tag_rows: dict[bytes, int] = {}  # the current bucket's tags → index in the bucket
        self._a_tags: dict[bytes, bytes] = {}  # A's tags as B compares them → what B sends back if they match
        self._bucket = 0  # the bucket being finished
        self._signed_in_bucket = 0
        self._a_chunks_seen = 0
        self._next_blind = 0
        self.rows: np.ndarray | None = None
        self.progress = (0, self.size_b)


    @property
    def done(self) -> bool:
        return self.rows is not None

    def bucket_progress(self) -> BucketProgress:
        """Buckets finished, and A's messages handled in the running bucket (its signed and its tag chunks)."""
        # Read while the role may be handling a message in another thread: each list is replaced whole, never
        # changed in place, so local copies are consistent; until A's key has set them all, nothing is counted.
        offsets, tag_offsets, buckets, n = self._offsets, self._tag_offsets, self.buckets, self.n_buckets
        if self.key is None or buckets is None or len(offsets) != n + 1 or len(tag_offsets) != n + 1:
            return BucketProgress(0, 0, 0, 0, 0, self.size_b)  # A's key fixes the bucket count
        bucket = min(self._bucket, n)
        if bucket >= n:
            return BucketProgress(n, n, 0, 0, self.size_b, self.size_b)
        ours = offsets[bucket + 1] - offsets[bucket]
        theirs = tag_offsets[bucket + 1] - tag_offsets[bucket]
        done = min(ours + theirs, self._signed_in_bucket + self._a_chunks_seen)
        return BucketProgress(bucket, n, done, ours + theirs, sum(buckets.sizes[:bucket]), self.size_b)

    def position(self, message: Message) -> int:
        if isinstance(message, self.suite.hello_type):
            return 0
        if type(message) in HELLO_TYPES:
            raise ProtocolError(f"party A runs the {HELLO_TYPES[type(message)]} PSI, but party B was set up for "
                                f"{self.protocol}; both must use the same [psi] protocol")
        if self.key is None:
            return 1 << 30  # nothing but the key makes sense first
        if isinstance(message, self.suite.answer_type):
            if not 0 <= message.chunk < self.n_chunks:
                raise PSIError(f"party A sent signed chunk {message.chunk}; party B sent chunks 0 to {self.n_chunks - 1}")
            return 1 + message.chunk + self._tag_offsets[_bucket_at(self._offsets, message.chunk)]
        if isinstance(message, self.suite.own_type):
            if not 0 <= message.chunk < self._tag_offsets[-1]:
                raise PSIError(f"party A sent tag chunk {message.chunk}; its declared sizes make "
                               f"{self._tag_offsets[-1]}")
            return 1 + self._offsets[_bucket_at(self._tag_offsets, message.chunk) + 1] + message.chunk
        raise ProtocolError(f"party B does not expect {message.KIND} during alignment")

    def process(self, message: Message) -> list[Envelope]:
        if isinstance(message, self.suite.hello_type):
            return self._start(message)
        if isinstance(message, self.suite.answer_type):
            return self._unblind(message)
        if isinstance(message, self.suite.own_type):
            return self._collect(message)
        raise ProtocolError(f"party B does not expect {message.KIND} during alignment")

    def declaration(self) -> DeclaredSize:
        """Our set size for A (per bucket when there are several), which bounds what A will sign for us."""
        sizes = self.buckets.sizes if self.buckets is not None else [self.size_b]
        return DeclaredSize(job_id=self.job_id, size_b=self.size_b,
                            bucket_sizes=sizes if self.n_buckets > 1 else None)

    def _start(self, message: Message) -> list[Envelope]:
        self.suite.accept(message)  # RSA: the key and its proof, before anything is blinded
        check_declared_size(message.size_a, self.size_b, peer="A", me="B",
                            max_peer_ids=self.max_peer_ids, max_peer_ratio=self.max_peer_ratio)
        sizes_a = message.sizes
        if len(sizes_a) > MAX_BUCKETS or not _sizes_ok(sizes_a, message.size_a, len(sizes_a)):
            raise PSIError(f"party A's bucket sizes do not add up to the {message.size_a} IDs it declares")
        self.key = message
        self.size_a = message.size_a
        self.sizes_a = sizes_a
        self.chunk_size = message.chunk_size
        self.n_buckets = len(sizes_a)
        self.buckets = self.own.buckets(self.n_buckets)
        done = self.results.open({"party": "B", "digest": self.buckets.digest, "sizes": self.buckets.sizes,
                                  "peer_sizes": sizes_a})
        if message.resume_bucket > done:
            raise PSIError(f"party A resumes the alignment at bucket {message.resume_bucket}, but party B has "
                           f"only {done} finished; submit the job again")
        self.first_bucket = message.resume_bucket
        self._offsets = _offsets([chunk_count(s, self.chunk_size) for s in self.buckets.sizes])
        self._tag_offsets = _offsets([chunk_count(s, self.chunk_size) for s in sizes_a])
        self.n_chunks = self._offsets[-1]
        self._bucket = self.first_bucket
        self._next_blind = self._offsets[self.first_bucket]
        self.cursor = 1 + self._offsets[self.first_bucket] + self._tag_offsets[self.first_bucket]
        declaration = self.declaration()
        self.declared_size_b = declaration.size_b
        out = [self.send(self.peer, declaration)]  # first: A signs nothing before it knows how much to sign
        if self.first_bucket >= self.n_buckets:  # all finished before a restart
            self.rows = self.results.merged_rows(self.n_buckets)
            return out
        return out + self._blind_ahead()

    def _bucket_ids(self, bucket: int) -> tuple[np.ndarray, list[str]]:
        if bucket not in self._loaded:
            self._loaded[bucket] = self.buckets.read(bucket, source="party B's IDs")
        return self._loaded[bucket]

    def _blind_ahead(self) -> list[Envelope]:
        """Blind and send chunks until ``window`` are in flight."""
        out = []
        while self._next_blind < self.n_chunks and len(self._blinding) < self.window:
            out.append(self._blind(self._next_blind))
            self._next_blind += 1
        return out

    def _blind(self, chunk: int) -> Envelope:
        """Mask one chunk of our IDs (RSA: h(x)·r^e mod n, a fresh uniform unit r per ID; ECDH: b·H(x))."""
        bucket = _bucket_at(self._offsets, chunk)
        start = (chunk - self._offsets[bucket]) * self.chunk_size
        ids = self._bucket_ids(bucket)[1][start : start + self.chunk_size]
        message, self._blinding[chunk] = self.suite.mask(self.job_id, chunk, bucket, self.n_chunks, ids, self.engine)
        return self.send(self.peer, message)

    def _unblind(self, message: Message) -> list[Envelope]:
        tags = self.suite.unmask(message, self._blinding.pop(message.chunk), self.engine)  # checked, in order
        start = (message.chunk - self._offsets[self._bucket]) * self.chunk_size
        for i, t in enumerate(tags, start=start):
            self._tag_rows[t] = i
        self._signed_in_bucket += 1
        self.progress = (sum(self.buckets.sizes[: self._bucket]) + len(self._tag_rows), self.size_b)
        self.cursor += 1
        return self._blind_ahead() + self._finish_if_ready()

    def _collect(self, message: Message) -> list[Envelope]:
        # A's tags come in chunks of its own chunk size, so its declared size of this bucket fixes
        # how many chunks there are and how many tags each holds: a surplus is refused as it arrives.
        bucket = self._bucket
        size = self.sizes_a[bucket]
        expected_chunks = chunk_count(size, self.chunk_size)
        local = message.chunk - self._tag_offsets[bucket]
        if message.bucket != bucket or message.total_chunks != expected_chunks:
            raise PSIError(
                f"party A's tag chunk {message.chunk} (bucket {message.bucket}, {message.total_chunks} chunks): "
                f"its declared {size} IDs in bucket {bucket} make {expected_chunks} chunks"
            )
        expected = chunk_length(size, self.chunk_size, local)
        if message.count != expected:
            raise PSIError(
                f"party A's tag chunk {message.chunk} has {message.count} tags; its declared {size} IDs "
                f"give {expected} in this chunk"
            )
        compared, replies = self.suite.own_tags(message, self.engine)  # checked
        self._a_tags.update(zip(compared, replies))
        self._a_chunks_seen += 1
        self.cursor += 1
        if self._a_chunks_seen == expected_chunks and len(self._a_tags) != size:
            raise PSIError(f"party A announced {size} IDs in bucket {bucket} but sent {len(self._a_tags)} "
                           "distinct tags")
        return self._finish_if_ready()

    def _finish_if_ready(self) -> list[Envelope]:
        bucket = self._bucket
        ours = self._offsets[bucket + 1] - self._offsets[bucket]
        theirs = self._tag_offsets[bucket + 1] - self._tag_offsets[bucket]
        if self._signed_in_bucket < ours or self._a_chunks_seen < theirs:
            return []
        rows, ids = self._loaded.pop(bucket)
        matched = [t for t in self._tag_rows if t in self._a_tags]
        common = sorted(self._a_tags[t] for t in matched)  # RSA: the tags themselves; ECDH: A's points
        found = sorted((self._tag_rows[t] for t in matched), key=ids.__getitem__)
        # Saved before A hears of it: a restart never finds A ahead of B.
        self.results.save(bucket, [ids[i] for i in found], rows[found] if found else np.empty(0, np.int64))
        self._tag_rows, self._a_tags = {}, {}
        self._signed_in_bucket = self._a_chunks_seen = 0
        self._bucket += 1
        if self._bucket == self.n_buckets:
            self.rows = self.results.merged_rows(self.n_buckets)
        return [self.send(self.peer, IntersectionTags(job_id=self.job_id, chunk=bucket, count=len(common),
                                                      tags=pack_tags(common)))]


__all__ = ["BucketProgress", "PsiKeyHolder", "PsiRequester", "TAG_BYTES", "check_declared_size"]
