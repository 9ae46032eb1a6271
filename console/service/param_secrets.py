"""Which default params of a platform or game version are secret: shown as `***`, kept on a `***` write.

A platform's `params` and the version `params` of its game cards feed the
platform's start pipeline (`Platform.pipeline`, see `console.service.launch`).
A key that pipeline declares is secret when the pipeline marks it
`secret: true`; any other key (no catalog, no such pipeline, a pipeline file
that does not validate, or a key the pipeline does not declare) is secret
when its name holds `password`, `secret` or `token`, in any case.

Answers show each secret that has a value as `***` (`redact`); the stores
keep the real value, and a launch gets it. On a write, a secret given as
exactly `***` keeps the value stored (`keep_stored`), so a client that reads
a record, changes another field and writes it back leaves the password as it
was; a `***` with nothing stored to keep is refused.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any

from agent.logbatch import REDACTED
from console.errors import FieldError, InvalidInput, NotFound
from console.service.catalog import PipelineCatalog

__all__ = ["REDACTED", "SecretParams", "by_name", "keep_stored"]

_SECRET_WORDS = ("password", "secret", "token")


def by_name(key: str) -> bool:
    """The rule for a key no pipeline declares: its name holds `password`, `secret` or `token`."""
    folded = key.casefold()
    return any(word in folded for word in _SECRET_WORDS)


def _has_value(value: Any) -> bool:
    return value not in (None, "", [], {})


class SecretParams:
    """The rules above over the catalog `catalog()` hands out now (the hub may swap the run service's)."""

    def __init__(self, catalog: Callable[[], PipelineCatalog | None] | None = None) -> None:
        self._catalog = catalog

    def declared(self, pipeline: str | None) -> dict[str, bool] | None:
        """Param name → secret, for each param `pipeline` declares; None when it cannot be read."""
        catalog = self._catalog() if self._catalog is not None else None
        if catalog is None or pipeline is None:
            return None
        try:
            spec = catalog.get(pipeline).pipeline
        except NotFound:
            return None
        return None if spec is None else {name: param.secret for name, param in spec.params.items()}

    def keys(self, params: Mapping[str, Any], *pipelines: str | None) -> frozenset[str]:
        """The keys of `params` that are secret under any of `pipelines` (None: an unknown pipeline)."""
        found: set[str] = set()
        for declared in {p: self.declared(p) for p in pipelines or (None,)}.values():
            found.update(k for k in params if (declared[k] if declared is not None and k in declared else by_name(k)))
        return frozenset(found)

    def redact(self, params: Mapping[str, Any], pipeline: str | None) -> dict[str, Any]:
        """`params` with the value of each secret that has one replaced by `***`."""
        secret = self.keys(params, pipeline)
        return {k: REDACTED if k in secret and _has_value(v) else v for k, v in params.items()}


def keep_stored(
    given: dict[str, Any], stored: Mapping[str, Any], secret: Collection[str], path: str = "params"
) -> dict[str, Any]:
    """`given` with each secret given as `***` set back to its `stored` value (`given` itself when none is).

    InvalidInput when such a secret has no stored value to keep.
    """
    kept = [k for k, v in given.items() if k in secret and v == REDACTED]
    if not kept:
        return given
    missing = [k for k in kept if k not in stored]
    if missing:
        raise InvalidInput("invalid secret param", [
            FieldError(f"{path}.{k}", f"{REDACTED} keeps the stored value, and none is stored; give the value")
            for k in missing])
    return {**given, **{k: stored[k] for k in kept}}
