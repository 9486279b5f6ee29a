"""`colabflow verify`: a job folder checked by its own kind, found through the job record."""

from __future__ import annotations

from pydantic import BaseModel

from tasks.engine.job_folder import open_job_location
from tasks.engine.job_record import read_job_kind
from tasks.engine.kinds import job_kind
from tasks.engine.models import ItemFailure
from tasks.storage.stores import StorageAccess


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
