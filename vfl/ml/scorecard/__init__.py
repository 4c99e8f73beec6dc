"""The scorecard's math: binning, WOE and IV, selection, coefficient constraints, points, reasons, stability.

Plain numpy on one party's own numbers, no crypto and no I/O, so the federated
protocol (:mod:`vfl.protocol.binning`) and the training roles can feed it counts
and weights however they obtained them:

* :mod:`~vfl.ml.scorecard.binning`: fine and coarse classing, WOE and IV;
* :mod:`~vfl.ml.scorecard.selection`: keep characteristics by IV, correlation, VIF;
* :mod:`~vfl.ml.scorecard.constraints`: project weights onto sign and monotone rules;
* :mod:`~vfl.ml.scorecard.points`: PDO scaling and each party's points table;
* :mod:`~vfl.ml.scorecard.reasons`: principal reasons from points shortfalls;
* :mod:`~vfl.ml.scorecard.stability`: score bands, PSI/CSI, KS and Gini;
* :mod:`~vfl.ml.scorecard.config`: what a scorecard job asks for (a job spec's ``scorecard`` section);
* :mod:`~vfl.ml.scorecard.encoding`: WOE coding at B, bin indicators at a feature party, their constraints,
  and trained weights back to each bin's logit contribution;
* :mod:`~vfl.ml.scorecard.card`: what each party keeps after a job (bins, coding, points, stability reference).
"""
