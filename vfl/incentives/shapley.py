"""What each feature party adds: Shapley values over the feature parties, and leave-one-out.

The game: the players are the k feature parties; party B (the labels) is in
every coalition. The value of a coalition S is the quality of the model trained
through the federated protocol on B plus S, on the same aligned rows as the
job (the full joint intersection, so every coalition is measured on the same
customers and the same validation split): AUC for logistic regression, R² for
linear regression, on the validation rows when there is a split (else on the
training rows). v(∅) is party B alone, which B trains by itself: it needs no
federation, and vfl's bank-only baseline already is that model (the same
algorithm in plaintext, which the encrypted protocol equals to rounding).

* **Exact** for k ≤ 4 (:data:`EXACT_UP_TO`): every one of the 2^k − 1
  non-empty coalitions is trained once (the full one is the job itself), and

      φ_i = Σ_{S ⊆ N∖{i}} |S|!(k−|S|−1)!/k! · (v(S ∪ {i}) − v(S)).

* **Permutation sampling** above: m random orders of the k parties (seeded);
  each order gives every party one marginal contribution v(P ∪ {i}) − v(P),
  where P are the parties before it. φ_i is the mean over the orders, and its
  standard error is the sample standard deviation of those marginals over √m.
  A coalition met in several orders is trained once. Within each order the
  marginals add up to v(N) − v(∅), so the estimates do too, exactly.

Leave-one-out is v(N) − v(N∖{i}): what the model loses without party i.

Both the simulation (:func:`vfl.local.simulate.simulate`) and party B's service
(:mod:`vfl.service.stages.contributions`) use :func:`plan` to list the coalitions to
train and :func:`table` to turn their values into the result.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import Any

import numpy as np

#: Exact Shapley values up to this many feature parties (2^k − 1 coalition trainings); sampling above.
EXACT_UP_TO = 4
#: Orders drawn when sampling (k > EXACT_UP_TO), unless told otherwise.
DEFAULT_PERMUTATIONS = 20

Coalition = frozenset[int]  # feature parties by their position in the roster (0 … k−1)


def metric_name(model: str) -> str:
    """The value of a coalition: "auc" (logistic) or "r2" (linear)."""
    return "auc" if model == "logistic" else "r2"


def value_of(metrics: dict[str, Any], model: str) -> tuple[float, str]:
    """A model's value from its metrics per split: (value, split), validation rows when there are any."""
    split = "validation" if metrics.get("validation") else "train"
    return float(metrics[split][metric_name(model)]), split


@dataclass(frozen=True)
class Plan:
    """What to train: every coalition whose value the estimate needs, and (sampling) the orders drawn."""

    k: int
    method: str  # "exact" or "permutation sampling"
    coalitions: tuple[Coalition, ...]  # non-empty, the full one included (the job itself)
    orders: tuple[tuple[int, ...], ...] | None = None
    seed: int | None = None

    @property
    def full(self) -> Coalition:
        return frozenset(range(self.k))

    def to_train(self) -> list[Coalition]:
        """The coalitions beyond the job itself (and beyond B alone), smallest first."""
        return [c for c in self.coalitions if c != self.full]


def plan(k: int, *, permutations: int | None = None, seed: int = 0, exact_up_to: int = EXACT_UP_TO) -> Plan:
    """The coalitions to train for k feature parties: all of them up to ``exact_up_to``, else sampled orders.

    Leave-one-out needs every coalition of k − 1 parties, so a sampling plan always holds those too.
    """
    if k < 1:
        raise ValueError("contributions need at least one feature party")
    full = frozenset(range(k))
    if k <= exact_up_to and permutations is None:
        coalitions = [frozenset(c) for size in range(1, k + 1) for c in combinations(range(k), size)]
        return Plan(k, "exact", tuple(coalitions))
    m = DEFAULT_PERMUTATIONS if permutations is None else int(permutations)
    if m < 2:
        raise ValueError("permutation sampling needs at least 2 orders (for a standard error)")
    rng = np.random.default_rng(seed)
    orders = tuple(tuple(int(i) for i in rng.permutation(k)) for _ in range(m))
    needed = {frozenset(order[:j]) for order in orders for j in range(1, k + 1)}
    needed |= {full - {i} for i in range(k)} - {frozenset()}
    needed.add(full)
    ordered = sorted(needed, key=lambda c: (len(c), sorted(c)))
    return Plan(k, "permutation sampling", tuple(ordered), orders, seed)


