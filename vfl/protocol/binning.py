"""Federated binning: event counts per bin of a feature party's characteristics, from encrypted labels.

The label party B holds the labels y ∈ {0, 1} of the aligned rows; each feature
party A_h holds its own raw columns on the same rows, in the same order. For
every characteristic (column) of A_h, B learns the number of rows and of events
in each of A_h's fine bins, and so the weight of evidence (WOE) and information
value (IV); A_h learns only how its own fine bins are merged. Both roles are
I/O-free plain objects: each takes a message and returns what to send.

=================  ======  =========  ==============================================
message            sender  recipient  carries
=================  ======  =========  ==============================================
BinningRequest     B       A_h        B's own Paillier key (n, hs) with a proof that
                                      it is a Paillier modulus, [[y]], which of A_h's
                                      characteristics, fine_max_bins, min_share
BinningCounts      A_h     B          per characteristic: its name, rows per fine bin
                                      n_b, and [[S_b + K_b·R_b]] per bin (masked event
                                      sums); never the bin edges
BinningResult      B       A_h        per characteristic: the merge of its fine finite
                                      bins into coarse bins, and the monotone direction
=================  ======  =========  ==============================================

The steps:

1. B makes a key pair of its own (not the arbiter's: nobody else may decrypt),
   encrypts y once (fixed point 0) and sends every feature party the same
   [[y]] and key, with n-th roots modulo n of :data:`PROOF_VALUES` points
   hashed from n (Goldberg, Reyzin, Sagga and Baldimtsi 2019): together with
   n having no prime factor below 2^16, they prove gcd(n, φ(n)) = 1, so that
   (m, r) ↦ (1 + n)^m · r^n is a bijection of Z_n × Z_n* onto Z_{n²}* and a
   ciphertext carries its plaintext and nothing else.
2. A_h checks the key (its size between ``min_key_bits`` and ``max_key_bits``,
   the proof), the vector's length (its aligned row count), the requested
   ``min_share`` against its own floor (B cannot lower it) and the names. Per
   characteristic it computes fine bins locally (:func:`fine_bins`,
   equal-frequency, missing values in the last bin) and per bin b, with
   n_b rows, the encrypted event sum [[S_b]] = Π_{i ∈ b} [[y_i]] (one mulmod
   per row; the rows are split over the engine's workers). It releases
   ``[[S_b]] · [[K_b·R_b]]`` with K_b = n_b + 1 and R_b uniform in
   [0, (n − 1 − n_b) // K_b], the mask a fresh *strict* encryption (r^n for a
   uniform r, not B's DJN base hs, which B chose): it re-randomises the sum
   completely. It sends n_b and the masked sums, not the edges.
3. B decrypts and reduces mod K_b: an honest S_b ≤ n_b < K_b, and
   S_b + K_b·R_b ≤ n − 1, so the residue is S_b exactly. B runs the coarse
   classing (:func:`coarse_groups`, with the job's method, monotone option per
   characteristic, bin count, share and events), keeps events, totals, WOE and
   IV per coarse bin, and sends A_h only the groups and the direction. A_h
   merges its fine bins (``fine.merged(groups)``) and holds its final bins.

What each side learns:

* **A_h** receives ciphertexts under B's key, and per characteristic the
  partition of its fine bins and the monotone direction. The partition and the
  direction are functions of the labels (which fine bins have similar event
  rates, whether the rate rises or falls): a coarse statistic A_h needs in
  order to encode and constrain its own characteristic, no count, rate, WOE
  or IV. It receives nothing else.
* **B** learns, per characteristic of A_h, the number of fine bins, the rows
  n_b of each bin and their events S_b: the standard price of federated
  binning. It does not learn A_h's bin edges, nor which row is in which bin.
* **A deviating B** can encrypt any vector v instead of y. Each released
  plaintext S_b + K_b·R_b mod n is uniform over a run of
  M_b + 1 = (n − 1 − n_b)//K_b + 1 values determined by S_b = Σ_{i∈b} v_i mod n,
  so it carries at most log₂(n) − log₂(M_b + 1) < log₂(K_b) + 2^−1000 bits
  about S_b, and (the ciphertext being a uniform encryption of it, by the
  proof) nothing else: **per characteristic and run, B learns at most
  Σ_b log₂(n_b + 1) bits about A_h's rows beyond the bin sizes**, which is
  exactly what an honest 0/1 vector carries. Weighting rows by 2^i to read
  every row's bin in one run therefore fails (S_b mod K_b is all it gets). A
  0/1 vector that marks one customer still tells B that customer's fine bin
  (one of at most 1/min_share bins, each with at least min_share of the rows,
  A_h's floor): that is bounded only by the number of binning runs a feature
  party allows each label party, which the service budgets.

All values below are checked on receipt; a refusal is a :class:`ProtocolError`
(malformed or out of protocol), :class:`KeyMismatch` (the key), or
:class:`LimitExceeded` (more than this party allows), each naming the fix.
"""

