"""The Ray engine against the local one, on a real Ray cluster.

One Ray head (``ray start --head --num-cpus 2``, its own process group, on
127.0.0.1 with a fresh auth token) serves the whole module; the engine connects
to it by address, as a party's service does. The head is stopped at the end
and nothing of it is left running. Without Ray installed, or when the head
cannot start, every test here is skipped with the reason.

Each test runs the same work on both engines and asks for the same answer:
the engine decides where the work runs, never what it computes.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest

from psi import run_psi
from psi.unbalanced import LargeSet, LargeSide, OfflineKey, SmallSide, run_unbalanced, transfer_offline
from psi.keys import generate_rsa_key, sign_many
from tests.conftest import TEST_KEY_BITS
from vfl.ml.config import TrainingConfig
from vfl.crypto.codec import byte_width, pack_ints
from vfl.crypto.matvec import _columns_task, fixed_point_exponents, plan_column
from vfl.crypto.obfuscation import make_obfuscators, table_stats
from vfl.crypto.vector import Encryptor, decrypt, decrypt_residues
from vfl.data.table import from_dataframe
from vfl.compute.engine import Engine, LocalEngine, RayEngine, make_engine
from vfl.errors import ComputeError, PSIError
from vfl.compute.pool import split_evenly
from vfl.local.simulate import simulate

if importlib.util.find_spec("ray") is None:  # not importorskip: ray must not be imported before the head is up
    pytest.skip("Ray is not installed (pip install 'vfl[ray]'); the Ray engine is not tested",
                allow_module_level=True)

from vfl.compute.ray_head import LocalRayHead  # noqa: E402

CPUS = 2


@pytest.fixture(scope="module")
def ray_head() -> Iterator[LocalRayHead]:
    head = LocalRayHead(CPUS)
    try:
        head.start()
    except ComputeError as exc:
        pytest.skip(f"could not start a local Ray head: {exc}")
    try:
        yield head
    finally:
        head.stop()


@pytest.fixture(scope="module")
def ray_engine(ray_head: LocalRayHead) -> Engine:
    engine = make_engine("ray", address=ray_head.address)
    assert isinstance(engine, RayEngine)
    return engine


@pytest.fixture(scope="module")
def local_engine() -> Engine:
    return LocalEngine(CPUS)


def product_chunks(public_key, rows: int, cols: int, parts: int, seed: int) -> list[tuple]:
    """Chunks of :func:`_columns_task` over ``parts`` row blocks: real work with a deterministic answer."""
    rng = np.random.default_rng(seed)
    cts = make_obfuscators(public_key, rows, "djn", 1)
    exps = fixed_point_exponents(rng.normal(size=(rows, cols)), 16)
    width = byte_width(public_key.nsquare)
    chunks = []
    for block in split_evenly(rows, parts):
        sub = np.ascontiguousarray(exps[block].T)
        chunks.append((pack_ints(cts[block], width), width, sub, [plan_column(r).window for r in sub],
                       public_key.nsquare))
    return chunks


# -- the engine interface ------------------------------------------------------------------------


def test_ray_engine_reports_the_cluster_width(ray_engine):
    described = ray_engine.describe()

    assert described == {"engine": "ray", "workers": CPUS}


def test_map_gives_the_local_results_in_order(ray_engine, local_engine, public_key):
    chunks = product_chunks(public_key, rows=600, cols=3, parts=5, seed=1)  # more chunks than workers

    on_ray = ray_engine.map(_columns_task, chunks)

    assert on_ray == local_engine.map(_columns_task, chunks)
    assert on_ray == [_columns_task(*chunk) for chunk in chunks]


def test_submit_gives_the_local_result(ray_engine, local_engine, public_key):
    chunk = product_chunks(public_key, rows=300, cols=2, parts=1, seed=2)[0]

    result = ray_engine.submit(_columns_task, *chunk).result(timeout=60)

    assert result == local_engine.submit(_columns_task, *chunk).result(timeout=60)


def test_a_vfl_error_in_a_task_comes_back_as_itself(ray_engine, local_engine):
    key, other = generate_rsa_key(1024, min_bits=1024), generate_rsa_key(1024, min_bits=1024)
    values = [v % key.public.n for v in range(2, 40)]
    chunks = [(values[s], *key.crt_parts()[:2], *other.crt_parts()[2:]) for s in split_evenly(len(values), 2)]

    with pytest.raises(PSIError) as on_ray:  # another key's CRT parts: every signature fails its check
        ray_engine.map(sign_many, chunks)
    with pytest.raises(PSIError) as locally:
        local_engine.map(sign_many, chunks)

    assert type(on_ray.value) is PSIError
    assert str(on_ray.value) == str(locally.value)


def test_a_failing_task_surfaces_as_compute_error_naming_task_and_cause(ray_engine, public_key):
    good = product_chunks(public_key, rows=200, cols=1, parts=2, seed=3)
    broken = [chunk[:3] + ([1],) + chunk[4:] for chunk in good]  # a 1-bit window: signed_digits refuses it

    with pytest.raises(ComputeError) as mapped:
        ray_engine.map(_columns_task, broken)
    with pytest.raises(ComputeError) as submitted:
        ray_engine.submit(_columns_task, *broken[0]).result(timeout=60)

    for error in (mapped.value, submitted.value):
        message = str(error)
        assert "_columns_task" in message
        assert "ValueError" in message and "window must be between" in message
        assert "127.0.0.1" in message


def test_fixed_base_tables_are_built_once_per_worker(ray_engine, public_key):
    for _ in range(4):
        make_obfuscators(public_key, 1200, "djn", ray_engine)  # two tasks a call

    stats = dict(ray_engine.map(table_stats, [(i,) for i in range(8)]))

    # Each worker process built the one key's table once, however many tasks it ran.
    assert 1 <= len(stats) <= CPUS, stats
    assert all(built <= 1 for built in stats.values()), stats


# -- what training computes on the engine ---------------------------------------------------------


def test_paillier_on_ray_decrypts_to_the_local_values(ray_engine, local_engine, keypair, rng):
    public, private = keypair
    rows = 1500  # above the parallel thresholds of encryption (512) and decryption (256)
    values = rng.normal(size=rows)

    on_ray = Encryptor(public, "djn", engine=ray_engine).encrypt(values, 32)
    locally = Encryptor(public, "djn", engine=local_engine).encrypt(values, 32)

    assert not set(on_ray.ciphertexts) & set(locally.ciphertexts)  # fresh randomness on both
    decrypted = decrypt(private, on_ray)
    np.testing.assert_array_equal(decrypted, decrypt(private, locally))
    np.testing.assert_allclose(decrypted, values, rtol=0, atol=2.0**-32)
    residues = decrypt_residues(private, on_ray.ciphertexts, ray_engine)  # the arbiter's decryption, on Ray
    assert residues == decrypt_residues(private, on_ray.ciphertexts, local_engine)
    assert residues == [private.raw_decrypt(c) for c in on_ray.ciphertexts]


@pytest.mark.parametrize("columns", [4, 1], ids=["columns-dealt", "rows-split"])
def test_encrypted_products_on_ray_equal_local(ray_engine, local_engine, keypair, rng, columns):
    public, private = keypair
    rows = 4200  # one column: rows × columns must reach the product's parallel threshold (4,000)
    values, X = rng.normal(size=rows), rng.normal(size=(rows, columns))
    d = Encryptor(public, "djn", engine=local_engine).encrypt(values, 32)

    on_ray = d.matvec_t(X, 16, ray_engine)
    locally = d.matvec_t(X, 16, local_engine)

    assert on_ray.ciphertexts == locally.ciphertexts  # the product is deterministic: same ciphertexts
    exps = fixed_point_exponents(X, 16)
    plain = [int(m) for m in np.rint(np.ldexp(values, 32)).astype(np.int64)]
    exact = [sum(int(e) * m for e, m in zip(exps[:, j].tolist(), plain)) / 2.0**48 for j in range(columns)]
    np.testing.assert_allclose(decrypt(private, on_ray), exact, rtol=1e-12)


def test_psi_signing_on_ray_equals_local(ray_engine, local_engine):
    key = generate_rsa_key(1024, min_bits=1024)
    values = [(v * 7919 + 3) % key.public.n for v in range(1, 301)]
    chunks = [(values[s], *key.crt_parts()) for s in split_evenly(len(values), CPUS)]

    on_ray = [s for part in ray_engine.map(sign_many, chunks) for s in part]

    assert on_ray == [s for part in local_engine.map(sign_many, chunks) for s in part]
    assert all(pow(int(s), int(key.public.e), int(key.public.n)) == v for s, v in zip(on_ray, values))


@pytest.mark.parametrize("protocol", ["rsa", "ecdh"])
def test_run_psi_on_ray_finds_the_local_intersection(ray_engine, local_engine, protocol):
    ids_a = [f"c{i}" for i in range(0, 400, 2)]
    ids_b = [f"c{i}" for i in range(0, 400, 3)][::-1]

    on_ray = run_psi(ids_a, ids_b, key_bits=1024, min_key_bits=1024, engine=ray_engine, protocol=protocol)
    locally = run_psi(ids_a, ids_b, key_bits=1024, min_key_bits=1024, engine=local_engine, protocol=protocol)

    np.testing.assert_array_equal(on_ray.rows_a, locally.rows_a)
    np.testing.assert_array_equal(on_ray.rows_b, locally.rows_b)
    assert sorted(ids_a[i] for i in on_ray.rows_a) == sorted(set(ids_a) & set(ids_b))


def test_unbalanced_psi_on_ray_builds_the_local_offline_set_and_answers_alike(ray_engine, local_engine):
    ids_large = [f"c{i}" for i in range(600)]
    ids_small = [f"c{i}" for i in range(0, 900, 9)]
    key = OfflineKey.new("large->small")

    on_ray = LargeSet.build(ids_large, key, ray_engine, chunk_size=150)
    peer, _ = transfer_offline(on_ray, "job", own_size=len(ids_small))
    result = run_unbalanced(LargeSide("job", key, on_ray, ray_engine), SmallSide("job", ids_small, peer, ray_engine),
                            ids_large=ids_large)

    np.testing.assert_array_equal(on_ray.tags, LargeSet.build(ids_large, key, local_engine).tags)
    assert sorted(ids_large[i] for i in result.rows_large) == sorted(set(ids_small) & set(ids_large))


def _numbers(tree) -> list[float]:
    """Every number in a nested dict / list, in a fixed order (model parts as plain floats)."""
    if isinstance(tree, dict):
        return [x for k in sorted(tree) for x in _numbers(tree[k])]
    if isinstance(tree, (list, tuple)):
        return [x for v in tree for x in _numbers(v)]
    if isinstance(tree, (int, float)) and not isinstance(tree, bool):
        return [float(tree)]
    return []


def test_simulate_on_ray_trains_the_local_model(ray_head, keypair):
    rng = np.random.default_rng(7)
    rows = 1500  # big enough that encryption, products and PSI signing go to the engine's workers
    ids = [f"u{i}" for i in range(rows)]
    X_a, X_b = rng.normal(size=(rows, 3)), rng.normal(size=(rows, 2))
    y = (X_a[:, 0] - X_b[:, 1] + rng.normal(scale=0.5, size=rows) > 0).astype(float)
    table_a = from_dataframe(pd.DataFrame(X_a).assign(id=ids).iloc[::-1], id_column="id")
    table_b = from_dataframe(pd.DataFrame(X_b).assign(id=ids, y=y), id_column="id", label_column="y",
                             model="logistic")
    config = TrainingConfig(model="logistic", key_bits=TEST_KEY_BITS, epochs=2, seed=5)

    on_ray = simulate(table_a, table_b, config, engine="ray", address=ray_head.address, keypair=keypair)
    locally = simulate(table_a, table_b, config, engine="local", workers=CPUS, keypair=keypair)

    assert on_ray["engine"] == "ray" and locally["engine"] == "local"
    assert on_ray["epochs_run"] == locally["epochs_run"] == 2
    weights_ray, weights_local = _numbers(on_ray["model_parts"]), _numbers(locally["model_parts"])
    assert len(weights_ray) == len(weights_local) >= 6
    np.testing.assert_allclose(weights_ray, weights_local, rtol=0, atol=1e-9)
    np.testing.assert_allclose(on_ray["loss_history"], locally["loss_history"], rtol=0, atol=1e-9)


PRIVATE_HEAD = """
import json, os, stat, sys
from vfl.compute.engine import make_engine
engine = make_engine("ray", workers=1, private_root=sys.argv[1])
head = engine._head
folder = head._dir
facts = {"address": engine.address, "folder_mode": oct(stat.S_IMODE(os.stat(folder).st_mode)),
         "inside_root": folder.startswith(sys.argv[1]), "sum": engine.map(sum, [((1, 2),), ((3, 4),)]),
         "home_token": os.path.exists(os.path.expanduser("~/.ray/auth_token"))}
engine.close()
facts["folder_left"] = os.path.exists(folder)
print(json.dumps(facts))
"""


def test_a_service_without_a_ray_address_runs_a_private_loopback_head_never_rays_defaults(tmp_path):
    """engine = "ray" with no address: loopback only, its token never in a file, a 0700 folder, gone at close."""
    import json
    import subprocess
    import sys

    root = tmp_path / "ray"  # short enough for Ray's socket paths
    home_token = os.path.expanduser("~/.ray/auth_token")
    token_before = os.path.exists(home_token)

    done = subprocess.run([sys.executable, "-c", PRIVATE_HEAD, str(root)], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "RAY_ADDRESS": ""})

    assert done.returncode == 0, done.stderr[-2000:]
    facts = json.loads(done.stdout.strip().splitlines()[-1])
    assert facts["address"].startswith("127.0.0.1:")
    assert facts["folder_mode"] == "0o700"
    assert facts["sum"] == [3, 7]
    assert facts["folder_left"] is False
    assert facts["home_token"] == token_before  # no token was written to the home directory