def shapley_exact(k: int, values: dict[Coalition, float]) -> list[float]:
    """Exact Shapley values; ``values`` holds every coalition, the empty one (B alone) included."""
    phi = []
    for i in range(k):
        others = [j for j in range(k) if j != i]
        total = 0.0
        for size in range(k):
            weight = math.factorial(size) * math.factorial(k - size - 1) / math.factorial(k)
            for subset in combinations(others, size):
                s = frozenset(subset)
                total += weight * (values[s | {i}] - values[s])
        phi.append(total)
    return phi


def shapley_sampled(k: int, values: dict[Coalition, float],
                    orders: Sequence[Sequence[int]]) -> tuple[list[float], list[float]]:
    """Permutation-sampling estimates and their standard errors (sample std of the marginals / √m)."""
    marginals = np.zeros((len(orders), k))
    for row, order in enumerate(orders):
        before: frozenset[int] = frozenset()
        for i in order:
            after = before | {i}
            marginals[row, i] = values[after] - values[before]
            before = after
    m = len(orders)
    means = marginals.mean(axis=0)
    errors = marginals.std(axis=0, ddof=1) / math.sqrt(m) if m > 1 else np.full(k, float("nan"))
    return [float(v) for v in means], [float(e) for e in errors]


def leave_one_out(k: int, values: dict[Coalition, float]) -> list[float]:
    full = frozenset(range(k))
    return [values[full] - values[full - {i}] for i in range(k)]


def table(plan_: Plan, values: dict[Coalition, float], *, model: str, names: Sequence[str],
          sources: Sequence[str], split: str, rows: int | None = None,
          seconds: dict[Coalition, float] | None = None) -> dict[str, Any]:
    """The ``contributions`` object of a result: the metric, v(N), v(∅), and per party Shapley and leave-one-out.

    ``values`` maps each coalition of the plan and the empty one to its value.
    Parties come in roster order (the order the feature parties were given).
    """
    k = plan_.k
    if plan_.method == "exact":
        phi, errors = shapley_exact(k, values), None
    else:
        phi, errors = shapley_sampled(k, values, plan_.orders or ())
    loo = leave_one_out(k, values)
    parties = []
    for i in range(k):
        entry: dict[str, Any] = {"party": names[i], "source": sources[i], "shapley": phi[i], "leave_one_out": loo[i]}
        if errors is not None:
            entry["standard_error"] = errors[i]
        parties.append(entry)
    coalitions = []
    for c in sorted(set(values) - {frozenset()}, key=lambda c: (len(c), sorted(c))):
        item: dict[str, Any] = {"parties": [names[i] for i in sorted(c)], "value": values[c]}
        if seconds is not None and c in seconds:
            item["seconds"] = round(seconds[c], 3)
        coalitions.append(item)
    result: dict[str, Any] = {
        "metric": metric_name(model),
        "split": split,
        "full": values[plan_.full],
        "label_party_alone": values[frozenset()],
        "method": plan_.method,
        "parties": parties,
        "coalitions": coalitions,
        "trainings": len(plan_.to_train()),
    }
    if rows is not None:
        result["rows"] = rows
    if plan_.orders is not None:
        result["permutations"] = len(plan_.orders)
        result["seed"] = plan_.seed
    if seconds:
        result["seconds"] = round(sum(seconds.values()), 3)
    return result


def ledger_view(contributions: dict[str, Any] | None) -> dict[str, Any] | None:
    """What a ledger entry records of the contributions: the table, without each coalition's metric.

    B keeps every coalition's value in its own job record; the ledger, which every
    party of the federation holds, gets the metric, v(N), v(∅) and each party's
    Shapley value and leave-one-out figure (see docs/security.md).
    """
    if not contributions or "parties" not in contributions:
        return contributions
    keep = ("metric", "split", "full", "label_party_alone", "method", "permutations", "seed", "rows", "trainings")
    return {**{k: contributions[k] for k in keep if k in contributions},
            "parties": [dict(p) for p in contributions["parties"]]}