from __future__ import annotations

import hashlib
import math
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Annotated, Any, ClassVar, Protocol

import gmpy2
import numpy as np
from gmpy2 import mpz
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from vfl.compute.engine import Engine, as_engine
from vfl.compute.pool import split_evenly
from vfl.crypto.codec import byte_width, pack_ints, unpack_ints
from vfl.crypto.keys import (
    DEFAULT_KEY_BITS,
    MIN_KEY_BITS,
    PrivateKey,
    PublicKey,
    generate_keypair,
)
from vfl.crypto.obfuscation import strict_obfuscators
from vfl.crypto.vector import EncryptedVector, Encryptor, decrypt_residues, times_one_plus_mn
from vfl.errors import (
    ConfigError,
    DataError,
    KeyMismatch,
    LimitExceeded,
    ProtocolError,
    ReplayError,
    UnknownJobError,
)
from vfl.ml.scorecard.binning import (
    Bins,
    Direction,
    bin_events,
    bin_totals,
    coarse_groups,
    fine_bins,
    woe_iv,
)
from vfl.protocol.messages import (
    CipherVector,
    IntVector,
    Message,
    Party,
    register_message,
)
from vfl.protocol.roster import PARTY_ID_PATTERN

#: Largest Paillier key a feature party accepts by default (as ``limits.max_key_bits``).
MAX_KEY_BITS = 4096
#: Most characteristics one request may name (and one answer may carry).
MAX_CHARACTERISTICS = 2_000
#: Most fine bins per characteristic a label party may ask for (a feature party's
#: ``min_share`` floor bounds them further: at most 1/min_share non-empty ones).
MAX_FINE_BINS = 100
#: n-th roots in B's proof that its modulus is a Paillier modulus; with no prime factor
#: below :data:`TRIAL_DIVISION_BOUND`, a modulus with gcd(n, φ(n)) > 1 passes each with chance < 2^-16.
PROOF_VALUES = 8
TRIAL_DIVISION_BOUND = 1 << 16
PROOF_DOMAIN = b"vfl/binning/paillier-modulus/v1"
#: Below this many rows × characteristics A sums in-process.
PRODUCT_PARALLEL_MIN = 20_000

Name = Annotated[str, StringConstraints(min_length=1, max_length=256)]
FineIndex = Annotated[int, Field(ge=0, le=MAX_FINE_BINS)]

_PRIMORIAL = gmpy2.primorial(TRIAL_DIVISION_BOUND)


# -- messages --------------------------------------------------------------------------------


class BinningMessage(Message):
    """Base of the binning messages (their own sub-protocol, like the PSI's)."""

    PROTOCOL: ClassVar[str] = "binning"
    STEP: ClassVar[int] = 0


