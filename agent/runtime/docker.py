"""The Docker adapter: game containers, images, networks and ports, and whether Docker is there at all.

The docker SDK is imported and its clients created lazily, on the first call,
and every call blocks: run them in a thread (`asyncio.to_thread`). Two clients:
one with a short timeout for the heartbeat's `count_instances()` (without
Docker the node still reports: it is None and `status` says why,
"unavailable: ..."), one with a longer timeout for the pipeline operations,
whose failures raise `StepFailed` with the daemon's reason.

Containers gamenode starts carry the labels `gamenode.instance`,
`gamenode.run`, `gamenode.node` and `gamenode.managed`; `list_managed`,
`watch_events` and `count_instances` look at those only.

    runtime = DockerRuntime()
    result = runtime.pull("127.0.0.1:5000/game/tiny:1", None, on_progress, cancel)
    info = runtime.run("gn-abc", result.image, {"labels": {...}, "ports": {...}})
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any, NamedTuple, Protocol

from agent.errors import StepFailed
from agent.runtime._convert import (
    INSTANCE_LABEL,
    NODE_LABEL,
    RUN_LABEL,
    ContainerInfo,
    PullTally,
    error_text,
    info_from_event,
    info_from_inspect,
    read_frames,
    split_lines,
)

__all__ = [
    "DEFAULT_SOCKET",
    "EVENT_ACTIONS",
    "INSTANCE_LABEL",
    "MANAGED_LABEL",
    "NODE_LABEL",
    "RUN_LABEL",
    "ContainerInfo",
    "ContainerRuntime",
    "DockerRuntime",
    "PullProgress",
    "PullResult",
    "PullTally",
    "stop_stream",
]

log = logging.getLogger(__name__)

DEFAULT_SOCKET = "/var/run/docker.sock"
MANAGED_LABEL = "gamenode.managed"
EVENT_ACTIONS = frozenset({"create", "start", "restart", "die", "oom", "kill", "stop", "pause", "unpause", "destroy"})
"""The container events `watch_events` passes on."""

PullProgress = Callable[[PullTally, "str | None"], None]
"""Called for every pull event: the running tally, and a new status line to log (or None)."""


class PullResult(NamedTuple):
    image: str
    """The reference pulled (`repo:tag` or `repo@digest`)."""
    digest: str
    """The image's repo digest (`sha256:...`), "" when the daemon knows none."""
    bytes: int
    """Bytes the pull downloaded (its layers' sizes)."""


class ContainerRuntime(Protocol):
    @property
    def status(self) -> str:
        """"available", or "unavailable: <reason>"."""
        ...

    def count_instances(self) -> int | None:
        """Running gamenode containers; None when the runtime is unavailable (blocking)."""
        ...

    def close(self) -> None: ...


