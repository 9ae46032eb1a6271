"""PipelineCatalog: the named pipelines, one YAML file each in a directory.

The directory is `config/pipeline/` of the gamenode checkout (found beside
the installed package) unless the hub's `pipeline_dir` setting names another.
A pipeline's name is its file name without `.yaml`/`.yml`
(`platform-start.yaml` → `platform-start`). Files are read when first asked
for and again whenever their mtime or size changes; a file that does not
validate is listed with its problems and refused when a run names it.
"""

from __future__ import annotations

import builtins
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import Field

from agent.errors import PipelineError, Problem
from agent.pipeline.spec import ParamSpec, Pipeline, load_pipeline
from console.errors import FieldError, InvalidInput, NotFound
from console.models import Model

__all__ = ["CatalogEntry", "ParamInfo", "PipelineCatalog", "PipelineInfo", "default_pipeline_dir", "pipeline_invalid"]

_SUFFIXES = (".yaml", ".yml")


def default_pipeline_dir() -> Path:
    """`config/pipeline/` of the checkout the `console` package was installed from."""
    return Path(__file__).resolve().parents[2] / "config" / "pipeline"


def pipeline_invalid(exc: PipelineError, what: str = "pipeline") -> InvalidInput:
    """A spec error as `InvalidInput`: one detail per problem, with its field path and YAML line."""
    error = InvalidInput(f"invalid {what}: " + "; ".join(str(p) for p in exc.problems))
    error.details = [FieldError(p.path, p.message, p.line) for p in exc.problems]
    return error


@dataclass(frozen=True)
class CatalogEntry:
    """One file of the catalog as last read."""

    name: str
    path: Path
    text: str
    pipeline: Pipeline | None
    """None when the file does not validate (see `problems`)."""
    problems: list[Problem] = field(default_factory=list)
    stamp: tuple[int, int] = (0, 0)
    """(mtime_ns, size) of the file when read."""

    def require(self) -> Pipeline:
        """The pipeline, or `InvalidInput` with the file's problems."""
        if self.pipeline is None:
            raise pipeline_invalid(PipelineError(self.problems), f"pipeline {self.name!r} ({self.path})")
        return self.pipeline


class PipelineCatalog:
    """The pipelines of one directory, re-read when their files change."""

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = Path(directory) if directory is not None else default_pipeline_dir()
        self._entries: dict[str, CatalogEntry] = {}
        self._lock = threading.Lock()

    def list(self) -> list[CatalogEntry]:
        """Every pipeline file, by name (invalid ones included, with their problems)."""
        with self._lock:
            self._refresh()
            return [self._entries[name] for name in sorted(self._entries)]

    def get(self, name: str) -> CatalogEntry:
        with self._lock:
            self._refresh()
            entry = self._entries.get(name)
        if entry is None:
            raise NotFound("pipeline", name)
        return entry

    def _refresh(self) -> None:
        seen: dict[str, CatalogEntry] = {}
        for path, stamp in self._files():
            name = path.name.rsplit(".", 1)[0]
            if name in seen:  # `x.yaml` and `x.yml`: the first in name order wins
                continue
            old = self._entries.get(name)
            fresh = old is not None and old.path == path and old.stamp == stamp
            seen[name] = old if fresh and old is not None else _read(name, path, stamp)
        self._entries = seen

    def _files(self) -> builtins.list[tuple[Path, tuple[int, int]]]:
        try:
            entries = sorted(os.scandir(self.directory), key=lambda e: e.name)
        except FileNotFoundError:
            return []
        out = []
        for entry in entries:
            if entry.name.startswith(".") or not entry.name.endswith(_SUFFIXES) or not entry.is_file():
                continue
            st = entry.stat()
            out.append((Path(entry.path), (st.st_mtime_ns, st.st_size)))
        return out


def _read(name: str, path: Path, stamp: tuple[int, int]) -> CatalogEntry:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return CatalogEntry(name, path, "", None, [Problem("", f"cannot read {path}: {exc}", None, path.name)], stamp)
    try:
        return CatalogEntry(name, path, text, load_pipeline(text, path.name), [], stamp)
    except PipelineError as exc:
        return CatalogEntry(name, path, text, None, list(exc.problems), stamp)


class ParamInfo(Model):
    name: str
    type: str
    required: bool = False
    default: Any = None
    """The value used when none is given (a secret's default reads `***`); null for a required param."""
    secret: bool = False
    description: str = ""
    choices: list[Any] | None = None
    """The only values allowed; null when any value of the type is."""


class PipelineInfo(Model):
    """What a console shows of a catalog pipeline."""

    name: str
    description: str = ""
    instance: str = "none"
    """create, stop, use or none: how a run of it ties to an instance."""
    params: list[ParamInfo] = Field(default_factory=list)
    steps: list[str] = Field(default_factory=list)
    on_failure: list[str] = Field(default_factory=list)
    """The pipeline's own cleanup steps."""
    problems: list[str] = Field(default_factory=list)
    """Why the file does not validate (then it cannot be run); empty for a valid pipeline."""
    yaml: str | None = None
    """The file's text (when one pipeline is asked for)."""

    @classmethod
    def of(cls, entry: CatalogEntry) -> PipelineInfo:
        pipeline = entry.pipeline
        if pipeline is None:
            return cls(name=entry.name, problems=[str(p) for p in entry.problems])
        return cls(
            name=entry.name,
            description=pipeline.metadata.description,
            instance=pipeline.metadata.instance,
            params=[_param(name, spec) for name, spec in pipeline.params.items()],
            steps=[s.name for s in pipeline.steps],
            on_failure=[s.name for s in pipeline.on_failure],
        )


def _param(name: str, spec: ParamSpec) -> ParamInfo:
    default = None if spec.required else spec.default_value()
    if spec.secret and default not in (None, ""):
        default = "***"
    return ParamInfo(name=name, type=spec.type, required=spec.required, default=default, secret=spec.secret,
                     description=spec.description, choices=spec.choices)
