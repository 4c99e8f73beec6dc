"""RSA blind-signature PSI (De Cristofaro–Tsudik, in FATE's RSA-intersect form) as two I/O-free roles.

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

Every value a role receives is checked: A refuses values outside [1, n−1] or
sharing a factor with n; B checks the key (e = 65537, size) and that every
signature verifies, s^e = blinded value.
"""

from __future__ import annotations

import random
import secrets
from collections.abc import Sequence
from concurrent.futures import Future

import gmpy2
import numpy as np
from gmpy2 import mpz

from psi.hashing import TAG_BYTES, fdh, tag
from psi.keys import DEFAULT_PRIMES, MIN_RSA_BITS, RsaPrivateKey, generate_rsa_key, sign_crt, sign_many
from psi.messages import (
    BlindedChunk,
    DeclaredSize,
    IntersectionTags,
    KeyHolderTags,
    PsiPublicKey,
    SignedChunk,
    pack_tags,
    unpack_tags,
)
from vfl.crypto.codec import check_units
from vfl.errors import CiphertextError, ConfigError, DataError, LimitExceeded, ProtocolError, PSIError
from vfl.engine import Engine, as_engine
from vfl.parallel import split_evenly
from vfl.protocol.messages import IntVector, Message
from vfl.protocol.role import Envelope, Role
from vfl.protocol.roster import Roster

DEFAULT_CHUNK = 4096
#: Blinded chunks B keeps in flight; bounds the r values it must remember.
DEFAULT_WINDOW = 4
#: A's own IDs are signed in tasks of this size, fed to the pool a few at a
#: time so they fill the gaps while B's chunks are handled, instead of
#: queueing all at once ahead of B's chunks.
OWN_TASK_IDS = 512


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


def batch_invert(values: list[mpz], n: mpz) -> list[mpz]:
    """Inverses mod n of all ``values`` with one modular inversion (Montgomery's trick)."""
    prefix = []
    acc = mpz(1)
    for v in values:
        acc = acc * v % n
        prefix.append(acc)
    try:
        inverse = gmpy2.invert(acc, n)
    except ZeroDivisionError as exc:  # probability ~2^-1000 for uniform r: a broken key or RNG
        raise PSIError("a blinding factor shares a factor with n; refusing this key") from exc
    out = [mpz(0)] * len(values)
    for i in range(len(values) - 1, 0, -1):
        out[i] = inverse * prefix[i - 1] % n
        inverse = inverse * values[i] % n
    if values:
        out[0] = inverse
    return out


def own_tags(ids: list[str], salt: bytes, *parts: mpz) -> list[bytes]:
    """Worker task: H2(FDH(x)^d) for a chunk of the key holder's own IDs; ``parts`` is ``key.crt_parts()``."""
    n = parts[0]
    width = (int(n.bit_length()) + 7) // 8
    # Only H2 of these signatures leaves party A, so a faulty one cannot leak a factor: no check needed.
    return [tag(sign_crt(fdh(x, salt, n), *parts, verify=False), salt, width) for x in ids]


def blind_many(ids: list[str], salt: bytes, n: mpz, e: mpz) -> tuple[list[mpz], list[mpz]]:
    """Worker task for party B: (r⁻¹, h(x)·r^e mod n) for a chunk of IDs, a fresh uniform unit r per ID."""
    factors = [mpz(secrets.randbelow(int(n) - 1) + 1) for _ in ids]  # uniform in [1, n−1]
    blinded = [fdh(x, salt, n) * gmpy2.powmod(r, e, n) % n for x, r in zip(ids, factors)]
    # r must be a unit: the batch inversion fails loudly if one is not (probability ~2^-1000).
    return batch_invert(factors, n), blinded


def unblind_many(
    signatures: list[mpz], inverses: list[mpz], blinded: list[mpz], salt: bytes, n: mpz, e: mpz
) -> list[bytes] | int:
    """Worker task for party B: the tags H2(s·r⁻¹) of a chunk, or the index of the first signature that fails s^e = b."""
    width = (int(n.bit_length()) + 7) // 8
    tags = []
    for i, (s, r_inv, b) in enumerate(zip(signatures, inverses, blinded)):
        if not 0 < s < n or gmpy2.powmod(s, e, n) != b:
            return i
        tags.append(tag(s * r_inv % n, salt, width))
    return tags


