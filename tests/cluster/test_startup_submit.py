"""In-process services started without `vfl serve`'s start-up check: a submit's 422 names the config key (the
checks of `vfl serve` itself are in tests/system/test_startup_checks.py)."""

from __future__ import annotations

from tests.helpers import URLS, misspell, open_cluster
from vfl.demo.services import write_demo_files


def test_at_submit_a_service_names_the_config_key_not_a_cli_flag(tmp_path, run):
    """Services started without the check (in process): the submit's 422 names B's key, or A's key (not A's file)."""

    async def submit(workdir, name, old, new):
        setup = write_demo_files(workdir, urls=URLS, tls=False, population=300, key_bits=1024, training={"epochs": 1})
        misspell(workdir / f"{name}.toml", old, new)
        cluster = await open_cluster(workdir, setup)
        try:
            async with cluster.client() as bank:
                return await bank.post("/v1/jobs", json=setup["job"])
        finally:
            await cluster.stop()

    at_b = run(submit(tmp_path / "b", "party-b", 'label_column = "default"', 'label_column = "defualt"'))
    at_a = run(submit(tmp_path / "a", "party-a", 'id_column = "customer_id"', 'id_column = "customerid"'))

    assert at_b.status_code == 422, at_b.text
    assert f'Fix datasets.credit.label_column = "defualt" in {tmp_path / "b" / "party-b.toml"}' in at_b.json()["detail"]
    assert "--label-column" not in at_b.text
    assert at_a.status_code == 422, at_a.text
    assert "Fix datasets.behaviour.id_column in the config of party 'party-a'" in at_a.json()["detail"]
    assert "--id-column" not in at_a.text and "shop.csv" not in at_a.text  # A's file stays A's
