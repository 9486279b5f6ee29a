"""A batch of local chunks compressed in worker processes, and the next one started before this one is committed.

After the cores return a batch, the engine still writes its journal, telemetry and done marker,
and Prefect records the task run: about a tenth of a second a batch in which the cores would
wait. The compression kind reads ahead (tasks/engine/kinds.py, `ReadsAhead`): when the engine
is about to run a batch, the next one is handed to the cores as well, and a worker takes it
as soon as it ends its share of this one. A batch started ahead is only outputs in the folder
until the engine runs it: its journal, which marks it done, is written when it is taken, so
a run that stops or is killed first redoes it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from tasks.compression.chunk_codec import compress_each
from tasks.compression.codecs import Codec
from tasks.compression.models import Recipe
from tasks.compression.outputs import Outcome, RecipeIndex, finished_recipe, journal_name
from tasks.engine.cores import CoreCall, file_weight, submit_on_cores
from tasks.engine.item_attempts import attempt_item
from tasks.engine.job_folder import JobFolder
from tasks.engine.models import ItemFailure, ItemFingerprint, JobSettings
from tasks.storage.retries import RetryPolicy
from tasks.storage.stores import StorageAccess

BATCHES_AHEAD = 1  # batches handed to the cores beyond the one the engine runs


@dataclass(frozen=True)
class BatchOnCores:
    """A batch handed to the cores: what the folder already held, and the call compressing the rest."""

    found: list[Recipe | ItemFailure | None]
    call: CoreCall[Recipe | ItemFailure]

    def outcomes(self) -> list[Outcome]:
        """Each chunk's outcome in the batch's order, once the cores are done with it."""
        done = iter(self.call.result())
        outcomes: list[Outcome] = []
        for existing in self.found:
            if existing is None:
                compressed = next(done)
                outcomes.append(compressed if isinstance(compressed, ItemFailure) else (compressed, False))
            else:
                outcomes.append(existing if isinstance(existing, ItemFailure) else (existing, True))
        return outcomes


def hand_to_cores(
    batch: list[ItemFingerprint], codec: Codec, folder: JobFolder, index: RecipeIndex, access: StorageAccess,
    policy: RetryPolicy,
) -> BatchOnCores:
    """Skip the chunks the folder holds, and hand the rest to the worker processes, one slice per core."""
    output = (codec.name, codec.version, codec.level)
    found = [attempt_item(chunk.item_id, lambda: finished_recipe(index, folder, chunk, output), policy) for chunk in batch]
    todo = [chunk for chunk, existing in zip(batch, found) if existing is None]
    return BatchOnCores(found, submit_on_cores(partial(compress_each, codec, folder, access, policy), todo, file_weight))


class StartedAhead:
    """Batches handed to the cores before the engine runs them, by their journal's name.

    Only the batches the engine last named are kept, and only for the same job settings.
    """

    def __init__(self) -> None:
        self._started: dict[str, tuple[JobSettings, BatchOnCores]] = {}

    def keep(self, batches: list[list[ItemFingerprint]], settings: JobSettings,
             start: Callable[[list[ItemFingerprint]], BatchOnCores | None]) -> None:
        """Have `batches` (the one about to run first) started, with `start(batch)`; forget every other."""
        wanted = {journal_name(batch): batch for batch in batches[:1 + BATCHES_AHEAD]}
        self._started = {name: entry for name, entry in self._started.items() if name in wanted and entry[0] == settings}
        for name, batch in wanted.items():
            if name not in self._started and (started := start(batch)) is not None:
                self._started[name] = (settings, started)

    def take(self, batch: list[ItemFingerprint], settings: JobSettings) -> BatchOnCores | None:
        """The batch, if it was started ahead for these settings; it is then no longer kept."""
        entry = self._started.pop(journal_name(batch), None)
        return entry[1] if entry is not None and entry[0] == settings else None
