"""``training.loss = "exact"``: the log-loss itself, through the arbiter's shuffled sigmoids.

The federated run must equal the plain-numpy exact algorithm; the arbiter must see each
batch's scores only as a shuffled multiset, answer only in encrypted form, only on its
schedule, and only for jobs that chose the exact loss.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import TEST_KEY_BITS, fate_pair, pooled_ionosphere_auc
from tests.protocol.conftest import build_roles
from tests.protocol.test_checkpoints import run_to_end, run_until_epoch
from tests.protocol.test_multiparty import build, run, split
from vfl.crypto.encoding import decode
from vfl.crypto.packing import Layout, unpack
from vfl.crypto.vector import decrypt, decrypt_residues
from vfl.data.table import load_csv
from vfl.errors import PeerNotAllowed, ReplayError, ScheduleViolation
from vfl.local.simulate import simulate
from vfl.ml.config import TrainingConfig
from vfl.ml.plaintext import train_plaintext
from vfl.ml.prep import PrepConfig
from vfl.protocol.channel import InMemoryChannel
from vfl.protocol.messages import EncryptedForward, LossShare, ShuffledScores, ShuffledSigmoids

CONFIGS = {
    "newton-full-batch": dict(epochs=6),
    "adam-minibatch-validation-l2": dict(epochs=4, optimizer="adam", batch_size=128, validation_fraction=0.2,
                                         l2=0.05, loss_every=2),
}


def seen_by_the_arbiter(request: ShuffledScores, keypair) -> np.ndarray:
    """The scores C reads from B's request: decrypted, unpacked, decoded."""
    public, private = keypair
    layout = Layout.for_key(public.bits, request.enc_scores.frac_bits)
    packed = decrypt_residues(private, request.enc_scores.to_vector(public, what="scores").ciphertexts)
    return decode(unpack(packed, request.rows, layout, public.n), request.enc_scores.frac_bits, public.n)


def plain_reference(a_designs, b, config):
    return train_plaintext(a_designs, b.design[:, :-1], b.labels, config, model_rounding=True)


@pytest.mark.parametrize("settings", CONFIGS.values(), ids=CONFIGS.keys())
def test_federated_exact_loss_matches_plain_numpy(train, breast, settings):
    X_a, X_b, y = breast

    result = train(X_a, X_b, y, loss="exact", **settings)

    reference = plain_reference(result.a.design, result.b, result.a.config)
    assert result.b.epochs_run == reference.epochs_run
    # σ is computed by C from u at 2^-32 and returned at 2^-32: the only difference is that rounding.
    assert np.allclose(result.a.weights, reference.weights_a, atol=1e-6, rtol=0)
    assert np.allclose(result.b.weights, reference.weights_b, atol=1e-6, rtol=0)
    assert np.allclose(result.b.train_losses, reference.train_losses, atol=1e-6, rtol=0)
    assert np.allclose(result.b.validation_losses, reference.validation_losses, atol=1e-6, rtol=0)


def test_exact_and_taylor_differ_where_the_approximation_does(train, breast):
    X_a, X_b, y = breast

    exact = train(X_a, X_b, y, loss="exact", epochs=6)
    taylor = train(X_a, X_b, y, epochs=6)

    assert not np.allclose(exact.b.weights, taylor.b.weights, atol=1e-3)


def test_k_feature_parties_send_no_loss_shares_and_match_plain_numpy(breast, keypair):
    X_a, X_b, y = breast
    roster, features, b, c, config = build(split(X_a, 2), X_b, y, keypair, loss="exact", epochs=4, batch_size=200,
                                           validation_fraction=0.2, l2=0.1)

    transcript = run(roster, features, b, c)

    reference = train_plaintext([f.design for f in features], b.design[:, :-1], b.labels, config, model_rounding=True)
    for party, expected in zip(features, reference.weights_parts):
        assert np.allclose(party.weights, expected, atol=1e-6, rtol=0)
    assert np.allclose(b.train_losses, reference.train_losses, atol=1e-6, rtol=0)
    assert not any(isinstance(e.message, LossShare) for e in transcript)
    # Each feature party's loss part is its penalty alone, on the batches where the loss is due.
    parts = [e.message.enc_loss_part for e in transcript if isinstance(e.message, EncryptedForward)]
    assert all(p is not None for p in parts)


