"""`colabflow verify` for a corpus job: every counts file matches its sha256 and counts its documents."""

from __future__ import annotations

import hashlib
from collections import defaultdict

from pydantic import ValidationError

from tasks.corpus.counting import PartialCounts
from tasks.corpus.models import CorpusManifestEntry
from tasks.engine.job_folder import JobFolder
from tasks.engine.models import ItemFailure
from tasks.engine.verify import JobCheck, read_manifest_entries


def check_corpus_folder(folder: JobFolder) -> JobCheck:
    """Each batch's counts file: its sha256, and as many documents as the manifest counted in it."""
    entries, problems = read_manifest_entries(folder, CorpusManifestEntry)
    by_file: dict[str, list[CorpusManifestEntry]] = defaultdict(list)
    for entry in entries:
        by_file[entry.output].append(entry)
    checked = 0
    for output, listed in by_file.items():
        content = folder.read(output)
        if content is None:
            reason = f"{folder.uri(folder.key(output))} is missing"
        elif hashlib.sha256(content).hexdigest() != listed[0].output_sha256:
            reason = f"{output} does not match its sha256 in the manifest (changed after it was written)"
        else:
            checked += len(content)
            reason = _documents_problem(output, content, len(listed))
        if reason:
            problems.extend(ItemFailure(item_id=entry.item_id, reason=f"item {entry.item_id!r}: {reason}") for entry in listed)
    return JobCheck(job_dir=folder.location, items=len(entries), bytes_checked=checked, problems=problems)


def _documents_problem(output: str, content: bytes, expected: int) -> str:
    try:
        documents = PartialCounts.model_validate_json(content).documents
    except ValidationError as error:
        return f"{output} is not a counts file ({error.errors()[0]['msg']})"
    return "" if documents == expected else f"{output} counts {documents} documents, the manifest {expected}"
