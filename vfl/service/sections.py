"""The optional tables of a service's config: limits, scoring, compute, PSI, lending, ledger and metrics.

Each is a strict pydantic model with its defaults; :mod:`vfl.service.config`
reads the file and holds one of each (the module docstring there shows a whole
config). ``docs/configuration.md`` lists every key, generated from these.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from vfl.data.dataset import DEFAULT_MAX_BYTES


class Strict(BaseModel):
    """A config table: unknown keys, NaN and infinity are refused, and nothing changes after loading."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class LimitsSection(Strict):
    max_body_bytes: int = Field(512 * 1024**2, ge=1024,
                                description="largest protocol message accepted (a peer's encrypted vectors)")
    max_data_body_bytes: int = Field(
        64 * 1024**2, ge=1024, description="largest body of a request that carries IDs or entries (predictions, "
        "partial scores, the joint IDs of a training start, lending queries, ledger appends)")
    max_control_body_bytes: int = Field(
        1024**2, ge=1024, description="largest body of any other request (job specs, registrations, notices)")
    max_response_bytes: int = Field(
        256 * 1024**2, ge=1024, description="largest answer read from a peer (a lender's tag set of "
        "lending.max_tag_set_size tags is about 43 bytes per tag)")
    max_key_bits: int = Field(
        4096, ge=1024, le=16384, description="largest Paillier or PSI key a job may ask for (each costs this "
        "party CPU time)")
    registrations_per_minute: int = Field(
        30, ge=1, description="a feature party and the arbiter: jobs one party B may register per minute")
    max_vector_length: int = Field(5_000_000, ge=1, description="most elements in one vector or ID list")
    max_csv_bytes: int = Field(DEFAULT_MAX_BYTES, ge=1)
    peer_timeout: float = Field(120.0, gt=0, description="seconds a peer may stay unreachable before the job fails")
    request_timeout: float = Field(300.0, gt=0, description="seconds for one peer request")
    connect_timeout: float = Field(
        5.0, gt=0, le=300,
        description="seconds to open a connection to a peer; a submit whose peer cannot be reached within it "
                    "is refused at once (502) instead of retrying for peer_timeout",
    )
    heartbeat: float = Field(
        15.0, gt=0, description="probe the other parties after this many idle seconds (at most every 2 s while a "
                                "job runs, so a peer that stops answering shows in the job's waiting_for at once)")
    workers: int | None = Field(None, ge=1, description="processes for crypto; default all cores")
    min_key_bits: int = Field(2048, ge=1024, description="smallest Paillier/RSA key accepted")
    header_timeout: float = Field(
        10.0, gt=0, le=300, description="seconds a connection may take to send a request's line and headers"
    )
    body_timeout: float = Field(
        60.0, gt=0, le=3600, description="longest pause, in seconds, while a client sends a request body"
    )
    max_connections: int = Field(
        256, ge=4, description="open connections and running requests above which requests get 503"
    )
    max_header_bytes: int = Field(
        64 * 1024, ge=4096, le=16 * 1024**2, description="largest incomplete request line and headers buffered"
    )
    resume_window: float = Field(
        86400.0, gt=0,
        description="seconds a failed job's checkpoints are kept so it can be resumed; then they are deleted "
                    "(they can hold the arbiter's private key)",
    )
    # Each ID the other party puts into the PSI is one membership test against our set, so a
    # peer that pads its set with guesses learns which of them we hold: its declared size is capped.
    max_psi_ids: int = Field(10_000_000, ge=1, description="most IDs the other party may declare for the PSI")
    max_psi_ratio: float | None = Field(
        None, gt=0, description="if set, the other party may declare at most this many times our own ID count"
    )
    idle_timeout: float = Field(
        900.0, gt=0,
        description="seconds a running job may go without any message before it fails (a party stopped taking "
                    "part); long local work that marks its progress, such as a large side building its offline "
                    "PSI set, counts as activity here and, through the watchdog's probe, at the peers",
    )
    max_resumes: int = Field(
        10, ge=0, le=1000, description="most times one job may resume from checkpoints (each needs a real restart)"
    )
    # Party A's partial scores are plaintext values of its model on its rows: B gets them only for
    # IDs A agreed to score, at a bounded volume, and A logs every request (see [scoring]).
    max_scored_ids: int = Field(10_000_000, ge=1, description="a feature party: most IDs it scores for one label party on one dataset, over all jobs")
    score_requests_per_minute: int = Field(600, ge=1, description="party A: scoring requests per job per minute")
    auth_failures_per_minute: int = Field(
        30, ge=1, description="wrong tokens and failed dashboard logins from one client address per minute; past "
        "it, that address is answered 429 until the minute has passed")


