#!/usr/bin/env python3
"""Per-core rates of the group candidates for the ECDH PSI (issue 29), with vfl's RSA signing as the reference.

    PYTHONPATH=. python scripts/bench_ec_groups.py [--ops 4000] [--rsa-ops 400] [--repeat 3] [--cores 2] [--ids 100000]

Everything runs in this one process, on one core, one operation at a time;
each rate is the median of ``--repeat`` rounds, the rounds interleaved so that
load from other programs hits every candidate alike. Measured:

- ``x25519_scalar_mult_checked`` and ``x25519_scalar_mult_own``: the group vfl
  uses, libsodium's ``crypto_scalarmult_curve25519`` through
  :func:`psi.ec.scalar_mult`, with the point check first (a peer's points) and
  without it (this party's own hashed points);
- ``x25519_hash_to_group``: :func:`psi.ec.hash_to_group`, RFC 9380's
  ``curve25519_XMD:SHA-512_ELL2_NU_`` (SHA-512 and Elligator 2 in Python on
  gmpy2, two batched inversions per chunk);
- ``x25519_check_points``: :func:`psi.ec.check_points` (canonical, not small
  order, on the curve: one Legendre symbol);
- ``ristretto255_scalar_mult`` and ``ristretto255_hash_to_group``: the group
  vfl used before, libsodium's ristretto255 bound here with ``ctypes`` (its
  multiplication decodes, and so checks, the point itself);
- ``ed25519_scalar_mult_noclamp`` (PyNaCl): edwards25519's prime-order subgroup
  as PyNaCl exposes it (no hash to curve in PyNaCl: not measured);
- ``openssl_x25519_exchange`` (``cryptography``): OpenSSL's X25519, with the
  peer value loaded from bytes, for comparison with libsodium's;
- ``rsa_own_tag`` and ``rsa_sign_verified``: vfl's RSA PSI per ID at
  party A, 3-prime CRT 2048-bit: ``psi.tasks.own_tags`` (FDH, sign, H2; A's
  own IDs) and ``psi.keys.sign_many`` (sign and verify; B's blinded values).

Then the estimate for an N × N ECDH PSI (``--ids``) on ``--cores`` cores, from
the measured rates. Both sides together:

- 2N hash_to_group and 2N multiplications of own points (each side its own IDs);
- 2N checked multiplications (each side the other's points);
- N point checks (party B, on the points A sends back);
- comparing the doubly-multiplied points is a set lookup (not counted).

With both sides on the same ``--cores`` cores (as ``scripts/bench_psi.py`` runs
them) the wall time is the sum over ``--cores``; with ``--cores`` per party it
is half that. Transport, the wire codec and the buckets are not counted.
ristretto255's estimate (2N hashes, 4N multiplications) is given beside it.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import hashlib
import json
import platform
import secrets
import statistics
import time
from collections.abc import Callable

try:  # PyNaCl, for the ed25519 comparison only (not a dependency of vfl)
    import nacl
    import nacl.bindings as sodium
except ImportError:
    nacl = sodium = None
from cryptography.hazmat.primitives.asymmetric.x25519 import (
    X25519PrivateKey,
    X25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from psi import ec
from psi.hashing import fdh
from psi.keys import generate_rsa_key, sign_many
from psi.tasks import own_tags
from vfl.compute.pool import cpu_model


def rate(ops: int, fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return ops / (time.perf_counter() - started)


def _ristretto255() -> tuple[Callable, Callable] | None:
    """libsodium's ristretto255 (the group vfl used before X25519): (hash_to_group, scalar_mult), bound here only."""
    path = ctypes.util.find_library("sodium")
    lib = ctypes.CDLL(path) if path else None
    if lib is None or not hasattr(lib, "crypto_core_ristretto255_from_hash"):
        return None
    from_hash, mult = lib.crypto_core_ristretto255_from_hash, lib.crypto_scalarmult_ristretto255
    z_pad = hashlib.sha512(bytes(128))

    def hash_to_group(ids: list[bytes], dst: bytes) -> list[bytes]:  # RFC 9380 ristretto255_XMD:SHA-512_R255MAP_RO_
        tail, b1_tail = (64).to_bytes(2, "big") + b"\x00" + dst + bytes([len(dst)]), b"\x01" + dst + bytes([len(dst)])
        out, points = ctypes.create_string_buffer(32), []
        for x in ids:
            h = z_pad.copy()
            h.update(x)
            h.update(tail)
            from_hash(out, hashlib.sha512(h.digest() + b1_tail).digest())
            points.append(out.raw)
        return points

    def scalar_mult(k: bytes, points: list[bytes]) -> list[bytes]:
        out, products = ctypes.create_string_buffer(32), []
        for p in points:
            if mult(out, k, p) != 0:
                raise ValueError("ristretto255 refused a point")
            products.append(out.raw)
        return products

    return hash_to_group, scalar_mult


