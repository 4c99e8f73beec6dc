"""vfl certs never replaces a CA, certificates or keys that exist unless told --force."""

from __future__ import annotations

from vfl.cli import main
from vfl.demo.services import write_demo_files


def snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_certs_refuses_to_overwrite_without_force(tmp_path, capsys):
    out = tmp_path / "certs"
    assert main(["certs", "--out", str(out), "--parties", "bank,shop"]) == 0
    before = snapshot(out)
    capsys.readouterr()

    again = main(["certs", "--out", str(out), "--parties", "bank,shop"])
    refused = capsys.readouterr().err
    another_party = main(["certs", "--out", str(out), "--parties", "telco"])  # a new CA would orphan bank and shop
    refused_ca = capsys.readouterr().err

    assert again == 2 and another_party == 2
    assert snapshot(out) == before  # not a byte changed
    for path in (out / "ca" / "ca.pem", out / "ca" / "ca.key", out / "bank" / "bank.key", out / "shop" / "shop.pem"):
        assert str(path) in refused
    assert "--force" in refused and refused.startswith("vfl certs: ")
    assert str(out / "ca" / "ca.key") in refused_ca and "telco" not in refused_ca.split("would replace:")[1]

    assert main(["certs", "--out", str(out), "--parties", "bank,shop", "--force"]) == 0
    after = snapshot(out)
    assert after.keys() == before.keys()
    assert all(after[name] != before[name] for name in after)  # a new CA, new keys, new certificates


def test_certs_refuses_to_overwrite_what_the_demo_prepared(tmp_path, capsys):
    write_demo_files(tmp_path, population=200, key_bits=1024)  # what vfl demo --prepare-only writes, with TLS
    before = snapshot(tmp_path / "ca")

    code = main(["certs", "--out", str(tmp_path), "--parties", "party-a,party-b,arbiter"])
    error = capsys.readouterr().err

    assert code == 2
    assert str(tmp_path / "ca" / "ca.key") in error and str(tmp_path / "party-b" / "party-b.key") in error
    assert snapshot(tmp_path / "ca") == before
    write_demo_files(tmp_path, population=200, key_bits=1024)  # the demo itself still lays its folder out anew
    assert snapshot(tmp_path / "ca") != before