class RetentionSection(Strict):
    """What this party keeps of a job when the job's party B deletes it (B's delete is a request, never an order)."""

    peer_delete: Literal["drop-data", "keep"] = Field(
        "drop-data", description='"drop-data": remove the job\'s model, aligned IDs, checkpoints and other data '
        'files; "keep": keep them all. Either way the job\'s record and its audit log stay, and the job no longer '
        "scores")


class ScoringSection(Strict):
    """Scoring: whom a feature party scores (by default only the job's aligned rows, the customers trained on), and
    the folders party B's batches read from and write to."""

    allow_new_ids: list[str] = Field(
        default_factory=list,
        description="job ids (or \"*\" for every job) whose model may score IDs outside the training intersection",
    )
    reuse_alignment: Literal["contributions", "never", "always"] = Field(
        "contributions", description="a feature party: which jobs may train on an earlier job's aligned rows without a "
        "new PSI: \"contributions\" (the coalition trainings that measure a job this party took part in), "
        "\"never\" or \"always\"")
    score_directions: int | None = Field(
        None, ge=0, description="a feature party: how many independent combinations of one dataset's features it "
        "releases scores of to one label party, over all jobs; default one less than the feature count, so that "
        "no partner can solve for the features")
    score_noise: float | None = Field(
        None, gt=0, description="a feature party: noise multiplier z on every partial score it releases (evaluation, "
        "predictions, batches): each feature is clipped to its range over the aligned rows of the first model "
        "that released it to that label party and gets Gaussian noise of z × that range, fixed per label party, "
        "dataset, ID and feature (asking again, or with another model, returns the same noisy row). Per person "
        "and label party, over all jobs: ρ = n/(2z²) zCDP for n features (about z = 5.4·√n for ε = 1 at δ = 1e-6). "
        "Off by default; see the threat model (docs/security.md) for what it costs in accuracy")
    score_noise_delta: float = Field(
        1e-6, gt=0, lt=1, description="a feature party with score_noise: the δ at which it reports the ε of its "
        "released scores (job status and <data_dir>/releases)")
    batch_inputs: Path | None = Field(
        None, description="party B: the folder score-batch reads input files from (none outside it, no symbolic "
        "link); default <data_dir>/batch/inputs")
    batch_outputs: Path | None = Field(
        None, description="party B: the folder score-batch writes its outputs into; default <data_dir>/batch/outputs")

    def allows_new_ids(self, job_id: str) -> bool:
        return "*" in self.allow_new_ids or job_id in self.allow_new_ids


class ScorecardSection(Strict):
    """A feature party in scorecard jobs: what party B's federated binning may ask of it, and whether it explains
    its points with reason codes."""

    max_binning_runs: int = Field(
        5, ge=0, le=1_000_000, description="a feature party: binning runs (each sums party B's encrypted labels per "
        "bin of every characteristic) it answers for one label party on one dataset, over all jobs; the next is "
        "refused (403). A deviating B could encrypt any vector as labels: this bounds how many it gets summed")
    min_bin_share: float = Field(
        0.05, gt=0, le=0.5, description="a feature party: the smallest share of the aligned rows in one bin it "
        "accepts from a job's binning settings (party B cannot lower it): no bin singles out fewer rows")
    share_reasons: bool = Field(
        False, description="a feature party: send its top reason candidates (a code from [scorecard.codes] and the "
        "points short of the characteristic's best, never a value) with each points total; off by default")
    codes: dict[str, str] = Field(
        default_factory=dict, description="the text of each reason code this party publishes: characteristic "
        "name → text (the code is \"<party>:<characteristic>\"; without a text, the characteristic's name). Party B's "
        "texts go with its own characteristics' reasons")

    @model_validator(mode="after")
    def _codes(self) -> ScorecardSection:
        for name, text in self.codes.items():
            if not name or not text or len(text) > 200:
                raise ValueError(f"scorecard.codes: {name!r} needs a code text of 1 to 200 characters")
        return self