@register_message
class BinningRequest(BinningMessage):
    """B → A_h: B's key and proof, [[y]], and what to bin.

    ``party`` names the recipient; ``characteristics`` None asks for all of its columns.
    """

    KIND = "binning_request"
    SENDERS = ("label",)
    RECIPIENTS = ("feature",)

    party: str = Field(pattern=PARTY_ID_PATTERN)
    n: bytes = Field(min_length=1, max_length=MAX_KEY_BITS // 8 + 1)
    hs: bytes = Field(min_length=1, max_length=MAX_KEY_BITS // 4 + 1)
    modulus_proof: IntVector
    enc_labels: CipherVector
    characteristics: list[Name] | None = Field(None, min_length=1, max_length=MAX_CHARACTERISTICS)
    fine_max_bins: int = Field(ge=2, le=MAX_FINE_BINS)
    min_share: float = Field(gt=0, le=0.5)

    def public_key(self) -> PublicKey:
        return PublicKey(n=mpz(int.from_bytes(self.n, "big")), hs=mpz(int.from_bytes(self.hs, "big")))


class CharacteristicCounts(BaseModel):
    """One characteristic of A_h: rows per fine bin (missing last) and the masked event sums."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    name: Name
    totals: list[Annotated[int, Field(ge=0)]] = Field(min_length=2, max_length=MAX_FINE_BINS + 1)
    masked_events: CipherVector


@register_message
class BinningCounts(BinningMessage):
    """A_h → B: per characteristic, n_b and [[S_b + K_b·R_b]] for every fine bin; no edges."""

    KIND = "binning_counts"
    SENDERS = ("feature",)
    RECIPIENTS = ("label",)
    SENDER_FIELD = "party"

    party: str = Field(pattern=PARTY_ID_PATTERN)
    characteristics: list[CharacteristicCounts] = Field(max_length=MAX_CHARACTERISTICS)


class CharacteristicGroups(BaseModel):
    """One characteristic's coarse classing as A_h may know it: the merge of its fine finite bins."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    name: Name
    groups: list[FineIndex] = Field(min_length=1, max_length=MAX_FINE_BINS,
                                    description="the coarse bin of each finite fine bin: 0, then steps of 0 or 1")
    direction: Direction


@register_message
class BinningResult(BinningMessage):
    """B → A_h: per characteristic, its groups and direction; never a count, WOE or IV."""

    KIND = "binning_result"
    SENDERS = ("label",)
    RECIPIENTS = ("feature",)

    party: str = Field(pattern=PARTY_ID_PATTERN)
    characteristics: list[CharacteristicGroups] = Field(max_length=MAX_CHARACTERISTICS)


# -- the modulus proof -----------------------------------------------------------------------


def proof_points(n: mpz) -> list[mpz]:
    """The points whose n-th roots mod n prove B's modulus: SHAKE-256 of (domain, n, i), reduced mod n."""
    n = mpz(n)
    encoded = int(n).to_bytes(byte_width(n + 1), "big")
    size = (int(n).bit_length() + 128 + 7) // 8  # 128 extra bits: the reduction mod n is near uniform
    points = []
    for i in range(PROOF_VALUES):
        digest = hashlib.shake_256(PROOF_DOMAIN + len(encoded).to_bytes(4, "big") + encoded + bytes([i]))
        points.append(mpz(int.from_bytes(digest.digest(size), "big")) % n)
    return points


def prove_modulus(private_key: PrivateKey) -> list[mpz]:
    """B's proof: the n-th roots mod n of :func:`proof_points`, which only B (knowing φ(n)) can take."""
    p, q = private_key.p, private_key.q
    n = private_key.public_key.n
    d = gmpy2.invert(n, (p - 1) * (q - 1))
    return [gmpy2.powmod(y, d, n) for y in proof_points(n)]


def check_modulus(n: mpz, proof: Sequence[mpz]) -> None:
    """Refuse a modulus not shown to satisfy gcd(n, φ(n)) = 1 (see the module docstring)."""
    n = mpz(n)
    if n % 2 == 0 or gmpy2.gcd(n, _PRIMORIAL) != 1:
        raise KeyMismatch(f"the label party's Paillier modulus has a prime factor below {TRIAL_DIVISION_BOUND}: "
                          "it is not a Paillier modulus; refusing to bin under it (it must make a fresh key)")
    points = proof_points(n)
    if len(proof) != len(points) or any(not 0 < s < n or gmpy2.powmod(s, n, n) != y for s, y in zip(proof, points)):
        raise KeyMismatch("the label party's key does not prove gcd(n, φ(n)) = 1 (the n-th roots of its proof "
                          "points do not check): ciphertexts under it could carry more than their plaintexts; "
                          "refusing to bin under it")


# -- settings and reports --------------------------------------------------------------------


class BinningSettings(Protocol):
    """What the roles read of a job's binning settings: :class:`vfl.ml.scorecard.config.BinningSettings`."""

    method: str
    fine_bins: int
    max_bins: int
    min_share: float
    min_events: int

    def monotone_for(self, name: str) -> str: ...


def binning_settings(value: BinningSettings | Mapping[str, Any] | None) -> BinningSettings:
    """The job's binning settings (a job spec's ``scorecard.binning``) from themselves, a mapping, or None (defaults)."""
    if value is not None and not isinstance(value, Mapping):
        missing = [k for k in ("method", "fine_bins", "max_bins", "min_share", "min_events", "monotone_for")
                   if not hasattr(value, k)]
        if missing:
            raise ConfigError(f"binning settings of type {type(value).__name__} lack {missing}; "
                              "pass a scorecard BinningSettings or a mapping")
        return value
    from vfl.ml.scorecard.config import (
        BinningSettings as Settings,  # the job spec's model
    )

    try:
        return Settings.model_validate(dict(value or {}))
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'binning'}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"invalid binning settings: {problems}") from exc


