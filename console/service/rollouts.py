"""RolloutService: agent rollouts over SSH, run by the hub; the only writer of rollouts.

    start(request)        pick the nodes (ids, a label selector, or every node with `ssh` and no agent
                          online), check them (unknown or without `ssh`: 422 naming each; none: 422;
                          in another rollout: 409), store the rollout (pending, a row per host with its
                          steps) and run it as a task on the hub's loop
    get / list_rollouts   the rollout as it is now (progress included)
    cancel(id)            cancel the task: every host finishes or undoes its current step, then stops
    subscribe             listeners hear of every change (progress included)
    fingerprint / trust   a node's SSH host key: its fingerprint and verdict; add it to known_hosts

A run: the agent bundle (a request's `bundle` archive, the hub's `rollout_bundle`, or one built
once under `DATA_DIR/bundles` from `rollout_wheelhouse` or PyPI; a failure becomes the rollout's
`error`), then `bootstrap.Rollout` over the nodes with the hub's advertised gRPC address, a fresh
credential per node (`CredentialService.issue`, asked for by the bootstrap only when it writes the
node's config), host keys checked against `DATA_DIR/known_hosts`, verify = the node's agent is
connected and reports the new version in `hardware.agent.version`, and on uninstall the
credential revoked and `hardware.agent` dropped. A host's changes are kept in memory and told to
listeners at once; the record is written when a step or a result changes (not on every message)
and when the rollout ends. A hub that stops during a rollout cancels it (hosts end on the old or
the new version); one found unfinished at start is marked failed.

Listeners are called on the hub's loop (progress) or on the thread that started a rollout (the
first record), so they must be quick and must not call back into the service.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
import secrets
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from pydantic import Field

from console.errors import Conflict, FieldError, InvalidInput, Unavailable
from console.models import (
    GameNode,
    Id,
    Model,
    RolloutAction,
    RolloutHost,
    RolloutRecord,
    RolloutState,
    RolloutStep,
    SshAccess,
    StepState,
    utcnow,
)
from console.service.credentials import CredentialService
from console.service.nodes import NodeService
from console.service.query import Page, paginate
from console.service.rollout_runner import RolloutPlan, Runner, bootstrap_runner
from console.service.selector import Selector
from console.store import RolloutStore
from console.validation import validate

__all__ = [
    "STEPS",
    "BundleSource",
    "HostKeyInfo",
    "HostKeySource",
    "RolloutHub",
    "RolloutQuery",
    "RolloutRequest",
    "RolloutService",
    "default_bundle",
    "host_from_report",
]

log = logging.getLogger(__name__)

STEPS: dict[RolloutAction, tuple[str, ...]] = {
    RolloutAction.INSTALL: ("connect", "preflight", "upload", "install", "configure", "switch", "start", "verify",
                            "rollback"),
    RolloutAction.UNINSTALL: ("connect", "stop", "remove", "revoke"),
}
"""The steps each host shows from the start (`bootstrap.rollout.INSTALL_STEPS`, `UNINSTALL_STEPS`)."""
VERIFY_POLL = 0.5
"""Seconds between checks of a node while verifying, besides the checks every node change wakes."""
CLOSE_TIMEOUT = 60.0
"""Seconds a stopping hub waits for cancelled rollouts to finish their hosts' current steps."""
ACTOR = "rollout"

Listener = Callable[[RolloutRecord], None]


class RolloutRequest(Model):
    """What a caller gives to start a rollout: exactly one of `nodes`, `selector`, `all_without_agent`."""

    nodes: list[Id] = Field(default_factory=list)
    selector: str | None = None
    """Label selector, e.g. `region=eu`."""
    all_without_agent: bool = False
    """Every node that has `ssh` and no agent connected now."""
    action: RolloutAction = RolloutAction.INSTALL
    parallel: int = Field(default=10, ge=1, le=256)
    """Hosts worked on at once."""
    canary: int = Field(default=0, ge=0)
    """The first K hosts go first; when one fails, the rest are not touched."""
    trust_new_host_keys: bool = False
    """Trust (and record) the key of a host that has none in known_hosts; a changed key is refused anyway."""
    timeout: float = Field(default=120.0, gt=0, le=3600)
    """Seconds a host's new agent has to come online on the new version before it is rolled back."""
    bundle: str | None = None
    """A prebuilt agent bundle archive on the hub's host (else the hub's bundle)."""
    wheelhouse: str | None = None
    """Build the bundle from the wheels in this directory on the hub's host (offline)."""


