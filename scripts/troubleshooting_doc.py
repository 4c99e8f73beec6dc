#!/usr/bin/env python3
"""The generated part of docs/troubleshooting.md: every error class and every message vfl raises, from the code.

    python scripts/troubleshooting_doc.py            # print the generated part (Markdown)
    python scripts/troubleshooting_doc.py --count    # how many messages, per group

The site never holds a stale copy: `mkdocs build` runs scripts/docs_hooks.py, which puts this script's output
where docs/troubleshooting.md has the marker ``<!-- errors: generated -->``. Nothing is imported from
vfl: the source is read with :mod:`ast` (the error tree in vfl/errors.py, and every ``raise X(...)``
of one of its classes under vfl/, psi/, parties/ and arbiter/), so the page builds without vfl's
dependencies. tests/unit/test_docs_site.py checks that every class has a fix here and that every
message lands in a group.
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("vfl", "psi", "parties", "arbiter")
MARKER = "<!-- errors: generated -->"

#: What to do about each error class, in a user's words (the class docstring says what it is).
FIXES: dict[str, str] = {
    "VFLError": "Read the message: it names the problem and, where one exists, the fix. "
                "A bare `VFLError` is rare; report it with the service's log line.",
    "ConfigError": "Change the flag, the TOML key or the job spec field the message names "
                   "(every key, its type and bounds: [the configuration reference](configuration.md)). "
                   "The CLI exits with status 2.",
    "IdempotencyKeyReused": "Send the other spec with a new `Idempotency-Key`, or the same spec with this key "
                            "(the message names the job the key belongs to).",
    "DataError": "Fix the file or table the message names (see [Preparing data](data-preparation.md)); "
                 "vfl never changes your input. The CLI exits with status 2.",
    "NoOverlapError": "The parties share no ID. Check that both ID columns hold the same kind of key, written "
                      "the same way (IDs are compared as exact text after trimming spaces: `007` is not `7`).",
    "UnknownIDError": "Ask only for IDs the table holds, or send the applicant's features with the request.",
    "CryptoError": "A key or ciphertext is wrong; with honest peers this points at a version mismatch: run the "
                   "same vfl version everywhere.",
    "EncodingError": "A value is NaN or infinite: fix the data (or, for a scorecard, let binning handle missing values).",
    "EncodingOverflow": "Values grew past what the encryption can hold: standardise features, lower the learning "
                        "rate, or use a larger key (`key_bits`).",
    "KeyMismatch": "Use keys of at least `limits.min_key_bits` (2048 by default; 1024 for tests), the same size "
                   "for every party, and let each party fetch the key from the arbiter.",
    "CiphertextError": "A peer sent a damaged or forged ciphertext. Check that every party runs the same vfl version; "
                       "if so, the peer deviates from the protocol: see its audit log.",
    "ProtocolError": "A message did not fit the protocol's state. Run the same vfl version everywhere; a job that "
                     "failed this way can be resumed (`vfl jobs resume`).",
    "UnknownJobError": "The job id is not known at that service: check the id (`vfl jobs list`), and that you ask "
                       "the right party.",
    "OutOfOrderError": "A message came for a step that is not expected now; usually after a restart. Resume the job.",
    "NotReady": "Nothing to do: the sender retries until `limits.peer_timeout`.",
    "StaleKey": "Nothing to do: the querier fetches the lender's new tag set and asks again.",
    "ReplayError": "A second, different message for a step already done: a peer deviates or two copies of one "
                   "service run on the same `data_dir`. Stop the duplicate.",
    "ScheduleViolation": "The arbiter refused a decryption outside the training schedule. With honest parties this "
                         "means mismatched versions or configs; see the arbiter's `audit.log`.",
    "PeerNotAllowed": "The caller's certificate names a party this endpoint does not expect: check `[peers]` "
                      "(ids and roles) at both ends.",
    "NotAPeer": "Add the caller under `[peers.<id>]` with its role, or use the certificate `vfl certs` made for "
                "that party id.",
    "NoClientCertificate": "Peer routes need mutual TLS: give `[tls] cert` and `key` signed by the federation's CA.",
    "Unauthorized": "Send the service's own bearer token (`--token`, `$VFL_TOKEN`, or `Authorization: Bearer ...`).",
    "BadToken": "Use the token from this service's `api_token_file` (each service has its own token).",
    "Forbidden": "A read-only dashboard session, or a cross-site call: use the token with the CLI or curl, or "
                 "submit from party B's own dashboard.",
    "NotServedHere": "Ask the service that offers it (for lending, a service with `[lending] enabled = true`).",
    "LimitExceeded": "Send less, or raise the limit the message names in that service's `[limits]` or `[scoring]`.",
    "BudgetSpent": "The partner's budget is spent for good; only that partner's own config can allow more "
                   "(the message names the key).",
    "RateLimited": "Wait and try again (the message says when the budget renews), or ask the other party to raise "
                   "its rate.",
    "PSIError": "The alignment failed or was refused. Check the ID counts against the partner's `max_psi_ids` and "
                "`max_psi_ratio`, and that both parties allow the protocol (`[psi] protocols`).",
    "TransportError": "A peer could not be reached or answered badly: check its URL in `[peers]`, that it runs, "
                      "and the network between you.",
    "PeerRefused": "The other service refused the call and gave its reason (the message quotes it): fix what it "
                   "names at that party.",
    "ContractMismatch": "The client and the service speak different versions of the orchestration API (compare "
                        "`info.version` of the service's `/openapi.json` with your client's): upgrade the older one.",
    "PeerUnreachable": "Start the peer, or correct its URL in `[peers]`; nothing was registered there.",
    "ComputeError": "The party's compute engine failed: check the Ray cluster (`ray status`), its address and "
                    "its token (`RAY_AUTH_MODE=token`).",
    "DivergedError": "Lower the learning rate (the message shows the one in force), or use `optimizer = \"newton\"`.",
    "LedgerError": "Run `vfl ledger verify DIR --ca ca.pem`: it names the entry, its job and the field that does "
                   "not verify.",
    "LedgerConflict": "Two copies disagree: compare them with `vfl ledger verify DIR --against OTHER`.",
    "JobError": "The job cannot run or continue in its state (the message says why and what to do, e.g. wait "
                "for it to end, resume it, or submit again).",
    "JobCancelled": "The job was cancelled by an operator; submit it again if it should run.",
    "ModelServed": "A model name serves this job, so deleting it would break that name's predictions. Promote "
                   "another version under the name (`vfl models promote NAME JOB`) or roll the name back "
                   "(`vfl models rollback NAME`), then delete the job (`vfl models delete JOB`).",
}

#: Where a user meets an error, by the file that raises it (the first matching prefix wins).
GROUPS: list[tuple[str, tuple[str, ...]]] = [
    ("Setup: certificates, config files, the demo", (
        "vfl/cli/certs.py", "vfl/cli/demo.py", "vfl/demo/", "vfl/service/config.py", "vfl/service/sections.py",
        "vfl/service/tls.py", "vfl/files.py", "vfl/ml/config.py", "vfl/cli/arguments.py", "vfl/cli/output.py",
        "vfl/cli/__init__.py")),
    ("Data: files, tables and databases", ("vfl/data/", "vfl/cli/simulate.py", "vfl/local/", "vfl/cli/compare.py",
                                             "vfl/report/")),
    ("Starting services", (
        "vfl/service/startup.py", "vfl/service/server.py", "vfl/service/node.py", "vfl/cli/serve.py",
        "vfl/service/logs.py", "vfl/compute/", "parties/", "arbiter/")),
    ("Submitting and managing jobs", (
        "vfl/service/spec.py", "vfl/service/stages/submit.py", "vfl/service/stages/accept.py",
        "vfl/service/jobs.py", "vfl/service/http/", "vfl/orchestrate.py", "vfl/cli/jobs.py",
        "vfl/service/lifecycle.py", "vfl/service/record.py", "vfl/service/store.py", "vfl/service/runtime.py",
        "vfl/service/live_job.py", "vfl/service/datasets.py", "vfl/service/retention.py")),
    ("PSI: aligning the parties' IDs", ("psi/", "vfl/service/psi_roles.py", "vfl/service/stages/align.py")),
    ("During a job: training, evaluation, resume", (
        "vfl/protocol/", "vfl/crypto/", "vfl/ml/", "vfl/service/stages/", "vfl/service/training_roles.py",
        "vfl/service/watchdog.py", "vfl/service/peers.py", "vfl/service/context.py", "vfl/service/telemetry.py",
        "vfl/service/redact.py", "vfl/service/releases.py", "vfl/service/scorecards.py")),
    ("Scoring: predictions, batches, model versions", ("vfl/service/serving/", "vfl/cli/score.py")),
    ("The ledger and contributions", (
        "vfl/incentives/", "vfl/service/ledger_copies.py", "vfl/cli/ledger.py")),
    ("Multi-lender queries", ("vfl/lending/", "vfl/service/lending/", "vfl/cli/lending_query.py")),
    # Files no group above names (a new module): by their layer, so the page always lists them.
    ("Submitting and managing jobs", ("vfl/service/", "vfl/orchestrate")),
    ("Setup: certificates, config files, the demo", ("vfl/cli/",)),
    ("During a job: training, evaluation, resume", ("vfl/",)),
]


@dataclass(frozen=True)
class ErrorClass:
    name: str
    parent: str | None
    doc: str
    http_status: int | None


@dataclass(frozen=True)
class Raised:
    error: str
    message: str
    path: str
    line: int


def error_tree(root: Path = ROOT) -> dict[str, ErrorClass]:
    """Every class of vfl/errors.py that derives from VFLError, in file order."""
    module = ast.parse((root / "vfl" / "errors.py").read_text())
    classes: dict[str, ErrorClass] = {}
    for node in module.body:
        if not isinstance(node, ast.ClassDef):
            continue
        bases = [b.id for b in node.bases if isinstance(b, ast.Name)]
        parent = next((b for b in bases if b in classes), None)
        if node.name != "VFLError" and parent is None:
            continue
        status = next((stmt.value.value for stmt in node.body if isinstance(stmt, ast.Assign | ast.AnnAssign)
                       and any(isinstance(t, ast.Name) and t.id == "http_status"
                               for t in (stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]))
                       and isinstance(stmt.value, ast.Constant)), None)
        doc = " ".join((ast.get_docstring(node) or "").split("\n\n")[0].split())
        classes[node.name] = ErrorClass(node.name, parent, doc, status)
    return classes


def status_of(name: str, tree: dict[str, ErrorClass]) -> int:
    """The HTTP status a class answers with: its own, or its nearest ancestor's."""
    while name is not None:
        if tree[name].http_status is not None:
            return tree[name].http_status
        name = tree[name].parent
    return 500