@dataclass(frozen=True)
class CharacteristicReport:
    """What party B keeps about one characteristic of one party (never sent to a feature party).

    ``groups[i]`` is the coarse bin of finite fine bin i (as :meth:`Bins.merged` takes it).
    Coarse arrays have one entry per final bin, the missing-value bin last. ``bins`` are
    the final bins when B may know their edges (its own characteristics), else None.
    """

    party: Party
    name: str
    fine_events: tuple[int, ...]
    fine_totals: tuple[int, ...]
    groups: tuple[int, ...]
    direction: str
    events: tuple[int, ...]
    totals: tuple[int, ...]
    woe: tuple[float, ...]
    iv: tuple[float, ...]
    bins: Bins | None = field(default=None, compare=False)

    @property
    def iv_total(self) -> float:
        return float(math.fsum(self.iv))

    def bin_rows(self) -> list[dict[str, Any]]:
        """One entry per final bin (missing last): counts, event rate, WOE and IV; labels and edges for B's own."""
        rows = sum(self.totals)
        intervals = self.bins.intervals() if self.bins is not None else None
        labels = self.bins.labels() if self.bins is not None else None
        out = []
        for i, (e, t, w, v) in enumerate(zip(self.events, self.totals, self.woe, self.iv)):
            missing = i == len(self.totals) - 1
            entry: dict[str, Any] = {
                "bin": i, "missing": missing,
                "fine_bins": [] if missing else [j for j, g in enumerate(self.groups) if g == i],
                "events": e, "nonevents": t - e, "total": t, "share": t / rows if rows else 0.0,
                "event_rate": e / t if t else None, "woe": w, "iv": v,
            }
            if labels is not None:
                interval = intervals[i]
                entry["label"] = labels[i]
                lower, upper = (None, None) if interval is None else interval
                # JSON has no infinity: an open end is None.
                entry["lower"] = lower if lower is not None and math.isfinite(lower) else None
                entry["upper"] = upper if upper is not None and math.isfinite(upper) else None
            out.append(entry)
        return out

    def to_dict(self) -> dict[str, Any]:
        """B's report entry: ``iv`` is the characteristic's total, per-bin IVs are in ``bins``."""
        out: dict[str, Any] = {
            "party": self.party, "name": self.name, "direction": self.direction, "iv": self.iv_total,
            "iv_total": self.iv_total, "groups": list(self.groups), "bins": self.bin_rows(),
            "fine_events": list(self.fine_events), "fine_totals": list(self.fine_totals),
        }
        if self.bins is not None:
            out["cuts"] = list(self.bins.cuts)
        return out


def check_groups(groups: Sequence[int], finite: int, what: str) -> tuple[int, ...]:
    """Refuse a merge that is not one coarse index per finite fine bin, starting at 0 and stepping by 0 or 1."""
    g = [int(v) for v in groups]
    if len(g) != finite or g[0] != 0 or any(b - a not in (0, 1) for a, b in pairwise(g)):
        raise ProtocolError(
            f"{what}: the groups {g[:MAX_FINE_BINS]} are not one coarse index per each of the {finite} fine "
            "finite bins, starting at 0 and stepping by 0 or 1; the label party must send such a merge")
    return tuple(g)


def coarse_counts(fine: np.ndarray, groups: Sequence[int]) -> np.ndarray:
    """Fine counts (missing last) summed by coarse group over the finite bins; the missing bin stays last."""
    fine = np.asarray(fine, dtype=np.int64)
    g = np.asarray(groups, dtype=np.int64)
    merged = np.zeros(int(g.max()) + 1 if g.size else 0, dtype=np.int64)
    np.add.at(merged, g, fine[:-1])
    return np.append(merged, fine[-1])


def _report(party: Party, name: str, fine_events: np.ndarray, fine_totals: np.ndarray,
            settings: BinningSettings, bins: Bins | None = None) -> CharacteristicReport:
    """Coarse classing, WOE and IV from fine counts (missing bin last): party B's own computation."""
    groups, direction = coarse_groups(
        fine_events[:-1], fine_totals[:-1], method=settings.method, monotone=settings.monotone_for(name),
        max_bins=settings.max_bins, min_share=settings.min_share, min_events=settings.min_events)
    groups = check_groups(groups, len(fine_totals) - 1, f"the coarse classing of {name!r}")
    events, totals = coarse_counts(fine_events, groups), coarse_counts(fine_totals, groups)
    woe, iv = woe_iv(events, totals)
    return CharacteristicReport(
        party=party, name=name, fine_events=tuple(int(v) for v in fine_events),
        fine_totals=tuple(int(v) for v in fine_totals), groups=groups, direction=str(direction),
        events=tuple(int(v) for v in events), totals=tuple(int(v) for v in totals),
        woe=tuple(float(v) for v in woe), iv=tuple(float(v) for v in iv),
        bins=None if bins is None else bins.merged(list(groups)))


# -- compute tasks (module level, so an engine can run them) ---------------------------------


