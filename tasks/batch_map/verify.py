"""`colabflow verify` for a map job: every batch file matches its sha256, and holds exactly its items."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from typing import cast

from tasks.batch_map.models import MapManifestEntry
from tasks.batch_map.outputs import OutputFormat, decode_ids
from tasks.engine.job_folder import JobFolder
from tasks.engine.models import ItemFailure
from tasks.engine.verify import JobCheck, read_manifest_entries
from tasks.errors import ColabflowError


def check_map_folder(folder: JobFolder) -> JobCheck:
    """Each batch file's sha256, and that it holds a result for exactly the manifest's items for it, once each."""
    entries, problems = read_manifest_entries(folder, MapManifestEntry)
    by_file: dict[str, list[MapManifestEntry]] = defaultdict(list)
    for entry in entries:
        by_file[entry.output].append(entry)
    checked = 0
    for output, listed in by_file.items():
        try:
            content = folder.read(output)
            if content is None:
                raise FileNotFoundError(f"{folder.uri(folder.key(output))} is missing")
            checked += len(content)
            if hashlib.sha256(content).hexdigest() != listed[0].output_sha256:
                raise ValueError(f"{output} does not match its sha256 in the manifest (changed after it was written)")
            held = decode_ids(content, cast(OutputFormat, output.rsplit(".", 1)[-1]))
            expected = sorted(entry.item_id for entry in listed)
            if sorted(held) != expected:
                unexpected = sorted(set(held) ^ set(expected)) or sorted(held)
                raise ValueError(f"{output} holds {len(held)} results whose ids differ from the manifest's "
                                 f"{len(expected)} (first differing: {unexpected[0]!r})")
        except (ColabflowError, OSError, ValueError) as error:
            problems.extend(ItemFailure(item_id=entry.item_id, reason=f"item {entry.item_id!r}: {error}") for entry in listed)
    return JobCheck(job_dir=folder.location, items=len(entries), bytes_checked=checked, problems=problems)
