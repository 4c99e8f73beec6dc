"""A service's configuration file (TOML).

One file configures one service: party A, party B or the arbiter C::

    [party]
    id = "bank"                      # this service's party id, as its peers name it
    role = "B"                       # A, B or C
    listen = "0.0.0.0:8702"          # host:port
    data_dir = "bank-data"           # jobs, models and checkpoints live here
    api_token = "change-me"          # bearer token for orchestration calls (or api_token_file)

    [datasets.credit]                # A and B: datasets peers may ask for, by name only
    path = "bank.csv"
    id_column = "id"
    label_column = "default"         # B only

    [datasets.customers]             # or a database table, read by ID at request time
    url = "postgresql+psycopg://vfl@db.internal:5432/bank"   # or "sqlite:///bank.db"
    table = "customers"
    schema = "crm"                   # optional
    id_column = "id"
    label_column = "default"

    [peers.shop]                     # every other service this one talks to
    role = "A"
    url = "http://10.0.0.5:8701"

    [peers.arbiter]
    role = "C"
    url = "https://10.0.0.7:8703"

    [compute]                        # where this party's big-integer work runs (optional)
    engine = "ray"                   # "local" (this machine's cores, the default) or "ray"
    address = "10.0.0.5:6379"        # ray: the party's own cluster head (`ray start --head`)
    workers = 8                      # tasks at once; default all cores (local) or the cluster's CPUs (ray)

    [psi]                            # private set intersection (optional)
    primes = 3                       # RSA primes of party A's PSI key: 3 (default, faster) or 2 (FIPS 186-4)

    [lending]                        # multi-lender queries (optional; see vfl.lending)
    enabled = true                   # a lender: publish a tag set of borrowers, answer blind queries
    borrowers_file = "borrowers.csv" # or borrowers = "<dataset name>"
    id_column = "customer_id"
    budget_per_day = 1000            # IDs per querier per UTC day
    lenders = ["bank-2", "bank-3"]   # a querier: the peers POST /v1/lending-query asks

    [ledger]                         # the co-signed job ledger (optional; on by default with TLS)
    enabled = true                   # sign and keep every succeeded job; the TLS key signs unless cert/key are given

    [metrics]                        # GET /metrics (Prometheus); optional
    scrape_token_file = "scrape-token"   # a second bearer token that reads /metrics only (or scrape_token)

    [tls]                            # on by default; `vfl certs` makes these files
    ca = "certs/ca.pem"
    cert = "certs/bank.pem"
    key = "certs/bank.key"

Plain HTTP needs ``insecure = true`` under ``[party]`` and is logged as a
warning at start-up. Relative paths are relative to the config file. A peer can name a dataset,
never a path: the mapping from name to file stays in this file.

A dataset is either a file (``path``; CSV, or Parquet when the name ends in
``.parquet``/``.pq`` or ``format = "parquet"``) or a database table (``url`` and
``table``, optionally ``schema``), read through SQLAlchemy: ``pip install
'vfl[sql]'`` (SQLite), ``'vfl[postgres]'`` (PostgreSQL), ``'vfl[parquet]'``
(Parquet). A relative SQLite path (``sqlite:///bank.db``) is relative to the
config file, like other paths; ``sqlite:////abs/bank.db`` is absolute. A
``url`` may carry ``${ENV_VAR}`` placeholders, replaced from the environment
when the dataset is first opened, so that a password need not be written here:
``url = "postgresql+psycopg://vfl:${VFL_DB_PASSWORD}@db.internal/bank"`` (the
value is inserted as it is: percent-encode ``@``, ``:`` and ``/`` in it).
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from vfl.data.dataset import DEFAULT_MAX_BYTES, DatasetSection
from vfl.errors import ConfigError

Role = Literal["A", "B", "C"]
PARTY_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class PartySection(_Strict):
    id: str = Field(pattern=PARTY_ID_PATTERN)
    role: Role
    listen: str = "127.0.0.1:0"
    data_dir: Path
    api_token: str | None = Field(None, min_length=16)
    api_token_file: Path | None = None
    insecure: bool = Field(False, description="serve and call peers over plain HTTP (tests and demos only)")

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
            raise ValueError(f"listen must be host:port, got {value!r}")
        return value

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0]

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])


class PeerSection(_Strict):
    role: Role
    url: str = Field(pattern=r"^https?://")


class TlsSection(_Strict):
    ca: Path
    cert: Path
    key: Path


class LimitsSection(_Strict):
    max_body_bytes: int = Field(512 * 1024**2, ge=1024, description="largest request body accepted")
    max_vector_length: int = Field(5_000_000, ge=1, description="most elements in one vector or ID list")
    max_csv_bytes: int = Field(DEFAULT_MAX_BYTES, ge=1)
    peer_timeout: float = Field(120.0, gt=0, description="seconds a peer may stay unreachable before the job fails")
    request_timeout: float = Field(300.0, gt=0, description="seconds for one peer request")
    connect_timeout: float = Field(
        5.0, gt=0, le=300,
        description="seconds to open a connection to a peer; a submit whose peer cannot be reached within it "
                    "is refused at once (502) instead of retrying for peer_timeout",
    )
    heartbeat: float = Field(15.0, gt=0, description="probe the other parties after this many idle seconds")
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
        description="seconds a running job may go without any message before it fails (a party stopped taking part)",
    )
    max_resumes: int = Field(
        10, ge=0, le=1000, description="most times one job may resume from checkpoints (each needs a real restart)"
    )
    # Party A's partial scores are plaintext values of its model on its rows: B gets them only for
    # IDs A agreed to score, at a bounded volume, and A logs every request (see [scoring]).
    max_scored_ids: int = Field(10_000_000, ge=1, description="party A: most IDs scored for one job, in all")
    score_requests_per_minute: int = Field(600, ge=1, description="party A: scoring requests per job per minute")


class ScoringSection(_Strict):
    """Party A: whom it scores. By default only the job's aligned rows (the customers trained on)."""

    allow_new_ids: list[str] = Field(
        default_factory=list,
        description="job ids (or \"*\" for every job) whose model may score IDs outside the training intersection",
    )

    def allows_new_ids(self, job_id: str) -> bool:
        return "*" in self.allow_new_ids or job_id in self.allow_new_ids