class RolloutQuery(Model):
    state: RolloutState | None = None
    node_id: str | None = None
    """Rollouts that include this node."""
    limit: int | None = Field(default=None, ge=0)
    offset: int = Field(default=0, ge=0)


@dataclass(frozen=True)
class HostKeyInfo:
    """A node's SSH host key as the hub sees it now."""

    node_id: str
    host: str
    port: int
    fingerprint: str
    verdict: str
    """known, unknown or changed (against the hub's known_hosts)."""


class HostKeySource(Protocol):
    """Fetches the host key a node's sshd presents (an `asyncssh.SSHKey`)."""

    def __call__(self, node: GameNode, known_hosts: Path, timeout: float) -> Awaitable[Any]: ...


BundleSource = Callable[[Path, str | None, str | None], Any]
"""(cache dir, archive, wheelhouse) → a `bootstrap.bundle.Bundle`; runs in a worker thread."""


def default_bundle(cache: Path, archive: str | None, wheelhouse: str | None) -> Any:
    """`archive` loaded, else a bundle built under `cache` (from `wheelhouse` when given, else PyPI)."""
    from bootstrap import build_bundle, load_bundle

    if archive:
        return load_bundle(Path(archive))
    return build_bundle(cache, wheelhouse=Path(wheelhouse) if wheelhouse else None)


@dataclass
class RolloutHub:
    """What the service needs from the running hub (`HubRuntime` attaches it)."""

    loop: asyncio.AbstractEventLoop
    hub_address: str
    """The gRPC address agents are told to dial."""
    is_online: Callable[[str], bool]
    """Whether the node's agent is connected now (called on the loop)."""
    wheelhouse: Path | None = None
    bundle: Path | None = None
    ca_pem: bytes | None = None
    """The hub CA's certificate (PEM) the bootstrap installs for the agent to pin; None: an --insecure hub."""


@dataclass
class _Active:
    """A rollout in progress: its newest record and its task."""

    record: RolloutRecord
    task: asyncio.Task[None] | None = None
    started: bool = False
    """Its task has begun to run (a task cancelled before that would never run its cleanup)."""
    cancel_requested: bool = False
    bundle: str | None = None
    wheelhouse: str | None = None
    nodes: builtins.list[GameNode] = field(default_factory=list)