class PsiKeyHolder(Role):
    """Party A's side: signs blindly, publishes its own tags, learns the intersection.

    ``max_peer_ids`` and ``max_peer_ratio`` cap the set size B may declare: at
    most that many IDs, and at most that multiple of A's own set (None: no cap).
    """

    KIND = "feature"

    def __init__(
        self,
        job_id: str,
        ids: Sequence[str],
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
    ) -> None:
        super().__init__(job_id, Roster.pair(party, peer), party)
        self.peer = peer
        check_caps(max_peer_ids, max_peer_ratio)
        self.max_peer_ids = max_peer_ids
        self.max_peer_ratio = max_peer_ratio
        #: B's ID count as the job was registered with (a service knows it); the declaration must match.
        self.expected_size_b = expected_size_b
        self.ids = list(ids)
        self.key = key or generate_rsa_key(key_bits, min_bits=min_key_bits, primes=primes)
        self.salt = secrets.token_bytes(32)
        #: Where signing runs (this machine's pool, or party A's Ray cluster); only A's key and IDs reach it.
        self.engine = as_engine(engine)
        self.workers = self.engine.workers
        self.chunk_size = chunk_size
        self.declared_size_b: int | None = None  # from B's DeclaredSize
        self.total_b_chunks: int | None = None  # follows from the declared size and our chunk size
        self.size_b = 0  # blinded values signed so far; never above declared_size_b
        self.rows: np.ndarray | None = None
        self._own_waiting: list[tuple] = []  # own-ID tasks not yet given to the engine
        self._own: list[Future[list[bytes]] | list[bytes]] = []  # in order
        self._tag_rows: dict[bytes, int] | None = None
        self.progress = (0, len(self.ids))

    @property
    def done(self) -> bool:
        return self.rows is not None

    def start(self) -> list[Envelope]:
        """Publish the key and start signing our own IDs in the background."""
        size = OWN_TASK_IDS
        parts = self.key.crt_parts()
        self._own_waiting = [(self.ids[i : i + size], self.salt, *parts) for i in range(0, len(self.ids), size)]
        if self.workers <= 1:
            self._own = [own_tags(*task) for task in self._own_waiting]
            self._own_waiting = []
        self._feed_own(2 * self.workers)
        key = PsiPublicKey.from_key(self.job_id, self.key.public, self.salt, len(self.ids), self.chunk_size)
        return [self.send(self.peer, key)]

    def _feed_own(self, in_flight: int) -> None:
        """Keep ``in_flight`` own-ID tasks queued on the engine (all of them when in_flight is large)."""
        if not self._own_waiting:
            return
        pending = sum(1 for f in self._own if isinstance(f, Future) and not f.done())
        while self._own_waiting and pending < in_flight:
            self._own.append(self.engine.submit(own_tags, *self._own_waiting.pop(0)))
            pending += 1

    # Order: B's declaration (0), its chunks (1 + chunk), then the intersection. A chunk that
    # comes before the declaration waits for it, so nothing is signed before A knows |B|.
    def position(self, message: Message) -> int:
        if isinstance(message, DeclaredSize):
            return 0
        if isinstance(message, BlindedChunk):
            return 1 + message.chunk
        if isinstance(message, IntersectionTags):
            return 1 + self.total_b_chunks if self.total_b_chunks is not None else 1 << 30
        raise ProtocolError(f"party A does not expect {message.KIND} during alignment")

    def validate(self, message: Message) -> None:
        # These checks run as a message arrives (a service answers the sender with the refusal),
        # before the message is queued: a declaration above the caps, or a chunk that does not
        # fit a declaration already taken, never waits in line.
        if isinstance(message, DeclaredSize):
            if self.expected_size_b is not None and message.size_b != self.expected_size_b:
                raise PSIError(f"party B declares {message.size_b} IDs for the PSI, but registered the job "
                               f"with {self.expected_size_b}")
            check_declared_size(message.size_b, len(self.ids), peer="B", me="A",
                                max_peer_ids=self.max_peer_ids, max_peer_ratio=self.max_peer_ratio)
        elif isinstance(message, BlindedChunk) and self.declared_size_b is not None:
            self._check_chunk(message)

    def process(self, message: Message) -> list[Envelope]:
        if isinstance(message, DeclaredSize):
            return self._accept_declaration(message)
        if isinstance(message, BlindedChunk):
            return self._sign(message)
        if isinstance(message, IntersectionTags):
            self._learn_intersection(message)
            return []
        raise ProtocolError(f"party A does not expect {message.KIND} during alignment")

    def _accept_declaration(self, message: DeclaredSize) -> list[Envelope]:
        # handle() has validated it against the caps already
        self.declared_size_b = message.size_b
        self.total_b_chunks = chunk_count(message.size_b, self.chunk_size)
        self.cursor += 1
        return []

    def _check_chunk(self, message: BlindedChunk) -> None:
        """Refuse a chunk that does not fit B's declaration: its index, its chunk total, its length."""
        if message.chunk >= self.total_b_chunks:
            raise PSIError(
                f"party B sent blinded chunk {message.chunk}, but its declared {self.declared_size_b} IDs "
                f"make {self.total_b_chunks} chunks (0 to {self.total_b_chunks - 1})"
            )
        if message.total_chunks != self.total_b_chunks:
            raise PSIError(
                f"blinded chunk {message.chunk} says {message.total_chunks} chunks; party B's declared "
                f"{self.declared_size_b} IDs make {self.total_b_chunks}"
            )
        # Chunks are handled in order and each must hold exactly its share of the declared size,
        # so the count signed can never pass the declaration.
        expected = chunk_length(self.declared_size_b, self.chunk_size, message.chunk)
        if message.values.count != expected:
            raise PSIError(
                f"blinded chunk {message.chunk} has {message.values.count} values; party B declared "
                f"{self.declared_size_b} IDs, so this chunk must have {expected}. "
                "Refusing to sign more than party B declared"
            )

    def _sign(self, message: BlindedChunk) -> list[Envelope]:
        if self.declared_size_b is None:  # unreachable through handle(): position() orders the declaration first
            raise PSIError("party B sent blinded values before declaring its set size; nothing was signed")
        # Again here: at a service the chunk may have arrived, and been validated, while the
        # declaration was still queued. Checked before anything is unpacked or signed.
        self._check_chunk(message)
        # Implied by the checks above; kept because it is the invariant that matters.
        if self.size_b + message.values.count > self.declared_size_b:
            raise PSIError(f"signing chunk {message.chunk} would pass the {self.declared_size_b} IDs party B declared")
        public = self.key.public
        values = message.values.unpack(public.byte_width)
        try:
            check_units(values, public.n, public.n, "blinded value")
        except CiphertextError as exc:
            raise PSIError(f"party B sent an invalid blinded value: {exc}") from exc
        parts = self.key.crt_parts()
        pieces = self.engine.map(sign_many, [(values[s], *parts) for s in split_evenly(len(values), self.workers)])
        signatures = [s for piece in pieces for s in piece]
        self._feed_own(2 * self.workers)  # keep the pool busy while B handles this chunk
        self.size_b += len(values)
        self.cursor += 1
        out = [self.send(self.peer, SignedChunk(job_id=self.job_id, chunk=message.chunk,
                                          values=IntVector.pack(signatures, public.byte_width)))]
        if message.chunk == self.total_b_chunks - 1:  # the last one: B's whole declared set is signed
            out.extend(self._publish_own_tags())
        return out

    def _publish_own_tags(self) -> list[Envelope]:
        self._feed_own(len(self._own_waiting) + 2 * self.workers)
        tags: list[bytes] = []
        for piece in self._own:
            tags.extend(piece.result() if isinstance(piece, Future) else piece)
        self._own = []
        self._tag_rows = {t: i for i, t in enumerate(tags)}
        self.progress = (len(tags), len(self.ids))
        random.SystemRandom().shuffle(tags)  # the order must say nothing about A's rows
        size = self.chunk_size
        chunks = [tags[i : i + size] for i in range(0, len(tags), size)] or [[]]
        return [
            self.send(self.peer, KeyHolderTags(job_id=self.job_id, chunk=j, total_chunks=len(chunks), count=len(c),
                                         tags=pack_tags(c)))
            for j, c in enumerate(chunks)
        ]

    def _learn_intersection(self, message: IntersectionTags) -> None:
        tags = unpack_tags(message.tags, message.count)
        if len(set(tags)) != len(tags):
            raise PSIError("the intersection party B sent repeats a tag")
        try:
            rows = [self._tag_rows[t] for t in tags]
        except KeyError as exc:
            raise PSIError("party B claims an intersection tag that party A never sent") from exc
        self.cursor += 1
        self.rows = np.asarray(sorted(rows, key=self.ids.__getitem__), dtype=np.int64)


