"""Dockerfile and compose.yaml, checked without Docker (not available here).

The image's command must be the `vfl serve` invocation docs/deployment.md documents,
and compose.yaml must mount, for each service, exactly what that service's
config (as `vfl demo --prepare-only --feature-parties 2` writes it) uses:
certificates, token and data read-only, the job store writable, the CA key
nowhere.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path, PurePosixPath

import pytest

from vfl.demo.services import services_in
from vfl.service.config import load_config

yaml = pytest.importorskip("yaml", reason="parsing compose.yaml needs PyYAML (installed with the test extra's ray)")

ROOT = Path(__file__).resolve().parents[2]


def dockerfile() -> dict[str, list[str]]:
    """Each instruction's arguments, in order (continuation lines joined)."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            found.setdefault(word.upper(), []).append(rest.strip())
    return found


def documented_serve() -> list[str]:
    page = (ROOT / "docs" / "deployment.md").read_text()
    block = re.search(r"Then on each host:\n\n```sh\n(.*?)\n```", page, re.S)
    assert block, "docs/deployment.md's 'Then on each host:' block is gone"
    return shlex.split(block.group(1))


def test_the_image_runs_the_documented_vfl_serve_invocation():
    instructions = dockerfile()

    assert instructions["FROM"] == ["python:3.11-slim"]
    assert any(re.search(r"\bpip install (--no-cache-dir )?\.( |$)", run) for run in instructions["RUN"])
    assert "ENTRYPOINT" not in instructions
    command = json.loads(instructions["CMD"][-1])
    assert command == documented_serve() == ["vfl", "serve", "--config", "party.toml"]
    assert instructions["WORKDIR"][-1] == "/srv/vfl"  # where party.toml is read from
    assert instructions["USER"] and instructions["USER"][-1] != "root"
    page = (ROOT / "docs" / "deployment.md").read_text()
    assert f"runs `{' '.join(command)}` in `{instructions['WORKDIR'][-1]}`" in page


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """The folder compose.yaml expects, as docs/deployment.md makes it: vfl demo --prepare-only --feature-parties 2."""
    workdir = tmp_path_factory.mktemp("compose") / "deploy"
    done = subprocess.run([sys.executable, "-m", "vfl.cli", "demo", "--workdir", str(workdir), "--prepare-only",
                           "--feature-parties", "2", "--customers", "200", "--key-bits", "1024"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return workdir


def mounts(service: dict) -> list[tuple[PurePosixPath, PurePosixPath, bool]]:
    """(host path relative to the compose file, container path, read-only) per bind mount."""
    found = []
    for volume in service["volumes"]:
        host, container, *options = volume.split(":")
        assert host.startswith("./"), f"{volume}: a bind mount of a prepared file is expected"
        found.append((PurePosixPath(host), PurePosixPath(container), "ro" in options))
    return found


def test_compose_mounts_exactly_what_each_prepared_config_uses(prepared):
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    services = compose["services"]
    workdir = PurePosixPath(dockerfile()["WORKDIR"][-1])

    assert sorted(services) == sorted(services_in(prepared))  # party-b, shop, telco, arbiter
    for name, service in services.items():
        assert service["image"] == "vfl" and service.get("build") == "."
        assert service["command"][:3] == documented_serve()[:3]
        config_name = service["command"][3]
        base = PurePosixPath(service.get("working_dir", str(workdir)))
        config = load_config(prepared / config_name)
        assert config.party.id == name

        def inside(path: Path) -> PurePosixPath:
            """Where a file of the prepared folder appears in the container (the folder mirrored at base)."""
            return base / path.resolve().relative_to(prepared.resolve()).as_posix()

        used = {inside(prepared / config_name): "config", inside(config.party.api_token_file): "token",
                inside(config.party.data_dir): "data_dir"}
        used |= {inside(getattr(config.tls, what)): f"tls.{what}" for what in ("ca", "cert", "key")}
        used |= {inside(d.path): f"dataset {n}" for n, d in config.datasets.items()}
        binds = mounts(service)

        for host, container, _ in binds:
            assert PurePosixPath("deploy") / container.relative_to(base) == host, (name, host, container)
            covered = [what for path, what in used.items() if path == container or container in path.parents]
            assert covered, f"{name} mounts {host}, which its config does not use"
            assert "ca" not in host.parts, f"{name} mounts the CA's folder (its key signs certificates)"
        for path, what in used.items():
            cover = [(c, ro) for _, c, ro in binds if path == c or c in path.parents]
            assert cover, f"{name}: its {what} {path} is not mounted"
            read_only = all(ro for _, ro in cover)
            assert read_only == (what != "data_dir"), f"{name}: {what} should be mounted " + (
                "writable" if what == "data_dir" else "read-only")
        # Nothing of another service: every mount is this service's config, folder or job store.
        others = set(services) - {name}
        assert not any(set(host.parts) & others for host, _, _ in binds)
        for host, _, _ in binds:
            if host.parts[1:] != ("data", name):
                assert (prepared / Path(*host.parts[1:])).exists(), f"{host} is not in what --prepare-only writes"


def test_the_deployment_page_shows_the_compose_steps():
    page = (ROOT / "docs" / "deployment.md").read_text()
    compose = (ROOT / "compose.yaml").read_text()

    for step in ("docker build -t vfl .", "vfl demo --workdir deploy --prepare-only --feature-parties 2",
                 "mkdir -p deploy/data/arbiter deploy/data/shop deploy/data/telco deploy/data/party-b",
                 "VFL_UID=$(id -u) VFL_GID=$(id -g) docker compose up -d"):
        assert step in page and step in compose
