"""Prometheus scrapes a real `gamenode hub` process with a real agent online.

The hub runs with the fleet's short intervals (`fleet_helpers`); the agent is
`python -m agent` on this machine, so its sample has this host's CPU, memory
and disks. The scrape goes over HTTP with the hub's local admin token
(`DATA_DIR/admin.token`), as a Prometheus job with a bearer token file would.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
from fleet_helpers import Fleet
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.slow

Series = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    fleet = Fleet(tmp_path)
    yield fleet
    fleet.close()


def scrape(fleet: Fleet, token: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    with httpx.Client(base_url=fleet.hub.url, timeout=15.0) as client:  # no default headers: only these
        return client.get("/metrics", headers={**headers, "Accept-Encoding": "gzip"})


def series(text: str) -> Series:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def of_node(found: Series, name: str, node: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {labels: v for (n, labels), v in found.items() if n == name and ("node", node) in labels}


def test_a_scrape_shows_the_online_agent_and_the_hub(fleet: Fleet) -> None:
    fleet.start_hub()
    fleet.start_agents(["prom-a"], location="lab")
    fleet.add_node("prom-offline")  # never connects
    fleet.wait_online(["prom-a"])
    token = (fleet.data_dir / "admin.token").read_text().strip()

    def scraped_with_a_sample() -> Series | None:
        r = scrape(fleet, token)
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
        found = series(r.text)
        return found if of_node(found, "gamenode_node_cpu_percent", "prom-a") else None

    found = fleet.wait("a scrape with prom-a's sample", scraped_with_a_sample)
    labels = (("location", "lab"), ("name", "prom-a"), ("node", "prom-a"))
    assert found[("gamenode_node_online", labels)] == 1
    assert found[("gamenode_node_online", (("name", "prom-offline"), ("node", "prom-offline")))] == 0
    assert 0 <= found[("gamenode_node_cpu_percent", labels)] <= 100
    assert found[("gamenode_node_memory_total_bytes", labels)] == psutil.virtual_memory().total
    root = found.get(("gamenode_node_disk_total_bytes", (*labels[:1], ("mount", "/"), *labels[1:])))
    assert root is None or root == psutil.disk_usage("/").total  # "/" may not be a real disk in a container
    info = of_node(found, "gamenode_node_info", "prom-a")
    assert len(info) == 1 and dict(next(iter(info)))["agent_version"] and dict(next(iter(info)))["status"] == "online"
    assert found[("gamenode_hub_connected_agents", ())] == 1
    assert found[("gamenode_hub_events_total", (("kind", "heartbeat"),))] >= 1
    assert found[("gamenode_hub_events_total", (("kind", "metrics"),))] >= 1
    assert found[("gamenode_hub_nodes", (("status", "online"),))] == 1
    assert ("gamenode_hub_info", (("version", dict(next(iter(info)))["agent_version"]),)) in found

    assert scrape(fleet, None).status_code == 401
    assert scrape(fleet, "not.a-token").status_code == 401
