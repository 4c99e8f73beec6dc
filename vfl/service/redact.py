"""What another organisation may read of this service's errors: the problem, not our filesystem.

Error messages are written for the people who run *this* service, so they name
local files ("/srv/shop/customers-2024.csv: no ID column 'id'"). Peers are
other organisations: a path tells them how our disks are laid out, who runs
the service and what the files are called. So everything this service sends a
peer about a failure passes through :func:`peer_message` or :func:`redact`:

* the HTTP answer to a refused call on a peer endpoint (``/v1/peer/...``), in
  :mod:`vfl.service.http.errors`;
* the reason in a fail or cancel notice, in ``Node._tell_peers``;
* the error a peer's watchdog reads from ``GET /v1/peer/jobs/{id}/state``.

The full message stays here: in the job record, and in the log line written
before the answer goes out. Orchestration endpoints (``/v1/jobs...``, bearer
token) serve this party's own operators and keep the detail.

Two layers, so that a message nobody thought about is still safe:

1. An error that is known to carry local detail is raised with a ``public``
   message (see :class:`vfl.errors.VFLError`), e.g. "dataset 'behaviour':
   cannot read its file (No such file or directory)".
2. Whatever text goes out is scrubbed: every path this service is configured
   with (dataset files, data_dir, token file, TLS files, the config file) and
   the bare names of its dataset files, then anything else that looks like a
   filesystem path, become ``<local file>``. URL paths of the API
   (``/v1/...``) and URLs are left alone: they are the same at every party.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from vfl.service.config import ServiceConfig

PLACEHOLDER = "<local file>"

# Characters that end a path inside a message: white space, quotes, brackets and separators.
_STOP = r"""\s'"`,;()\[\]{}<>"""
# Extensions of files a service reads or writes; with them, a name without any slash is a file name too.
_FILE_EXTENSIONS = r"csv|tsv|txt|dat|parquet|feather|xlsx?|json|toml|ya?ml|pem|crt|key|log|gz|zip|bz2|npy|npz|pkl|db|sqlite"

_PATTERNS = [
    # Windows: C:\Users\shop\customers.csv
    re.compile(rf"\b[A-Za-z]:\\[^{_STOP}]*"),
    # Home- and dot-relative: ~/data/x, ./x, ../x
    re.compile(rf"(?<![\w/.~-])(?:~|\.{{1,2}})/[^{_STOP}]*"),
    # Absolute POSIX paths. Not the API's own routes (/v1/...), and not inside a URL or a
    # fraction: a path starts after white space, a quote or a bracket, never after a word
    # character, ':' or '/' (so "https://host:8701/v1/x" and "n/3" are left alone).
    re.compile(rf"(?<![\w:/.~-])/(?!v1/)[^{_STOP}/][^{_STOP}]*"),
    # Relative paths and bare file names with a file extension: data/shop.csv, shop.csv.
    re.compile(rf"(?<![\w/.~-])[\w.-]*(?:/[\w.-]+)*\w\.(?:{_FILE_EXTENSIONS})\b(?![\w-])"),
]


def local_paths(config: ServiceConfig) -> list[str]:
    """Every path this service's config names, as written in messages (and resolved)."""
    # A database dataset has a url instead of a path; a sqlite url's file is scrubbed like a path.
    data_files: list[Path] = [dataset.path for dataset in config.datasets.values() if dataset.path is not None]
    data_files += [Path(d.url.split("///", 1)[1]) for d in config.datasets.values()
                   if d.url is not None and d.url.startswith("sqlite:///")]
    paths = list(data_files)
    paths.append(config.party.data_dir)
    if config.party.api_token_file is not None:
        paths.append(config.party.api_token_file)
    if config.tls is not None:
        paths += [config.tls.ca, config.tls.cert, config.tls.key]
    if config.source is not None:
        paths += [config.source, config.source.parent]
    texts: set[str] = set()
    for path in paths:
        texts.add(str(path))
        try:
            texts.add(str(path.resolve()))
        except OSError:  # a path that cannot be resolved is still scrubbed as written
            pass
    # Dataset file names alone ("shop.csv") say what the data is, even without a folder.
    texts |= {path.name for path in data_files if "." in path.name}
    return sorted((t for t in texts if t not in ("", ".", "/")), key=len, reverse=True)


def redact(text: str, paths: Iterable[str] = ()) -> str:
    """``text`` with the given local ``paths``, and anything else that looks like a path, replaced."""
    for path in paths:  # longest first, so a folder does not cut a file's path in two
        if "/" in path or "\\" in path:
            text = text.replace(path, PLACEHOLDER)
        else:  # a bare file name: only as a whole word, not inside a longer name
            text = re.sub(rf"(?<![\w.-]){re.escape(path)}(?![\w-])", PLACEHOLDER, text)
    for pattern in _PATTERNS:
        text = pattern.sub(_placeholder, text)
    return text


def _placeholder(match: re.Match[str]) -> str:
    """The placeholder, keeping punctuation that ends the sentence rather than the path ("/x/y.csv:")."""
    found = match.group(0)
    path = found.rstrip(".:!?")
    return PLACEHOLDER + found[len(path):] if path else found


def peer_message(exc: BaseException, config: ServiceConfig | None = None) -> str:
    """What a peer may read of ``exc``: its ``public`` message if it has one, scrubbed of local paths."""
    public = getattr(exc, "public", None)
    text = public if isinstance(public, str) and public else str(exc)
    return redact(text, local_paths(config) if config is not None else ())


__all__ = ["PLACEHOLDER", "local_paths", "peer_message", "redact"]