def _bin_products_task(packed: bytes, width: int, nsquare: mpz, assignments: list[np.ndarray],
                       counts: list[int]) -> list[bytes]:
    """Per characteristic, Π [[y_i]] over the rows of each bin, for one slice of rows (packed per characteristic)."""
    cts = unpack_ints(packed, width)
    out = []
    for index, count in zip(assignments, counts):
        acc = [mpz(1)] * count
        for c, b in zip(cts, index.tolist()):
            acc[b] = acc[b] * c % nsquare
        out.append(pack_ints(acc, width))
    return out


def bin_sums(enc: EncryptedVector, assignments: Sequence[np.ndarray], counts: Sequence[int],
             engine: Engine | int | None = None) -> list[list[mpz]]:
    """[[Σ_{i ∈ b} y_i]] for every bin b of every characteristic: one mulmod per row and characteristic.

    The rows are split evenly over the engine's workers (each ciphertext is shipped once) and
    the partial products multiplied together.
    """
    engine = as_engine(engine)
    pk = enc.public_key
    width, nsq = pk.ciphertext_bytes, pk.nsquare
    rows = len(enc)
    parts = engine.workers if rows * max(1, len(assignments)) >= PRODUCT_PARALLEL_MIN else 1
    chunks = [(pack_ints(enc.ciphertexts[s], width), width, nsq, [a[s] for a in assignments], list(counts))
              for s in split_evenly(rows, parts)] if rows else []
    results = engine.map(_bin_products_task, chunks) if len(chunks) > 1 else [_bin_products_task(*c) for c in chunks]
    out = [[mpz(1)] * count for count in counts]
    for part in results:
        for j, packed in enumerate(part):
            out[j] = [a * b % nsq for a, b in zip(out[j], unpack_ints(packed, width))]
    return out


def fresh_obfuscators(n: mpz, count: int, engine: Engine | int | None = None) -> list[mpz]:
    """``count`` strict obfuscators r^n mod n² (r uniform in Z_n*), spread over the engine's workers."""
    engine = as_engine(engine)
    if count <= 0:
        return []
    parts = engine.workers if count >= 2 * engine.workers else 1
    chunks = [(n, s.stop - s.start) for s in split_evenly(count, parts)]
    if len(chunks) == 1:
        return strict_obfuscators(*chunks[0])
    return [r for part in engine.map(strict_obfuscators, chunks) for r in part]


def check_labels(labels: np.ndarray) -> np.ndarray:
    y = np.asarray(labels, dtype=np.float64)
    if y.ndim != 1 or y.size == 0:
        raise DataError(f"binning needs a non-empty 1-D label vector, got shape {y.shape}")
    if not np.all((y == 0) | (y == 1)):
        raise DataError("binning needs labels 0 or 1 (events are 1); recode the label column")
    if y.min() == y.max():
        raise DataError(f"binning needs both events and non-events among the aligned rows; all {y.size} labels "
                        f"are {int(y[0])}, so no WOE or IV is defined")
    return y


# -- party B ---------------------------------------------------------------------------------


