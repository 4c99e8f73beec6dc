"""vfl serve checks every dataset before it listens; a service's data errors name the config key to fix."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

from tests.helpers import misspell
from vfl.compute.childproc import ends_with_parent
from vfl.demo.services import write_demo_files


def serve(config, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vfl.cli", "serve", "--config", str(config)], capture_output=True,
                          text=True, timeout=timeout, preexec_fn=ends_with_parent())


def test_a_misspelt_label_column_stops_vfl_serve_naming_the_dataset_file_and_key(tmp_path):
    write_demo_files(tmp_path, population=200, key_bits=1024, tls=False)
    config = tmp_path / "party-b.toml"
    misspell(config, 'label_column = "default"', 'label_column = "defualt"')

    started = time.monotonic()
    result = serve(config)

    assert result.returncode == 2, result.stderr
    assert time.monotonic() - started < 15
    error = result.stderr
    assert error.startswith(f"vfl serve: {config}: 1 dataset cannot be used; fix it and start again:")
    assert 'datasets.credit.label_column = "defualt": no such column in ' in error
    assert str(tmp_path / "party-b" / "bank.csv") in error
    assert "the columns are: customer_id, " in error and "default" in error
    assert "--label-column" not in error


def test_bad_cells_and_a_misspelt_id_column_at_a_feature_party(tmp_path):
    write_demo_files(tmp_path, population=200, key_bits=1024, tls=False)
    bank, shop = tmp_path / "party-b" / "bank.csv", tmp_path / "party-a.toml"
    header, first, *rest = bank.read_text().splitlines()
    cells = first.split(",")
    cells[1] = "lots"  # a feature that is not a number
    bank.write_text("\n".join([header, ",".join(cells), *rest]) + "\n")
    misspell(shop, 'id_column = "customer_id"', 'id_column = "customerid"')

    bad_cell, bad_id = serve(tmp_path / "party-b.toml"), serve(shop)

    assert bad_cell.returncode == 2, bad_cell.stderr
    assert f'datasets.credit.path = "{bank}": ' in bad_cell.stderr
    assert "is not numeric (value 'lots' for ID" in bad_cell.stderr
    assert bad_id.returncode == 2, bad_id.stderr
    assert 'datasets.behaviour.id_column = "customerid": no such column in ' in bad_id.stderr
    assert str(tmp_path / "party-a" / "shop.csv") in bad_id.stderr


def test_a_good_config_is_checked_and_served(tmp_path):
    write_demo_files(tmp_path, population=200, key_bits=1024, tls=False)
    process = subprocess.Popen([sys.executable, "-m", "vfl.cli", "serve", "--config", str(tmp_path / "party-b.toml")],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               preexec_fn=ends_with_parent())
    lines = []
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and (line := process.stdout.readline()):
            lines.append(line)
            if "Uvicorn running on" in line:
                break
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=10)
    text = "".join(lines)
    assert "Uvicorn running on" in text, text
    assert f"dataset 'credit' ({tmp_path / 'party-b' / 'bank.csv'}): " in text and "with labels, checked in" in text


def test_a_port_in_use_stops_vfl_serve_before_start_up_naming_party_listen_and_the_file(tmp_path):
    # Arrange: something already listens on party B's port.
    import socket
    import tomllib

    write_demo_files(tmp_path, population=200, key_bits=1024, tls=False)
    config = tmp_path / "party-b.toml"
    listen = tomllib.loads(config.read_text())["party"]["listen"]
    host, port = listen.rsplit(":", 1)
    squatter = socket.socket()
    squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    squatter.bind((host, int(port)))
    squatter.listen()

    # Act
    try:
        result = serve(config)
    finally:
        squatter.close()

    # Assert: a configuration error (2), before uvicorn's start-up banner, not uvicorn's errno and exit 3.
    assert result.returncode == 2, result.stderr
    assert f"vfl serve: {listen} (party.listen in {config}) is already in use, perhaps by another vfl serve; " \
           "stop it or choose another port" in result.stderr
    assert "Application startup" not in result.stderr and "Errno" not in result.stderr
