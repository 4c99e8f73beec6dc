#!/usr/bin/env python3
"""Per-core rates of the group candidates for the ECDH PSI (issue 29), with vfl's RSA signing as the reference.

    PYTHONPATH=. python scripts/bench_ec_groups.py [--ops 4000] [--rsa-ops 400] [--repeat 3] [--cores 2] [--ids 100000]

Everything runs in this one process, on one core, one operation at a time;
each rate is the median of ``--repeat`` rounds, the rounds interleaved so that
load from other programs hits every candidate alike. Measured:

- ``ristretto255_scalar_mult``: libsodium's ``crypto_scalarmult_ristretto255``
  through :func:`psi.ec.scalar_mult` (decode, multiply, encode; the protocol's step);
- ``ristretto255_hash_to_group``: :func:`psi.ec.hash_to_group`, RFC 9380's
  ``ristretto255_XMD:SHA-512_R255MAP_RO_`` (two SHA-512 in Python, the map in C);
- ``ristretto255_check_points``: :func:`psi.ec.check_points` (is_valid_point), run on every received point;
- ``ed25519_scalar_mult_noclamp`` (PyNaCl): the other candidate group, edwards25519's
  prime-order subgroup, as PyNaCl exposes it (its hash to curve, RFC 9380's
  ``edwards25519_XMD:SHA-512_ELL2_RO_``, is not in PyNaCl and is not measured);
- ``x25519_exchange`` (``cryptography``): ``X25519PrivateKey.exchange`` with the
  peer value loaded from bytes. A candidate only in speed: X25519 works on
  u-coordinates of a cofactor-8 curve with clamped scalars, has no
  hash-to-curve (Elligator 2 would have to be written in Python) and no
  point validation, so a PSI on it needs all three added;
- ``rsa_own_tag`` and ``rsa_sign_verified``: vfl's current RSA PSI per ID at
  party A, 3-prime CRT 2048-bit: ``psi.tasks.own_tags`` (FDH, sign, H2; A's
  own IDs) and ``psi.keys.sign_many`` (sign and verify; B's blinded values).

Then the estimate for an N × N ECDH PSI (``--ids``) on ``--cores`` cores, from
the measured rates. Operations, per side (N IDs each):

- hash its N IDs to the group (N hash_to_group) and multiply them by its
  scalar (N scalar mults), send them;
- check the N points it receives (N check_points) and multiply them by its
  scalar (N scalar mults), send them back (or compare, per variant);
- comparing the doubly-multiplied points is a set lookup (not counted).

So both sides together: 2N hash_to_group, 4N scalar mults, 2N point checks.
With both sides on the same ``--cores`` cores (as ``scripts/bench_psi.py`` runs
them) the wall time is the sum over ``--cores``; with ``--cores`` per party it
is half that. Transport, the wire codec and the buckets are not counted.
"""

from __future__ import annotations

import argparse
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


def candidates(ops: int, rsa_ops: int) -> dict[str, tuple[int, Callable[[], object]]]:
    """name → (operations per round, one round)."""
    dst = ec.job_dst("bench", b"s" * 32)
    ids = [f"user-{i:09d}".encode() for i in range(ops)]
    k = ec.new_scalar()
    points = ec.hash_to_group(ids, dst)

    ed25519 = {}
    if sodium is not None:
        def ed_random_scalar() -> bytes:
            return sodium.crypto_core_ed25519_scalar_reduce(secrets.token_bytes(64))

        ed_scalar = ed_random_scalar()
        ed_points = [sodium.crypto_scalarmult_ed25519_base_noclamp(ed_random_scalar()) for _ in range(ops)]
        ed25519 = {"ed25519_scalar_mult_noclamp": (ops, lambda: [sodium.crypto_scalarmult_ed25519_noclamp(
            ed_scalar, p) for p in ed_points])}

    x_private = X25519PrivateKey.generate()
    x_peers = [X25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
               for _ in range(ops)]

    key = generate_rsa_key(2048, min_bits=1024, primes=3)
    parts = key.crt_parts()
    salt = b"s" * 32
    rsa_ids = [f"user-{i:09d}" for i in range(rsa_ops)]
    rsa_values = [fdh(x, salt, key.public.n) for x in rsa_ids]

    return {
        "ristretto255_scalar_mult": (ops, lambda: ec.scalar_mult(k, points)),
        "ristretto255_hash_to_group": (ops, lambda: ec.hash_to_group(ids, dst)),
        "ristretto255_check_points": (ops, lambda: ec.check_points(points)),
        **ed25519,
        "x25519_exchange": (ops, lambda: [x_private.exchange(X25519PublicKey.from_public_bytes(p)) for p in x_peers]),
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
    work = {"hash_to_group": 2 * n, "scalar_mult": 4 * n, "check_points": 2 * n}
    cpu = (work["hash_to_group"] / rates["ristretto255_hash_to_group"]
           + work["scalar_mult"] / rates["ristretto255_scalar_mult"]
           + work["check_points"] / rates["ristretto255_check_points"])
    # RSA for comparison, signing at A only: N own tags and N verified signatures of B's values.
    rsa_cpu = n / rates["rsa_own_tag"] + n / rates["rsa_sign_verified"]
    per_id_side = 1 / rates["ristretto255_hash_to_group"] + 2 / rates["ristretto255_scalar_mult"] \
        + 1 / rates["ristretto255_check_points"]
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
            "ids_per_s_per_core_per_side": round(1 / per_id_side),
            "rsa_signing_cpu_seconds_at_a": round(rsa_cpu, 1),
            "rsa_signing_wall_seconds_on_the_cores": round(rsa_cpu / args.cores, 1),
        },
    }, indent=2))


if __name__ == "__main__":
    main()