class RolloutService:
    def __init__(
        self,
        rollouts: RolloutStore,
        nodes: NodeService,
        credentials: CredentialService,
        data_dir: Path,
        runner: Runner = bootstrap_runner,
        host_keys: HostKeySource | None = None,
        bundle_source: BundleSource | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.rollouts = rollouts
        self.nodes = nodes
        self.credentials = credentials
        self.data_dir = Path(data_dir)
        self.runner = runner
        """Runs one rollout's hosts (`bootstrap.Rollout`); tests give a fake."""
        self.host_keys = host_keys or _fetch_host_key
        """Reads the host key a node presents (`bootstrap.ssh.scan_host_key`); tests give a fake."""
        self.bundle_source = bundle_source or default_bundle
        """Loads or builds the agent bundle (in a worker thread); tests give a fake."""
        self.clock = clock
        self.hub: RolloutHub | None = None
        """Set by the hub; without one, starting a rollout is `Unavailable`."""
        self.known_hosts = self.data_dir / "known_hosts"
        self._lock = threading.RLock()
        self._active: dict[str, _Active] = {}
        self._busy: dict[str, str] = {}
        """Node id → the rollout working on it."""
        self._listeners: dict[str | None, tuple[Listener, ...]] = {}
        self._bundles: dict[tuple[str | None, str | None], Any] = {}
        self._bundle_lock: asyncio.Lock | None = None
        self._writer = _writer()
        """Writes rollout records in order, off the loop."""

    # --- the hub --------------------------------------------------------------

    def attach(self, hub: RolloutHub) -> int:
        """Serve rollouts in `hub`; rollouts an earlier hub left unfinished are marked failed (their count)."""
        self.hub = hub
        self._bundle_lock = asyncio.Lock()
        self._writer = _writer()
        stale = self.rollouts.unfinished()
        for record in stale:
            self.rollouts.put(_finish(record, RolloutState.FAILED, self.clock(),
                                      "the hub stopped during this rollout"))
        return len(stale)

    async def close(self, timeout: float = CLOSE_TIMEOUT) -> None:
        """Cancel every rollout in progress and wait (up to `timeout`) until their hosts stopped."""
        await asyncio.sleep(0)  # rollouts started from other threads get their task
        for rollout_id in list(self._active):
            self._cancel_on_loop(rollout_id)
        tasks = [a.task for a in self._active.values() if a.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)
        self.hub = None
        await asyncio.to_thread(self._writer.shutdown, wait=True)

    # --- queries --------------------------------------------------------------

    def get(self, rollout_id: str) -> RolloutRecord:
        with self._lock:
            active = self._active.get(rollout_id)
            return active.record if active is not None else self.rollouts.get(rollout_id)

    def list_rollouts(self, query: RolloutQuery | None = None) -> Page[RolloutRecord]:
        """Newest first."""
        query = query or RolloutQuery()
        with self._lock:
            records = {r.id: r for r in self.rollouts.list()}
            records.update({id: a.record for id, a in self._active.items()})

        def wanted(r: RolloutRecord) -> bool:
            return (query.state is None or r.state == query.state) and (
                query.node_id is None or r.host(query.node_id) is not None
            )

        found = sorted((r for r in records.values() if wanted(r)), key=lambda r: (r.created_at, r.id), reverse=True)
        return paginate(found, query.limit, query.offset)

    def subscribe(self, listener: Listener, rollout_id: str | None = None, current: bool = False) -> Callable[[], None]:
        """Call `listener(record)` after every change of rollout `rollout_id` (None: of every one).

        `current`: first call it with the rollout as it is now (NotFound for an unknown one).
        """
        with self._lock:
            if current and rollout_id is not None:
                listener(self.get(rollout_id))
            self._listeners[rollout_id] = (*self._listeners.get(rollout_id, ()), listener)

        def unsubscribe() -> None:
            with self._lock:
                left = tuple(fn for fn in self._listeners.get(rollout_id, ()) if fn is not listener)
                if left:
                    self._listeners[rollout_id] = left
                else:
                    self._listeners.pop(rollout_id, None)

        return unsubscribe

    # --- changes --------------------------------------------------------------

    def start(self, request: RolloutRequest, actor: str = "api") -> RolloutRecord:
        """Check the request, store the rollout (pending) and run it on the hub's loop."""
        hub = self._hub()
        nodes = self._select(request)
        with self._lock:
            busy = [FieldError(n.id, f"in rollout {self._busy[n.id]}") for n in nodes if n.id in self._busy]
            if busy:
                raise Conflict("nodes already in a rollout: " + ", ".join(e.path for e in busy), busy)
            record = self._new_record(request, nodes, actor)
            self.rollouts.add(record)
            self._active[record.id] = _Active(record, bundle=request.bundle, wheelhouse=request.wheelhouse,
                                              nodes=nodes)
            self._busy.update(dict.fromkeys((n.id for n in nodes), record.id))
            self._notify(record)
        hub.loop.call_soon_threadsafe(self._launch, record.id)
        log.info("rollout %s (%s) of %d node(s) started by %s", record.id, record.action.value, len(nodes), actor)
        return record

    def cancel(self, rollout_id: str) -> RolloutRecord:
        """Stop a rollout: hosts finish or undo their current step; 409 when it has finished."""
        with self._lock:
            active = self._active.get(rollout_id)
            if active is None:
                record = self.rollouts.get(rollout_id)
                raise Conflict(f"rollout {rollout_id!r} has finished ({record.state.value})")
        self._hub().loop.call_soon_threadsafe(self._cancel_on_loop, rollout_id)
        return active.record

    # --- host keys ------------------------------------------------------------

    async def fingerprint(self, node_id: str, timeout: float = 10.0) -> HostKeyInfo:
        """The host key the node's sshd presents now, its fingerprint and verdict against known_hosts."""
        node, key = await self._host_key(node_id, timeout)
        return self._key_info(node, key)

    async def trust(
        self, node_id: str, expected: str | None = None, replace: bool = False, timeout: float = 10.0
    ) -> HostKeyInfo:
        """Add the key the node presents to known_hosts; its fingerprint.

        `expected`: the fingerprint the operator was shown; a different key is refused (409). A key
        that replaces another one for the host needs `replace`.
        """
        from bootstrap import KnownHosts

        node, key = await self._host_key(node_id, timeout)
        info = self._key_info(node, key)
        if expected is not None and expected != info.fingerprint:
            raise Conflict(f"node {node_id!r} now presents host key {info.fingerprint}, not {expected}; refused")
        if info.verdict == "changed" and not replace:
            raise Conflict(f"node {node_id!r} presents a CHANGED host key {info.fingerprint}; trust it with "
                           "replace (`gamenode ssh trust --replace`) only once you know why it changed")
        ssh = _ssh(node)
        await asyncio.to_thread(KnownHosts(self.known_hosts).trust, ssh.host, ssh.port, key, replace=replace)
        log.info("trusted host key %s of node %s (%s:%d)", info.fingerprint, node_id, ssh.host, ssh.port)
        return HostKeyInfo(node.id, ssh.host, ssh.port, info.fingerprint, "known")

    # --- selection ------------------------------------------------------------

    def _select(self, request: RolloutRequest) -> builtins.list[GameNode]:
        given = sum((bool(request.nodes), request.selector is not None, request.all_without_agent))
        if given != 1:
            raise InvalidInput("give exactly one of nodes, selector or all_without_agent")
        if request.nodes:
            nodes = self._named(list(dict.fromkeys(request.nodes)))
        elif request.selector is not None:
            selector = Selector.parse(request.selector)
            nodes = self.nodes.nodes.filter(lambda n: selector.matches(n.labels))
        else:
            online = self.hub.is_online if self.hub is not None else (lambda _: False)
            nodes = self.nodes.nodes.filter(lambda n: n.ssh is not None and not online(n.id) and not n.online)
        missing = [FieldError(n.id, "has no ssh access (set `ssh` on the node)") for n in nodes if n.ssh is None]
        if missing:
            raise InvalidInput("nodes without ssh access", missing)
        if not nodes:
            raise InvalidInput("no node selected")
        return nodes

    def _named(self, ids: builtins.list[str]) -> builtins.list[GameNode]:
        unknown = [FieldError(id, "node not found") for id in ids if id not in self.nodes.nodes]
        if unknown:
            raise InvalidInput("unknown nodes", unknown)
        return [self.nodes.nodes.get(id) for id in ids]

    def _new_record(self, request: RolloutRequest, nodes: builtins.list[GameNode], actor: str) -> RolloutRecord:
        now = self.clock()
        steps = [RolloutStep(name=name) for name in STEPS[request.action]]
        hosts = [RolloutHost(node_id=n.id, host=_address(n), steps=steps) for n in nodes]
        return RolloutRecord(
            id=f"ro-{secrets.token_hex(6)}", action=request.action, parallel=request.parallel,
            canary=request.canary, trust_new_host_keys=request.trust_new_host_keys, timeout=request.timeout,
            hosts=hosts, created_by=actor[:256], created_at=now, updated_at=now,
        )

    # --- running (on the hub's loop) -------------------------------------------

    def _launch(self, rollout_id: str) -> None:
        active = self._active[rollout_id]
        active.task = asyncio.get_running_loop().create_task(self._run(rollout_id), name=f"rollout {rollout_id}")

    def _cancel_on_loop(self, rollout_id: str) -> None:
        """Cancel the rollout's task once it runs (its `_run` checks the flag first thing)."""
        active = self._active.get(rollout_id)
        if active is None:
            return
        active.cancel_requested = True
        if active.started and active.task is not None:
            active.task.cancel()

    async def _run(self, rollout_id: str) -> None:
        active = self._active[rollout_id]
        active.started = True
        state, error = RolloutState.FAILED, ""
        try:
            if active.cancel_requested:
                raise asyncio.CancelledError
            self._change(rollout_id, lambda r: r.model_copy(update={"state": RolloutState.RUNNING,
                                                                    "started_at": self.clock()}), persist=True)
            bundle = await self._bundle(active) if active.record.action == RolloutAction.INSTALL else None
            if bundle is not None:
                self._change(rollout_id, lambda r: r.model_copy(update={"version": bundle.version}), persist=True)
            reports = await self.runner(self._plan(active, bundle))
            for report in reports:
                self._host_changed(rollout_id, report)
            failed = any(h.failed or not h.result for h in self._active[rollout_id].record.hosts)
            state = RolloutState.FAILED if failed else RolloutState.SUCCEEDED
        except asyncio.CancelledError:
            state = RolloutState.CANCELLED
            raise
        except Exception as exc:  # the rollout as a whole could not run: its error, never the hub's
            log.warning("rollout %s failed: %s", rollout_id, exc, exc_info=not isinstance(exc, Unavailable))
            error = getattr(exc, "message", None) or str(exc) or type(exc).__name__
        finally:
            await self._finish(rollout_id, state, error)

    def _plan(self, active: _Active, bundle: Any) -> RolloutPlan:
        hub = self._hub()
        record = active.record
        return RolloutPlan(
            rollout_id=record.id, action=record.action, nodes=active.nodes, hub_address=hub.hub_address,
            parallel=record.parallel, canary=record.canary, timeout=record.timeout,
            trust_new_host_keys=record.trust_new_host_keys, known_hosts=self.known_hosts, bundle=bundle,
            token=self._token, verify=self._verify, revoke=self._revoke,
            on_change=lambda report: self._host_changed(record.id, report), ca_pem=hub.ca_pem,
        )

    async def _bundle(self, active: _Active) -> Any:
        """The agent bundle to install: the request's archive, the hub's, or one built (once) for the hub."""
        hub = self._hub()
        archive = active.bundle or (str(hub.bundle) if hub.bundle else None)
        wheelhouse = active.wheelhouse or (str(hub.wheelhouse) if hub.wheelhouse else None)
        key = (archive, None if archive else wheelhouse)
        assert self._bundle_lock is not None
        async with self._bundle_lock:
            if key not in self._bundles:
                self._bundles[key] = await asyncio.to_thread(self.bundle_source, self.data_dir / "bundles", *key)
            return self._bundles[key]

    async def _token(self, node_id: str) -> str:
        return await asyncio.to_thread(self.credentials.issue, node_id)

    async def _revoke(self, node_id: str) -> None:
        await asyncio.to_thread(self._forget_agent, node_id)

    def _forget_agent(self, node_id: str) -> None:
        """Uninstalled: the credential revoked, `hardware.agent` dropped."""
        self.credentials.revoke(node_id)
        node = self.nodes.nodes.get(node_id)
        if "agent" in node.hardware:
            hardware = {k: v for k, v in node.hardware.items() if k != "agent"}
            self.nodes.update_node(node_id, {"hardware": hardware}, ACTOR)

    async def _verify(self, node_id: str, version: str, timeout: float) -> bool:
        """Wait (up to `timeout`) until the node's agent is connected and reports `version`."""
        loop = asyncio.get_running_loop()
        changed = asyncio.Event()

        def listener(id: str, _: GameNode | None) -> None:  # any thread
            if id == node_id:
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(changed.set)

        unsubscribe = self.nodes.nodes.subscribe(listener)
        deadline = loop.time() + timeout
        try:
            while True:
                changed.clear()
                if self._agent_on(node_id, version):
                    return True
                left = deadline - loop.time()
                if left <= 0:
                    return False
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait(), min(left, VERIFY_POLL))
        finally:
            unsubscribe()

    def _agent_on(self, node_id: str, version: str) -> bool:
        node = self.nodes.nodes.find(node_id)
        if node is None or self.hub is None or not self.hub.is_online(node_id):
            return False
        agent = node.hardware.get("agent")
        return isinstance(agent, dict) and agent.get("version") == version

    # --- progress ---------------------------------------------------------------

    def _host_changed(self, rollout_id: str, report: Any) -> None:
        """A host's report from the bootstrap: kept and told at once, written when a state changed."""
        host = host_from_report(report)
        with self._lock:
            active = self._active.get(rollout_id)
            if active is None:
                return
            old = active.record.host(host.node_id)
        persist = old is None or _states(old) != _states(host)

        def change(record: RolloutRecord) -> RolloutRecord:
            hosts = [host if h.node_id == host.node_id else h for h in record.hosts]
            return record.model_copy(update={"hosts": hosts})

        self._change(rollout_id, change, persist)

    def _change(self, rollout_id: str, fn: Callable[[RolloutRecord], RolloutRecord], persist: bool) -> None:
        with self._lock:
            active = self._active.get(rollout_id)
            if active is None:
                return
            record = active.record = fn(active.record).model_copy(update={"updated_at": self.clock()})
            self._notify(record)
        if persist:
            self._persist(record)

    def _persist(self, record: RolloutRecord) -> None:
        self._writer.submit(self._write, record.id)

    def _write(self, rollout_id: str) -> None:
        """Write the newest state of the rollout (several changes queued: one write)."""
        with self._lock:
            active = self._active.get(rollout_id)
            record = active.record if active is not None else None
        try:
            if record is not None:
                self.rollouts.put(validate(RolloutRecord, record.model_dump(), "rollout"))
        except Exception:  # the next change or the end writes it again
            log.exception("writing rollout %s failed", rollout_id)

    async def _finish(self, rollout_id: str, state: RolloutState, error: str) -> None:
        with self._lock:
            active = self._active.pop(rollout_id)
            record = _finish(active.record, state, self.clock(), error)
            for host in record.hosts:
                if self._busy.get(host.node_id) == rollout_id:
                    del self._busy[host.node_id]
        await asyncio.get_running_loop().run_in_executor(self._writer, self.rollouts.put, record)
        with self._lock:
            self._notify(record)
        log.info("rollout %s %s%s", rollout_id, state.value, f": {error}" if error else "")

    def _notify(self, record: RolloutRecord) -> None:
        for listener in (*self._listeners.get(record.id, ()), *self._listeners.get(None, ())):
            try:
                listener(record)
            except Exception:
                log.exception("rollout listener failed for %s", record.id)

    # --- internals --------------------------------------------------------------

    def _hub(self) -> RolloutHub:
        if self.hub is None:
            raise Unavailable("rollouts need a running hub")
        return self.hub

    async def _host_key(self, node_id: str, timeout: float) -> tuple[GameNode, Any]:
        node = self.nodes.get_node(node_id)
        _ssh(node)
        try:
            return node, await self.host_keys(node, self.known_hosts, timeout)
        except (OSError, TimeoutError) as exc:
            raise Unavailable(f"cannot reach sshd of node {node_id!r} at {_address(node)}: "
                              f"{exc.strerror or exc if isinstance(exc, OSError) else 'timed out'}") from None

    def _key_info(self, node: GameNode, key: Any) -> HostKeyInfo:
        from bootstrap import KnownHosts, fingerprint

        ssh = _ssh(node)
        verdict = KnownHosts(self.known_hosts).check(ssh.host, ssh.port, key)
        return HostKeyInfo(node.id, ssh.host, ssh.port, fingerprint(key), verdict)


