"""A GitHub repository served by pytest-httpserver through the REST endpoints colabflow reads.

`gated_repository` serves one behind a FaultProxy that holds the reads that batches make of the
files it names, so a test kills or drains a job while such a batch is provably in flight.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from tests.fault_proxy import Hold, fault_proxy

# A job reads a chunk twice: its plan hashes it (tasks/engine/item_hashes.py), then its batch
# reads it again. A job whose plan found the fingerprints in its job folder (a resumed one) reads
# it once, in its batch.
PLAN_READS = 1


def git_sha(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def serve_repository(server: HTTPServer, files: dict[str, bytes], branch: str = "main") -> str:
    """Serve `files` as OWNER/REPO at `branch`; return "OWNER/REPO"."""
    owner, name = "octo", f"data-{uuid.uuid4().hex[:8]}"
    base = f"/repos/{owner}/{name}"
    commit = hashlib.sha1(name.encode()).hexdigest()
    server.expect_request(base).respond_with_json({"default_branch": branch})
    for ref in (branch, commit):
        server.expect_request(f"{base}/commits/{ref}").respond_with_data(commit)
    tree = [{"path": path, "mode": "100644", "type": "blob", "sha": git_sha(data), "size": len(data)}
            for path, data in files.items()]
    directories = {path.rpartition("/")[0] for path in files if "/" in path}
    tree += [{"path": directory, "mode": "040000", "type": "tree", "sha": hashlib.sha1(directory.encode()).hexdigest()}
             for directory in sorted(directories)]
    server.expect_request(f"{base}/git/trees/{commit}").respond_with_json({"sha": commit, "tree": tree, "truncated": False})
    blobs = {git_sha(data): data for data in files.values()}

    def blob(request: Request) -> Response:  # one handler for every blob: the server tries its handlers in turn
        data = blobs.get(request.path.rpartition("/")[2])
        return Response(data) if data is not None else Response('{"message": "Not Found"}', status=404)

    server.expect_request(re.compile(rf"^{re.escape(base)}/git/blobs/[0-9a-f]{{40}}$")).respond_with_handler(blob)
    return f"{owner}/{name}"


def files_under(root: Path, prefix: str) -> dict[str, bytes]:
    """Every file below `root`, keyed `prefix/RELATIVE_PATH`: a local source to serve as a repository."""
    return {f"{prefix}/{path.relative_to(root).as_posix()}": path.read_bytes()
            for path in sorted(root.rglob("*")) if path.is_file()}


@dataclass(frozen=True)
class GatedRepository:
    """A served repository whose files held at `gates` (in the order given) wait there when a batch reads them."""

    repository: str
    api_url: str
    gates: tuple[Hold, ...]

    @property
    def gate(self) -> Hold:
        """The gate of a repository with one held file."""
        [gate] = self.gates
        return gate

    def location(self, path: str) -> str:
        """`github://OWNER/REPO@main/PATH`, for a source."""
        return f"github://{self.repository}@main/{path}"


@contextmanager
def gated_repository(server: HTTPServer, files: dict[str, bytes], *held: str) -> Iterator[GatedRepository]:
    """Serve `files`, behind a proxy (`api_url`) that lets the plan's read of each `held` file pass and holds the
    next one, its batch's, until the test calls that gate's `release()`; all released on exit.

    Each held file's bytes must be unique among `files`: the hold is on its blob.
    """
    repository = serve_repository(server, files)
    with fault_proxy(server.url_for("/").rstrip("/")) as proxy:
        gates = []
        for name in held:
            data = files[name]
            assert sum(content == data for content in files.values()) == 1, f"{name!r} shares its bytes with a file"
            blob = re.escape(f"/repos/{repository}/git/blobs/{git_sha(data)}")
            gates.append(proxy.hold(Hold("GET", rf"^{blob}(\?|$)", skip=PLAN_READS)))
        yield GatedRepository(repository, proxy.url, tuple(gates))
