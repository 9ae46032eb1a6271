"""Node identity end to end: real `gamenode hub` processes and real agents (`python -m agent`).

An agent joins with a join token from the REST API (its key made in its state
dir, only a CSR sent), streams over mTLS on the hub's agent port, restarts
without a token, renews its certificate on the live stream (a hub with very
short node certificates), refuses a hub its `--ca` does not vouch for, re-joins
with a new token after the hub revoked its certificate, and works in
plaintext against an `--insecure` hub. Waits are generous; no duration is
asserted.
"""

from __future__ import annotations

import re
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from fleet_helpers import WAIT, AgentProcess, Fleet

from agent import pki
from agent.identity import IdentityStore
from console.service.ca import HubCA

pytestmark = pytest.mark.slow

RENEWING_CERT_DAYS = "0.0003"
"""About 26 s: the hub's node certificates in the renewal test (renewal is due two thirds in, about 17 s)."""


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    fleet = Fleet(tmp_path)
    try:
        yield fleet
    finally:
        fleet.close()


def identity(agent: AgentProcess) -> IdentityStore:
    return IdentityStore(agent.state_dir)


def serial_on_disk(agent: AgentProcess) -> str:
    found = identity(agent).load()
    assert found is not None, agent.describe()
    return found.serial


def secrets_absent(fleet: Fleet, *secrets: str) -> None:
    for process in [*fleet.hubs, *fleet.agents]:
        for secret in secrets:
            assert secret not in process.output(), f"{secret[:6]}... in the log of {process.name}"


def test_an_agent_joins_streams_over_mtls_and_restarts_without_its_token(fleet: Fleet) -> None:
    hub = fleet.start_hub()
    assert hub.agent_address and hub.agent_address != hub.grpc_address
    token = fleet.add_node("id-a")
    agent = fleet.start_agent("id-a", token)
    fleet.wait_online(["id-a"])

    assert "joined the hub: node certificate serial" in agent.output(), agent.describe()
    assert f"on {hub.agent_address}," in agent.output(), agent.describe()  # the mTLS agent port, from Endpoints
    store = identity(agent)
    assert stat.S_IMODE(store.key_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.dir.stat().st_mode) == 0o700
    assert store.load_ca() == (fleet.data_dir / "ca.pem").read_bytes()
    ca = HubCA.load_or_create(fleet.data_dir)
    cert, node_id = ca.check_node(store.cert_path.read_bytes())  # issued by the hub's CA, for this node
    assert node_id == "id-a"
    serial = pki.serial_hex(cert)
    assert fleet.ping("id-a").status_code == 200

    assert agent.terminate() == 0, agent.describe()
    fleet.wait_offline("id-a")
    again = fleet.start_agent("id-a", None, name="agent-id-a-again", home=agent.state_dir.parent, pin_ca=False)
    fleet.wait_online(["id-a"])
    assert "joining" not in again.output()
    assert "--token" not in again.command and "--ca" not in again.command  # the identity and CA it keeps
    assert serial_on_disk(again) == serial
    assert fleet.ping("id-a").status_code == 200
    secrets_absent(fleet, token, token.partition(".")[2])
    assert "PRIVATE KEY" not in again.output() + agent.output() + hub.output()


def test_the_certificate_is_renewed_while_the_stream_stays_up(fleet: Fleet) -> None:
    fleet.start_hub(GAMENODE_NODE_CERT_DAYS=RENEWING_CERT_DAYS)
    agent = fleet.start_agent("id-r", fleet.add_node("id-r"))
    fleet.wait_online(["id-r"])
    joined = serial_on_disk(agent)

    fleet.wait("the agent to renew its certificate", lambda: "node certificate renewed" in agent.output(),
               timeout=WAIT + 30)
    renewed = serial_on_disk(agent)
    assert renewed != joined
    assert f"node certificate renewed: serial {renewed}" in agent.output()
    assert agent.output().count("connected: session") == 1, agent.describe()  # the stream stayed up
    assert fleet.node("id-r")["online"]
    assert fleet.ping("id-r").status_code == 200

    assert agent.terminate() == 0, agent.describe()  # the next connection uses the new certificate
    again = fleet.start_agent("id-r", None, name="agent-id-r-again", home=agent.state_dir.parent)
    fleet.wait("the restarted agent connected", lambda: "connected: session" in again.output())
    assert "joining" not in again.output()
    assert fleet.ping("id-r").status_code == 200


def test_an_agent_with_the_wrong_ca_fails_with_a_clear_error_and_keeps_its_token(
    fleet: Fleet, tmp_path: Path
) -> None:
    fleet.start_hub()
    token = fleet.add_node("id-w")
    (tmp_path / "other").mkdir()
    other = HubCA.load_or_create(tmp_path / "other")

    burst = fleet.start_agent("id-w", token, once=True, name="agent-wrong-ca", ca=other.ca_path)
    assert burst.wait(WAIT) == 1, burst.describe()
    error = re.search(r"^gamenode agent: error: (.*)$", burst.output(), re.MULTILINE)
    assert error, burst.describe()
    assert error.group(1).startswith(f"cannot verify the TLS certificate of hub {fleet.hub.grpc_address} "
                                     f"with the CA in {other.ca_path}"), error.group(1)
    assert not identity(burst).has_certificate()

    daemon = fleet.start_agent("id-w", token, name="agent-wrong-ca-daemon", ca=other.ca_path)
    fleet.wait("the daemon to report it twice",
               lambda: daemon.output().count("cannot verify the TLS certificate of hub") >= 2)
    assert daemon.running and daemon.terminate() == 0, daemon.describe()

    good = fleet.start_agent("id-w", token, name="agent-right-ca")  # the token never reached the wrong hub
    fleet.wait_online(["id-w"])
    assert "joined the hub" in good.output()


def test_a_revoked_agent_is_refused_until_given_a_new_join_token(fleet: Fleet) -> None:
    fleet.start_hub()
    agent = fleet.start_agent("id-v", fleet.add_node("id-v"))
    fleet.wait_online(["id-v"])
    before = serial_on_disk(agent)

    new_token = fleet.issue_token("id-v")  # revokes the node's certificate and cuts its stream
    fleet.wait_offline("id-v")
    fleet.wait("the agent refused", lambda: "hub refused node id-v's certificate" in agent.output())
    assert agent.running, agent.describe()
    assert not fleet.node("id-v")["online"]

    agent.token_file.write_text(new_token + "\n")  # the agent reads its token file again: no restart
    fleet.wait_online(["id-v"])
    assert serial_on_disk(agent) != before
    assert agent.output().count("joined the hub") == 2, agent.describe()
    secrets_absent(fleet, new_token.partition(".")[2])


def test_an_insecure_hub_enrolls_agents_in_plaintext(fleet: Fleet) -> None:
    hub = fleet.start_hub(args=["--insecure"])
    assert "(plaintext)" in hub.output() and "WARNING" in hub.output()
    agent = fleet.start_agent("id-p", fleet.add_node("id-p"), insecure=True)
    fleet.wait_online(["id-p"])
    assert "joined the hub" in agent.output()
    assert f"on {fleet.hub.grpc_address}," in agent.output(), agent.describe()  # the same port
    assert identity(agent).has_certificate()
    assert fleet.ping("id-p").status_code == 200