class BinningLabelRole:
    """Party B's side: one key and one [[y]] for the whole job, the counts, the coarse classing, WOE and IV.

    ``settings`` are the job's (``scorecard.binning``). ``features`` maps each feature
    party to the names of its characteristics to bin (None: all of them); without it,
    any party :meth:`request` is called for takes part. :meth:`report` lists every
    characteristic binned so far, the feature parties' and (after :meth:`bin_own`) B's own.
    """

    def __init__(
        self,
        job_id: str,
        labels: np.ndarray,
        settings: BinningSettings | Mapping[str, Any] | None = None,
        *,
        features: Mapping[Party, Sequence[str] | None] | None = None,
        party: Party = "B",
        engine: Engine | int | None = None,
        key_bits: int = DEFAULT_KEY_BITS,
        min_key_bits: int = MIN_KEY_BITS,
    ) -> None:
        self.job_id = job_id
        self.party = party
        self.labels = check_labels(labels)
        self.settings = binning_settings(settings)
        #: The feature parties and what each is asked for; None when any party may be asked.
        self.features: dict[Party, list[str] | None] | None = None
        if features is not None:
            self.features = {p: self._names(p, names) for p, names in features.items()}
        self.engine = as_engine(engine)
        self.key_bits = key_bits
        self.min_key_bits = min_key_bits
        self._keypair: tuple[PublicKey, PrivateKey] | None = None
        self._proof: IntVector | None = None
        self._enc_labels: CipherVector | None = None
        #: The characteristics asked of each party that was sent a request.
        self.asked: dict[Party, list[str] | None] = {}
        #: Reports per party, in the order the characteristics were answered (B's own under ``party``).
        self.reports: dict[Party, dict[str, CharacteristicReport]] = {}
        #: B's own final bins (after :meth:`bin_own`).
        self.own_bins: dict[str, Bins] = {}

    @staticmethod
    def _names(party: Party, names: Sequence[str] | None) -> list[str] | None:
        if names is None:
            return None
        out = [str(x) for x in names]
        if not out or len(set(out)) != len(out) or len(out) > MAX_CHARACTERISTICS:
            raise ConfigError(f"binning: the characteristics asked of party {party} must be 1 to "
                              f"{MAX_CHARACTERISTICS} distinct names, got {out[:10]}")
        return out

    @property
    def rows(self) -> int:
        return len(self.labels)

    @property
    def public_key(self) -> PublicKey:
        return self._key()[0]

    def _key(self) -> tuple[PublicKey, PrivateKey]:
        if self._keypair is None:
            self._keypair = generate_keypair(self.key_bits, min_bits=self.min_key_bits)
        return self._keypair

    def request(self, party: Party, characteristics: Sequence[str] | None = None) -> BinningRequest:
        """The request to one feature party: every feature party gets the same key and [[y]].

        ``characteristics`` (None: all the party's) applies when the role was made without ``features``.
        """
        if self.features is not None:
            if party not in self.features:
                raise ConfigError(f"party {party} is not a feature party of binning job {self.job_id}; "
                                  f"the job bins {sorted(self.features)}")
            names = self.features[party]
        else:
            names = self._names(party, characteristics)
        if party in self.reports or party == self.party:
            raise ConfigError(f"party {party} cannot be asked to bin again in job {self.job_id}")
        public, private = self._key()
        if self._enc_labels is None:
            enc = Encryptor(public, "djn", self.engine).encrypt(self.labels, 0, what="label")
            self._enc_labels = CipherVector.from_vector(enc)
            self._proof = IntVector.pack(prove_modulus(private), byte_width(public.n + 1))
        self.asked[party] = names
        return BinningRequest(
            job_id=self.job_id, party=party, n=pack_ints([public.n], byte_width(public.n + 1)),
            hs=pack_ints([public.hs], public.ciphertext_bytes), modulus_proof=self._proof,
            enc_labels=self._enc_labels, characteristics=names,
            fine_max_bins=self.settings.fine_bins, min_share=self.settings.min_share)

    def receive_counts(self, message: BinningCounts) -> BinningResult:
        """Decrypt a feature party's counts, class them, keep WOE and IV; return what the party may know."""
        if message.job_id != self.job_id:
            raise UnknownJobError(f"party {self.party} runs binning job {self.job_id!r}, not {message.job_id!r}")
        party = message.party
        if party not in self.asked or self._keypair is None:
            raise ProtocolError(f"binning counts from party {party}, which was sent no request in job {self.job_id}")
        if party in self.reports:
            raise ReplayError(f"binning counts from party {party} were already received for job {self.job_id}")
        names = [c.name for c in message.characteristics]
        asked = self.asked[party]
        if not names or len(set(names)) != len(names) or (asked is not None and names != asked):
            raise ProtocolError(f"party {party} answered binning for {names[:10]}, but was asked for "
                                f"{'all its characteristics' if asked is None else asked[:10]} (distinct, in order)")
        public, private = self._keypair
        flat: list[mpz] = []
        for c in message.characteristics:
            what = f"the binning counts of party {party}'s {c.name!r}"
            if sum(c.totals) != self.rows:
                raise ProtocolError(f"{what} cover {sum(c.totals)} rows; the job aligned {self.rows}")
            if len(c.totals) > self.settings.fine_bins + 1:
                raise ProtocolError(f"{what} have {len(c.totals)} bins; at most {self.settings.fine_bins} fine "
                                    "bins and the missing bin were asked for")
            if c.masked_events.frac_bits != 0:
                raise ProtocolError(f"{what} are at fixed-point scale {c.masked_events.frac_bits}, not 0")
            flat.extend(c.masked_events.to_vector(public, expected_count=len(c.totals), what=what).ciphertexts)
        residues = decrypt_residues(private, flat, self.engine)
        out, at = {}, 0
        for c in message.characteristics:
            totals = np.asarray(c.totals, dtype=np.int64)
            # An honest sum S_b ≤ n_b is below K_b = n_b + 1 and the mask a multiple of K_b: the residue is S_b.
            events = np.array([int(m % (t + 1)) for m, t in zip(residues[at:at + len(totals)], c.totals)],
                              dtype=np.int64)
            at += len(totals)
            out[c.name] = _report(party, c.name, events, totals, self.settings)
        self.reports[party] = out
        return BinningResult(
            job_id=self.job_id, party=party,
            characteristics=[CharacteristicGroups(name=r.name, groups=list(r.groups), direction=r.direction)
                             for r in out.values()])

    def bin_own(self, features: np.ndarray, names: Sequence[str]) -> dict[str, Bins]:
        """Bin B's own characteristics in plaintext with the same settings; returns B's final bins."""
        X = np.asarray(features, dtype=np.float64)
        names = [str(x) for x in names]
        if X.ndim != 2 or X.shape[0] != self.rows or X.shape[1] != len(names):
            raise DataError(f"party {self.party} gave features of shape {X.shape} for {self.rows} labels and "
                            f"{len(names)} names; they must match")
        if len(set(names)) != len(names):
            raise DataError(f"party {self.party}'s characteristic names are not distinct: {names[:10]}")
        out = self.reports.setdefault(self.party, {})
        for j, name in enumerate(names):
            fine = fine_bins(name, X[:, j], max_bins=self.settings.fine_bins, min_share=self.settings.min_share)
            index = fine.assign(X[:, j])
            report = _report(self.party, name, bin_events(index, fine.count, self.labels),
                             bin_totals(index, fine.count), self.settings, fine)
            out[name] = report
            self.own_bins[name] = report.bins
        return dict(self.own_bins)

    @property
    def done(self) -> bool:
        """Every feature party named in ``features`` (or asked so far) has answered."""
        parties = self.features if self.features is not None else self.asked
        return all(p in self.reports for p in parties)

    def characteristics(self) -> list[CharacteristicReport]:
        """Every characteristic binned so far: feature parties in the order asked, then B's own."""
        order = [*self.asked, *(p for p in self.reports if p not in self.asked)]
        return [r for p in order for r in self.reports.get(p, {}).values()]

    def report(self) -> list[dict[str, Any]]:
        """:meth:`characteristics` as dicts (:meth:`CharacteristicReport.to_dict`): ``iv`` is each one's total."""
        return [r.to_dict() for r in self.characteristics()]

    def information_values(self) -> dict[Party, dict[str, float]]:
        """The IV of every characteristic of every party."""
        return {p: {name: r.iv_total for name, r in reps.items()} for p, reps in self.reports.items()}


