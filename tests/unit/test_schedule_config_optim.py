import numpy as np
import pytest

from vfl.ml.config import TrainingConfig
from vfl.errors import ConfigError
from vfl.ml.kinds import LINEAR
from vfl.ml.optim import Adam, LocalNewton, make_optimizer
from vfl.ml.convergence import ConvergenceMonitor
from vfl.ml.schedule import Schedule


def test_batches_partition_the_training_rows_and_reshuffle_each_epoch():
    schedule = Schedule(103, TrainingConfig(batch_size=20, validation_fraction=0.1, seed=5))

    epoch0, epoch1 = schedule.batches(0), np.concatenate(schedule.batches(1))

    assert sorted(np.concatenate(epoch0)) == sorted(schedule.train_rows)
    assert set(schedule.train_rows).isdisjoint(schedule.validation_rows)
    assert len(schedule.validation_rows) == 10
    assert [len(b) for b in epoch0] == [20, 20, 20, 20, 13]
    assert not np.array_equal(np.concatenate(epoch0), epoch1)


@pytest.mark.parametrize("n_train, size, lengths", [(398, 64, [64] * 5 + [78]), (110, 30, [30, 30, 30, 20]),
                                                    (100, 30, [30, 30, 40]), (20, 50, [20])])
def test_a_remainder_shorter_than_half_a_batch_joins_the_last_batch(n_train, size, lengths):
    schedule = Schedule(n_train, TrainingConfig(batch_size=size))

    batches = schedule.batches(0)

    assert [len(b) for b in batches] == lengths
    assert [schedule.batch_length(b) for b in range(schedule.batches_per_epoch)] == lengths
    assert sorted(np.concatenate(batches)) == list(range(n_train)) and schedule.largest_batch == max(lengths)


def test_gradient_lengths_that_could_hold_a_batch_or_the_validation_rows_are_refused():
    from vfl.ml.schedule import check_gradient_lengths, gradient_lengths

    config = TrainingConfig(batch_size=30, validation_fraction=0.1)
    schedule = Schedule(110, config)  # 99 training rows in batches of 30, 30, 39; 11 validation rows

    check_gradient_lengths(gradient_lengths(10, 9, config), schedule)  # 10 and 9 + intercept: fine
    with pytest.raises(ConfigError, match="validation split has only 11 rows"):
        check_gradient_lengths(gradient_lengths(11, 2, config), schedule)
    with pytest.raises(ConfigError, match="smallest batch has only 20 rows"):  # 30, 30, 30 and 20 rows
        check_gradient_lengths({"A": 3, "B": 20}, Schedule(110, TrainingConfig(batch_size=30)))


def test_every_role_derives_the_same_schedule():
    config = TrainingConfig(batch_size=7, validation_fraction=0.25, seed=11)

    one, two = Schedule(50, config), Schedule(50, config)

    assert all(np.array_equal(x, y) for x, y in zip(one.batches(3), two.batches(3)))
    assert np.array_equal(one.validation_rows, two.validation_rows)


def test_loss_is_due_every_k_batches_and_always_on_the_last():
    schedule = Schedule(100, TrainingConfig(batch_size=10, loss_every=4))

    due = [b for b in range(schedule.batches_per_epoch) if schedule.loss_due(b)]

    assert due == [3, 7, 9]
    assert schedule.due_loss_rows() == 30


def test_too_few_rows_or_no_training_rows_are_config_errors():
    with pytest.raises(ConfigError, match="at least 2"):
        Schedule(1, TrainingConfig())
    with pytest.raises(ConfigError, match="no training rows"):
        Schedule(2, TrainingConfig(validation_fraction=0.9))


def test_config_errors_name_the_field():
    with pytest.raises(ConfigError, match="epochs"):
        TrainingConfig.parse({"epochs": 0})
    with pytest.raises(ConfigError, match="nonsense"):
        TrainingConfig.parse({"nonsense": 1})
    with pytest.raises(ConfigError, match="momentum"):
        TrainingConfig.parse({"optimizer": "adam", "momentum": 0.5})


def test_local_newton_solves_a_single_party_quadratic_in_one_step(rng):
    X = rng.normal(size=(200, 4)) @ np.diag([1, 10, 0.1, 3])  # badly scaled columns
    y = X @ np.array([1.0, -2.0, 3.0, 0.5])
    config = TrainingConfig(model="linear", learning_rate=1.0, momentum=0.0)
    optimizer = make_optimizer(config, np.ones(4), X, LINEAR.c)

    theta = optimizer.step(np.zeros(4), X.T @ (X @ np.zeros(4) - y) / 200, epoch=0)

    assert isinstance(optimizer, LocalNewton)
    assert np.allclose(theta, [1.0, -2.0, 3.0, 0.5], atol=1e-6)


def test_optimizer_state_round_trips():
    config = TrainingConfig(optimizer="adam")
    first = make_optimizer(config, np.ones(3), np.eye(3), 1.0)
    first.step(np.zeros(3), np.array([1.0, -1.0, 0.5]), 0)
    second = make_optimizer(config, np.ones(3), np.eye(3), 1.0)

    second.load_state_dict(first.state_dict())

    assert isinstance(second, Adam)
    grad = np.array([0.2, 0.1, -0.3])
    assert np.array_equal(first.step(np.ones(3), grad, 1), second.step(np.ones(3), grad, 1))


def test_monitor_stops_on_tolerance_and_on_patience():
    tol = ConvergenceMonitor(TrainingConfig(tol=1e-3, epochs=50), has_validation=False)
    assert not tol.end_epoch(0, 1.0, None).stop
    assert tol.end_epoch(1, 0.9995, None).reason == "converged"

    patience = ConvergenceMonitor(TrainingConfig(tol=0, epochs=50, early_stopping_rounds=2), has_validation=True)
    outcomes = [patience.end_epoch(e, 1.0 - e, v) for e, v in enumerate([0.5, 0.4, 0.45, 0.41])]
    assert [o.stop for o in outcomes] == [False, False, False, True]
    assert outcomes[-1].reason == "early_stopping" and outcomes[-1].best_epoch == 1


def test_a_private_job_defaults_to_adam_for_30_epochs_but_keeps_what_it_sets():
    private = TrainingConfig.parse({"privacy": {"epsilon": 2.0}})
    chosen = TrainingConfig.parse({"privacy": {"epsilon": 2.0}, "epochs": 7, "optimizer": "sgd"})
    plain = TrainingConfig.parse({})

    assert (private.optimizer, private.epochs, private.step_size) == ("adam", 30, 0.02)
    assert (chosen.optimizer, chosen.epochs, chosen.step_size) == ("sgd", 7, 0.15)
    assert (plain.optimizer, plain.epochs) == ("newton", 100)
    # The defaults are written into the config, so every party and the digest see the same values.
    assert TrainingConfig.parse(private.model_dump()) == private


def test_a_job_that_converged_early_shows_a_full_bar_and_why_it_stopped():
    import io

    from vfl.report.progress import ProgressLine

    stream = io.StringIO()
    line = ProgressLine(stream)

    line.job({"job_id": "j", "state": "training", "stage": "training", "epoch": 3, "max_epochs": 30,
              "loss_history": [0.5, 0.45, 0.44]})
    line.job({"job_id": "j", "state": "succeeded", "stage": "done", "epoch": 12, "max_epochs": 30,
              "stop_reason": "converged", "loss_history": [0.43]})

    first, last = stream.getvalue().splitlines()
    assert "[##......................] epoch 3/30" in first and "loss 0.440000" in first
    assert "succeeded (converged)" in last and "[########################] epoch 12/12" in last
