"""Proof that an RSA key is a permutation, so that blinding under it hides what is blinded.

Blinding hides FDH(x) only if r ↦ r^e is a bijection of Z_n*. A key holder
that chose a prime p with e | p − 1 would see, in FDH(x)·r^e, the class of
FDH(x) modulo e-th powers mod p (about 16 bits for e = 65537), enough to test
guessed IDs. Such a key holder can take e-th roots of only 1 value in e, so
it cannot answer for :data:`PROOF_VALUES` values it did not choose: the
points follow from (n, salt) through the full-domain hash under a domain of
their own (soundness e^-8 ≈ 2^-128; Goldberg, Reyzin, Sagga and Baldimtsi,
"Efficient noninteractive certification of RSA moduli and beyond", 2019).

The PSI's key holder and the lenders of :mod:`vfl.lending` publish such a
proof with their key, each under its own domain tag; the other side checks it
before it blinds anything.
"""

from __future__ import annotations

import gmpy2
from gmpy2 import mpz

from psi.hashing import fdh
from psi.keys import RsaPrivateKey, RsaPublicKey, sign_crt
from vfl.errors import PSIError

#: e-th roots published per key; a key that is not a permutation passes each with chance 1/e.
PROOF_VALUES = 8


def proof_points(n: mpz, salt: bytes, domain: bytes) -> list[mpz]:
    """The values whose e-th roots prove the key: FDH of 0..7 under ``domain`` and the salt.

    The salt is length-prefixed inside the hash and the domain differs from the
    ID hash's, so no ID's hash is one of them and the key holder cannot choose them.
    """
    return [fdh(str(i), domain + salt, n) for i in range(PROOF_VALUES)]


def prove_permutation(key: RsaPrivateKey, salt: bytes, domain: bytes) -> list[mpz]:
    """The key holder's proof: e-th roots (signatures, each verified) of the proof points."""
    parts = key.crt_parts()
    return [sign_crt(y, *parts) for y in proof_points(key.public.n, salt, domain)]


def check_permutation(public: RsaPublicKey, salt: bytes, proof: list[mpz] | tuple[mpz, ...], *, domain: bytes,
                      what: str) -> None:
    """Refuse a key whose x ↦ x^e is not a permutation of Z_n*; ``what`` names the key in the error."""
    points = proof_points(public.n, salt, domain)
    if len(proof) != len(points) or any(
            not 0 < s < public.n or gmpy2.powmod(s, public.e, public.n) != y for s, y in zip(proof, points)):
        raise PSIError(f"{what} does not prove its key is an RSA permutation (the e-th roots of its proof "
                       "values do not check): values blinded under it could leak the IDs; refusing it")


__all__ = ["PROOF_VALUES", "check_permutation", "proof_points", "prove_permutation"]
