"""Synthetic, documented data for the bank + e-commerce joint model.

A population of people, each with two hidden traits:

* ``fragility`` (financial): drives what the bank sees — lower income, higher
  credit utilisation, more late payments, a higher debt-to-income ratio;
* ``impulsivity`` (behavioural): drives what the shop sees — heavy use of
  buy-now-pay-later, late-night orders, many returns, abandoned carts.

Loan default depends on both: ``logit P(default) = −2.0 + 1.1·fragility +
1.0·impulsivity``, about 20% of people default. So the bank's features carry
part of the signal and the shop's the rest: a joint model beats the bank alone,
which is the point of federating.

The bank (party B) and the shop (party A) each hold a different, partly
overlapping subset of the population, with the customer ID ``C0000123`` as
the shared key. Features are in natural units (euros, shares, counts); each
party standardises its own.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

BANK_FEATURES = ["income", "credit_utilization", "late_payments_12m", "debt_to_income", "account_age_years", "loan_amount"]
SHOP_FEATURES = ["monthly_spend", "orders_per_month", "bnpl_share", "returns_rate", "night_order_share", "cart_abandonment", "discount_share"]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _shop_columns(rng: np.random.Generator, impulsivity: np.ndarray, fragility: np.ndarray,
                  noise: Callable[..., np.ndarray]) -> dict[str, np.ndarray]:
    """What the shop sees of each person (drawn in this order, so a seed gives the same tables)."""
    return {
        "monthly_spend": np.round(np.exp(5.0 + 0.25 * impulsivity + noise(0.5)), 2),
        "orders_per_month": rng.poisson(np.exp(1.1 + 0.25 * impulsivity)),
        "bnpl_share": np.round(_sigmoid(-1.2 + 1.0 * impulsivity + noise(0.5)), 4),
        "returns_rate": np.round(_sigmoid(-2.0 + 0.5 * impulsivity + noise(0.6)), 4),
        "night_order_share": np.round(_sigmoid(-1.6 + 0.6 * impulsivity + noise(0.6)), 4),
        "cart_abandonment": np.round(_sigmoid(-0.5 + 0.4 * impulsivity + noise(0.7)), 4),
        "discount_share": np.round(_sigmoid(-0.8 + 0.3 * impulsivity + 0.3 * fragility + noise(0.7)), 4),
    }


def bank_ecommerce(
    population: int = 10_000, bank_share: float = 0.6, shop_share: float = 0.7, seed: int = 7
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(shop, bank) tables. The bank's has the label column ``default``.

    Each person is a bank customer with probability ``bank_share`` and a shop
    customer with probability ``shop_share``, independently, so the overlap is
    about ``population · bank_share · shop_share`` people.
    """
    rng = np.random.default_rng(seed)
    n = population
    fragility = rng.normal(size=n)
    impulsivity = rng.normal(size=n)
    noise = lambda scale=1.0: rng.normal(scale=scale, size=n)  # noqa: E731 - local shorthand

    default = rng.random(n) < _sigmoid(-2.0 + 1.1 * fragility + 1.0 * impulsivity)
    bank = pd.DataFrame({
        "customer_id": [f"C{i:07d}" for i in range(n)],
        "income": np.round(np.exp(10.6 - 0.25 * fragility + noise(0.35)), 2),
        "credit_utilization": np.round(_sigmoid(-0.4 + 0.9 * fragility + noise(0.6)), 4),
        "late_payments_12m": rng.poisson(np.exp(-1.0 + 0.7 * fragility)),
        "debt_to_income": np.round(np.clip(0.32 + 0.11 * fragility + noise(0.08), 0, None), 4),
        "account_age_years": np.round(rng.gamma(3.0, 2.5, size=n) * np.exp(-0.1 * fragility), 1),
        "loan_amount": np.round(np.exp(9.2 + 0.15 * fragility + noise(0.5)), -1),
        "default": default.astype(int),
    })
    shop = pd.DataFrame({"customer_id": bank["customer_id"], **_shop_columns(rng, impulsivity, fragility, noise)})
    in_bank = rng.random(n) < bank_share
    in_shop = rng.random(n) < shop_share
    # Each firm lists its customers in its own order.
    bank = bank[in_bank].sample(frac=1.0, random_state=seed).reset_index(drop=True)
    shop = shop[in_shop].sample(frac=1.0, random_state=seed + 1).reset_index(drop=True)
    return shop, bank


