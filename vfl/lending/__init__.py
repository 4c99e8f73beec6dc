"""Multi-lender queries: does an applicant already borrow elsewhere, without telling anyone who.

The white paper's use case for federated finance: a lender asks the others in
the federation about a loan applicant, and "other agencies only need to answer
questions about local lending without knowing the specific information of the
user". This package is the protocol's logic, free of I/O; the service layer
(:mod:`vfl.service.lending`) moves its values over mTLS and keeps its files.

It is the RSA blind-signature PSI of :mod:`psi` run in its unbalanced form
(SecretFlow's ``ub_psi`` with a cached server set):

1. **Publication** (:mod:`vfl.lending.lender`). Each lender holds an RSA key
   (n, e, d) and a fresh salt, and publishes a *tag set*: H2(FDH(x)^d) for
   every current borrower x, shuffled, with the same domain-separated hashes
   as the PSI (:mod:`psi.hashing`). It costs one signature per borrower, once
   per key. The key is rotated on a schedule (``rotate_every``); a rotation
   publishes a new tag set under a new key id, and the old tags stop
   answering, because the lender no longer signs under the old key.
2. **Query** (:mod:`vfl.lending.querier`). The querier keeps each lender's tag
   set, keyed by its key id. For an applicant y it sends every lender
   FDH(y)·r^e mod n, r fresh and uniform in Z_n*; the lender checks the value
   lies in [1, n−1] and is a unit, signs it (verifying s^e = value before it is
   released), and answers; the querier checks s^e = FDH(y)·r^e, divides out r,
   and looks H2(FDH(y)^d) up in that lender's tag set.
3. **Budgets** (:mod:`vfl.lending.budget`). Each signature lets the querier
   test one ID against the lender's set, so the lender bounds them per querier:
   IDs per UTC day and requests per minute.

What each side learns: the lender learns that the querier asked, when, and
about how many IDs; it sees values uniform in Z_n*, never the ID nor the
answer. The querier learns, for each ID it asked about, whether each lender
holds it, and each lender's number of borrowers (the tag set's size).
"""

from vfl.lending.budget import Budgets
from vfl.errors import StaleKey
from vfl.lending.lender import LenderKey, TagSet, publish, sign_blinded
from vfl.lending.querier import Querier, answers

__all__ = ["Budgets", "LenderKey", "Querier", "StaleKey", "TagSet", "answers", "publish", "sign_blinded"]
