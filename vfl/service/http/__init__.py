"""The only FastAPI code of vfl: one router per resource, and one table of routers per role (:mod:`.app`).

A route parses the request, calls one function of the service (a stage, a
serving function, the ledger copies, the lending roles) with the job's or the
service's context, and serialises the answer. Errors are the ``VFLError`` tree;
each class carries its HTTP status, and one handler answers every one of them
(:mod:`.errors`). Authentication is :mod:`.auth`: the orchestration token (or a
dashboard session) for ``/v1/...``, the client certificate for ``/v1/peer/...``.
"""
