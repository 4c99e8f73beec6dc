"""Training configuration shared by party A, party B and the arbiter.

One :class:`TrainingConfig` travels with a job. All three roles derive the
same schedule (batches, validation split, when the loss is due) from it, so no
row index ever needs to be sent.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from vfl.errors import ConfigError

ModelKind = Literal["logistic", "linear"]
OptimizerKind = Literal["newton", "adam", "sgd"]

#: Learning rate used when the config leaves it out, per optimiser.
DEFAULT_LEARNING_RATE: dict[str, float] = {"newton": 0.7, "adam": 0.05, "sgd": 0.15}
#: Momentum used when the config leaves it out (Adam has its own).
DEFAULT_MOMENTUM: dict[str, float] = {"newton": 0.3, "adam": 0.0, "sgd": 0.0}


#: A label with 3 to this many classes trains one-vs-rest unless ``max_classes`` says otherwise.
DEFAULT_MAX_CLASSES = 20

PRIVATE_EPOCHS = 30
PRIVATE_ADAM_STEP = 0.02


class PrivacyConfig(BaseModel):
    """Differential privacy for one job: a target ε, or a noise multiplier (exactly one).

    See :mod:`vfl.ml.privacy` for the mechanism and its sensitivity argument.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    epsilon: float | None = Field(None, gt=0, le=1000, description="target ε; the noise is chosen to meet it")
    noise_multiplier: float | None = Field(None, gt=0, le=10_000, description="σ: noise std / sensitivity")
    delta: float = Field(1e-5, gt=0, lt=1)
    row_clip: float = Field(3.0, gt=0, description="L2 bound on each party's standardised feature row")
    weight_bound: float = Field(5.0, gt=0, description="L2 bound on each party's weights (projected after each step)")
    label_clip: float = Field(3.0, gt=0, description="linear regression: bound on |standardised label|")

    @model_validator(mode="after")
    def _one_of(self) -> PrivacyConfig:
        if (self.epsilon is None) == (self.noise_multiplier is None):
            raise ValueError("give exactly one of epsilon or noise_multiplier")
        return self


