"""One party's HTTPS service: a feature party (A), the label party B or the arbiter C. This is its map.

Top to bottom; a module imports only what is below it, and the import-linter
contracts in ``pyproject.toml`` (run by ``make test``) keep it so::

    server.py            `vfl serve`: uvicorn's options, the app
    http/                the only FastAPI code: one router per resource, one table of routers per role (app.py),
                         authentication (auth.py), errors → HTTP (errors.py), the gate (gate.py: credential and body cap before the body is read)
    node.py              the composition root: builds and wires the parts; recovers jobs at start; shuts down
    live_job.py          one job as its stages see it (the Node's JobContext): lifecycle moves, runtime, failure
    stages/              one step of a job each, run by B's pipeline or by B's calls: submit, accept, align,
                         binning (a scorecard's), train, evaluate, contributions, ledger, resume, stop; pipeline.py runs B's table of steps
                         and is the one place where an error stops a job. Stages never import each other.
    serving/             after a job: model versions and names (registry), batch scoring (batch), predictions and
                         partial scores (scoring), a scorecard's points totals, scores and reasons (points) and its
                         stability (stability), what B gathers from its feature parties (partials), and what they
                         all share (common: statuses, cached model parts, B's own rows)
    lending.py           a lender's tag sets and budgets, a querier's fan-out (multi-lender queries)
    watchdog.py          probes the peers of a running job that has gone quiet
    retention.py         checkpoints live only as long as a resume may need them
    training_roles.py    a job's training roles, and what is recorded after each message they handle
    psi_roles.py         a job's PSI roles, with the audit log of what they refuse
    context.py           the ports: JobContext (one job) and ServiceContext (the service around the jobs)
    ledger_copies.py     every party's copies of the job ledger: its key, what it signs or appends
    releases.py          a feature party's budgets per label party and dataset: score directions, scored IDs
    jobs.py              the jobs in memory: one Job object each (record, runtime, driver, events), one JobTable
    scorecards.py        a scorecard job at one party: its section, coded table and stored parts
    datasets.py          a party's datasets by name, opened once
    peers.py             calls to peers over httpx, retried and timed out
    telemetry.py         Prometheus metrics
    runtime.py           one job's roles and messages: receive, de-duplicate, queue, send
    store.py             jobs, models, checkpoints and audit logs on disk, checksummed and atomic
    record.py            what a party knows and reports about one job (job.json), and who is who in it
    lifecycle.py         every stage, the state each shows, which may follow which; the one check of a move
    config.py  spec.py  tls.py  logs.py  redact.py  startup.py
                         the ground: a service's TOML, what orchestration and peers send, certificates,
                         log lines, what peers may read of an error, start-up checks

Who owns what:

* a job's state and stage: :mod:`.lifecycle` (the table) and :meth:`.live_job.LiveJob.advance` (the writer);
* one job in memory: :class:`.jobs.Job`; dropping it is :meth:`.node.Node.forget`;
* what a stage may touch: :class:`.context.JobContext` and :class:`.context.ServiceContext`;
* the order of party B's stages and the one ``except`` that fails a job: :mod:`.stages.pipeline`;
* which routes each role serves: :data:`.http.app.ROUTERS`; the status of each error: its class in
  :mod:`vfl.errors`.
"""