# -- a feature party -------------------------------------------------------------------------


class BinningFeatureRole:
    """A feature party's side: fine bins on its own rows, masked encrypted event sums, then the merge B sends.

    ``min_share_floor`` is this party's own least share of rows per fine bin: a request
    asking for less is refused. The fine edges never leave this object.
    """

    def __init__(
        self,
        job_id: str,
        party: Party,
        features: np.ndarray,
        feature_names: Sequence[str],
        min_share_floor: float = 0.05,
        *,
        engine: Engine | int | None = None,
        min_key_bits: int = MIN_KEY_BITS,
        max_key_bits: int = MAX_KEY_BITS,
    ) -> None:
        X = np.asarray(features, dtype=np.float64)
        names = [str(x) for x in feature_names]
        if X.ndim != 2 or X.shape[1] == 0 or X.shape[1] != len(names):
            raise DataError(f"feature party {party} needs a 2-D feature table with one name per column; "
                            f"got shape {X.shape} and {len(names)} names")
        if len(set(names)) != len(names):
            raise DataError(f"feature party {party}'s characteristic names are not distinct: {names[:10]}")
        if not 0 < min_share_floor <= 0.5:
            raise ConfigError(f"min_share_floor={min_share_floor} must be above 0 and at most 0.5")
        if min_key_bits > max_key_bits:
            raise ConfigError(f"min_key_bits={min_key_bits} is above max_key_bits={max_key_bits}")
        self.job_id = job_id
        self.party = party
        self.features = X
        self.feature_names = names
        self.min_share_floor = float(min_share_floor)
        self.engine = as_engine(engine)
        self.min_key_bits = min_key_bits
        self.max_key_bits = max_key_bits
        #: The fine bins of the characteristics answered (local only).
        self.fine: dict[str, Bins] = {}
        #: The final bins, after :meth:`apply`.
        self.bins: dict[str, Bins] = {}
        self.directions: dict[str, str] = {}
        self._answered = False

    @property
    def rows(self) -> int:
        return self.features.shape[0]

    def _check(self, request: BinningRequest) -> tuple[PublicKey, EncryptedVector, list[str]]:
        if request.job_id != self.job_id:
            raise UnknownJobError(f"party {self.party} runs binning job {self.job_id!r}, not {request.job_id!r}")
        if request.party != self.party:
            raise ProtocolError(f"a binning request for party {request.party} reached party {self.party}")
        if self._answered:
            raise ReplayError(f"party {self.party} already answered binning for job {self.job_id}; a new run "
                              "needs a new job")
        key = request.public_key()
        if key.bits > self.max_key_bits:
            raise KeyMismatch(f"the label party's binning key has {key.bits} bits, above this party's maximum of "
                              f"{self.max_key_bits} (limits.max_key_bits); use a smaller key_bits")
        key.validate(min_bits=self.min_key_bits)
        check_modulus(key.n, request.modulus_proof.unpack(byte_width(key.n + 1)))
        if request.min_share < self.min_share_floor:
            raise LimitExceeded(f"the binning request asks for min_share={request.min_share}, below party "
                                f"{self.party}'s floor of {self.min_share_floor}; ask for at least that")
        if request.enc_labels.frac_bits != 0:
            raise ProtocolError(f"encrypted labels at fixed-point scale {request.enc_labels.frac_bits}; "
                                "binning needs them at scale 0")
        enc = request.enc_labels.to_vector(key, expected_count=self.rows, what="the encrypted labels")
        names = self.feature_names if request.characteristics is None else list(request.characteristics)
        unknown = sorted(set(names) - set(self.feature_names))
        if unknown:
            raise ProtocolError(f"party {self.party} has no characteristics {unknown[:10]} to bin; "
                                "ask for some of its own, or for all")
        if len(set(names)) != len(names):
            raise ProtocolError(f"the binning request names a characteristic twice: {names[:10]}")
        return key, enc, names

    def answer(self, request: BinningRequest) -> BinningCounts:
        """Fine bins, then per bin [[S_b + K_b·R_b]] under a fresh strict encryption; rows per bin in the clear."""
        key, enc, names = self._check(request)
        columns = {name: j for j, name in enumerate(self.feature_names)}
        assignments, counts = [], []
        for name in names:
            x = self.features[:, columns[name]]
            fine = fine_bins(name, x, max_bins=request.fine_max_bins, min_share=request.min_share)
            self.fine[name] = fine
            assignments.append(fine.assign(x).astype(np.int64))
            counts.append(fine.count)
        sums = bin_sums(enc, assignments, counts, self.engine)
        n, nsq = key.n, key.nsquare
        rhos = fresh_obfuscators(n, sum(counts), self.engine)
        out, at = [], 0
        for name, index, count, per_bin in zip(names, assignments, counts, sums):
            totals = np.bincount(index, minlength=count)
            masked = []
            for total, s in zip(totals.tolist(), per_bin):
                k = total + 1
                r = secrets.randbelow(int((n - 1 - total) // k) + 1)
                masked.append(times_one_plus_mn(s * rhos[at] % nsq, mpz(k) * r, n, nsq))
                at += 1
            out.append(CharacteristicCounts(
                name=name, totals=totals.tolist(),
                masked_events=CipherVector(count=count, data=pack_ints(masked, key.ciphertext_bytes), frac_bits=0)))
        self._answered = True
        return BinningCounts(job_id=self.job_id, party=self.party, characteristics=out)

    def apply(self, result: BinningResult) -> dict[str, Bins]:
        """Merge the fine bins as B says; refuse a result for another job or party, or a malformed merge."""
        if result.job_id != self.job_id:
            raise UnknownJobError(f"party {self.party} runs binning job {self.job_id!r}, not {result.job_id!r}")
        if result.party != self.party:
            raise ProtocolError(f"a binning result for party {result.party} reached party {self.party}")
        if not self._answered:
            raise ProtocolError(f"a binning result reached party {self.party} before it answered a request")
        if self.bins:
            raise ReplayError(f"party {self.party} already applied a binning result for job {self.job_id}")
        names = [c.name for c in result.characteristics]
        if sorted(names) != sorted(self.fine) or len(set(names)) != len(names):
            raise ProtocolError(f"the binning result names {names[:10]}; party {self.party} binned "
                                f"{list(self.fine)[:10]}, each must appear once")
        merged, directions = {}, {}
        for c in result.characteristics:
            fine = self.fine[c.name]
            groups = check_groups(c.groups, fine.count - 1, f"the binning result for {c.name!r}")
            merged[c.name] = fine.merged(list(groups))
            directions[c.name] = c.direction
        self.bins, self.directions = merged, directions
        return dict(merged)


__all__ = [
    "MAX_KEY_BITS",
    "BinningCounts",
    "BinningFeatureRole",
    "BinningLabelRole",
    "BinningMessage",
    "BinningRequest",
    "BinningResult",
    "CharacteristicCounts",
    "CharacteristicGroups",
    "CharacteristicReport",
    "binning_settings",
    "check_modulus",
    "proof_points",
    "prove_modulus",
]