class ComputeSection(Strict):
    """Where this party's encryption, encrypted products, decryption and PSI signing run (see vfl.compute.engine)."""

    engine: Literal["local", "ray"] = Field("local", description='"local": this machine\'s cores; "ray": a Ray cluster')
    address: str | None = Field(
        None, description='engine = "ray": the cluster head, host:port as `ray start --head` printed it; '
                          "unset starts a private one-node Ray instance",
    )
    workers: int | None = Field(
        None, ge=1, description="chunks run at once: default all cores (local) or the cluster's CPUs (ray)"
    )

    @model_validator(mode="after")
    def _address_needs_ray(self) -> ComputeSection:
        if self.address is not None and self.engine != "ray":
            raise ValueError('compute.address applies to engine = "ray"; remove it or set engine = "ray"')
        return self


class PsiSection(Strict):
    """How this party takes part in the private set intersection."""

    primes: Literal[2, 3] = Field(
        3, description="primes of party A's RSA key: 3 signs about 2x faster (RFC 8017 multi-prime); "
                       "2 where FIPS 186-4 is required",
    )
    bucket_ids: int = Field(
        1_000_000, ge=100, le=100_000_000,
        description="most IDs per PSI bucket: the larger set is split into buckets of about this many, "
                    "intersected one at a time and checkpointed, so memory stays bounded and a restart "
                    "resumes at the first unfinished bucket",
    )
    reuse_own_signatures: bool = Field(
        False, description="party A keeps its PSI key and signed own IDs per partner and dataset, and skips "
                           "signing them again in later jobs (half its PSI work). Off by default: the partner "
                           "can then link A's customers across those jobs (see the threat model, docs/security.md). "
                           "RSA only: an ECDH job draws a fresh scalar and reuses nothing",
    )
    protocols: list[Literal["rsa", "ecdh"]] = Field(
        ["rsa", "ecdh"], min_length=1,
        description="the PSI protocols this party takes part in: a feature party refuses a registration, and "
                    "party B a job spec, whose psi.protocol is not listed (\"rsa\": RSA blind signatures; "
                    "\"ecdh\": Diffie-Hellman over X25519, needs libsodium)",
    )
    accept_large_side: bool = Field(
        False, description="a feature party: take part in unbalanced ECDH jobs as the large side "
                           "(psi.large_side = \"feature\"): keep a key and offline set per party B and dataset and "
                           "send B this party's tags, which B keeps. While the key is kept (offline_key_days), B can "
                           "link this party's customers across jobs, as reuse_own_signatures allows for RSA. Off by "
                           "default: such a registration is refused, naming this key",
    )
    offline_key_days: float = Field(
        30, gt=0, le=3650,
        description="the large side of unbalanced ECDH jobs (psi.unbalanced: party B, or a feature party with "
                    "psi.large_side = \"feature\"): how long this party keeps one key and offline set per partner "
                    "and dataset before rotating them. While a key is kept, the partner holding this party's tags "
                    "can link this party's customers across jobs (see the threat model); a rotation costs one "
                    "offline pass",
    )