# --- helpers --------------------------------------------------------------------


def _writer() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="gamenode-rollouts")


def host_from_report(report: Any) -> RolloutHost:
    """A bootstrap `HostReport` as a rollout's host row."""
    steps = [
        RolloutStep(name=s.name, state=_step_state(s.state), message=str(s.message or "")[:4096],
                    started_at=_when(s.started_at), finished_at=_when(s.finished_at))
        for s in report.steps
    ]
    return RolloutHost(
        node_id=report.node_id, host=str(report.host), from_version=report.from_version,
        to_version=report.to_version, result=str(report.result or ""), error=str(report.error or "")[:4096],
        duration_s=max(0.0, float(report.duration or 0.0)), steps=steps,
    )


def _step_state(value: Any) -> StepState:
    text = str(getattr(value, "value", value))
    return StepState(text) if text in StepState._value2member_map_ else StepState.PENDING


def _when(value: Any) -> datetime | None:
    """A step time: a datetime, or Unix seconds (monotonic clocks are not times: left out)."""
    if isinstance(value, datetime):
        return value
    if isinstance(value, int | float) and value > 1e9:
        return datetime.fromtimestamp(value, UTC)
    return None


def _states(host: RolloutHost) -> tuple[Any, ...]:
    """What makes a change of a host worth writing: its result, versions and each step's state."""
    return (host.result, host.error, host.from_version, host.to_version, tuple((s.name, s.state) for s in host.steps))


