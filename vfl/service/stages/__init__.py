"""The stages of a job, one module each; each receives a :class:`~vfl.service.context.JobContext` (or, to
create a job, a :class:`~vfl.service.context.ServiceContext`), never the Node.

=================  ======================================================================================
``submit``         party B: check a job spec, register the job with every peer, or leave nothing behind
``accept``         a feature party and the arbiter: accept B's registration, start training, close the job
``align``          party B: one PSI with each feature party, intersected (or an earlier job's rows)
``train``          party B: start every party's training role and wait for the last epoch
``evaluate``       party B: metrics, the bank-only baseline, the curves, the model part, the report
``contributions``  party B: coalition trainings and each feature party's Shapley value
``ledger``         party B: the job's entry in the federation's ledger, signed by every party
``resume``         party B coordinates a resume; the others restore on its word
``stop``           cancel a job, or follow a peer that stopped it
``pipeline``       party B's table of steps, and the one place where an error stops a job
=================  ======================================================================================

Stages never import each other (an import-linter contract keeps it so); only the
pipeline imports the stages it runs. What several stages share (building a
job's roles, recording their progress) sits below them, in
:mod:`vfl.service.training_roles` and :mod:`vfl.service.psi_roles`.
"""
