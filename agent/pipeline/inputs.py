"""The inputs (`with:`) of every pipeline action, as pydantic models.

The spec checks a step's `with:` against its action's model twice: before the
run, field names and required fields only (a value may still be a `${...}`
template); at run time, after substitution, the full model (types, ranges).
Actions receive the validated model.

    ACTIONS["image.pull"] is ImagePull
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints

__all__ = [
    "ACTIONS",
    "ContainerRemove",
    "ContainerRestart",
    "ContainerRun",
    "ContainerStop",
    "ContainerWait",
    "DataFetch",
    "FileRender",
    "ImagePull",
    "Inputs",
    "NetworkEnsure",
    "PortSpec",
    "Shell",
]

NonEmpty = Annotated[str, StringConstraints(min_length=1)]
Port = Annotated[int, Field(ge=1, le=65535)]


class Inputs(BaseModel):
    """Base of every action's inputs: unknown keys are mistakes."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ImagePull(Inputs):
    image: NonEmpty
    """`registry/repo:tag` or `repo@sha256:...`; a tag-less image means `:latest`."""
    username: str = ""
    """Registry credentials; both empty for an anonymous pull."""
    password: str = ""
    always: bool = False
    """Pull even when the image is present (otherwise skipped when the local digest matches the registry's)."""


class DataFetch(Inputs):
    source: NonEmpty
    """An http(s) URL or an absolute path on the node."""
    sha256: Annotated[
        Annotated[str, StringConstraints(pattern=r"^[0-9a-fA-F]{64}$")] | None,
        BeforeValidator(lambda value: None if value == "" else value),
    ] = None
    """Checked before anything is extracted; a mismatch fails the step ("" or null: no check)."""
    dest: str = ""
    """Relative to the instance's data dir ("" = the data dir itself)."""
    extract: Literal["auto", "tar", "zip", "none"] = "auto"
    """"auto": by the file name (.tar, .tar.gz, .tgz, .tar.xz, .zip), else copied as is."""
    strip_components: Annotated[int, Field(ge=0)] = 0


class FileRender(Inputs):
    template: str = ""
    """Template text with `${params.x}` / `${steps.s.outputs.y}` substitutions ..."""
    template_file: str = ""
    """... or a template file (relative to the data dir, or absolute); exactly one of the two."""
    dest: NonEmpty
    """Relative to the instance's data dir."""
    mode: Annotated[int, Field(ge=0, le=0o7777)] = 0o644
    vars: dict[str, Any] = Field(default_factory=dict)
    """Extra names for the template: `${vars.x}`."""


class PortSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = ""
    container_port: Port
    host_port: Annotated[int, Field(ge=0, le=65535)] = 0
    """0: allocate a free one on the node."""
    protocol: Literal["tcp", "udp"] = "tcp"
    host_ip: str = "0.0.0.0"


class NetworkEnsure(Inputs):
    network: str = ""
    """A Docker network to create when missing ("" = none: the default bridge)."""
    driver: str = "bridge"
    ports: list[PortSpec] = Field(default_factory=list)
    """Host ports to allocate (no collision with other containers, other runs or bound sockets)."""


class ContainerRun(Inputs):
    image: NonEmpty
    name: str = ""
    """Defaults to `gn-<instance id>` (or `gn-<run id>` without an instance)."""
    command: list[str] | str | None = None
    entrypoint: list[str] | str | None = None
    env: dict[str, Any] = Field(default_factory=dict)
    ports: list[PortSpec] = Field(default_factory=list)
    """Usually `${steps.<network step>.outputs.ports}`."""
    network: str = ""
    volumes: dict[str, str] = Field(default_factory=dict)
    """Host path (absolute, or relative to the data dir) → container path[:ro]."""
    data_mount: str = ""
    """Bind the instance's data dir at this container path ("" = not mounted)."""
    cpus: Annotated[float, Field(ge=0)] = 0.0
    """CPU limit in cores (0 = none)."""
    memory_mb: Annotated[int, Field(ge=0)] = 0
    """Memory limit (0 = none)."""
    gpus: Annotated[int, Field(ge=-1)] = 0
    """GPUs to request (-1 = all)."""
    restart: Literal["no", "on-failure", "unless-stopped", "always"] = "no"
    labels: dict[str, str] = Field(default_factory=dict)
    """Extra labels; the gamenode.* labels (instance, run, node) are always set."""
    replace: bool = False
    """Remove an existing container of the same name that belongs to another run."""


class ContainerWait(Inputs):
    container: str = ""
    """Name or id; defaults to the instance's container."""
    tcp_port: Annotated[int, Field(ge=0, le=65535)] = 0
    """Healthy when a TCP connect to this host port succeeds."""
    http_url: str = ""
    """Healthy when this URL answers with `http_status`."""
    http_status: Annotated[int, Field(ge=100, le=599)] = 200
    log_line: str = ""
    """Healthy when the container's output contains this text (a regular expression)."""
    host: str = "127.0.0.1"
    interval: Annotated[float, Field(gt=0)] = 0.1
    """Seconds between probes."""


class ContainerStop(Inputs):
    container: str = ""
    grace: Annotated[float, Field(ge=0)] = 10.0
    """Seconds between SIGTERM and SIGKILL."""
    missing_ok: bool = True


class ContainerRemove(Inputs):
    container: str = ""
    force: bool = True
    """Stop it first when running."""
    volumes: bool = False
    missing_ok: bool = True


class ContainerRestart(Inputs):
    container: str = ""
    grace: Annotated[float, Field(ge=0)] = 10.0


class Shell(Inputs):
    command: list[str] | NonEmpty
    """argv (no shell) or a string run by `/bin/sh -c`."""
    cwd: str = ""
    """Relative to the data dir ("" = the data dir)."""
    env: dict[str, str] = Field(default_factory=dict)


ACTIONS: dict[str, type[Inputs]] = {
    "image.pull": ImagePull,
    "data.fetch": DataFetch,
    "file.render": FileRender,
    "network.ensure": NetworkEnsure,
    "container.run": ContainerRun,
    "container.wait": ContainerWait,
    "container.stop": ContainerStop,
    "container.remove": ContainerRemove,
    "container.restart": ContainerRestart,
    "shell": Shell,
}
"""Every action a pipeline step may name, with its inputs."""