def _placeholder(node: ast.expr) -> str:
    text = ast.unparse(node)
    text = re.sub(r"^self\.|^_", "", text)
    return "‹" + (text if len(text) <= 40 else text[:37] + "...") + "›"


def message_of(node: ast.expr | None) -> str:
    """A raise's message as a template: literal text kept, every computed part as ‹expression›."""
    if node is None:
        return ""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value if isinstance(v, ast.Constant) else _placeholder(v.value) for v in node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return message_of(node.left) + message_of(node.right)
    return _placeholder(node)


def raised(tree: dict[str, ErrorClass], root: Path = ROOT) -> list[Raised]:
    """Every ``raise X(...)`` of a class of the tree in the source, in file and line order."""
    found = []
    for top in SOURCES:
        for path in sorted((root / top).rglob("*.py")):
            relative = path.relative_to(root).as_posix()
            for node in ast.walk(ast.parse(path.read_text(), filename=relative)):
                if not (isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call)):
                    continue
                func = node.exc.func
                name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
                if name in tree:
                    first = node.exc.args[0] if node.exc.args else None
                    found.append(Raised(name, message_of(first), relative, node.lineno))
    return sorted(found, key=lambda r: (r.path, r.line))


def group_of(path: str) -> str:
    for title, prefixes in GROUPS:
        if path.startswith(prefixes):
            return title
    return "Other"