# -- A bank and several partners -------------------------------------------------------------------
#
# ``bank_partners`` extends the population above to up to three partners of the
# bank, each seeing one more hidden trait:
#
# * the shop (as above): ``impulsivity``;
# * a telecom operator: ``instability`` (housing and job moves) — prepaid plans,
#   irregular top-ups, SIM changes, short tenure, late phone bills;
# * an energy utility: ``arrears_habit`` — late and missed energy bills, payment
#   plans, estimated meter readings.
#
# ``logit P(default) = −2.0 + 1.0·fragility + 0.8·impulsivity + 0.8·instability
# (+ 0.7·arrears_habit with the utility)``, about 20% default. Every side carries
# signal of its own, so each partner adds to the bank, and all of them together
# add most.
#
# Which people each firm knows: the bank a ``bank_share`` of everyone; among the
# bank's customers, the *same* ``partner_share`` are known to every partner (so
# the joint job and each bank + one-partner job train and validate on exactly
# the same customers, and their metrics compare like with like); outside the
# bank, each partner knows its own ``partner_share`` of people, drawn
# independently. Each firm lists its customers in its own order.

PARTNERS = ("shop", "telco", "utility")
TELCO_FEATURES = ["prepaid", "topup_irregularity", "sim_changes_24m", "tenure_months", "late_phone_bills_12m"]
UTILITY_FEATURES = ["late_energy_bills_12m", "missed_payments_24m", "payment_plan", "estimated_readings_share"]


def bank_partners(
    partners: int = 2, population: int = 10_000, bank_share: float = 0.6, partner_share: float = 0.7, seed: int = 7
) -> tuple[dict[str, pd.DataFrame], pd.DataFrame]:
    """({partner name: table}, bank) for 1 to 3 partners: the shop, then the telco, then the utility.

    The bank's table has the label column ``default``; every table has ``customer_id``.
    """
    if not 1 <= partners <= len(PARTNERS):
        raise ValueError(f"the synthetic federation has 1 to {len(PARTNERS)} partners ({', '.join(PARTNERS)}), "
                         f"not {partners}")
    rng = np.random.default_rng(seed)
    n = population
    fragility, impulsivity, instability, arrears = (rng.normal(size=n) for _ in range(4))
    noise = lambda scale=1.0: rng.normal(scale=scale, size=n)  # noqa: E731 - local shorthand
    logit = -2.0 + 1.0 * fragility + 0.8 * impulsivity + 0.8 * instability + (0.7 * arrears if partners == 3 else 0)
    ids = [f"C{i:07d}" for i in range(n)]

    bank = pd.DataFrame({
        "customer_id": ids,
        "income": np.round(np.exp(10.6 - 0.25 * fragility + noise(0.35)), 2),
        "credit_utilization": np.round(_sigmoid(-0.4 + 0.9 * fragility + noise(0.6)), 4),
        "late_payments_12m": rng.poisson(np.exp(-1.0 + 0.7 * fragility)),
        "debt_to_income": np.round(np.clip(0.32 + 0.11 * fragility + noise(0.08), 0, None), 4),
        "account_age_years": np.round(rng.gamma(3.0, 2.5, size=n) * np.exp(-0.1 * fragility - 0.1 * instability), 1),
        "loan_amount": np.round(np.exp(9.2 + 0.15 * fragility + noise(0.5)), -1),
        "default": (rng.random(n) < _sigmoid(logit)).astype(int),
    })
    tables = {
        "shop": pd.DataFrame({"customer_id": ids, **_shop_columns(rng, impulsivity, fragility, noise)}),
        "telco": pd.DataFrame({
            "customer_id": ids,
            "prepaid": (rng.random(n) < _sigmoid(-0.6 + 1.3 * instability)).astype(int),
            "topup_irregularity": np.round(_sigmoid(-1.0 + 1.1 * instability + noise(0.4)), 4),
            "sim_changes_24m": rng.poisson(np.exp(-0.7 + 0.8 * instability)),
            "tenure_months": np.round(rng.gamma(2.5, 18.0, size=n) * np.exp(-0.5 * instability)),
            "late_phone_bills_12m": rng.poisson(np.exp(-1.2 + 0.5 * instability + 0.3 * fragility)),
        }),
        "utility": pd.DataFrame({
            "customer_id": ids,
            "late_energy_bills_12m": rng.poisson(np.exp(-0.9 + 0.7 * arrears)),
            "missed_payments_24m": rng.poisson(np.exp(-1.6 + 0.8 * arrears + 0.2 * fragility)),
            "payment_plan": (rng.random(n) < _sigmoid(-1.8 + 0.9 * arrears)).astype(int),
            "estimated_readings_share": np.round(_sigmoid(-1.5 + 0.4 * arrears + noise(0.8)), 4),
        }),
    }
    in_bank = rng.random(n) < bank_share
    known_to_partners = rng.random(n) < partner_share  # the same bank customers at every partner
    out = {}
    for h, name in enumerate(PARTNERS[:partners]):
        outside_bank = rng.random(n) < partner_share  # each partner's own, beyond the bank's customers
        holds = np.where(in_bank, known_to_partners, outside_bank)
        out[name] = tables[name][holds].sample(frac=1.0, random_state=seed + 1 + h).reset_index(drop=True)
    bank = bank[in_bank].sample(frac=1.0, random_state=seed).reset_index(drop=True)
    return out, bank
