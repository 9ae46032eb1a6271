"""The secret param values this agent knows, redacted from everything its game instances say.

    book = SecretBook.from_runs(RunStore(state_dir / "runs"))   # the pipeline runner makes it
    book.add_run(run_id, instance_id, pipeline.secret_values(params))   # each run it starts or resumes
    line = book.redact(line)                                     # each line of container output
    book.instances_seen({"inst-1", ...})                         # each full instance report

The pipeline engine redacts a run's own log lines, messages and outputs with
that run's secrets. A game container the run started can print them too (the
registry password it logged in with, an RCON password in its banner), long
after the run ended and after a RESTART. So the output of every instance, and
the errors in instance reports, are redacted with every secret value of every
run the agent knows: one run's secret is no less secret in another
instance's output.

Across agent restarts the values come back from the run records in
`STATE_DIR/runs/` (0600 in a 0700 directory; they hold the params to resume
a run). Those records are pruned (`RunStore.prune`), so the book pins the
record of each run with secrets whose instance still has a container
(`pinned_runs`), until the instance watcher has seen the instance gone; before
its first report every such run is pinned.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

from agent.errors import PipelineError, StateError
from agent.logbatch import REDACTED
from agent.pipeline.runs import RunStore
from agent.pipeline.spec import load_pipeline

__all__ = ["REDACTED", "SecretBook"]

log = logging.getLogger(__name__)



class SecretBook:
    """Secret values by run, and one pattern that replaces them all with `***`.

    Written and read on the agent's event loop; `redact` may run on any thread (it reads one reference).
    """

    def __init__(self) -> None:
        self._runs: dict[str, tuple[str, frozenset[str]]] = {}
        """run id → (instance id or "", its secret values)."""
        self._live: set[str] | None = None
        """Instance ids that have a container, as of the watcher's last full report (None: none yet)."""
        self._pattern: re.Pattern[str] | None = None

    @classmethod
    def from_runs(cls, store: RunStore) -> SecretBook:
        """A book with the secrets of every run on record (an unreadable record is skipped: its resume says why)."""
        book = cls()
        for run_id in store.run_ids():
            try:
                record = store.load(run_id)
                pipeline = load_pipeline(record.pipeline_yaml, source=f"run {run_id}")
                values = pipeline.secret_values(pipeline.resolve_params(record.params))
            except (OSError, StateError, PipelineError) as exc:
                log.debug("no secrets read from run %s: %s", run_id, exc)
                continue
            book.add_run(run_id, record.instance_id, values)
        return book

    def add_run(self, run_id: str, instance_id: str, values: Iterable[str]) -> None:
        """The secret values of one run (and the instance it works on); a run without any is not kept."""
        found = frozenset(v for v in values if v)
        if not found or self._runs.get(run_id) == (instance_id, found):
            return
        known = self.values
        self._runs[run_id] = (instance_id, found)
        if not found <= known:
            self._compile()

    @property
    def values(self) -> frozenset[str]:
        """Every secret value in the book."""
        return frozenset().union(*(values for _, values in self._runs.values()))

    def redact(self, text: str) -> str:
        """`text` with every secret value replaced by `***` (the longest first, so no part of one is left)."""
        pattern = self._pattern
        return text if pattern is None else pattern.sub(REDACTED, text)

    def instances_seen(self, instance_ids: Iterable[str]) -> None:
        """The instances that have a container now (a full instance report): the runs `pinned_runs` keeps."""
        self._live = set(instance_ids)

    def pinned_runs(self) -> frozenset[str]:
        """Runs with secrets whose record must not be pruned: their instance may still print them."""
        live = self._live
        return frozenset(run_id for run_id, (instance_id, _) in self._runs.items()
                         if instance_id and (live is None or instance_id in live))

    def forget_runs(self, run_ids: Iterable[str]) -> None:
        """Runs whose records were pruned: their values go unless another run has them too."""
        before = self.values
        for run_id in run_ids:
            self._runs.pop(run_id, None)
        if self.values != before:
            self._compile()

    def _compile(self) -> None:
        values = sorted(self.values, key=len, reverse=True)
        self._pattern = re.compile("|".join(map(re.escape, values))) if values else None
