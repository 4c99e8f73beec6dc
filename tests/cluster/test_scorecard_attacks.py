"""A label party that bends federated binning, with its own identity, against a live feature party (issue 28).

Party B runs a changed pipeline: instead of its 0/1 labels it encrypts a weight 2^i for each of the first
40 aligned rows, so that an unmasked sum per bin would be a bitmask of which of those rows the bin holds,
and it reads the raw decryptions. The feature party masks each bin's sum: B gets S_b mod (n_b + 1) and
nothing else, so the bitmasks are gone. A second run in the same job is refused (a new job spends one of
the feature party's ``[scorecard] max_binning_runs``: tests/cluster/test_scorecard_service.py).
"""

from __future__ import annotations

import asyncio

import numpy as np

from tests.helpers import start_cluster, wait_for
from vfl.errors import JobError, VFLError
from vfl.protocol.binning import BinningCounts, BinningLabelRole
from vfl.protocol.wire import MEDIA_TYPE, decode_message, encode_message
from vfl.service.lifecycle import Stage
from vfl.service.stages import align
from vfl.service.stages.pipeline import Step

SCORECARD = {"binning": {"max_bins": 4, "fine_bins": 8, "min_events": 2}}
MARKED = 40  # rows whose bins the weights would reveal


def test_weights_instead_of_labels_yield_only_counts_modulo_the_bin_size_and_a_second_run_is_refused(tmp_path, run):
    seen: dict[str, object] = {}

    async def deviating_binning(ctx) -> None:
        """B's changed binning step: 2^i as "labels", raw decryptions kept, then a second run asked for."""
        record, (pid,) = ctx.record, ctx.roster.features
        aligned = await asyncio.to_thread(ctx.aligned_table)
        label = BinningLabelRole(record.job_id, aligned.labels, SCORECARD["binning"], features={pid: None},
                                 party=ctx.roster.label, key_bits=1024, min_key_bits=1024)
        weights = np.zeros(len(aligned))
        weights[:MARKED] = 2.0 ** np.arange(MARKED)  # exact in float64 (< 2^53)
        label.labels = weights  # the deviation: any vector may be encrypted as "labels"
        request = label.request(pid)
        path = f"/v1/peer/jobs/{record.job_id}/binning"
        response = await ctx.client.request(record.peers[pid], "POST", path, content=encode_message(request),
                                            headers={"Content-Type": MEDIA_TYPE})
        counts = decode_message(response.content, BinningCounts)
        public, private = label.public_key, label._key()[1]
        seen["decrypted"] = {
            c.name: (list(c.totals), [int(private.raw_decrypt(x)) for x in
                                      c.masked_events.to_vector(public, expected_count=len(c.totals), what="counts").ciphertexts])
            for c in counts.characteristics}
        try:
            await ctx.client.request(record.peers[pid], "POST", path, content=encode_message(request),
                                     headers={"Content-Type": MEDIA_TYPE})
        except VFLError as exc:
            seen["second"] = str(exc)
        raise JobError("the deviating party B stops here")

    async def scenario():
        steps = (Step(Stage.PSI, align.run), Step(Stage.BINNING, deviating_binning))
        cluster = await start_cluster(tmp_path, bank_steps=steps, population=400, key_bits=1024,
                                      training={"epochs": 2})
        try:
            async with cluster.client() as bank:
                job = {**cluster.setup["job"], "job_id": "bent", "scorecard": SCORECARD}
                assert (await bank.post("/v1/jobs", json=job)).status_code == 201
                status = await wait_for(bank, "bent")
            shop = cluster.nodes["party-a"].job("bent").job.binning  # the test's god view of A's fine bins
            aligned = cluster.nodes["party-a"].job("bent").aligned_table()
            truth = {name: bins.assign(aligned.features[:, aligned.feature_names.index(name)])
                     for name, bins in shop.fine.items()}
            audit = (cluster.workdir / "data" / "party-a" / "jobs" / "bent" / "audit.log").read_text()
            return status, truth, audit
        finally:
            await cluster.stop()

    status, truth, audit = run(scenario())

    assert status["state"] == "failed" and "deviating party B" in status["error"]
    decrypted = seen["decrypted"]
    assert set(decrypted) == set(truth)
    masks = 0
    for name, (totals, values) in decrypted.items():
        index = truth[name]
        for b, (total, value) in enumerate(zip(totals, values)):
            rows = np.flatnonzero(index[:MARKED] == b)
            bitmask = sum(1 << int(i) for i in rows)  # what an unmasked sum of the weights would be
            assert total == int(np.sum(index == b))
            # All B can use is the residue modulo n_b + 1, which the weights' sum also has...
            assert value % (total + 1) == bitmask % (total + 1)
            # ...and the decryption is not the bitmask: which marked rows the bin holds stays hidden.
            if rows.size:
                assert value != bitmask and value % (1 << MARKED) != bitmask
                masks += 1
    assert masks >= len(decrypted)  # every characteristic had marked rows in some bin
    assert "answered its binning already" in seen["second"]
    assert "answered binning run 1 of" in audit