class ThresholdRule(BaseModel):
    """A decision threshold picked by party B on the validation rows (the training rows without a split)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    pick: Literal["max_f1", "max_ks", "precision"] = Field(
        description="max_f1: the best F1; max_ks: the largest TPR − FPR; precision: the most recall at "
                    "a precision of at least ``target``")
    target: float | None = Field(None, gt=0, lt=1, description="the precision to reach, for pick = precision")

    @model_validator(mode="after")
    def _target(self) -> ThresholdRule:
        if (self.pick == "precision") != (self.target is not None):
            raise ValueError("give target (e.g. 0.9) with pick = precision, and only then")
        return self


class TrainingConfig(BaseModel):
    """Hyperparameters of one federated training job.

    Defaults are chosen to reach the pooled-data optimum on standardised
    features without tuning: full batches, the party-local Newton optimiser
    (see :mod:`vfl.ml.optim`), at most 100 epochs, stopping when the loss moves
    less than ``tol``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    model: ModelKind = "logistic"
    epochs: int = Field(100, ge=1, le=100_000, description="maximum number of epochs")
    batch_size: int | None = Field(None, ge=1, description="rows per mini-batch; None = the whole training set")
    optimizer: OptimizerKind = "newton"
    learning_rate: float | None = Field(
        None, gt=0, le=100, description="step size; None = the optimiser's default (newton 0.7, adam 0.05, sgd 0.15)"
    )
    momentum: float | None = Field(
        None, ge=0, lt=1, description="heavy-ball momentum for newton and sgd; None = 0.3 for newton, 0 for sgd"
    )
    decay: float = Field(0.0, ge=0, description="learning rate at epoch t is lr / (1 + decay·t)")
    decay_sqrt: bool = Field(False, description="use lr / sqrt(1 + decay·t) instead")
    l2: float = Field(0.0, ge=0, description="L2 penalty λ/2·‖θ‖² (the intercept is not penalised)")
    fit_intercept: bool = True
    tol: float = Field(1e-6, ge=0, description="stop when |Δ epoch loss| < tol")
    seed: int = Field(0, ge=0, description="seeds the batch shuffle and the validation split")
    validation_fraction: float = Field(0.0, ge=0, lt=1)
    early_stopping_rounds: int = Field(
        5, ge=0, description="with a validation split: stop after this many epochs without improvement (0 = off)"
    )
    loss_every: int = Field(
        1, ge=1, description="compute the encrypted loss every k batches; the last batch of an epoch always"
    )
    key_bits: int = Field(2048, ge=512, le=8192)
    feature_frac_bits: int = Field(16, ge=8, le=40, description="fixed-point precision of features: 2^-k")
    value_frac_bits: int = Field(32, ge=8, le=64, description="fixed-point precision of u_A and residuals")
    obfuscation: Literal["djn", "strict"] = "djn"
    privacy: PrivacyConfig | None = Field(None, description="differential privacy; off when absent")
    calibration: Literal["platt", "none"] | None = Field(
        None, description="logistic: map scores to probabilities with Platt scaling fitted by party B after "
                          "training (the default), or not at all; linear models take none")
    threshold: float | ThresholdRule = Field(
        0.5, description="logistic: the probability at or above which the label is 1, or a rule that picks it "
                         "on the validation rows ({\"pick\": \"max_f1\"}, {\"pick\": \"max_ks\"}, "
                         "{\"pick\": \"precision\", \"target\": 0.9})")

    loss: Literal["taylor", "exact"] = Field(
        "taylor", description="logistic: 'taylor' trains on the second-order Taylor expansion of the log-loss "
                              "(FATE's protocol: the arbiter decrypts only masked gradients and the loss); 'exact' "
                              "trains on the log-loss itself: party B sends each batch's scores, shuffled, to the "
                              "arbiter, which returns their sigmoids encrypted. Exact matches scikit-learn on nearly "
                              "separable data where Taylor does not; the arbiter then sees each batch's scores without "
                              "their rows (docs/security.md). Linear models take taylor (their loss is exact)")
    max_classes: int = Field(
        DEFAULT_MAX_CLASSES, ge=3, le=100, description="logistic: a label with 3 to this many whole-number classes trains "
                                      "one-vs-rest (one binary model per class); more are refused")

    @model_validator(mode="before")
    @classmethod
    def _private_defaults(cls, data: Any) -> Any:
        # Defaults for a private job that leaves them unset, from a grid over optimiser,
        # step and epochs on FATE's breast and default_credit (ε 1, 3, 10; 3-5 noise draws each):
        # * Adam, not Newton: Newton's preconditioning amplifies the noise along flat directions
        #   of the Hessian (breast, ε = 10: AUC ~0.6 with Newton, 0.97 with Adam).
        # * 30 epochs, not 100: every epoch is one more noisy step to pay for, so at a fixed ε
        #   more epochs mean more noise per step (breast, ε = 1: median AUC 0.90 at 30, 0.84 at 100).
        # * step 0.02: at 0.05 the noisy runs spread far wider on small data.
        if isinstance(data, dict) and data.get("privacy") is not None:
            defaults: dict[str, Any] = {"optimizer": "adam", "epochs": PRIVATE_EPOCHS}
            if data.get("optimizer") in (None, "adam"):
                defaults["learning_rate"] = PRIVATE_ADAM_STEP
            data = {**data, **{key: value for key, value in defaults.items() if data.get(key) is None}}
        return data

    def keeps_best_epoch(self, has_validation: bool) -> bool:
        """Do the parties end with the best validation epoch's weights?

        Only with a validation split and early stopping, and never under differential
        privacy: choosing an epoch by its validation loss would depend on private data.
        """
        return has_validation and self.early_stopping_rounds > 0 and self.privacy is None

    @model_validator(mode="after")
    def _check(self) -> TrainingConfig:
        if self.key_bits % 2:
            raise ValueError("key_bits must be even")
        if self.optimizer == "adam" and self.momentum not in (None, 0.0):
            raise ValueError("adam keeps its own moments; leave momentum unset")
        if isinstance(self.threshold, float) and not 0 < self.threshold < 1:
            raise ValueError(f"threshold {self.threshold} is not a probability strictly between 0 and 1")
        if self.model == "linear" and self.loss == "exact":
            raise ValueError("loss = 'exact' is for logistic models; a linear model's squared loss is already exact: "
                             "leave loss unset")
        if self.model == "linear" and (self.calibration == "platt" or self.threshold != 0.5):
            raise ValueError("calibration and threshold apply to logistic models; leave them unset for linear")
        return self

    @property
    def exact_loss(self) -> bool:
        """Does training use the exact log-loss (the arbiter's shuffled sigmoids) instead of its Taylor form?"""
        return self.model == "logistic" and self.loss == "exact"

    @property
    def calibrates(self) -> bool:
        """Does party B fit Platt scaling after training? By default for logistic regression."""
        return self.model == "logistic" and self.calibration != "none"

    @property
    def step_size(self) -> float:
        """The learning rate in force: the configured one or the optimiser's default."""
        return DEFAULT_LEARNING_RATE[self.optimizer] if self.learning_rate is None else self.learning_rate

    def digest(self) -> str:
        """A short fingerprint of every setting, so the arbiter can check A and B agree with it."""
        import hashlib

        # Settings at their default that a release before them did not have are left out: the digest
        # stays what that release computes.
        exclude = {name for name, default in (("max_classes", DEFAULT_MAX_CLASSES), ("loss", "taylor"))
                   if getattr(self, name) == default} or None
        return hashlib.sha256(self.model_dump_json(exclude=exclude).encode()).hexdigest()[:16]

    @property
    def momentum_in_force(self) -> float:
        return DEFAULT_MOMENTUM[self.optimizer] if self.momentum is None else self.momentum

    @classmethod
    def parse(cls, data: dict) -> TrainingConfig:
        """Validate a dict (a job spec's ``training`` section) into a config, with a readable error."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(f"invalid training config: {_describe(exc)}") from exc


def _describe(exc: ValidationError) -> str:
    """The training section's problems in one line (its keys as a job spec writes them: ``training.epochs``)."""
    from vfl.ml.validation import describe

    return describe(exc, TrainingConfig, prefix="training")
