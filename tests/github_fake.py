"""A GitHub repository served by pytest-httpserver through the REST endpoints colabflow reads."""

from __future__ import annotations

import hashlib
import uuid

from pytest_httpserver import HTTPServer


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
    for data in files.values():
        server.expect_request(f"{base}/git/blobs/{git_sha(data)}").respond_with_data(data)
    return f"{owner}/{name}"