def _finish(record: RolloutRecord, state: RolloutState, now: datetime, error: str) -> RolloutRecord:
    """The final record: hosts that never ended read `cancelled` (or `failed` when the rollout failed)."""
    left = "cancelled" if state == RolloutState.CANCELLED else "failed"
    hosts = [h if h.result else h.model_copy(update={"result": left}) for h in record.hosts]
    if state == RolloutState.SUCCEEDED and any(h.failed for h in hosts):
        state = RolloutState.FAILED
    return record.model_copy(update={"state": state, "error": error[:4096] or record.error, "hosts": hosts,
                                     "finished_at": now, "updated_at": now})


def _ssh(node: GameNode) -> SshAccess:
    if node.ssh is None:
        raise InvalidInput(f"ssh: node {node.id!r} has no ssh access (set `ssh` on the node)")
    return node.ssh


def _address(node: GameNode) -> str:
    ssh = _ssh(node)
    return f"{ssh.host}:{ssh.port}"


async def _fetch_host_key(node: GameNode, known_hosts: Path, timeout: float) -> Any:
    """The key the node's sshd presents (no login; a jump host must be known)."""
    from bootstrap import KnownHosts, scan_host_key

    return await scan_host_key(_ssh(node), KnownHosts(known_hosts), timeout=timeout)
