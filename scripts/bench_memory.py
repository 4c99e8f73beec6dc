"""Memory of one party's training data, stage by stage, at a given size.

    .venv/bin/python scripts/bench_memory.py --rows 1000000 --features 50 [--batch-size N]
        [--key-bits 1024|2048] [--party A|B] [--skip-epoch] [--skip-crypto] [--json]

Writes a synthetic party table (an ``id`` column, ``--features`` float columns
and, for party B, a 0/1 label ``y``) as CSV in a temporary directory, then runs
the stages a service runs for ONE party, measuring each:

* ``ids``: the ID column streamed (``FileSource.iter_ids``, what the PSI reads),
  counted without keeping it;
* ``frame``: the CSV read as text only (``vfl.data.table.read_csv_frame``, the first
  half of ``load``), then dropped: what the raw frame costs on its own;
* ``load``: the table from the CSV as the service loads it (``FileSource.table``,
  which caches it; ``frame_kept_bytes`` is the raw text frame the source still
  holds afterwards, if any);
* ``align``: this party's rows of the intersection (all rows, in a shuffled
  shared order: the worst case): ``table.take(table.rows_for(ids))``;
* ``role``: the training role (``FeatureParty`` / ``LabelParty``): standardisation,
  design matrix (B: with the intercept), optimizer setup (Newton: XᵀX);
* ``epoch``: one epoch of plaintext batch work (``design[rows]``, u = Xθ, residual);
* ``crypto``: per-batch ciphertext memory, measured on a real batch of
  ``--crypto-rows`` rows at ``--key-bits`` and scaled to the batch size (the
  fixed-base obfuscation table is built for real at the chosen key size).

For each stage: the peak of anonymous resident memory (``RssAnon`` sampled every
2 ms: heap, numpy, pandas/pyarrow buffers, i.e. what the OOM killer counts), its
rise over the stage's start, ``ru_maxrss`` so far (which also counts pages of
memory-mapped files, which the kernel may drop at will) and the size of the big
arrays. Linux only (reads /proc/self/status).

Measured (2-core VM, pandas 3.1 with Arrow-backed text, 1M rows × 50 features,
459 MB CSV, full batch; RssAnon above a ~150 MB interpreter baseline):

    stage   B: peak rise / kept after     A: peak rise / kept after
    ids        +35 MB /  +19 MB              +35 MB /  +18 MB
    frame    +1043 MB /   +0 (frame 804 MB)  +1069 MB /  +0 (frame 796 MB)
    load     +1556 MB / +483 MB             +1581 MB / +442 MB
    align     +441 MB / +441 MB              +470 MB / +470 MB
    role      +390 MB / +390 MB              +382 MB / +382 MB
    epoch     +412 MB / +23 MB (batch 10k: +15 MB)  +382 MB / 0
    process peak (ru_maxrss) 1.96 GB                  1.91 GB

Per full batch of 1M rows at 2048 bits (computed from a 2,000-row batch):
542 MB of ciphertexts as mpz, 488 MB packed for the wire, 381–389 MB of
fixed-point exponents; 44 MB fixed-base table. The load is dominated by the
CSV read as text (the frame, 2.1× the float matrix); the source's cached table
and the aligned copy then hold the matrix twice, and the design a third time.
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MB = 1024**2


def _status() -> dict[str, int]:
    out = {}
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(("VmRSS:", "RssAnon:", "RssFile:")):
                key, value = line.split(":")
                out[key] = int(value.split()[0]) * 1024
    return out


class Sampler:
    """Peak RssAnon / VmRSS since the last reset, sampled in a thread."""

    def __init__(self, interval: float = 0.002) -> None:
        self.interval = interval
        self.peak_anon = 0
        self.peak_rss = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            s = _status()
            self.peak_anon = max(self.peak_anon, s.get("RssAnon", 0))
            self.peak_rss = max(self.peak_rss, s.get("VmRSS", 0))
            time.sleep(self.interval)

    def reset(self) -> None:
        s = _status()
        self.peak_anon, self.peak_rss = s.get("RssAnon", 0), s.get("VmRSS", 0)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def _maxrss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


@contextmanager
def stage(results: dict, name: str, sampler: Sampler, **extra):
    gc.collect()
    start = _status()
    sampler.reset()
    t0 = time.perf_counter()
    info: dict = dict(extra)
    yield info
    seconds = time.perf_counter() - t0
    time.sleep(3 * sampler.interval)
    end = _status()
    results[name] = {
        "seconds": round(seconds, 2),
        "anon_start_mb": round(start["RssAnon"] / MB, 1),
        "anon_peak_mb": round(max(sampler.peak_anon, end["RssAnon"]) / MB, 1),
        "anon_rise_mb": round((max(sampler.peak_anon, end["RssAnon"]) - start["RssAnon"]) / MB, 1),
        "anon_end_mb": round(end["RssAnon"] / MB, 1),
        "rss_peak_mb": round(max(sampler.peak_rss, end["VmRSS"]) / MB, 1),
        "ru_maxrss_mb": round(_maxrss() / MB, 1),
        **{k: (round(v / MB, 1) if isinstance(v, (int, float)) and k.endswith("_bytes") else v)
           for k, v in info.items()},
    }


def write_csv(path: Path, rows: int, features: int, label: bool, seed: int = 7, chunk: int = 200_000) -> None:
    """A synthetic party table, written in chunks (so writing it is not what we measure)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    rng = np.random.default_rng(seed)
    theta = rng.normal(size=features)
    writer = None
    with open(path, "wb") as sink:
        for start in range(0, rows, chunk):
            m = min(chunk, rows - start)
            X = rng.normal(size=(m, features)).round(6)
            cols = {"id": pa.array([f"u{start + i}" for i in range(m)])}
            for j in range(features):
                cols[f"f{j}"] = pa.array(X[:, j])
            if label:
                p = 1 / (1 + np.exp(-(X @ theta) / np.sqrt(features)))
                cols["y"] = pa.array((rng.random(m) < p).astype(np.int64))
            batch = pa.table(cols)
            if writer is None:
                writer = pacsv.CSVWriter(sink, batch.schema)
            writer.write_table(batch)
        writer.close()