class DockerRuntime:
    """Docker Engine via the docker SDK (`DOCKER_HOST` or the default socket)."""

    def __init__(self, timeout: float = 3.0, socket_path: str = DEFAULT_SOCKET, op_timeout: float = 60.0) -> None:
        self.timeout = timeout
        """Seconds for the heartbeat's calls."""
        self.op_timeout = op_timeout
        """Seconds for a pipeline operation's call to answer (streams have none once they started)."""
        self.socket_path = socket_path
        self._client: Any = None
        self._ops_client: Any = None
        self._ops_lock = threading.Lock()
        self._status = "unavailable: not checked yet"

    @property
    def status(self) -> str:
        return self._status

    def count_instances(self) -> int | None:
        try:
            client = self._connect()
            running = client.containers.list(filters={"label": INSTANCE_LABEL}, sparse=True)
        except Exception as exc:  # DockerException, requests' ConnectionError, a missing SDK, ...
            self._unavailable(_reason(exc))
            self._close_heartbeat()
            return None
        self._set_status("available")
        return len(running)

    def close(self) -> None:
        self._close_heartbeat()
        client, self._ops_client = self._ops_client, None
        _close_client(client)

    # -- containers ---------------------------------------------------------------------------

    def list_managed(self, all: bool = True) -> list[ContainerInfo]:
        """gamenode's containers (label `gamenode.instance`), running ones only unless `all`."""
        api = self._api()
        found = _call("listing containers", api.containers, all=all, filters={"label": INSTANCE_LABEL})
        infos = (self.inspect(str(entry["Id"])) for entry in found)
        return [info for info in infos if info is not None]

    def inspect(self, name_or_id: str) -> ContainerInfo | None:
        """A container's facts; None when there is no such container."""
        attrs = self._inspect_raw(name_or_id)
        return None if attrs is None else info_from_inspect(attrs)

    def run(self, name: str, image: str, options: Mapping[str, Any]) -> ContainerInfo:
        """Create the container `name` from `image` with SDK `containers.create` options, and start it.

        A container that cannot start (a port taken, a bad bind) is removed again, so a retry starts clean.
        """
        client = self._ops()
        container = _call(f"creating container {name}", client.containers.create, image, name=name, **options)
        try:
            _call(f"starting container {name}", container.start)
        except StepFailed:
            with contextlib.suppress(Exception):
                container.remove(force=True)
            raise
        info = self.inspect(container.id)
        if info is None:
            raise StepFailed(f"container {name} vanished right after it started")
        return info

    def start(self, name_or_id: str) -> None:
        _call(f"starting container {name_or_id}", self._api().start, name_or_id)

    def stop(self, name_or_id: str, grace: float) -> bool:
        """Stop (SIGTERM, then SIGKILL after `grace` seconds); False when there is no such container."""
        return self._on_container("stopping", name_or_id, "stop", timeout=_seconds(grace))

    def restart(self, name_or_id: str, grace: float) -> bool:
        return self._on_container("restarting", name_or_id, "restart", timeout=_seconds(grace))

    def remove(self, name_or_id: str, force: bool = True, volumes: bool = False) -> bool:
        """Remove (stopping it first when `force`); False when there is no such container."""
        return self._on_container("removing", name_or_id, "remove_container", force=force, v=volumes)

    def exit_reason(self, name_or_id: str, lines: int = 5) -> str:
        """Why a container stopped, for an error message: its state, exit code and last output lines."""
        info = self.inspect(name_or_id)
        if info is None:
            return "it no longer exists"
        tail = [line for _, line in self.stream_logs(name_or_id, None, threading.Event(), follow=False, tail=lines)]
        words = f"it is {info.state} (exit code {info.exit_code})"
        if info.error:
            words += f": {info.error}"
        return words + (f"; its last output: {' | '.join(tail)}" if tail else "")

    # -- streams --------------------------------------------------------------------------------

    def stream_logs(
        self,
        name_or_id: str,
        since: float | None,
        stop: threading.Event,
        follow: bool = True,
        tail: int | None = None,
    ) -> Iterator[tuple[str, str]]:
        """The container's output as (stream "stdout"/"stderr", line).

        Follows until the container stops or `stop` is set (unless `follow` is false);
        `since` is a UNIX time. Closing the generator closes the stream.
        """
        attrs = self._inspect_raw(name_or_id)
        if attrs is None:
            return
        response = self._open_logs(str(attrs["Id"]), since, follow, tail)
        tty = bool((attrs.get("Config") or {}).get("Tty"))
        done = threading.Event()
        _CLOSER.watch(_Shutdown(response), stop, done)
        try:
            read = response.raw.read1 if tty else response.raw.read
            yield from split_lines(_guarded(read_frames(read, tty)))
        finally:
            done.set()
            response.close()

    def watch_events(self, on_event: Callable[[str, ContainerInfo], None], stop: threading.Event) -> None:
        """Call `on_event(action, info)` for every event of a gamenode container until `stop` is set (blocking).

        Reconnects (from the last event seen) when the daemon goes away. `action`
        is one of `EVENT_ACTIONS`; a destroyed container's info comes from the event.
        """
        since: float | None = None
        failures = 0
        while not stop.is_set():
            try:
                since = self._follow_events(on_event, stop, since)
                failures = 0
            except Exception as exc:
                failures += 1
                if failures == 1:
                    log.warning("docker events: %s; reconnecting", _reason(exc))
                self._drop_ops_client()
            stop.wait(min(30.0, 0.5 * 2 ** min(failures, 6)))

    # -- images ---------------------------------------------------------------------------------

    def local_digests(self, ref: str) -> list[str] | None:
        """The repo digests (`sha256:...`) of a local image; None when it is not here."""
        attrs = self._inspect_image(ref)
        if attrs is None:
            return None
        return [str(d).rsplit("@", 1)[-1] for d in attrs.get("RepoDigests") or []]

    def registry_digest(self, ref: str, auth: Mapping[str, str] | None) -> str:
        """The digest the registry serves for `ref` (StepFailed with the registry's reason)."""
        api = self._api()
        data = _call(f"asking the registry about {ref}", api.inspect_distribution, ref, auth_config=_auth(auth))
        return str((data.get("Descriptor") or {}).get("digest", ""))

    def pull(
        self, ref: str, auth: Mapping[str, str] | None, on_progress: PullProgress, cancel: threading.Event
    ) -> PullResult:
        """Pull `ref`, reporting each event; StepFailed with the registry's reason when it fails.

        `cancel` is checked between stream events: once set the pull stops with StepFailed("... cancelled").
        """
        repo, tag = _split_ref(ref)
        image = f"{repo}@{tag}" if tag.startswith("sha256:") else f"{repo}:{tag}"
        stream = _call(f"pulling {image}", self._api().pull, repo, tag=tag, stream=True, decode=True,
                       auth_config=_auth(auth))
        tally = PullTally()
        try:
            for event in stream:
                if cancel.is_set():
                    raise StepFailed(f"pulling {image} was cancelled")
                if event.get("error"):
                    raise StepFailed(f"pulling {image} failed: {_event_error(event)}")
                on_progress(tally, tally.feed(event))
        except StepFailed:
            raise
        except Exception as exc:
            raise StepFailed(f"pulling {image} failed: {error_text(exc)}") from exc
        finally:
            with contextlib.suppress(Exception):
                stream.close()
        digests = self.local_digests(image) or []
        digest = tally.digest or (digests[0] if digests else "")
        return PullResult(image=image, digest=digest, bytes=tally.done)

    def remove_image(self, ref: str, force: bool = False) -> bool:
        """Remove a local image (tag); False when it is not here."""
        errors = _sdk_errors()
        try:
            self._api().remove_image(ref, force=force)
        except errors.ImageNotFound:
            return False
        except errors.DockerException as exc:
            raise StepFailed(f"removing image {ref}: {error_text(exc)}") from exc
        return True

    # -- networks and ports -----------------------------------------------------------------------

    def ensure_network(self, name: str, driver: str, labels: Mapping[str, str]) -> tuple[str, bool]:
        """The network `name` (created when missing): (its id, whether it was created now)."""
        existing = self._inspect_network(name)
        if existing is not None:
            return str(existing["Id"]), False
        errors = _sdk_errors()
        try:
            created = self._api().create_network(name, driver=driver, labels=dict(labels), check_duplicate=True)
        except errors.APIError as exc:
            again = self._inspect_network(name)  # created meanwhile by someone else
            if again is not None:
                return str(again["Id"]), False
            raise StepFailed(f"creating network {name}: {error_text(exc)}") from exc
        return str(created["Id"]), True

    def remove_network(self, name: str) -> bool:
        errors = _sdk_errors()
        try:
            self._api().remove_network(name)
        except errors.NotFound:
            return False
        except errors.DockerException as exc:
            raise StepFailed(f"removing network {name}: {error_text(exc)}") from exc
        return True

    def published_ports(self) -> set[tuple[int, str]]:
        """(host port, protocol) published by any running container, and bound by any stopped gamenode one."""
        api = self._api()
        ports: set[tuple[int, str]] = set()
        for entry in _call("listing containers", api.containers):
            for port in entry.get("Ports") or []:
                if port.get("PublicPort"):
                    ports.add((int(port["PublicPort"]), str(port.get("Type") or "tcp")))
        stopped = _call("listing containers", api.containers, all=True,
                        filters={"label": INSTANCE_LABEL, "status": ["created", "exited", "restarting", "paused"]})
        for entry in stopped:
            ports |= _bound_ports(self._inspect_raw(str(entry["Id"])))
        return ports

    # -- internals ------------------------------------------------------------------------------

    def _connect(self) -> Any:
        if self._client is not None:
            return self._client
        self._client = self._new_client(self.timeout)
        return self._client

    def _new_client(self, timeout: float) -> Any:
        socket_path = _unix_socket(os.environ.get("DOCKER_HOST", ""), self.socket_path)
        if socket_path and not os.path.exists(socket_path):
            raise FileNotFoundError(f"no Docker socket at {socket_path}")
        import docker  # type: ignore[import-untyped, unused-ignore]  # lazily: the SDK costs memory

        return docker.from_env(timeout=timeout)

    def _ops(self) -> Any:
        """The client for pipeline operations; StepFailed when Docker cannot be reached."""
        with self._ops_lock:
            if self._ops_client is None:
                try:
                    self._ops_client = self._new_client(self.op_timeout)
                except Exception as exc:
                    raise StepFailed(f"Docker is not available: {_reason(exc)}") from exc
            return self._ops_client

    def _api(self) -> Any:
        return self._ops().api

    def _drop_ops_client(self) -> None:
        with self._ops_lock:
            client, self._ops_client = self._ops_client, None
        _close_client(client)

    def _close_heartbeat(self) -> None:
        client, self._client = self._client, None
        _close_client(client)

    def _inspect_raw(self, name_or_id: str) -> dict[str, Any] | None:
        return self._inspect("container", "inspect_container", name_or_id)

    def _inspect_image(self, ref: str) -> dict[str, Any] | None:
        return self._inspect("image", "inspect_image", ref)

    def _inspect_network(self, name: str) -> dict[str, Any] | None:
        return self._inspect("network", "inspect_network", name)

    def _inspect(self, kind: str, method: str, name: str) -> dict[str, Any] | None:
        """The Engine's inspect answer for a container, image or network; None when there is none."""
        errors = _sdk_errors()
        try:
            attrs: dict[str, Any] = getattr(self._api(), method)(name)
            return attrs
        except errors.NotFound:
            return None
        except errors.DockerException as exc:
            raise StepFailed(f"inspecting {kind} {name}: {error_text(exc)}") from exc

    def _on_container(self, verb: str, name_or_id: str, method: str, **kwargs: Any) -> bool:
        errors = _sdk_errors()
        try:
            getattr(self._api(), method)(name_or_id, **kwargs)
        except errors.NotFound:
            return False
        except errors.DockerException as exc:
            raise StepFailed(f"{verb} container {name_or_id}: {error_text(exc)}") from exc
        return True

    def _open_logs(self, container_id: str, since: float | None, follow: bool, tail: int | None) -> Any:
        # The SDK's `logs()` drops which stream a frame came from; read the raw response instead.
        api = self._api()
        params: dict[str, Any] = {"stdout": 1, "stderr": 1, "follow": int(follow), "tail": tail or "all"}
        if since:
            params["since"] = f"{since:.6f}"
        url = api._url("/containers/{0}/logs", container_id)
        try:
            response = api._get(url, params=params, stream=True)
            api._disable_socket_timeout(api._get_raw_response_socket(response))
        except _sdk_errors().DockerException as exc:
            raise StepFailed(f"reading the logs of {container_id[:12]}: {error_text(exc)}") from exc
        return response

    def _follow_events(
        self, on_event: Callable[[str, ContainerInfo], None], stop: threading.Event, since: float | None
    ) -> float | None:
        filters = {"type": "container", "label": INSTANCE_LABEL}
        stream = self._api().events(since=since, decode=True, filters=filters)
        done = threading.Event()
        _CLOSER.watch(stream, stop, done)
        try:
            for event in stream:
                since = float(event.get("timeNano", 0)) / 1e9 or since
                action = str(event.get("Action") or event.get("status") or "").split(":", 1)[0]
                if action in EVENT_ACTIONS:
                    on_event(action, self._event_info(action, event))
        finally:
            done.set()
            stream.close()
        return since

    def _event_info(self, action: str, event: Mapping[str, Any]) -> ContainerInfo:
        container_id = str((event.get("Actor") or {}).get("ID") or "")
        info = None if action == "destroy" or not container_id else self.inspect(container_id)
        return info if info is not None else info_from_event(event)

    def _unavailable(self, reason: str) -> None:
        self._set_status(f"unavailable: {reason}")

    def _set_status(self, status: str) -> None:
        if status != self._status:
            quiet = status == "available" or self._status.endswith("not checked yet")
            log.log(logging.INFO if quiet else logging.WARNING, "container runtime: %s", status)
        self._status = status