def test_the_arbiter_sees_each_batch_s_scores_shuffled_and_answers_only_encrypted(train, breast, keypair):
    X_a, X_b, y = breast

    result = train(X_a, X_b, y, loss="exact", epochs=2, batch_size=100, tol=0)

    requests = [e for e in result.transcript if isinstance(e.message, ShuffledScores)]
    answers = [e for e in result.transcript if isinstance(e.message, ShuffledSigmoids)]
    assert len(requests) == len(answers) == 2 * result.b.schedule.batches_per_epoch
    assert {e.sender for e in requests} == {"B"} and {e.recipient for e in requests} == {"C"}
    assert {e.recipient for e in answers} == {"B"}
    first = requests[0].message
    rows = result.b.schedule.batch(0, 0)
    # Packed: a 1024-bit key holds 14 scores of 72 bits, so 100 scores take 8 ciphertexts, not 100.
    assert first.rows == len(rows) == 100 and first.enc_scores.count == 8
    seen = seen_by_the_arbiter(first, keypair)
    assert np.allclose(seen, np.zeros(len(rows)))  # epoch 0 batch 0 starts from zero weights: every score is 0
    later = requests[3].message  # a batch after some steps: distinct scores
    assert len(np.unique(np.round(seen_by_the_arbiter(later, keypair), 6))) > 50
    # The answers carry ciphertexts only: one σ per score, one Σ softplus when the loss is due.
    assert answers[0].message.enc_sigmoid.count == len(rows) and answers[0].message.enc_softplus_sum.count == 1


def test_the_shuffled_order_is_secret_to_b_and_not_the_row_order(breast, keypair):
    X_a, X_b, y = breast
    a, b, c, _ = build_roles(X_a, X_b, y, keypair, loss="exact", epochs=2, batch_size=100, tol=0)
    roles = {"A": a, "B": b, "C": c}
    queue = a.start() + b.start()
    while not (isinstance(queue[0].message, ShuffledScores) and queue[0].message.epoch == 1):
        envelope = queue.pop(0)
        queue.extend(roles[envelope.recipient].handle(envelope.message, envelope.sender))
    request, kept = queue[0].message, b._at_arbiter

    seen = seen_by_the_arbiter(request, keypair)
    in_row_order = decrypt(keypair[1], kept.enc_scores)

    assert np.allclose(seen, in_row_order[kept.order])
    assert not np.array_equal(kept.order, np.arange(len(kept.order)))
    assert not np.allclose(seen, in_row_order)


def test_the_arbiter_refuses_scores_for_a_taylor_job(train, breast, keypair):
    X_a, X_b, y = breast
    exact = train(X_a, X_b, y, loss="exact", epochs=1, batch_size=200)
    request = next(e.message for e in exact.transcript if isinstance(e.message, ShuffledScores))
    _, _, c, _ = build_roles(X_a, X_b, y, keypair, epochs=1, batch_size=200)

    with pytest.raises(ScheduleViolation, match="Taylor loss.*training.loss = 'exact'"):
        c.handle(request, "B")

    assert any("Taylor" in line for line in c.audit)


