"""Giving each planned document its language, the group its batches are made of.

With `folder`, the language is the first folder of the document's path under its source, and
nothing is read. With `detect`, the document's first `HEAD_BYTES` are read (on I/O threads) and
given to the offline detector. A document that gets no language (outside the wanted ones, too
short, mixed, binary, unreadable) is set aside with the reason, for the report; the rest are
batched again so that no batch mixes languages.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.corpus.documents import SNIFF_BYTES
from tasks.corpus.languages import (
    Detection,
    LanguageCode,
    detect_language,
    language_from_folder,
    require_known,
    require_script_map,
)
from tasks.corpus.models import CorpusOptions
from tasks.engine.item_attempts import io_thread_count
from tasks.engine.models import ItemFailure, ItemFingerprint, JobPlan, JobSettings
from tasks.engine.planning import plan_batches
from tasks.engine.sources import open_chunk
from tasks.errors import ColabflowError
from tasks.storage.stores import StorageAccess

HEAD_BYTES = 64 * 1024


def read_head(item: ItemFingerprint, access: StorageAccess) -> bytes:
    """The document's first `HEAD_BYTES`."""
    with open_chunk(item.uri, access) as stream:
        return stream.read(HEAD_BYTES)


def detect_document(item: ItemFingerprint, wanted: tuple[LanguageCode, ...], options: CorpusOptions,
                    access: StorageAccess) -> Detection:
    """The language detected from the document's opening; None with the reason when there is none."""
    try:
        head = read_head(item, access)
    except (ColabflowError, OSError) as error:
        return Detection(None, f"could not be read to detect its language ({error})")
    if b"\0" in head[:SNIFF_BYTES]:
        return Detection(None, f"binary (a NUL byte in its first {SNIFF_BYTES} bytes)")
    return detect_language(head.decode("utf-8-sig", errors="ignore"), wanted, require_script_map(options.script_languages))


def assign_languages(
    plan: JobPlan, options: CorpusOptions, access: StorageAccess, batch_size: int, batch_bytes: int,
) -> tuple[JobPlan, list[ItemFailure]]:
    """The plan batched by language, and the documents that got none, each with its reason."""
    wanted = require_known(options.languages)
    items = [item for batch in plan.batches for item in batch]
    if options.language_from == "folder":
        detections = [language_from_folder(item.item_id, wanted) for item in items]
    else:
        with ThreadPoolExecutor(io_thread_count()) as pool:
            detections = list(pool.map(lambda item: detect_document(item, wanted, options, access), items))
    assigned = [item.model_copy(update={"group": found.code}) for item, found in zip(items, detections) if found.code]
    unassigned = [ItemFailure(item_id=item.item_id, reason=f"{item.item_id}: {found.reason}")
                  for item, found in zip(items, detections) if found.code is None]
    return plan.model_copy(update={"batches": plan_batches(assigned, batch_size, batch_bytes)}), unassigned


@task(name="assign-languages", cache_policy=NO_CACHE, persist_result=False)
def assign_languages_task(plan: JobPlan, settings: JobSettings, batch_size: int, batch_bytes: int,
                          ) -> tuple[JobPlan, list[ItemFailure]]:
    """Give every planned document its language and batch them by it; list those that got none."""
    return assign_languages(plan, CorpusOptions.of(settings), settings.access, batch_size, batch_bytes)
