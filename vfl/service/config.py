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

    [scorecard]                      # a feature party in scorecard jobs (optional)
    max_binning_runs = 5             # binning runs per label party and dataset, over all jobs
    min_bin_share = 0.05             # the floor of a bin's share of the rows; party B cannot lower it
    share_reasons = false            # send reason codes (and their shortfalls) with each points total

    [scorecard.codes]                # published reason codes: characteristic → text
    age = "Applicant too young"

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

from pydantic import Field, ValidationError, field_validator, model_validator

from vfl.data.dataset import DatasetSection
from vfl.data.formats import read_text
from vfl.errors import ConfigError
from vfl.ml.validation import describe
from vfl.service.sections import (
    ComputeSection,
    LedgerSection,
    LendingSection,
    LimitsSection,
    MetricsSection,
    PsiSection,
    RetentionSection,
    ScorecardSection,
    ScoringSection,
    Strict,
)
from vfl.protocol.roster import KINDS, LETTERS, RoleKind, RoleLetter

PARTY_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"


class PartySection(Strict):
    id: str = Field(pattern=PARTY_ID_PATTERN)
    role: RoleLetter
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
    def kind(self) -> RoleKind:
        """What this service does in a job: feature party (A), label party (B) or arbiter (C)."""
        return KINDS[self.role]

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0]

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])


class PeerSection(Strict):
    role: RoleLetter
    url: str = Field(pattern=r"^https?://")

    @property
    def kind(self) -> RoleKind:
        return KINDS[self.role]


class TlsSection(Strict):
    ca: Path
    cert: Path
    key: Path


class ServiceConfig(Strict):
    party: PartySection
    datasets: dict[str, DatasetSection] = Field(default_factory=dict)
    peers: dict[str, PeerSection] = Field(default_factory=dict)
    limits: LimitsSection = Field(default_factory=LimitsSection)
    scoring: ScoringSection = Field(default_factory=ScoringSection)
    scorecard: ScorecardSection = Field(default_factory=ScorecardSection)
    retention: RetentionSection = Field(default_factory=RetentionSection)
    compute: ComputeSection = Field(default_factory=ComputeSection)
    psi: PsiSection = Field(default_factory=PsiSection)
    metrics: MetricsSection = Field(default_factory=MetricsSection)
    ledger: LedgerSection = Field(default_factory=LedgerSection)
    lending: LendingSection = Field(default_factory=LendingSection)
    tls: TlsSection | None = None
    source: Path | None = None

    @model_validator(mode="after")
    def _consistent(self) -> ServiceConfig:
        kind = self.party.kind
        if kind == "arbiter" and self.datasets:
            raise ValueError("the arbiter holds no data: remove its [datasets] section")
        if kind == "feature" and any(d.label_column for d in self.datasets.values()):
            raise ValueError("party A holds no labels: remove label_column from its datasets")
        if kind == "label" and any(d.label_column is None for d in self.datasets.values()):
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
        if self.party.kind == "arbiter" and (lending.enabled or lending.lenders):
            raise ValueError("the arbiter holds no data: it can neither lend nor query ([lending])")
        if lending.borrowers is not None and lending.borrowers not in self.datasets:
            known = ", ".join(sorted(self.datasets)) or "none"
            raise ValueError(f"lending.borrowers names dataset {lending.borrowers!r}, which is not under [datasets] "
                             f"(this service has: {known})")
        for peer in lending.lenders:
            if peer not in self.peers:
                raise ValueError(f"lending.lenders names {peer!r}, which is not under [peers]")
        for peer in lending.allowed_queriers or []:
            if peer != "*" and peer not in self.peers:
                raise ValueError(f"lending.allowed_queriers names {peer!r}, which is not under [peers]")
        if lending.enabled and lending.key_bits < self.limits.min_key_bits:
            raise ValueError(f"lending.key_bits = {lending.key_bits} is below limits.min_key_bits = "
                             f"{self.limits.min_key_bits}")
        if lending.enabled and lending.key_bits > self.limits.max_key_bits:
            raise ValueError(f"lending.key_bits = {lending.key_bits} is above limits.max_key_bits = "
                             f"{self.limits.max_key_bits}, which its queriers would refuse too")

    @property
    def kind(self) -> RoleKind:
        """This service's role kind (its ``[party] role`` letter, read through the one map)."""
        return self.party.kind

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

    def peer_of_kind(self, kind: RoleKind) -> str:
        """The party id of the one configured peer of ``kind``."""
        matches = [pid for pid, p in self.peers.items() if p.kind == kind]
        if len(matches) != 1:
            raise ConfigError(f"party {self.party.id!r} needs exactly one {kind} peer (role {LETTERS[kind]}); "
                              f"found {len(matches)}")
        return matches[0]

    def kind_of(self, peer_id: str) -> RoleKind | None:
        """The role kind of a configured peer; None for a caller that is no peer of this service."""
        peer = self.peers.get(peer_id)
        return None if peer is None else peer.kind


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
        raw = tomllib.loads(read_text(file, "TOML config file"))  # a BOM (Notepad's "UTF-8 with BOM") is dropped
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read the config ({exc})") from exc
    except ValueError as exc:  # a folder, a workbook, UTF-16 or another code page: named by read_text
        if isinstance(exc, tomllib.TOMLDecodeError):
            raise ConfigError(f"{file}: not valid TOML ({exc})") from exc
        raise ConfigError(str(exc)) from None
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
    scoring = raw.get("scoring")
    if isinstance(scoring, dict):
        for key in ("batch_inputs", "batch_outputs"):
            if key in scoring:
                scoring[key] = str(base / scoring[key])
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
        raise ConfigError(f"{file}: {describe(exc, ServiceConfig)}") from exc
    config.token()  # fail at start, not at the first call
    config.scrape_token()
    if config.tls is not None:
        for what in ("ca", "cert", "key"):
            path = getattr(config.tls, what)
            if not path.is_file():
                raise ConfigError(f"{file}: tls.{what} {path} does not exist; `vfl certs` makes these files")
    return config