def _sdk_errors() -> Any:
    import docker.errors  # type: ignore[import-untyped, unused-ignore]

    return docker.errors


def _call(what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """`fn(*args, **kwargs)`, with the SDK's and the transport's errors as StepFailed("<what> failed: <reason>")."""
    try:
        return fn(*args, **kwargs)
    except StepFailed:
        raise
    except Exception as exc:  # docker.errors.*, requests' ConnectionError, ...
        raise StepFailed(f"{what} failed: {error_text(exc)}") from exc


def _close_client(client: Any) -> None:
    if client is not None:
        try:
            client.close()
        except Exception as exc:
            log.debug("closing the docker client: %s", exc)


class _Closer:
    """One thread for all open streams: closes a stream once its `stop` is set (its reader is blocked in a read).

    It polls every `interval` seconds while any stream is open, and ends when none is; `poke()` (see
    `stop_stream`) makes it look at once.
    """

    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval
        self._lock = threading.Lock()
        self._open: list[tuple[Any, threading.Event, threading.Event]] = []
        self._running = False
        self._wake = threading.Event()

    def poke(self) -> None:
        self._wake.set()

    def watch(self, stream: Any, stop: threading.Event, done: threading.Event) -> None:
        """Close `stream` when `stop` is set, unless `done` (the reader finished) is set first."""
        with self._lock:
            self._open.append((stream, stop, done))
            if not self._running:
                self._running = True
                threading.Thread(target=self._run, name="docker-stream-closer", daemon=True).start()

    def _run(self) -> None:
        while True:
            self._wake.wait(self.interval)
            self._wake.clear()
            with self._lock:
                due = [item for item in self._open if item[1].is_set() and not item[2].is_set()]
                self._open = [item for item in self._open if not item[1].is_set() and not item[2].is_set()]
                if not self._open and not due:
                    self._running = False
                    return
            for stream, _, _ in due:
                with contextlib.suppress(Exception):
                    stream.close()


_CLOSER = _Closer()


def stop_stream(stop: threading.Event) -> None:
    """Set the `stop` of a `stream_logs` / `watch_events` reader and have its stream closed right away."""
    stop.set()
    _CLOSER.poke()


class _Shutdown:
    """Closes a streaming response under a reader blocked in `recv`: `response.close()` would wait for it."""

    def __init__(self, response: Any) -> None:
        self._response = response

    def close(self) -> None:
        fp = getattr(getattr(self._response.raw, "_fp", None), "fp", None)
        raw = getattr(fp, "raw", None)
        sock = getattr(raw, "_sock", None) or getattr(raw, "sock", None)
        if isinstance(sock, socket.socket):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        else:
            self._response.close()


def _guarded(frames: Iterator[tuple[str, bytes]]) -> Iterator[tuple[str, bytes]]:
    """End quietly when the stream is closed under the reader."""
    try:
        yield from frames
    except Exception as exc:  # OSError, urllib3's ProtocolError, ValueError on a closed file, ...
        log.debug("log stream ended: %s", exc)


def _split_ref(ref: str) -> tuple[str, str]:
    """`repo[:tag|@digest]` → (repo, tag or digest); no tag means "latest"."""
    if "@" in ref:
        repo, digest = ref.rsplit("@", 1)
        return repo, digest
    repo, _, tag = ref.rpartition(":")
    if not repo or "/" in tag:
        return ref, "latest"
    return repo, tag


def _auth(auth: Mapping[str, str] | None) -> dict[str, str] | None:
    return dict(auth) if auth and (auth.get("username") or auth.get("password")) else None


def _event_error(event: Mapping[str, Any]) -> str:
    detail = event.get("errorDetail") or {}
    return " ".join(str(detail.get("message") or event.get("error") or "unknown error").split())


def _bound_ports(attrs: Mapping[str, Any] | None) -> set[tuple[int, str]]:
    """(host port, protocol) a container binds when it runs, from its HostConfig."""
    bindings = ((attrs or {}).get("HostConfig") or {}).get("PortBindings") or {}
    ports: set[tuple[int, str]] = set()
    for key, hosts in bindings.items():
        protocol = str(key).partition("/")[2] or "tcp"
        for host in hosts or []:
            if str(host.get("HostPort") or "").isdigit():
                ports.add((int(host["HostPort"]), protocol))
    return ports


def _seconds(grace: float) -> int:
    """The Engine API takes whole seconds; round a fraction up so that a grace is never shortened to none."""
    return max(0, int(-(-grace // 1)))


def _unix_socket(docker_host: str, default: str) -> str:
    """The socket file Docker would use ("" for a TCP or SSH host): checked before importing the SDK."""
    if not docker_host:
        return default
    return docker_host.removeprefix("unix://") if docker_host.startswith("unix://") else ""


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."
