"""Bucketed PSI: the same rows for any bucket count, streamed IDs, and resuming at the first open bucket."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from psi import ec, run_psi
from psi.buckets import BucketResults, DiskBucketResults, IdBuckets, OwnTagCache, PsiIds, bucket_count, bucket_of
from psi.messages import BlindedChunk, DeclaredSize, IntersectionTags, PsiPublicKey
from psi.protocol import PsiKeyHolder, PsiRequester
from tests.protocol.test_psi import BITS, make_sets
from vfl.errors import ConfigError, DataError, PSIError
from vfl.protocol.channel import InMemoryChannel
from vfl.protocol.role import Envelope


def _run(holder: PsiKeyHolder, requester: PsiRequester, transcript: list[Envelope] | None = None) -> None:
    InMemoryChannel({"A": holder, "B": requester}, transcript=transcript).run(holder.start())


@pytest.mark.parametrize("bucket_ids", [40, 97, 1000])
def test_any_bucket_count_gives_the_rows_of_one_bucket(bucket_ids):
    ids_a, ids_b, truth = make_sets(300, 0.4, seed=21)
    reference = run_psi(ids_a, ids_b, key_bits=BITS, min_key_bits=BITS, workers=1, chunk_size=16)

    result = run_psi(ids_a, ids_b, key_bits=BITS, min_key_bits=BITS, workers=1, chunk_size=16,
                     bucket_ids=bucket_ids)

    assert result.buckets == bucket_count(300, 300, bucket_ids)
    assert {ids_a[i] for i in result.rows_a} == truth
    np.testing.assert_array_equal(result.rows_a, reference.rows_a)  # same order: by ID, whatever K
    np.testing.assert_array_equal(result.rows_b, reference.rows_b)


def test_each_bucket_is_declared_and_intersected_on_its_own():
    ids_a, ids_b, truth = make_sets(200, 0.5, seed=22)
    transcript: list[Envelope] = []

    run_psi(ids_a, ids_b, key_bits=BITS, min_key_bits=BITS, workers=1, chunk_size=16, bucket_ids=50,
            transcript=transcript)

    key = next(e.message for e in transcript if isinstance(e.message, PsiPublicKey))
    declared = next(e.message for e in transcript if isinstance(e.message, DeclaredSize))
    k = len(key.sizes)
    assert k == 4 and sum(key.sizes) == 200 and declared.sizes == [
        sum(1 for x in ids_b if bucket_of(x, k) == b) for b in range(k)]
    intersections = [e.message for e in transcript if isinstance(e.message, IntersectionTags)]
    assert [m.chunk for m in intersections] == [0, 1, 2, 3]
    assert sum(m.count for m in intersections) == len(truth)
    blinded = [e.message for e in transcript if isinstance(e.message, BlindedChunk)]
    assert [m.bucket for m in blinded] == sorted(m.bucket for m in blinded)  # bucket by bucket


def test_streamed_ids_from_a_csv_spill_to_disk_and_match(tmp_path):
    ids_a, ids_b, truth = make_sets(250, 0.3, seed=23)
    files = {}
    for name, ids in (("a", ids_a), ("b", ids_b)):
        files[name] = tmp_path / f"{name}.csv"
        with files[name].open("w", newline="") as handle:
            csv.writer(handle).writerows([["id"], *([x] for x in ids)])

    def reader(path: Path):
        def read():
            with path.open(newline="") as handle:
                rows = csv.reader(handle)
                next(rows)
                for (value,) in rows:
                    yield value
        return read

    stream_a = PsiIds(reader(files["a"]), source="a.csv", spill_dir=tmp_path / "spill-a")
    stream_b = PsiIds(reader(files["b"]), source="b.csv", spill_dir=tmp_path / "spill-b")

    result = run_psi(stream_a, stream_b, key_bits=BITS, min_key_bits=BITS, workers=1, chunk_size=16, bucket_ids=60)

    assert result.buckets == 5 and result.size_a == 250
    assert [ids_a[i] for i in result.rows_a] == [ids_b[j] for j in result.rows_b] == sorted(truth)
    assert any((tmp_path / "spill-b").rglob("bucket-*.ids"))  # the IDs went to disk, bucket by bucket
    stream_a.close()
    assert not any((tmp_path / "spill-a").rglob("bucket-*.ids"))


def test_a_duplicated_id_in_a_stream_is_found_in_its_bucket(tmp_path):
    ids = [f"u{i}" for i in range(50)] + ["u7"]
    stream = PsiIds(lambda: iter(ids), source="party B's table", spill_dir=tmp_path)
    buckets = stream.buckets(4)

    with pytest.raises(DataError, match=r"party B's table: 1 duplicated ID\(s\): 'u7' ×2"):
        for k in range(4):
            buckets.read(k, source="party B's table")


def test_bucket_files_keep_any_text_and_the_row_numbers(tmp_path):
    ids = ["plain", "with,comma", "new\nline", "ünïcödé", "  padded  ", "7"]

    buckets = IdBuckets.spill(ids, 3, tmp_path)

    seen = {}
    for k in range(3):
        rows, read = buckets.read(k)
        seen.update(zip(read, rows.tolist()))
    assert seen == {x.strip(): i for i, x in enumerate(ids)}


# -- resuming ------------------------------------------------------------------------------------------


class StopAfter(Exception):
    pass


class CrashingRequester(PsiRequester):
    """A party B whose process dies once it has finished ``crash_after`` buckets."""

    crash_after = 0

    def _finish_if_ready(self) -> list[Envelope]:
        out = super()._finish_if_ready()
        if out and self._bucket == self.crash_after:
            raise StopAfter
        return out


class CrashingHolder(PsiKeyHolder):
    """A party A that dies once it has saved ``crash_after`` buckets."""

    crash_after = 0

    def _learn_intersection(self, message: IntersectionTags) -> list[Envelope]:
        out = super()._learn_intersection(message)
        if message.chunk + 1 == self.crash_after:
            raise StopAfter
        return out


@pytest.mark.parametrize("who", ["A", "B"])
def test_a_killed_party_resumes_at_its_first_open_bucket_with_the_same_rows(tmp_path, who):
    ids_a, ids_b, _ = make_sets(240, 0.5, seed=24)
    reference = run_psi(ids_a, ids_b, key_bits=BITS, min_key_bits=BITS, workers=1, chunk_size=16)
    stores = {"A": DiskBucketResults(tmp_path / "a"), "B": DiskBucketResults(tmp_path / "b")}
    options = {"min_key_bits": BITS, "engine": 1}
    holder_class, requester_class = (CrashingHolder, PsiRequester) if who == "A" else (PsiKeyHolder, CrashingRequester)
    holder = holder_class("job", ids_a, key_bits=BITS, chunk_size=16, bucket_ids=50, results=stores["A"], **options)
    requester = requester_class("job", ids_b, results=stores["B"], **options)
    holder.crash_after = requester.crash_after = 2
    with pytest.raises(StopAfter):
        _run(holder, requester)
    finished = {"A": stores["A"].finished(), "B": stores["B"].finished()}

    # Both restart with fresh roles (a fresh key); B tells A where it stands.
    transcript: list[Envelope] = []
    holder = PsiKeyHolder("job", ids_a, key_bits=BITS, chunk_size=16, bucket_ids=50, results=stores["A"],
                          resume_bucket=finished["B"], **options)
    requester = PsiRequester("job", ids_b, results=stores["B"], **options)
    _run(holder, requester, transcript)

    assert finished == ({"A": 2, "B": 2} if who == "A" else {"A": 1, "B": 2})  # B saves first, A on hearing of it
    blinded = [e.message for e in transcript if isinstance(e.message, BlindedChunk)]
    assert min(m.bucket for m in blinded) == min(finished.values())  # finished buckets were not redone
    np.testing.assert_array_equal(holder.rows, reference.rows_a)
    np.testing.assert_array_equal(requester.rows, reference.rows_b)


def test_a_resume_that_claims_buckets_b_never_finished_is_refused(tmp_path):
    ids_a, ids_b, _ = make_sets(100, 0.5, seed=25)
    store_a = DiskBucketResults(tmp_path / "a")
    holder = PsiKeyHolder("job", ids_a, key_bits=BITS, min_key_bits=BITS, engine=1, bucket_ids=30, results=store_a)
    requester = PsiRequester("job", ids_b, min_key_bits=BITS, engine=1)
    _run(holder, requester)  # A has all 4 buckets on disk; this B (in memory) has none
    holder = PsiKeyHolder("job", ids_a, key_bits=BITS, min_key_bits=BITS, engine=1, bucket_ids=30, results=store_a)

    with pytest.raises(PSIError, match="resumes the alignment at bucket 4, but party B has only 0 finished"):
        _run(holder, PsiRequester("job", ids_b, min_key_bits=BITS, engine=1, results=BucketResults()))


def test_changed_data_starts_the_checkpoints_over(tmp_path):
    store = DiskBucketResults(tmp_path)
    store.open({"digest": "one", "sizes": [1, 2]})
    store.save(0, ["x"], np.array([3]))

    again = store.open({"digest": "one", "sizes": [1, 2]})
    changed = store.open({"digest": "two", "sizes": [1, 2]})

    assert (again, changed) == (1, 0)


def test_a_declaration_without_the_bucket_sizes_is_refused():
    holder = PsiKeyHolder("job", [f"a{i}" for i in range(100)], key_bits=BITS, min_key_bits=BITS, bucket_ids=30)
    holder.start()

    with pytest.raises(PSIError, match="its size in each of the 4 buckets"):
        holder.handle(DeclaredSize(job_id="job", size_b=100), "B")
    with pytest.raises(PSIError, match="adding up to the 100 IDs"):
        holder.handle(DeclaredSize(job_id="job", size_b=100, bucket_sizes=[25, 25, 25, 24]), "B")


# -- reuse of party A's own signatures (opt in) ---------------------------------------------------------


def test_reused_own_signatures_skip_the_signing_and_give_the_same_rows(tmp_path):
    ids_a, ids_b, truth = make_sets(200, 0.4, seed=26)
    cache = OwnTagCache(tmp_path / "reuse")
    options = {"key_bits": BITS, "min_key_bits": BITS, "engine": 1, "chunk_size": 32, "bucket_ids": 60}
    first = PsiKeyHolder("job-1", ids_a, own_cache=cache, **options)
    _run(first, PsiRequester("job-1", ids_b, min_key_bits=BITS, engine=1))

    second = PsiKeyHolder("job-2", ids_a, own_cache=cache, **options)
    transcript: list[Envelope] = []
    _run(second, PsiRequester("job-2", ids_b[:150], min_key_bits=BITS, engine=1), transcript)

    assert (first.reused_buckets, second.reused_buckets) == (0, first.n_buckets)
    assert {ids_a[i] for i in second.rows} == truth & set(ids_b[:150])
    assert (tmp_path / "reuse" / "key.json").stat().st_mode & 0o777 == 0o600
    # What reuse costs: the same key and salt, so B sees A's customers under the same tags in both jobs.
    key = next(e.message for e in transcript if isinstance(e.message, PsiPublicKey))
    assert key.key().n == first.key.public.n and key.salt == first.salt


def test_a_changed_dataset_or_a_tampered_cache_gets_a_fresh_key(tmp_path):
    ids_a, ids_b, _ = make_sets(100, 0.5, seed=27)
    cache = OwnTagCache(tmp_path)
    options = {"key_bits": BITS, "min_key_bits": BITS, "engine": 1}
    first = PsiKeyHolder("job-1", ids_a, own_cache=cache, **options)
    changed = PsiKeyHolder("job-2", ids_a[:-1], own_cache=cache, **options)
    (tmp_path / "key.json").write_text((tmp_path / "key.json").read_text().replace('"digest": "', '"digest": "0'))

    tampered = PsiKeyHolder("job-3", ids_a[:-1], own_cache=cache, **options)

    assert changed.key.public.n != first.key.public.n
    assert tampered.key.public.n != changed.key.public.n  # the integrity check failed: not trusted


@pytest.mark.parametrize("protocol", ["rsa", "ecdh"])
def test_bucket_progress_counts_buckets_and_chunks_and_never_goes_back(protocol):
    if protocol == "ecdh":
        try:
            ec._sodium()
        except ConfigError as exc:
            pytest.skip(f"no usable libsodium: {exc}")
    ids_a, ids_b, _ = make_sets(200, 0.5, seed=24)
    holder = PsiKeyHolder("j", ids_a, key_bits=BITS, min_key_bits=BITS, chunk_size=16, bucket_ids=50,
                          protocol=protocol)
    requester = PsiRequester("j", ids_b, min_key_bits=BITS, protocol=protocol)
    seen_a, seen_b = [holder.bucket_progress()], [requester.bucket_progress()]

    def watch(envelope: Envelope) -> None:
        seen_a.append(holder.bucket_progress())
        seen_b.append(requester.bucket_progress())

    InMemoryChannel({"A": holder, "B": requester}, on_deliver=watch).run(holder.start())

    assert seen_b[0].buckets == 0 and seen_b[-1] == (4, 4, 0, 0, 200, 200)  # A's key fixes the 4 buckets
    assert seen_a[-1][:2] == (4, 4) and seen_a[-1].ids_done == 200
    for seen in (seen_a, seen_b):
        places = [(p.buckets_done, p.chunks_done) for p in seen if p.buckets]
        assert places == sorted(places)  # forwards only
        assert all(0 <= p.chunks_done <= p.chunks for p in seen if p.buckets_done < p.buckets)
    # B's running bucket: A's signed chunks and tag chunks, each bucket of about 50 IDs in chunks of 16
    assert max(p.chunks for p in seen_b) >= 6 and len({p.buckets_done for p in seen_b}) == 5
