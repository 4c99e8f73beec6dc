"""The Paillier crypto core of vfl.

Small on purpose: keys (:mod:`.keys`), fixed-point encoding (:mod:`.encoding`),
fresh randomness (:mod:`.obfuscation`), encrypted vectors and their operations
(:mod:`.vector`), the encrypted product (:mod:`.matvec`), masks (:mod:`.masking`)
and the wire packing of big integers (:mod:`.codec`).

Built on phe (key objects, CRT decryption) with gmpy2 for all big-integer
arithmetic. Without gmpy2 everything is about 8× slower, so importing this
package warns loudly if phe cannot use it.
"""

from __future__ import annotations

import warnings

import phe.util

if not getattr(phe.util, "HAVE_GMP", False):  # pragma: no cover - depends on the install
    warnings.warn(
        "phe is running WITHOUT gmpy2: Paillier arithmetic will be about 8x slower. "
        "Install gmpy2 (pip install gmpy2) in this environment.",
        RuntimeWarning,
        stacklevel=2,
    )

from vfl.crypto.encoding import decode, encode  # noqa: E402
from vfl.crypto.keys import DEFAULT_KEY_BITS, MIN_KEY_BITS, PrivateKey, PublicKey, generate_keypair  # noqa: E402
from vfl.crypto.masking import mask, unmask  # noqa: E402
from vfl.crypto.vector import EncryptedVector, Encryptor, decrypt, decrypt_residues  # noqa: E402

__all__ = [
    "DEFAULT_KEY_BITS",
    "MIN_KEY_BITS",
    "EncryptedVector",
    "Encryptor",
    "PrivateKey",
    "PublicKey",
    "decode",
    "decrypt",
    "decrypt_residues",
    "encode",
    "generate_keypair",
    "mask",
    "unmask",
]