def _dataset(path: Path, label: bool):
    from vfl.data.dataset import DatasetSection

    fields = {"path": path, "id_column": "id"}
    if label:
        fields["label_column"] = "y"
    return DatasetSection.model_validate(fields)


def crypto_batch(key_bits: int, crypto_rows: int, features: int, batch_size: int, design: np.ndarray,
                 frac_bits: int) -> dict:
    """Per-batch ciphertext memory on a real batch, scaled to ``batch_size``."""
    import gmpy2

    from vfl.crypto.keys import generate_keypair
    from vfl.crypto.matvec import fixed_point_exponents
    from vfl.crypto.obfuscation import _table_for
    from vfl.crypto.vector import Encryptor

    public, _ = generate_keypair(key_bits, min_bits=512)
    encryptor = Encryptor(public, "djn")
    rng = np.random.default_rng(3)
    m = min(crypto_rows, design.shape[0])
    values = rng.normal(size=m)
    t0 = time.perf_counter()
    vector = encryptor.encrypt(values, 16)
    enc_seconds = time.perf_counter() - t0
    mpz_bytes = sum(sys.getsizeof(c) for c in vector.ciphertexts) + sys.getsizeof(list(vector.ciphertexts))
    packed = len(vector.to_bytes())
    exps = fixed_point_exponents(np.asarray(design[:m]), frac_bits)
    table = _table_for(gmpy2.mpz(public.n), gmpy2.mpz(public.hs))
    table_bytes = 0
    if table is not None:
        table_bytes = sum(sys.getsizeof(x) for row in table.rows for x in row)
    per_ct = mpz_bytes / m
    per_packed = packed / m
    scale = batch_size / m
    return {
        "key_bits": key_bits,
        "measured_rows": m,
        "encrypt_per_s": round(m / enc_seconds),
        "mpz_bytes_per_ciphertext": round(per_ct, 1),
        "packed_bytes_per_ciphertext": round(per_packed, 1),
        "exponent_bytes_per_row": exps.nbytes / m,
        "vector_at_batch_bytes": per_ct * batch_size,
        "packed_at_batch_bytes": per_packed * batch_size,
        "exponents_at_batch_bytes": exps.nbytes * scale,
        "fixed_base_table_bytes": table_bytes,
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=None, help="rows per batch (default: all rows)")
    parser.add_argument("--key-bits", type=int, default=1024, choices=[1024, 2048])
    parser.add_argument("--crypto-rows", type=int, default=2000)
    parser.add_argument("--party", choices=["A", "B"], default="B")
    parser.add_argument("--optimizer", default="newton")
    parser.add_argument("--skip-epoch", action="store_true", help="stop after building the role")
    parser.add_argument("--skip-crypto", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    from vfl.ml.config import TrainingConfig
    from vfl.data.table import read_csv_frame
    from vfl.protocol.feature_party import FeatureParty
    from vfl.protocol.label_party import LabelParty
    from vfl.data.sources import FileSource, release_arrow_memory

    label = args.party == "B"
    results: dict = {}
    sampler = Sampler()
    with tempfile.TemporaryDirectory(prefix="vfl-bench-mem-") as tmp:
        tmp_path = Path(tmp)
        csv_path = tmp_path / "party.csv"
        t0 = time.perf_counter()
        write_csv(csv_path, args.rows, args.features, label)
        setup = {"csv_bytes": csv_path.stat().st_size, "write_seconds": round(time.perf_counter() - t0, 1)}
        release_arrow_memory()  # what writing the CSV left in Arrow's pool is not part of the baseline
        config = TrainingConfig(model="logistic", batch_size=args.batch_size, key_bits=args.key_bits,
                                optimizer=args.optimizer, epochs=1)
        order = np.random.default_rng(11).permutation(args.rows)
        aligned_ids = [f"u{i}" for i in order]  # the shared order of the intersection
        matrix_bytes = args.rows * args.features * 8
        source = FileSource("bench", _dataset(csv_path, label), read_csv_frame, 1 << 40)
        with stage(results, "ids", sampler) as info:
            info["ids"] = sum(1 for _ in source.iter_ids())
        with stage(results, "frame", sampler) as info:
            frame = read_csv_frame(csv_path, max_bytes=1 << 40)
            info["frame_bytes"] = int(frame.memory_usage(deep=True).sum())
            info["frame_dtype"] = str(frame.dtypes.iloc[0])
            del frame
            release_arrow_memory()
        with stage(results, "load", sampler, matrix_bytes=matrix_bytes) as info:
            table = source.table("logistic" if label else None)
            info["features_bytes"] = table.features.nbytes
            frame = source._state.frame
            info["frame_kept_bytes"] = 0 if frame is None else int(frame.memory_usage(deep=True).sum())
            del frame
        with stage(results, "align", sampler) as info:
            aligned = table.take(table.rows_for(aligned_ids))
            info["aligned_features_bytes"] = aligned.features.nbytes
        # The service keeps the loaded table (its source caches it), so it stays alive here too.
        with stage(results, "role", sampler) as info:
            if label:
                role = LabelParty("bench", config, aligned.features, aligned.labels,
                                  feature_names=aligned.feature_names)
            else:
                role = FeatureParty("bench", config, aligned.features, feature_names=aligned.feature_names)
            info["design_bytes"] = role.design.nbytes
            info["design_type"] = type(role.design).__name__
        if not args.skip_epoch:
            import tracemalloc

            with stage(results, "epoch", sampler) as info:
                tracemalloc.start()
                schedule = role.schedule
                weights = np.full(role.design.shape[1], 0.01)
                for rows in schedule.batches(0):
                    X = role.design[rows]
                    u = X @ weights
                    if label:
                        _ = role.math.q(u, role.labels[rows])
                    del X, u
                _, peak = tracemalloc.get_traced_memory()
                tracemalloc.stop()
                info["batches"] = schedule.batches_per_epoch
                info["batch_rows"] = schedule.batch_size
                info["tracemalloc_peak_bytes"] = peak
        if not args.skip_crypto:
            batch = role.schedule.batch_size
            with stage(results, "crypto", sampler) as info:
                info.update(crypto_batch(args.key_bits, args.crypto_rows, args.features, batch, role.design,
                                         config.feature_frac_bits))
        del role
        source.close()
    sampler.stop()
    summary = {
        "command": "scripts/bench_memory.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "rows": args.rows, "features": args.features, "party": args.party,
        "batch_size": args.batch_size, **{k: (round(v / MB, 1) if k.endswith("_bytes") else v) for k, v in setup.items()},
        "stages": results,
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"{summary['command']}\n  CSV {summary['csv_bytes']} MB (written in {setup['write_seconds']} s)")
        for name, r in results.items():
            print(f"  {name:7s} " + ", ".join(f"{k}={v}" for k, v in r.items()))
    return summary


if __name__ == "__main__":
    main()