def test_the_arbiter_decrypts_scores_once_per_batch_from_b_only_and_of_the_batch_s_length(breast, keypair):
    X_a, X_b, y = breast
    a, b, c, _ = build_roles(X_a, X_b, y, keypair, loss="exact", epochs=1, batch_size=200)
    transcript = []
    InMemoryChannel({"A": a, "B": b, "C": c}, transcript=transcript).run(a.start() + b.start())
    request = next(e.message for e in transcript if isinstance(e.message, ShuffledScores))
    _, _, fresh, _ = build_roles(X_a, X_b, y, keypair, loss="exact", epochs=1, batch_size=200)
    fresh.handle(request, "B")
    packed = request.enc_scores.count  # 15 ciphertexts of 14 scores for 200 rows at 1024 bits
    short = request.model_copy(update={"enc_scores": request.enc_scores.model_copy(
        update={"count": packed - 1, "data": request.enc_scores.data[: (packed - 1) * keypair[0].ciphertext_bytes]})})
    fewer_rows = request.model_copy(update={"rows": 199})
    skipping = request.model_copy(update={"batch": 2})
    wrong_loss = request.model_copy(update={"batch": 1, "with_loss": not request.with_loss})

    with pytest.raises(ReplayError):
        fresh.handle(request, "B")
    with pytest.raises(PeerNotAllowed):
        fresh.handle(request, "A")
    with pytest.raises(ScheduleViolation, match="skips ahead"):
        fresh.handle(skipping, "B")
    with pytest.raises(ScheduleViolation, match="loss is"):
        fresh.handle(wrong_loss, "B")
    _, _, other, _ = build_roles(X_a, X_b, y, keypair, loss="exact", epochs=1, batch_size=200)
    with pytest.raises(Exception, match="15|length|count"):
        other.handle(short, "B")
    with pytest.raises(ScheduleViolation, match="199 scores"):
        other.handle(fewer_rows, "B")
    assert packed == 15 and fresh.decryptions == 15


def test_restoring_every_role_reproduces_the_exact_run(breast, keypair):
    X_a, X_b, y = breast
    settings = dict(loss="exact", epochs=4, tol=0, batch_size=150, validation_fraction=0.2)
    a, b, c, _ = build_roles(X_a, X_b, y, keypair, **settings)
    run_to_end({"A": a, "B": b, "C": c}, a.start() + b.start())
    a2, b2, c2, _ = build_roles(X_a, X_b, y, keypair, **settings)
    run_until_epoch({"A": a2, "B": b2, "C": c2}, a2.start() + b2.start(), epoch=1)
    saved = {name: json.loads(json.dumps(role.snapshot)) for name, role in (("A", a2), ("B", b2), ("C", c2))}
    a3, b3, c3, _ = build_roles(X_a, X_b, y, keypair, **settings)
    for role, name in ((a3, "A"), (b3, "B"), (c3, "C")):
        role.load_state_dict(saved[name])

    run_to_end({"A": a3, "B": b3, "C": c3}, b3.resume() + c3.resume() + a3.resume())

    # B shuffles every request anew; C's ledger compares each batch's scores as a multiset, so it accepts them.
    assert np.allclose(a3.weights, a.weights, atol=1e-12) and np.allclose(b3.weights, b.weights, atol=1e-12)
    assert b3.train_losses == pytest.approx(b.train_losses, abs=1e-12)


def test_linear_models_refuse_the_exact_loss():
    with pytest.raises(ValueError, match="logistic models"):
        TrainingConfig(model="linear", loss="exact")


def test_fate_ionosphere_with_the_exact_loss_matches_scikit_learn(keypair):
    """Issue 30's check: |ΔAUC| ≤ 0.01 against scikit-learn's pooled LogisticRegression on the same rows."""
    host, guest = fate_pair("ionosphere_scale")
    prep = PrepConfig(impute="mean")
    table_a = load_csv(host, id_column="sid", prep=prep)
    table_b = load_csv(guest, id_column="sid", label_column="label", model="logistic", prep=prep)
    config = TrainingConfig(model="logistic", key_bits=TEST_KEY_BITS, loss="exact", epochs=40)

    result = simulate(table_a, table_b, config, keypair=keypair, workers=1)

    assert abs(result["metrics"]["train"]["auc"] - pooled_ionosphere_auc()) <= 0.01
    assert result["config"]["loss"] == "exact"
    assert not any("training.loss" in w for w in result.get("warnings", []))
