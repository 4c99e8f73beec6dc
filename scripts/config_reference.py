#!/usr/bin/env python3
"""Write docs/configuration.md: every service TOML key and every job-spec field, from the models themselves.

    python scripts/config_reference.py            # rewrite docs/configuration.md
    python scripts/config_reference.py --check    # exit 1 if the committed file is out of date

Types, defaults, bounds and descriptions come from the pydantic models
(vfl/service/config.py for the TOML, vfl/service/spec.py and vfl/ml/config.py for
the job spec). A field whose model carries no description gets the one in
``NOTES`` below; a model's own description always wins, so documenting a field
in its model is the way to change its line here.
"""

from __future__ import annotations

import sys
import types
import typing
from pathlib import Path
from typing import Any, Literal

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vfl.service.config import ServiceConfig  # noqa: E402
from vfl.service.spec import JobSpec  # noqa: E402
from scripts import generated_doc  # noqa: E402

OUT = ROOT / "docs" / "configuration.md"

#: Descriptions for fields whose model has none (keyed "Model.field").
NOTES: dict[str, str] = {
    "PartySection.id": "this service's party id: its peers name it so, and its TLS certificate's common name",
    "PartySection.role": "A (a feature party), B (the label party, which runs jobs) or C (the arbiter)",
    "PartySection.listen": "host:port the service listens on (0.0.0.0 for every interface)",
    "PartySection.data_dir": "jobs, models, checkpoints and audit logs live here (0700, files 0600)",
    "PartySection.api_token": "the bearer token for orchestration calls, inline (or use api_token_file)",
    "PartySection.api_token_file": "a file holding the bearer token (0600); one of api_token or api_token_file",
    "DatasetSection.path": "a CSV or Parquet file (a dataset is a path, or a url with a table)",
    "DatasetSection.id_column": "the column of customer IDs, compared as exact text after trimming spaces",
    "DatasetSection.label_column": "party B only, and required there: the label column",
    "PeerSection.role": "the peer's role: A, B or C",
    "PeerSection.url": "the peer's base URL; https with [tls], http only with insecure = true",
    "TlsSection.ca": "the federation's CA certificate (ca.pem from `vfl certs`)",
    "TlsSection.cert": "this service's certificate, signed by that CA; its common name is the party id",
    "TlsSection.key": "this service's private key (keep it 0600)",
    "LimitsSection.max_csv_bytes": "largest dataset file read",
    "JobSpec.job_id": "the job's id; generated (`job-` and 12 hex digits) when absent, refused when it exists",
    "JobSpec.party_a": "the one feature party of a two-party job (or use feature_parties)",
    "JobSpec.feature_parties": "the feature parties, in roster order (or party_a for one)",
    "JobSpec.party_b": "party B's own dataset",
    "JobSpec.arbiter": "the arbiter; may be left out when B's config has exactly one peer with role C",
    "JobSpec.training": "the training settings (below)",
    "JobSpec.psi": "the alignment's settings (below)",
    "FeaturePartyRef.peer": "the feature party's peer id in party B's config",
    "FeaturePartyRef.dataset": "the dataset's name in that party's own config",
    "LabelPartyRef.dataset": "the dataset's name in party B's config",
    "ArbiterRef.peer": "the arbiter's peer id in party B's config",
    "PsiSettings.key_bits": "RSA key size of the blind-signature PSI",
    "TrainingConfig.model": "logistic (a 0/1 label) or linear regression",
    "TrainingConfig.optimizer": "each party's local optimiser: party-local Newton, Adam or SGD",
    "TrainingConfig.fit_intercept": "party B learns an intercept",
    "TrainingConfig.validation_fraction": "share of the aligned rows held out for validation metrics and "
                                          "early stopping (0: none)",
    "TrainingConfig.key_bits": "Paillier key size (services refuse keys below their limits.min_key_bits)",
    "TrainingConfig.obfuscation": "djn: short-exponent obfuscators (fast); strict: textbook r^n",
    "PrivacyConfig.delta": "δ of the (ε, δ) guarantee",
}