class LendingSection(Strict):
    """Multi-lender queries (vfl/lending/): this service as a lender, as a querier, or both.

    A lender (``enabled = true``) publishes a tag set of its current borrowers
    under an RSA key it rotates every ``rotate_every`` seconds, and signs blinded
    queries from the parties in ``allowed_queriers`` within each one's budget and
    rate. A querier lists the lenders it asks under ``lenders``.
    """

    enabled: bool = Field(
        False, description="this service is a lender: it publishes a tag set of its borrowers and answers blind "
                           "queries (GET /v1/peer/lending/tag-set, POST /v1/peer/lending/blind-sign)",
    )
    borrowers: str | None = Field(
        None, description="lender: the dataset (a [datasets] name) whose ID column lists the current borrowers",
    )
    borrowers_file: Path | None = Field(
        None, description="lender: or a CSV or Parquet file of the current borrowers (with id_column)",
    )
    id_column: str | None = Field(None, description="lender: the ID column of borrowers_file")
    rotate_every: float = Field(
        86400.0, ge=1, description="lender: seconds between key rotations; a rotation publishes a new tag set "
                                   "under a new key and old tags stop answering",
    )
    key_bits: int = Field(2048, ge=1024, description="lender: RSA key size of the tag set (at least limits.min_key_bits)")
    primes: Literal[2, 3] = Field(3, description="lender: RSA primes of the key: 3 signs about 2x faster, 2 for FIPS 186-4")
    budget_per_day: int = Field(
        1000, ge=1, description="lender: most IDs one querier may ask about per UTC day (kept across restarts)",
    )
    rate_per_minute: int = Field(
        60, ge=1, description="lender: most blind-sign requests one querier may make in any 60 seconds",
    )
    max_ids_per_query: int = Field(
        1000, ge=1, le=100_000, description="most IDs in one query (the querier) or one blind-sign request (the lender)",
    )
    max_tag_set_size: int = Field(
        5_000_000, ge=1, description="querier: most tags a lender's tag set may hold (each costs the querier memory)",
    )
    allowed_queriers: list[str] | None = Field(
        None, description='lender: the peers that may query it; unset (the default): its label-party peers (role '
        'B), never an arbiter or a feature party; "*": every configured peer',
    )
    lenders: list[str] = Field(
        default_factory=list, description="querier: the peers POST /v1/lending-query asks, all at once",
    )

    @model_validator(mode="after")
    def _borrowers(self) -> LendingSection:
        if self.enabled and (self.borrowers is None) == (self.borrowers_file is None):
            raise ValueError('a lender needs its borrowers: borrowers = "<dataset name>", or borrowers_file = '
                             '"borrowers.csv" with id_column = "id" (one of the two)')
        if self.borrowers_file is not None and self.id_column is None:
            raise ValueError('lending.borrowers_file needs id_column = "<the file\'s ID column>"')
        if self.borrowers is not None and self.id_column is not None:
            raise ValueError("lending.id_column applies to borrowers_file; a dataset has its own id_column")
        if len(set(self.lenders)) != len(self.lenders):
            raise ValueError("lending.lenders names a peer twice")
        return self

    @property
    def lends(self) -> bool:
        return self.enabled

    @property
    def queries(self) -> bool:
        return bool(self.lenders)

    def allows(self, querier: str, kind: str | None) -> bool:
        """May ``querier`` (a configured peer of role ``kind``) query this lender?"""
        if self.allowed_queriers is None:
            return kind == "label"
        return "*" in self.allowed_queriers or querier in self.allowed_queriers


class LedgerSection(Strict):
    """The federation's co-signed job ledger (vfl/service/ledger.py): this party's copy and signing key.

    Each party keeps one copy per party B it works with, in ``<data_dir>/ledger/<party B's id>/``,
    and signs entries with the private key of its certificate: by default its TLS
    certificate and key, so that every signature chains to the federation's CA.
    """

    enabled: bool = Field(
        True, description="append every succeeded job to the ledger and sign entries for party B; with plain HTTP "
                          "(insecure) the ledger needs cert, key and ca here")
    cert: Path | None = Field(None, description="the certificate whose key signs entries (default: tls.cert)")
    key: Path | None = Field(None, description="its private key (default: tls.key)")
    ca: Path | None = Field(None, description="the CA certificate signatures are checked against (default: tls.ca)")

    @model_validator(mode="after")
    def _both(self) -> LedgerSection:
        if (self.cert is None) != (self.key is None):
            raise ValueError("give ledger.cert and ledger.key together (or neither, to use the TLS ones)")
        return self


class MetricsSection(Strict):
    """``GET /metrics`` takes the orchestration token, or this scrape token, which opens /metrics only."""

    scrape_token: str | None = Field(None, min_length=16, description="bearer token for GET /metrics only")
    scrape_token_file: Path | None = Field(None, description="a file holding the scrape token (0600)")

    @model_validator(mode="after")
    def _one_token(self) -> MetricsSection:
        if self.scrape_token is not None and self.scrape_token_file is not None:
            raise ValueError("give metrics.scrape_token or metrics.scrape_token_file, not both")
        return self
