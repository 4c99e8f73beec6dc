"""The co-signed, hash-chained ledger (vfl.incentives.chain) and `vfl ledger verify/show`: tampering is found, appends are atomic.

Entries here are made directly (no training): parties "bank", "shop" and "arbiter"
sign with keys from a throw-away CA in the test's folder.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import shutil
from pathlib import Path

import pytest
from cryptography import x509

from vfl.incentives import chain
from vfl.cli import main
from vfl.errors import LedgerConflict, LedgerError

PARTIES = ("bank", "shop", "arbiter")


def fields(job, auc=0.7412, digest_shop="b" * 64):
    return {"job_id": job, "time": chain.now_utc(), "model": "logistic",
            "parties": [{"party": "bank", "role": "B", "dataset": "credit", "model_digest": "a" * 64},
                        {"party": "shop", "role": "A", "dataset": "behaviour", "model_digest": digest_shop},
                        {"party": "arbiter", "role": "C", "dataset": None, "model_digest": None}],
            "config_digest": "c" * 64,
            "metrics": {"validation": {"auc": auc, "ks": 0.39, "rows": 843}},
            "contributions": {"metric": "auc", "full": auc, "label_party_alone": 0.70,
                              "parties": [{"party": "shop", "source": "shop", "shapley": auc - 0.70,
                                           "leave_one_out": auc - 0.70}]}}


def append_job(folder, signers, job, **kw):
    book = chain.Ledger(folder)
    with book.locked():
        entry = book.draft(fields(job, **kw))
        entry["signatures"] = [signers[p].sign(entry) for p in chain.signers_of(entry)]
        book.append([entry])
    return entry


@pytest.fixture
def book(tmp_path):
    """A ledger copy with three entries, and the signers that made it."""
    folder = tmp_path / "ledger"
    signers = chain.throwaway_signers(folder, PARTIES)
    for job in ("job-1", "job-2", "job-3"):
        append_job(folder, signers, job)
    return folder, signers


def lines(folder):
    return (folder / "ledger.jsonl").read_text().splitlines()


def write_lines(folder, rows):
    (folder / "ledger.jsonl").write_text("\n".join(rows) + "\n")


def verify(folder, *extra):
    return main(["ledger", "verify", str(folder), *extra])


def test_an_untouched_ledger_verifies_and_shows(book, capsys):
    folder, _ = book
    assert verify(folder) == 0
    assert "3 entries, chain intact, 9 signatures verified" in capsys.readouterr().out
    assert main(["ledger", "show", str(folder)]) == 0
    shown = capsys.readouterr().out
    assert "job job-2" in shown and "party shop (A): dataset behaviour" in shown and "auc 0.7412" in shown
    assert "signed by: bank, shop, arbiter" in shown
    assert oct(os.stat(folder / "ledger.jsonl").st_mode & 0o777) == "0o600"


def test_a_changed_digit_in_a_metric_is_named_by_entry_and_field(book, capsys):
    folder, _ = book
    rows = lines(folder)
    assert '"auc":0.7412' in rows[1]
    rows[1] = rows[1].replace('"auc":0.7412', '"auc":0.7418', 1)
    write_lines(folder, rows)
    assert verify(folder) == 1
    out = capsys.readouterr().out
    assert "entry 1 (job job-2): field 'metrics': does not match the digest its parties signed" in out
    assert "entry 0" not in out and "entry 2" not in out


def test_recomputing_the_digests_after_a_change_breaks_every_signature(book, capsys):
    folder, _ = book
    entries = [json.loads(r) for r in lines(folder)]
    entry = entries[2]
    entry["fields"]["metrics"]["validation"]["auc"] = 0.9
    entry["field_digests"]["metrics"] = chain.digest(entry["fields"]["metrics"])
    entry["digest"] = chain.digest(chain.header(entry))
    write_lines(folder, [json.dumps(e) for e in entries])
    assert verify(folder) == 1
    out = capsys.readouterr().out
    for party in PARTIES:
        assert f"entry 2 (job job-3): field 'signatures': the signature of party {party!r} does not verify" in out


def test_a_removed_entry_is_found(book, capsys):
    folder, _ = book
    rows = lines(folder)
    write_lines(folder, [rows[0], rows[2]])
    assert verify(folder) == 1
    out = capsys.readouterr().out
    assert "entry 1 (job job-3): field 'index'" in out and "entry 1 (job job-3): field 'previous'" in out


def test_reordered_entries_are_found(book, capsys):
    folder, _ = book
    rows = lines(folder)
    write_lines(folder, [rows[1], rows[0], rows[2]])
    assert verify(folder) == 1
    out = capsys.readouterr().out
    assert "entry 0 (job job-2): field 'index'" in out and "entry 0 (job job-2): field 'previous'" in out
    assert "entry 2 (job job-3): field 'previous'" in out


def test_a_dropped_last_entry_shows_against_another_partys_copy(book, tmp_path, capsys):
    folder, _ = book
    other = tmp_path / "shop-copy"
    shutil.copytree(folder, other)
    write_lines(folder, lines(folder)[:2])
    assert verify(folder) == 0  # a shorter chain is a valid chain on its own ...
    capsys.readouterr()
    assert verify(folder, "--against", str(other)) == 1  # ... but not against the other copies
    assert "entry 2 (job job-3): field 'entry': is missing here but present in" in capsys.readouterr().out


def test_an_entry_signed_with_a_certificate_from_another_ca_is_refused(book, tmp_path, capsys):
    folder, signers = book
    outsiders = chain.throwaway_signers(tmp_path / "elsewhere", PARTIES)  # same party ids, another CA
    book_ = chain.Ledger(folder)
    entry = book_.draft(fields("job-4"))
    entry["signatures"] = [signers["bank"].sign(entry), outsiders["shop"].sign(entry), signers["arbiter"].sign(entry)]
    with pytest.raises(LedgerError, match="was not issued by the federation's CA"):
        book_.append([entry])
    assert len(lines(folder)) == 3  # nothing written
    write_lines(folder, lines(folder) + [json.dumps(entry)])  # forced in by hand: verify names it
    assert verify(folder) == 1
    out = capsys.readouterr().out
    assert "entry 3 (job job-4): field 'signatures': the signature of party 'shop': its certificate " in out
    # Both CAs are called the same: the message tells them apart by SHA-256 fingerprint and names the usual cause.
    found = re.findall(r"SHA-256 ((?:[0-9A-F]{2}:){31}[0-9A-F]{2})", out)
    outsider = x509.load_pem_x509_certificate(outsiders["shop"].certificate.encode())
    assert found == [chain.fingerprint(outsider), chain.fingerprint(chain.load_ca(folder / "ca.pem"))]
    assert "A CA of the same name but another key signed it" in out


def test_a_signature_that_is_missing_or_for_another_party_is_found(book, capsys):
    folder, signers = book
    entries = [json.loads(r) for r in lines(folder)]
    entries[0]["signatures"] = entries[0]["signatures"][:2]  # the arbiter's dropped
    entries[1]["signatures"][1] = {**signers["bank"].sign(entries[1]), "party": "shop"}  # bank signs as shop
    write_lines(folder, [json.dumps(e) for e in entries])
    assert verify(folder) == 1
    out = capsys.readouterr().out
    assert "entry 0 (job job-1): field 'signatures': party 'arbiter' did not sign" in out
    assert "entry 1 (job job-2): field 'signatures': the signature of party 'shop': its certificate is for 'bank'" in out


def test_a_party_that_lied_about_its_model_digest_is_caught_by_its_model_file(book, tmp_path, capsys):
    folder, signers = book
    model = {"party": "A", "weights": [0.5, -0.25], "job_id": "job-4", "dataset": "behaviour"}
    held = tmp_path / "model.json"
    held.write_text(json.dumps({"sha256": chain.model_digest(model), "data": model}))  # a service's model.json
    claimed = chain.model_digest({**model, "weights": [0.5, -0.2]})  # shop signs a digest of another model
    append_job(folder, signers, "job-4", digest_shop=claimed)
    assert verify(folder) == 0  # every signature holds: the lie is in what shop signed ...
    capsys.readouterr()
    assert verify(folder, "--model", f"shop={held}") == 1  # ... and its model file gives it away
    assert "entry 3 (job job-4): field 'parties': party 'shop' signed model digest" in capsys.readouterr().out
    honest = tmp_path / "honest.json"
    honest.write_text(json.dumps({**model, "weights": [0.5, -0.2]}))
    assert verify(folder, "--model", f"shop={honest}") == 0


def test_append_refuses_entries_that_do_not_continue_the_chain(book):
    folder, signers = book
    book_ = chain.Ledger(folder)
    stale = chain.draft(1, json.loads(lines(folder)[0])["digest"], fields("job-x"))
    stale["signatures"] = [signers[p].sign(stale) for p in PARTIES]
    with pytest.raises(LedgerConflict, match="this copy's entry 1 .* the copies disagree"):
        book_.append([stale])
    ahead = chain.draft(5, "f" * 64, fields("job-y"))
    ahead["signatures"] = [signers[p].sign(ahead) for p in PARTIES]
    with pytest.raises(LedgerConflict, match="holds 3 entries"):
        book_.append([ahead])
    unsigned = book_.draft(fields("job-z"))
    with pytest.raises(LedgerError, match="did not sign"):
        book_.append([unsigned])
    held = json.loads(lines(folder)[2])
    assert book_.append([held]) == (3, held["digest"])  # a repeated delivery: nothing changes
    assert len(lines(folder)) == 3


def test_the_ledger_survives_a_restart(book):
    folder, signers = book
    count, head = chain.Ledger(folder).head()  # a new object reads what is on disk, as after a restart
    assert count == 3
    entry = append_job(folder, signers, "job-4")
    assert entry["index"] == 3 and entry["previous"] == head
    assert chain.verify_folder(folder)[1] == []


def test_an_append_that_crashes_half_way_leaves_the_old_ledger(book, monkeypatch):
    folder, signers = book
    before = (folder / "ledger.jsonl").read_bytes()

    def crash(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(chain.os, "replace", crash)
    with pytest.raises(OSError):
        append_job(folder, signers, "job-4")
    monkeypatch.undo()
    assert (folder / "ledger.jsonl").read_bytes() == before
    assert [p.name for p in folder.iterdir() if p.name.startswith(".ledger.jsonl.")] == []  # no temporary left
    assert chain.verify_folder(folder)[1] == []


def _append_many(folder: str, worker: int) -> None:
    signers = {p: chain.Signer.from_files(Path(folder) / "keys" / f"{p}.pem", Path(folder) / "keys" / f"{p}.key", p)
               for p in PARTIES}
    for n in range(5):
        append_job(Path(folder), signers, f"w{worker}-{n}")


def test_appends_from_several_processes_at_once_all_land_in_one_chain(book):
    folder, _ = book
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_append_many, args=(str(folder), w)) for w in range(3)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
        assert w.exitcode == 0
    entries, problems = chain.verify_folder(folder)
    assert problems == [] and len(entries) == 3 + 15
    assert sorted(e["fields"]["job_id"] for e in entries[3:]) == sorted(f"w{w}-{n}" for w in range(3) for n in range(5))


def test_simulate_does_not_write_into_a_ledger_it_did_not_make(book, tmp_path):
    folder, _ = book
    service_copy = tmp_path / "service-copy"
    service_copy.mkdir()
    shutil.copy(folder / "ledger.jsonl", service_copy / "ledger.jsonl")
    shutil.copy(folder / "ca.pem", service_copy / "ca.pem")
    with pytest.raises(Exception, match="did not write"):
        chain.throwaway_signers(service_copy, PARTIES)


@pytest.mark.parametrize("parties, why", [
    ([], "names a job's whole roster"),
    ([{"party": "bank", "role": "B", "dataset": "credit", "model_digest": "a" * 64}], "names a job's whole roster"),
    ([{"party": "bank", "role": "B", "dataset": "credit", "model_digest": "a" * 64},
      {"party": "arbiter", "role": "C", "dataset": None, "model_digest": None}], "names a job's whole roster"),
    ([{"party": "bank", "role": "B", "dataset": "credit", "model_digest": "a" * 64},
      {"party": "bank", "role": "A", "dataset": "x", "model_digest": "b" * 64},
      {"party": "arbiter", "role": "C", "dataset": None, "model_digest": None}], "every party once"),
], ids=["nobody", "b-alone", "no-feature-party", "b-twice"])
def test_an_entry_that_names_less_than_a_whole_roster_is_refused_and_flagged(book, capsys, parties, why):
    folder, signers = book
    ledger = chain.Ledger(folder)
    entry = ledger.draft({**fields("job-4"), "parties": parties})
    entry["signatures"] = [signers[p].sign(entry) for p in chain.signers_of(entry) if p in signers]

    with pytest.raises(LedgerError, match=why):
        ledger.append([entry])
    write_lines(folder, [*lines(folder), json.dumps(entry)])  # written by hand: verify must flag it
    code = verify(folder)

    assert code == 1 and why in capsys.readouterr().out


def test_a_second_entry_for_a_job_is_refused_and_flagged(book, capsys):
    folder, signers = book
    ledger = chain.Ledger(folder)
    entry = ledger.draft(fields("job-2", auc=0.99))  # job-2 is entry 1 already; this one claims a better metric
    entry["signatures"] = [signers[p].sign(entry) for p in chain.signers_of(entry)]

    with pytest.raises(LedgerConflict, match="already records job job-2"):
        ledger.append([entry])
    write_lines(folder, [*lines(folder), json.dumps(entry)])
    code = verify(folder)

    assert code == 1 and "job job-2 is recorded twice" in capsys.readouterr().out