class ComputeSection(_Strict):
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


class PsiSection(_Strict):
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
                           "can then link A's customers across those jobs (see the README's threat model)",
    )


class LendingSection(_Strict):
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
    allowed_queriers: list[str] = Field(
        default_factory=lambda: ["*"],
        description='lender: the peers that may query it; "*" (the default) means every configured peer',
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

    def allows(self, querier: str) -> bool:
        return "*" in self.allowed_queriers or querier in self.allowed_queriers


class LedgerSection(_Strict):
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


class MetricsSection(_Strict):
    """``GET /metrics`` takes the orchestration token, or this scrape token, which opens /metrics only."""

    scrape_token: str | None = Field(None, min_length=16, description="bearer token for GET /metrics only")
    scrape_token_file: Path | None = Field(None, description="a file holding the scrape token (0600)")

    @model_validator(mode="after")
    def _one_token(self) -> MetricsSection:
        if self.scrape_token is not None and self.scrape_token_file is not None:
            raise ValueError("give metrics.scrape_token or metrics.scrape_token_file, not both")
        return self


class ServiceConfig(_Strict):
    party: PartySection
    datasets: dict[str, DatasetSection] = Field(default_factory=dict)
    peers: dict[str, PeerSection] = Field(default_factory=dict)
    limits: LimitsSection = Field(default_factory=LimitsSection)
    scoring: ScoringSection = Field(default_factory=ScoringSection)
    compute: ComputeSection = Field(default_factory=ComputeSection)
    psi: PsiSection = Field(default_factory=PsiSection)
    metrics: MetricsSection = Field(default_factory=MetricsSection)
    ledger: LedgerSection = Field(default_factory=LedgerSection)
    lending: LendingSection = Field(default_factory=LendingSection)
    tls: TlsSection | None = None
    source: Path | None = None

    @model_validator(mode="after")
    def _consistent(self) -> ServiceConfig:
        role = self.party.role
        if role == "C" and self.datasets:
            raise ValueError("the arbiter holds no data: remove its [datasets] section")
        if role == "A" and any(d.label_column for d in self.datasets.values()):
            raise ValueError("party A holds no labels: remove label_column from its datasets")
        if role == "B" and any(d.label_column is None for d in self.datasets.values()):
            raise ValueError("party B's datasets each need a label_column")
        if self.party.id in self.peers:
            raise ValueError(f"party {self.party.id!r} lists itself as a peer")
        if self.tls is None and not self.party.insecure:
            raise ValueError(
                "TLS is on by default: add a [tls] section with ca, cert and key (`vfl certs` makes them), "
                "or set insecure = true under [party] to use plain HTTP"
            )
        scheme = "http://" if self.tls is None else "https://"
        for peer_id, peer in self.peers.items():
            if not peer.url.startswith(scheme):
                raise ValueError(f"peer {peer_id!r} must be reached over {scheme[:-3]} with this service's TLS setting")
        for name in self.datasets:
            if not name or "/" in name or name.startswith("."):
                raise ValueError(f"dataset name {name!r} is not a plain name")
        self._check_lending()
        return self

    def _check_lending(self) -> None:
        lending = self.lending
        if self.party.role == "C" and (lending.enabled or lending.lenders):
            raise ValueError("the arbiter holds no data: it can neither lend nor query ([lending])")
        if lending.borrowers is not None and lending.borrowers not in self.datasets:
            known = ", ".join(sorted(self.datasets)) or "none"
            raise ValueError(f"lending.borrowers names dataset {lending.borrowers!r}, which is not under [datasets] "
                             f"(this service has: {known})")
        for peer in lending.lenders:
            if peer not in self.peers:
                raise ValueError(f"lending.lenders names {peer!r}, which is not under [peers]")
        for peer in lending.allowed_queriers:
            if peer != "*" and peer not in self.peers:
                raise ValueError(f"lending.allowed_queriers names {peer!r}, which is not under [peers]")
        if lending.enabled and lending.key_bits < self.limits.min_key_bits:
            raise ValueError(f"lending.key_bits = {lending.key_bits} is below limits.min_key_bits = "
                             f"{self.limits.min_key_bits}")

    @property
    def role(self) -> Role:
        return self.party.role

    def token(self) -> str:
        """The orchestration bearer token, from the file or the inline value."""
        if self.party.api_token_file is not None:
            try:
                token = self.party.api_token_file.read_text().strip()
            except OSError as exc:
                raise ConfigError(f"cannot read api_token_file {self.party.api_token_file}: {exc}") from exc
            if len(token) < 16:
                raise ConfigError(f"the token in {self.party.api_token_file} is shorter than 16 characters")
            return token
        if self.party.api_token is None:
            raise ConfigError("set party.api_token or party.api_token_file: orchestration calls need a token")
        return self.party.api_token

    def scrape_token(self) -> str | None:
        """The token that may read ``GET /metrics`` besides the orchestration token, if one is configured."""
        metrics = self.metrics
        if metrics.scrape_token_file is None:
            return metrics.scrape_token
        try:
            token = metrics.scrape_token_file.read_text().strip()
        except OSError as exc:
            raise ConfigError(f"cannot read metrics.scrape_token_file {metrics.scrape_token_file}: {exc}") from exc
        if len(token) < 16:
            raise ConfigError(f"the scrape token in {metrics.scrape_token_file} is shorter than 16 characters")
        return token

    def peer_of_role(self, role: Role) -> tuple[str, PeerSection]:
        """The one configured peer with ``role``."""
        matches = [(pid, p) for pid, p in self.peers.items() if p.role == role]
        if len(matches) != 1:
            raise ConfigError(f"party {self.party.id!r} needs exactly one peer with role {role}; found {len(matches)}")
        return matches[0]

    def role_of(self, peer_id: str) -> Role:
        peer = self.peers.get(peer_id)
        if peer is None:
            raise ConfigError(f"{peer_id!r} is not a configured peer of {self.party.id!r}")
        return peer.role


def _resolve_sqlite(url: str, base: Path) -> str:
    """``sqlite:///relative.db`` against the config's folder; other URLs (and absolute or in-memory SQLite) as given."""
    match = re.match(r"^(sqlite(?:\+\w+)?:///)([^?]*)(\?.*)?$", url)
    if match is None:
        return url
    prefix, database, query = match.group(1), match.group(2), match.group(3) or ""
    if not database or database == ":memory:" or database.startswith(("/", "file:", "$")):
        return url
    return f"{prefix}{base / database}{query}"


def load_config(path: str | Path) -> ServiceConfig:
    """Read and validate a service config; relative paths resolve against its folder."""
    file = Path(path)
    try:
        raw = tomllib.loads(file.read_text())
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read the config ({exc})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file}: not valid TOML ({exc})") from exc
    base = file.resolve().parent
    party = raw.get("party")
    if isinstance(party, dict):
        for key in ("data_dir", "api_token_file"):
            if key in party:
                party[key] = str(base / party[key])
    for dataset in (raw.get("datasets") or {}).values():
        if isinstance(dataset, dict) and "path" in dataset:
            dataset["path"] = str(base / dataset["path"])
        if isinstance(dataset, dict) and isinstance(dataset.get("url"), str):
            dataset["url"] = _resolve_sqlite(dataset["url"], base)
    lending = raw.get("lending")
    if isinstance(lending, dict) and "borrowers_file" in lending:
        lending["borrowers_file"] = str(base / lending["borrowers_file"])
    metrics = raw.get("metrics")
    if isinstance(metrics, dict) and "scrape_token_file" in metrics:
        metrics["scrape_token_file"] = str(base / metrics["scrape_token_file"])
    ledger = raw.get("ledger")
    if isinstance(ledger, dict):
        for key in ("ca", "cert", "key"):
            if key in ledger:
                ledger[key] = str(base / ledger[key])
    tls = raw.get("tls")
    if isinstance(tls, dict):
        for key in ("ca", "cert", "key"):
            if key in tls:
                tls[key] = str(base / tls[key])
    try:
        config = ServiceConfig.model_validate({**raw, "source": str(file)})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'config'}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"{file}: {problems}") from exc
    config.token()  # fail at start, not at the first call
    config.scrape_token()
    if config.tls is not None:
        for what in ("ca", "cert", "key"):
            path = getattr(config.tls, what)
            if not path.is_file():
                raise ConfigError(f"{file}: tls.{what} {path} does not exist; `vfl certs` makes these files")
    return config
