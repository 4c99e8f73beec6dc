"""MkDocs hooks (mkdocs.yml `hooks:`): the pages' generated parts, made from the code at every build.

A page holds its hand-written text and a marker; the build replaces the marker with what a script reads
from the code, so the site can never show a stale list: docs/troubleshooting.md's errors
(scripts/troubleshooting_doc.py), docs/rest-api.md's routes and command help (scripts/api_reference_doc.py).
"""

from __future__ import annotations

import functools
import importlib.util
import sys
from pathlib import Path
from typing import Any

_HERE = Path(__file__).resolve().parent


@functools.cache
def _script(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, _HERE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    errors, reference = _script("troubleshooting_doc"), _script("api_reference_doc")
    for marker, render in ((errors.MARKER, errors.render), (reference.REST_MARKER, reference.render_rest),
                           (reference.CLI_MARKER, reference.render_cli)):
        if marker in markdown:
            markdown = markdown.replace(marker, render())
    return markdown