def _text(message: str) -> str:
    """A message as Markdown text: one line, nothing read as markup."""
    message = " ".join(message.split()) or "(a message built at run time)"
    message = message.replace("\\", "\\\\").replace("<", "&lt;").replace(">", "&gt;")
    return re.sub(r"([`*_\[\]|#])", r"\\\1", message)


def _anchor(name: str) -> str:
    return name.lower()


def render(root: Path = ROOT) -> str:
    tree = error_tree(root)
    by_group: dict[str, dict[str, dict[str, list[str]]]] = defaultdict(lambda: defaultdict(dict))
    for item in raised(tree, root):
        by_group[group_of(item.path)][item.error].setdefault(item.message, []).append(item.path)
    out = ["## Every error class", "",
           "A service answers each class with the HTTP status shown; the CLI prints `vfl COMMAND: message` and "
           "exits 2 for `ConfigError` and `DataError` (and their subclasses), 1 for the others.", ""]
    for name, cls in tree.items():
        parent = f", a kind of [`{cls.parent}`](#{_anchor(cls.parent)})" if cls.parent else ""
        out += [f"### {name}", "", f"HTTP {status_of(name, tree)}{parent}. {cls.doc}", "",
                f"**Fix.** {FIXES.get(name, 'Read the message: it names the problem and the fix.')}", ""]
    out += ["## Every message, by where you meet it", "",
            "Each line is a message as the code writes it, with ‹…› where it fills in a value (a file, a "
            "column, a count), and the file that raises it.", ""]
    titles = list(dict.fromkeys(title for title, _ in GROUPS)) + ["Other"]
    for title in titles:
        if title not in by_group:
            continue
        out += [f"### {title}", ""]
        for name in tree:
            messages = by_group[title].get(name)
            if not messages:
                continue
            out += [f"**[`{name}`](#{_anchor(name)})**", ""]
            for message, paths in messages.items():
                where = ", ".join(sorted(set(paths)))
                out.append(f"- {_text(message)} <small>(`{where}`)</small>")
            out.append("")
    return "\n".join(out).rstrip("\n") + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", action="store_true", help="print how many messages each group has")
    args = parser.parse_args(argv)
    if args.count:
        tree = error_tree()
        counts: dict[str, int] = defaultdict(int)
        for item in raised(tree):
            counts[group_of(item.path)] += 1
        for title, count in counts.items():
            print(f"{count:5d}  {title}")
        return 0
    sys.stdout.write(render())
    return 0


if __name__ == "__main__":
    sys.exit(main())