class PsiRequester(Role):
    """Party B's side: blinds its IDs, unblinds signatures, computes the intersection.

    ``max_peer_ids`` and ``max_peer_ratio`` cap the set size A may declare, as
    for the key holder: a padded A would learn from the intersection which of
    its guesses B holds.
    """

    KIND = "label"

    def __init__(
        self,
        job_id: str,
        ids: Sequence[str],
        *,
        party: str = "B",
        peer: str = "A",
        min_key_bits: int = MIN_RSA_BITS,
        window: int = DEFAULT_WINDOW,
        engine: Engine | int | None = None,
        max_peer_ids: int | None = None,
        max_peer_ratio: float | None = None,
    ) -> None:
        super().__init__(job_id, Roster.pair(peer, party), party)
        #: Where blinding and unblinding run; only B's own IDs and the public key reach it.
        self.engine = as_engine(engine)
        self.peer = peer
        check_caps(max_peer_ids, max_peer_ratio)
        self.ids = list(ids)
        if not self.ids:
            raise DataError("party B has no IDs to intersect; the table is empty")
        self.max_peer_ids = max_peer_ids
        self.max_peer_ratio = max_peer_ratio
        self.min_key_bits = min_key_bits
        self.window = window
        self.key: PsiPublicKey | None = None
        self.n_chunks = 0
        self.size_a = 0  # as A declared it in its PsiPublicKey; its tags must add up to it
        self.declared_size_b: int | None = None  # what we told A
        self._blinding: dict[int, tuple[list[mpz], list[mpz]]] = {}  # chunk → (r⁻¹, blinded)
        self._tag_rows: dict[bytes, int] = {}
        self._a_tags: set[bytes] = set()
        self._signed_chunks = 0
        self._a_chunks_expected: int | None = None
        self._a_chunks_seen = 0
        self.rows: np.ndarray | None = None
        self.progress = (0, len(self.ids))

    @property
    def done(self) -> bool:
        return self.rows is not None

    def position(self, message: Message) -> int:
        if isinstance(message, PsiPublicKey):
            return 0
        if self.key is None:
            return 1 << 30  # nothing but the key makes sense first
        if isinstance(message, SignedChunk):
            return 1 + message.chunk
        if isinstance(message, KeyHolderTags):
            return 1 + self.n_chunks + message.chunk
        raise ProtocolError(f"party B does not expect {message.KIND} during alignment")

    def process(self, message: Message) -> list[Envelope]:
        if isinstance(message, PsiPublicKey):
            return self._start(message)
        if isinstance(message, SignedChunk):
            return self._unblind(message)
        if isinstance(message, KeyHolderTags):
            return self._collect(message)
        raise ProtocolError(f"party B does not expect {message.KIND} during alignment")

    def declaration(self) -> DeclaredSize:
        """Our set size for A, which bounds what A will sign for us."""
        return DeclaredSize(job_id=self.job_id, size_b=len(self.ids))

    def _start(self, message: PsiPublicKey) -> list[Envelope]:
        key = message.key()
        key.validate(min_bits=self.min_key_bits)
        check_declared_size(message.size_a, len(self.ids), peer="A", me="B",
                            max_peer_ids=self.max_peer_ids, max_peer_ratio=self.max_peer_ratio)
        self.key = message
        self._n, self._e, self._width = key.n, key.e, key.byte_width
        self.size_a = message.size_a
        self.chunk_size = message.chunk_size
        self.n_chunks = chunk_count(len(self.ids), self.chunk_size)
        self.cursor += 1
        declaration = self.declaration()
        self.declared_size_b = declaration.size_b
        # The declaration goes first: A signs nothing before it knows how much to sign.
        return [self.send(self.peer, declaration)] + [self._blind(c) for c in range(min(self.window, self.n_chunks))]

    def _pieces(self, count: int) -> list[slice]:
        return split_evenly(count, self.engine.workers)

    def _blind(self, chunk: int) -> Envelope:
        """h(x)·r^e mod n for one chunk, with a fresh uniform unit r per ID."""
        n, e, salt = self._n, self._e, self.key.salt
        ids = self.ids[chunk * self.chunk_size : (chunk + 1) * self.chunk_size]
        pieces = self.engine.map(blind_many, [(ids[s], salt, n, e) for s in self._pieces(len(ids))])
        inverses = [v for piece_inverses, _ in pieces for v in piece_inverses]
        blinded = [v for _, piece_blinded in pieces for v in piece_blinded]
        self._blinding[chunk] = (inverses, blinded)
        message = BlindedChunk(job_id=self.job_id, chunk=chunk, total_chunks=self.n_chunks,
                               values=IntVector.pack(blinded, self._width))
        return self.send(self.peer, message)

    def _unblind(self, message: SignedChunk) -> list[Envelope]:
        inverses, blinded = self._blinding.pop(message.chunk)
        signatures = message.values.unpack(self._width)
        if len(signatures) != len(blinded):
            raise PSIError(f"signed chunk {message.chunk} has {len(signatures)} values for {len(blinded)} sent")
        n, e, salt = self._n, self._e, self.key.salt
        slices = self._pieces(len(blinded))
        pieces = self.engine.map(unblind_many, [(signatures[s], inverses[s], blinded[s], salt, n, e) for s in slices])
        start = message.chunk * self.chunk_size
        for part, piece in zip(slices, pieces):
            if isinstance(piece, int):
                raise PSIError(f"party A's signature {part.start + piece} in chunk {message.chunk} does not verify")
            for i, t in enumerate(piece, start=start + part.start):
                self._tag_rows[t] = i
        self._signed_chunks += 1
        self.progress = (len(self._tag_rows), len(self.ids))
        self.cursor += 1
        out = []
        following = message.chunk + self.window
        if following < self.n_chunks:
            out.append(self._blind(following))
        return out + self._finish_if_ready()

    def _collect(self, message: KeyHolderTags) -> list[Envelope]:
        # A's tags come in chunks of its own chunk size, so its declared |A| fixes how many
        # chunks there are and how many tags each holds: a surplus is refused as it arrives.
        expected_chunks = chunk_count(self.size_a, self.chunk_size)
        if message.total_chunks != expected_chunks or message.chunk >= expected_chunks:
            raise PSIError(
                f"party A's tag chunk {message.chunk} of {message.total_chunks}: its declared {self.size_a} IDs "
                f"make {expected_chunks} chunks"
            )
        self._a_chunks_expected = expected_chunks
        expected = chunk_length(self.size_a, self.chunk_size, message.chunk)
        if message.count != expected:
            raise PSIError(
                f"party A's tag chunk {message.chunk} has {message.count} tags; its declared {self.size_a} IDs "
                f"give {expected} in this chunk"
            )
        tags = unpack_tags(message.tags, message.count)
        self._a_tags.update(tags)
        self._a_chunks_seen += 1
        self.cursor += 1
        if self._a_chunks_seen == self._a_chunks_expected and len(self._a_tags) != self.size_a:
            raise PSIError(f"party A announced {self.size_a} IDs but sent {len(self._a_tags)} distinct tags")
        return self._finish_if_ready()

    def _finish_if_ready(self) -> list[Envelope]:
        if self._signed_chunks < self.n_chunks or self._a_chunks_seen != self._a_chunks_expected:
            return []
        common = sorted(t for t in self._tag_rows if t in self._a_tags)
        rows = sorted((self._tag_rows[t] for t in common), key=self.ids.__getitem__)
        self.rows = np.asarray(rows, dtype=np.int64)
        self._a_tags = set()
        return [self.send(self.peer, IntersectionTags(job_id=self.job_id, count=len(common), tags=pack_tags(common)))]


__all__ = ["PsiKeyHolder", "PsiRequester", "TAG_BYTES", "check_declared_size"]
