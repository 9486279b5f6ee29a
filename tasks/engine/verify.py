"""`colabflow verify`: a job folder checked by its own kind, found through the job record."""

from __future__ import annotations

from typing import TypeVar

from pydantic import BaseModel, ValidationError

from tasks.engine.job_folder import MANIFEST_NAME, JobFolder, open_job_location
from tasks.engine.job_record import read_job_kind
from tasks.engine.kinds import job_kind
from tasks.engine.models import ItemFailure
from tasks.storage.stores import StorageAccess


Entry = TypeVar("Entry", bound=BaseModel)


class JobCheck(BaseModel):
    """The outcome of verifying (or restoring) a job folder."""

    job_dir: str
    items: int
    bytes_checked: int
    problems: list[ItemFailure]


def verify_job(job_location: str, access: StorageAccess = StorageAccess()) -> JobCheck:
    """Check every output of a job folder with the check its kind contributes."""
    folder = open_job_location(job_location, access)
    return job_kind(read_job_kind(folder)).verify(folder, access)


def read_manifest_entries(folder: JobFolder, model: type[Entry]) -> tuple[list[Entry], list[ItemFailure]]:
    """A kind's manifest lines as `model`, and a problem for each line that is not one, or an id listed twice."""
    content = folder.read(MANIFEST_NAME)
    if content is None:
        return [], [ItemFailure(item_id=MANIFEST_NAME, reason=f"{folder.location} has no {MANIFEST_NAME}; rerun the job")]
    entries: list[Entry] = []
    problems: list[ItemFailure] = []
    seen: set[str] = set()
    for number, line in enumerate(content.splitlines(), start=1):
        try:
            entry = model.model_validate_json(line)
        except ValidationError as error:
            problems.append(ItemFailure(item_id=MANIFEST_NAME, reason=f"line {number} of the manifest is not an "
                                        f"entry ({error.errors()[0]['msg']})"))
            continue
        item_id = str(getattr(entry, "item_id"))
        if item_id in seen:
            problems.append(ItemFailure(item_id=item_id, reason=f"item {item_id!r} is listed twice"))
        seen.add(item_id)
        entries.append(entry)
    return entries, problems