def _type(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is Literal:
        return " \\| ".join(f'`{a!r}`'.replace("'", '"') if isinstance(a, str) else f"`{a}`" for a in args)
    if origin in (typing.Union, types.UnionType):
        parts = [_type(a) for a in args if a is not type(None)]
        return " or ".join(parts)
    if origin in (list, tuple):
        return f"list of {_type(args[0])}" if args else "list"
    if origin is dict:
        return f"table of {_type(args[1])}"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return f"object ({annotation.__name__})"
    return {int: "integer", float: "number", str: "string", bool: "boolean", Path: "path"}.get(annotation, str(annotation))


def _number(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int) and abs(value) >= 10_000:
        return f"{value:_}".replace("_", " ")
    return repr(value) if isinstance(value, float) else str(value)


def _size(value: int) -> str:
    for unit, size in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if value >= size and value % size == 0:
            return f" ({value // size} {unit})"
    return ""


def _default(name: str, field: FieldInfo) -> str:
    if field.is_required():
        return "**required**"
    if field.default_factory is not None:
        made = field.default_factory()
        if isinstance(made, BaseModel):
            return "its defaults"
        return f"`{made!r}`".replace("'", '"') if made != [] else "`[]`"
    value = field.default
    if value is None or value is PydanticUndefined:
        return "unset"
    if isinstance(value, str):
        return f'`"{value}"`'
    text = f"`{_number(value)}`"
    if name.endswith("_bytes") and isinstance(value, int):
        text += _size(value)
    return text


def _bounds(field: FieldInfo) -> str:
    parts = []
    for item in field.metadata:
        if isinstance(item, annotated_types.Ge):
            parts.append(f"≥ {_number(item.ge)}")
        elif isinstance(item, annotated_types.Gt):
            parts.append(f"> {_number(item.gt)}")
        elif isinstance(item, annotated_types.Le):
            parts.append(f"≤ {_number(item.le)}")
        elif isinstance(item, annotated_types.Lt):
            parts.append(f"< {_number(item.lt)}")
        elif isinstance(item, annotated_types.MinLen):
            parts.append(f"length ≥ {item.min_length}")
        elif isinstance(item, annotated_types.MaxLen):
            parts.append(f"length ≤ {item.max_length}")
        elif getattr(item, "pattern", None):
            parts.append(f"matches `{item.pattern}`")
    return ", ".join(parts)


def _escape(text: str) -> str:
    return " ".join(text.replace("|", "\\|").split())


def fields_of(model: type[BaseModel]) -> list[tuple[str, FieldInfo]]:
    """The model's fields under the names a file uses (an alias where there is one)."""
    return [(field.alias or name, field) for name, field in model.model_fields.items()]


def table(model: type[BaseModel], skip: tuple[str, ...] = ()) -> str:
    rows = ["| key | type | default | bounds | meaning |", "|---|---|---|---|---|"]
    for key, field in fields_of(model):
        if key in skip:
            continue
        python_name = next(n for n, f in model.model_fields.items() if f is field)
        meaning = field.description or NOTES.get(f"{model.__name__}.{python_name}", "")
        rows.append(f"| `{key}` | {_type(field.annotation)} | {_default(key, field)} | {_bounds(field)} | "
                    f"{_escape(meaning)} |")
    return "\n".join(rows)


#: What each section is for, by model (a section without one shows its model's docstring).
INTROS: dict[str, str] = {
    "PartySection": "Who this service is, where it listens, where it keeps its files. Required.",
    "DatasetSection": "Parties A and B: one table per dataset; peers name a dataset by NAME, never by path. A file "
                      "(`path`) or a database table (`url` and `table`).",
    "PeerSection": "Every other service this one talks to, by its party id.",
    "TlsSection": "Mutual TLS between the parties; required unless `insecure = true` under `[party]`.",
    "LimitsSection": "Bounds and timeouts; every key is optional.",
    "ScoringSection": "Party A: which jobs' models may score IDs outside the training rows.",
    "ComputeSection": "Where this party's big-integer work runs.",
    "PsiSection": "How this party takes part in the private set intersection.",
    "MetricsSection": "Who may read `GET /metrics` (Prometheus) besides the orchestration token.",
    "JobSpec": "Exactly one of `party_a` and `feature_parties`.",
    "TrainingConfig": "Also what `vfl simulate --config` reads (a whole job spec, or only this object). A private "
                      "job (`privacy` set) that leaves them unset uses `optimizer = \"adam\"`, "
                      "`learning_rate = 0.02` and `epochs = 30`.",
    "PrivacyConfig": "Differential privacy: exactly one of `epsilon` and `noise_multiplier`.",
    "ThresholdRule": "`threshold` as a rule instead of a fixed probability: party B applies it on the validation "
                     "rows.",
}


def _models_in(annotation: Any) -> list[tuple[type[BaseModel], str]]:
    """The models an annotation holds, each with how it is held: "" (itself), "[]" (a list), "{}" (a table)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [(annotation, "")]
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (list, tuple):
        return [(m, "[]") for m, _ in _models_in(args[0])] if args else []
    if origin is dict:
        return [(m, "{}") for m, _ in _models_in(args[1])]
    return [found for arg in args for found in _models_in(arg)]


#: The placeholder for a table's key in a section title, by field.
TABLE_KEYS = {"datasets": "NAME", "peers": "ID"}


def service_sections() -> list[tuple[str, type[BaseModel]]]:
    """Every table of a service config, in the order ServiceConfig declares them."""
    sections = []
    for name, field in ServiceConfig.model_fields.items():
        for model, held in _models_in(field.annotation):
            sections.append((f"[{name}.{TABLE_KEYS.get(name, 'KEY')}]" if held == "{}" else f"[{name}]", model))
    return sections


def job_sections() -> list[tuple[str, type[BaseModel]]]:
    """The job spec and every object inside it (breadth first), each model once, titled by every path to it."""
    paths: dict[type[BaseModel], list[str]] = {JobSpec: []}
    queue: list[tuple[type[BaseModel], str]] = [(JobSpec, "")]
    while queue:
        model, prefix = queue.pop(0)
        for name, field in model.model_fields.items():
            for inner, held in _models_in(field.annotation):
                path = f"{prefix}{name}{'[]' if held == '[]' else ''}"
                if inner not in paths:
                    queue.append((inner, path + "."))
                paths.setdefault(inner, []).append(path)
    return [("top level" if model is JobSpec else ", ".join(f"`{p}`" for p in found), model)
            for model, found in paths.items()]


def _intro(model: type[BaseModel]) -> str:
    if model.__name__ in INTROS:
        return INTROS[model.__name__]
    doc = (model.__doc__ or "").strip().split("\n\n")[0]
    return " ".join(doc.replace("``", "`").split())


def render() -> str:
    parts = [
        "# Configuration reference",
        "",
        "Generated from the configuration models by `python scripts/config_reference.py`; do not edit by hand "
        "(`tests/unit/test_config_reference.py` fails when this file is out of date). For how the pieces fit "
        "together, see [Running a federation](deployment.md#three-services-on-three-hosts).",
        "",
        "## Service configuration (TOML)",
        "",
        "One file configures one service (`vfl serve --config FILE`). Relative paths are relative to the file. "
        "Unknown keys are refused. A key shown as *unset* may be left out.",
    ]
    for title, model in service_sections():
        parts += ["", f"### `{title}`", ""]
        if _intro(model):
            parts += [_intro(model), ""]
        parts.append(table(model))
    parts += [
        "",
        "## Job spec (JSON)",
        "",
        "What an orchestrator submits to party B (`POST /v1/jobs`, `vfl jobs submit`). Datasets and peers "
        "are named, never given as paths or URLs. Unknown fields are refused.",
    ]
    for title, model in job_sections():
        parts += ["", f"### {title}", ""]
        if _intro(model):
            parts += [_intro(model), ""]
        parts.append(table(model))
    return "\n".join(parts) + "\n"


def main(argv: list[str] | None = None) -> int:
    return generated_doc.main(argv, doc=__doc__, render=render, out=OUT, command="python scripts/config_reference.py")


if __name__ == "__main__":
    sys.exit(main())
