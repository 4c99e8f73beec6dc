"""The documentation site (mkdocs.yml, docs/): it builds strictly and offline, and its pages keep their promises.

- `mkdocs build --strict` succeeds: no broken link or anchor, no page outside the nav, no warning.
- The built pages load nothing from the network (no web fonts, no CDN script or stylesheet).
- The troubleshooting page names every VFLError subclass, each with a fix, and lists every message.
- The README stays short and links only to files that exist; the user pages cite no test files
  outside their "How this is tested" notes; the demo output quoted in the README and the quick start
  is the same text (tests/system/test_docs_demo_output.py checks it against a real run).
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from vfl import errors

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
#: Pages that are generated from code, or written for developers: they may name tests.
DEVELOPER_PAGES = {"configuration.md", "lifecycle.md", "architecture.md", "development.md"}


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def every_subclass(cls: type) -> set[str]:
    found = set()
    for sub in cls.__subclasses__():
        found |= {sub.__name__} | every_subclass(sub)
    return found


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    if importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("material") is None:
        pytest.skip("mkdocs and mkdocs-material are not installed: pip install -e '.[docs]' (or '.[test]')")
    out = tmp_path_factory.mktemp("site")
    built = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
        env=os.environ | {"NO_MKDOCS_2_WARNING": "1", "PYTHONPATH": str(ROOT)},
    )
    assert built.returncode == 0, built.stderr[-4000:]
    assert "WARNING" not in built.stderr, built.stderr[-4000:]
    return out


def test_the_site_builds_strictly_with_every_page(site):
    pages = {p.relative_to(DOCS).with_suffix(".html").as_posix() for p in DOCS.rglob("*.md")}

    built = {p.relative_to(site).as_posix() for p in site.rglob("*.html")}

    assert pages <= built
    assert "troubleshooting.html" in built and "quick-start.html" in built


def test_the_built_pages_load_nothing_from_the_network(site):
    remote = re.compile(r"<(?:script|link|img|iframe)\b[^>]*(?:src|href)=\"(?:https?:)?//", re.I)

    offenders = [p.name for p in site.rglob("*.html") if remote.search(p.read_text())]

    assert offenders == []
    assert not any("fonts.googleapis" in p.read_text() for p in site.rglob("*.html"))


def test_the_troubleshooting_page_names_every_error_class_and_its_messages(site):
    html = (site / "troubleshooting.html").read_text()
    script = load_script("troubleshooting_doc")
    tree = script.error_tree()
    raised = script.raised(tree)

    for name in every_subclass(errors.VFLError) | {"VFLError"}:
        assert f'id="{name.lower()}"' in html, f"{name} has no section on the troubleshooting page"
    assert len(raised) > 500
    for item in raised[:: max(1, len(raised) // 40)]:  # a sample of messages, as the page writes them
        literal = max(re.split(r"‹[^›]*›", " ".join(item.message.split())), key=len)[:30]
        if literal.strip():
            visible = re.sub(r"<[^>]+>", "", html).replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
            assert literal.replace("\\", "") in visible.replace("\\", ""), (item.path, item.line, literal)


def test_every_error_class_has_a_fix_and_every_message_a_group():
    script = load_script("troubleshooting_doc")
    tree = script.error_tree()

    assert set(tree) == every_subclass(errors.VFLError) | {"VFLError"}, "vfl/errors.py and the runtime tree differ"
    missing = sorted(set(tree) - set(script.FIXES))
    assert not missing, f"add a fix for {missing} to FIXES in scripts/troubleshooting_doc.py"
    ungrouped = sorted({r.path for r in script.raised(tree) if script.group_of(r.path) == "Other"})
    assert not ungrouped, f"add these files to a group in scripts/troubleshooting_doc.py: {ungrouped}"


def test_the_readme_is_short_and_links_only_to_files_that_exist():
    readme = (ROOT / "README.md").read_text()
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", readme)

    assert 150 <= len(readme.splitlines()) <= 250
    assert "make demo" in readme and "make test" in readme
    local = [link for link in links if not link.startswith(("http://", "https://"))]
    assert local and all((ROOT / link).exists() for link in local), [l for l in local if not (ROOT / l).exists()]
    assert {"docs/quick-start.md", "docs/troubleshooting.md", "docs/data-preparation.md"} <= set(local)


def test_user_pages_cite_tests_only_in_their_how_this_is_tested_note():
    for page in DOCS.glob("*.md"):
        if page.name in DEVELOPER_PAGES:
            continue
        text = re.sub(r"<!--.*?-->", "", page.read_text(), flags=re.S)  # comments are for maintainers
        user_text = text.split("\n## How this is tested")[0]

        assert "tests/" not in user_text, f"{page.name} cites a test file outside its 'How this is tested' note"


def quoted_demo_output(path: Path) -> str:
    text = path.read_text()
    match = re.search(r"<!-- output of: vfl demo[^>]*-->\n```text\n(.*?)```", text, re.S)
    assert match, f"{path.name}: no demo output block after '<!-- output of: vfl demo ... -->'"
    return match.group(1)


def test_the_readme_and_the_quick_start_quote_the_same_demo_output():
    readme, quick_start = quoted_demo_output(ROOT / "README.md"), quoted_demo_output(DOCS / "quick-start.md")

    assert readme == quick_start
    assert "precision      0.6140" in readme  # what `vfl demo` prints (tests/system/test_docs_demo_output.py)