def candidates(ops: int, rsa_ops: int) -> dict[str, tuple[int, Callable[[], object]]]:
    """name → (operations per round, one round)."""
    dst = ec.job_dst("bench", b"s" * 32)
    ids = [f"user-{i:09d}".encode() for i in range(ops)]
    k = ec.new_scalar()
    points = ec.hash_to_group(ids, dst)

    ristretto = {}
    bound = _ristretto255()
    if bound is not None:
        r_hash, r_mult = bound
        r_scalar = (secrets.randbelow(ec.GROUP_ORDER - 1) + 1).to_bytes(32, "little")
        r_points = r_hash(ids, dst)
        ristretto = {"ristretto255_scalar_mult": (ops, lambda: r_mult(r_scalar, r_points)),
                     "ristretto255_hash_to_group": (ops, lambda: r_hash(ids, dst))}

    ed25519 = {}
    if sodium is not None:
        def ed_random_scalar() -> bytes:
            return sodium.crypto_core_ed25519_scalar_reduce(secrets.token_bytes(64))

        ed_scalar = ed_random_scalar()
        ed_points = [sodium.crypto_scalarmult_ed25519_base_noclamp(ed_random_scalar()) for _ in range(ops)]
        ed25519 = {"ed25519_scalar_mult_noclamp": (ops, lambda: [sodium.crypto_scalarmult_ed25519_noclamp(
            ed_scalar, p) for p in ed_points])}

    x_private = X25519PrivateKey.generate()

    key = generate_rsa_key(2048, min_bits=1024, primes=3)
    parts = key.crt_parts()
    salt = b"s" * 32
    rsa_ids = [f"user-{i:09d}" for i in range(rsa_ops)]
    rsa_values = [fdh(x, salt, key.public.n) for x in rsa_ids]

    return {
        "x25519_scalar_mult_checked": (ops, lambda: ec.scalar_mult(k, points)),
        "x25519_scalar_mult_own": (ops, lambda: ec.scalar_mult(k, points, check=False)),
        "x25519_hash_to_group": (ops, lambda: ec.hash_to_group(ids, dst)),
        "x25519_check_points": (ops, lambda: ec.check_points(points)),
        **ristretto,
        **ed25519,
        "openssl_x25519_exchange": (ops, lambda: [x_private.exchange(X25519PublicKey.from_public_bytes(p))
                                                  for p in points]),
        "rsa_own_tag": (rsa_ops, lambda: own_tags(rsa_ids, salt, *parts)),
        "rsa_sign_verified": (rsa_ops, lambda: sign_many(rsa_values, *parts)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ops", type=int, default=4000, help="elliptic-curve operations per round")
    parser.add_argument("--rsa-ops", type=int, default=400, help="RSA signatures per round")
    parser.add_argument("--repeat", type=int, default=3, help="rounds; each rate is their median")
    parser.add_argument("--cores", type=int, default=2, help="cores of the estimate")
    parser.add_argument("--ids", type=int, default=100_000, help="IDs per side of the estimate")
    args = parser.parse_args()

    runs = candidates(args.ops, args.rsa_ops)
    samples: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.repeat):
        for name, (ops, fn) in runs.items():
            samples[name].append(rate(ops, fn))
    rates = {name: round(statistics.median(values)) for name, values in samples.items()}

    n = args.ids
    # Both sides together: each hashes and multiplies its own N IDs (own points: no check), multiplies the
    # other's N points (checked first), and party B checks the N points A sends back (check only).
    work = {"hash_to_group": 2 * n, "scalar_mult_own": 2 * n, "scalar_mult_checked": 2 * n, "check_points": n}
    cpu = (work["hash_to_group"] / rates["x25519_hash_to_group"]
           + work["scalar_mult_own"] / rates["x25519_scalar_mult_own"]
           + work["scalar_mult_checked"] / rates["x25519_scalar_mult_checked"]
           + work["check_points"] / rates["x25519_check_points"])
    ristretto_cpu = None
    if "ristretto255_scalar_mult" in rates:  # its multiplication decodes and so checks each point itself
        ristretto_cpu = round(2 * n / rates["ristretto255_hash_to_group"] + 4 * n / rates["ristretto255_scalar_mult"], 2)
    # RSA for comparison, signing at A only: N own tags and N verified signatures of B's values.
    rsa_cpu = n / rates["rsa_own_tag"] + n / rates["rsa_sign_verified"]
    print(json.dumps({
        "cpu": cpu_model(), "python": platform.python_version(), "libsodium": ec.libsodium_version(),
        "pynacl": None if nacl is None else nacl.__version__, "ops_per_round": args.ops, "rsa_ops_per_round": args.rsa_ops,
        "repeat": args.repeat,
        "rates_ops_per_s_per_core": rates,
        "estimate": {
            "ids_per_side": n, "cores": args.cores, "operations_both_sides": work,
            "cpu_seconds": round(cpu, 2),
            "wall_seconds_both_sides_on_the_cores": round(cpu / args.cores, 2),
            "wall_seconds_cores_per_party": round(cpu / 2 / args.cores, 2),
            "ids_per_s_per_core_per_side": round(2 * n / cpu),
            "ristretto255_cpu_seconds": ristretto_cpu,
            "rsa_signing_cpu_seconds_at_a": round(rsa_cpu, 1),
            "rsa_signing_wall_seconds_on_the_cores": round(rsa_cpu / args.cores, 1),
        },
    }, indent=2))


if __name__ == "__main__":
    main()
