"""GitHub as a read-only store, against GitHub's REST endpoints served by pytest-httpserver."""

from __future__ import annotations

import hashlib
import logging
import random
import time
import uuid
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Response

from tasks.errors import (
    CorruptOutputError,
    InvalidParameterError,
    MissingObjectError,
    RemoteUnavailableError,
    SourceNotFoundError,
    StorageRejectedError,
)
from tasks.storage.github import GitHubStore, github_place, parse_github_uri
from tasks.storage.retries import RetryPolicy
from tasks.storage.stores import StorageAccess, read_bytes
from tests.fault_proxy import Fault, fault_proxy

TOKEN = "ghp_never-print-me"
FILES = {
    "README.md": b"# demo\n",
    "src/a.py": b"print('a')\n",
    "src/pkg/b.py": b"print('b')\n" * 10,
    "src/pkg/deep/c.txt": b"deep\n",
    "srcx/z.txt": b"not below src\n",
    "texts/\u00fcn\u00efc\u00f6d\u00e9 \u6587\u5b57.txt": "h\u00e9llo w\u00f6rld".encode(),
    "data/big.bin": random.Random(7).randbytes(1_500_000),
}
SKIPPED: dict[str, dict[str, Any]] = {
    "docs/latest": {"mode": "120000", "type": "blob", "sha": "1" * 40, "size": 9},
    "vendor/lib": {"mode": "160000", "type": "commit", "sha": "2" * 40},
}


def git_sha(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class FakeRepo:
    """A repository served over HTTP as GitHub's repos, commits, trees and blobs endpoints."""

    def __init__(
        self, server: HTTPServer, branch: str = "main", truncated: bool = False, token: str | None = None
    ) -> None:
        self.server, self.owner, self.name = server, "octo", f"repo-{uuid.uuid4().hex[:8]}"
        self.base = f"/repos/{self.owner}/{self.name}"
        self.commit = hashlib.sha1(self.name.encode()).hexdigest()
        self.headers = {"X-GitHub-Api-Version": "2022-11-28", **({"Authorization": f"Bearer {token}"} if token else {})}
        entries: dict[str, dict[str, Any]] = {
            path: {"mode": "100644", "type": "blob", "sha": git_sha(data), "size": len(data)}
            for path, data in FILES.items()
        } | SKIPPED
        for path in list(entries):
            parts = path.split("/")
            for depth in range(1, len(parts)):
                directory = "/".join(parts[:depth])
                tree_sha = hashlib.sha1(directory.encode()).hexdigest()
                entries[directory] = {"mode": "040000", "type": "tree", "sha": tree_sha}
        self.expect("", "application/vnd.github+json").respond_with_json({"default_branch": branch})
        for ref in (branch, self.commit):
            self.expect(f"/commits/{ref}", "application/vnd.github.sha").respond_with_data(self.commit)
        recursive = [{"path": path, **entry} for path, entry in entries.items()]
        self.expect(f"/git/trees/{self.commit}", query_string="recursive=1").respond_with_json(
            {"sha": "f" * 40, "tree": recursive, "truncated": truncated})
        for directory, sha in [("", self.commit)] + [(p, e["sha"]) for p, e in entries.items() if e["type"] == "tree"]:
            children = [{"path": path.rpartition("/")[2], **entry} for path, entry in entries.items()
                        if path.rpartition("/")[0] == directory]
            self.expect(f"/git/trees/{sha}", query_string="").respond_with_json({"tree": children, "truncated": False})
        for data in FILES.values():
            self.expect(self.blob_path(data), "application/vnd.github.raw+json").respond_with_data(data)

    def expect(self, path: str, accept: str = "application/vnd.github+json", **options: Any) -> Any:
        return self.server.expect_request(self.base + path, headers={"Accept": accept, **self.headers}, **options)

    def blob_path(self, data: bytes) -> str:
        return f"/git/blobs/{git_sha(data)}"

    def requests(self, fragment: str) -> int:
        return sum(fragment in request.path for request, _ in self.server.log)


class RecordedSleep:
    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


@pytest.fixture
def sleep_log() -> RecordedSleep:
    return RecordedSleep()


@pytest.fixture
def policy(sleep_log: RecordedSleep) -> RetryPolicy:
    return RetryPolicy(attempts=3, base_delay=0.5, max_delay=3600.0, sleep=sleep_log)


@pytest.fixture
def access(httpserver: HTTPServer) -> StorageAccess:
    return StorageAccess(github_api_url=httpserver.url_for("/"))


def store_for(repo: FakeRepo, policy: RetryPolicy, token: str | None = None) -> GitHubStore:
    return GitHubStore(repo.owner, repo.name, "main", api_url=repo.server.url_for("/"), token=token,
                       token_block="gh-reader" if token else None, policy=policy)


def test_a_directory_lists_its_files_sorted_with_sizes(
    httpserver: HTTPServer, access: StorageAccess, policy: RetryPolicy
) -> None:
    """A directory place lists the files below it, and only those (not a sibling sharing its prefix)."""
    repo = FakeRepo(httpserver)
    place = github_place(f"github://octo/{repo.name}@main/src/", access, policy)
    assert place.path == "src"
    assert [(info.key, info.size) for info in place.store.list(place.path)] == [
        (key, len(FILES[key])) for key in ("src/a.py", "src/pkg/b.py", "src/pkg/deep/c.txt")
    ]


def test_a_file_place_lists_that_file(httpserver: HTTPServer, access: StorageAccess, policy: RetryPolicy) -> None:
    """A place naming a file lists exactly it, with the size from the tree."""
    repo = FakeRepo(httpserver)
    place = github_place(f"github://octo/{repo.name}@main/data/big.bin", access, policy)
    assert [(info.key, info.size) for info in place.store.list(place.path)] == [("data/big.bin", 1_500_000)]
    assert place.store.stat("data/big.bin") is not None and place.store.stat("data") is None


def test_the_root_lists_every_file_and_skips_submodules_and_symlinks(
    httpserver: HTTPServer, access: StorageAccess, policy: RetryPolicy, caplog: pytest.LogCaptureFixture
) -> None:
    """The whole repository is listed; a submodule and a symlink are left out with one warning."""
    repo = FakeRepo(httpserver)
    place = github_place(f"github://octo/{repo.name}@main", access, policy)
    with caplog.at_level(logging.WARNING, logger="colabflow.github"):
        assert [info.key for info in place.store.list(place.path)] == sorted(FILES)
    assert "docs/latest (a symlink)" in caplog.text and "vendor/lib (a submodule)" in caplog.text
    with pytest.raises(MissingObjectError, match="docs/latest is not a regular file"):
        place.store.open_read("docs/latest")


def test_reads_return_the_exact_bytes(httpserver: HTTPServer, access: StorageAccess, policy: RetryPolicy) -> None:
    """Every file, the 1.5 MB one and the unicode-named one included, reads back with its sha256."""
    repo = FakeRepo(httpserver)
    place = github_place(f"github://octo/{repo.name}@main", access, policy)
    for key, data in FILES.items():
        assert hashlib.sha256(read_bytes(place.store, key)).hexdigest() == hashlib.sha256(data).hexdigest(), key


def test_chunk_uris_pin_the_commit_and_reuse_the_listing(
    httpserver: HTTPServer, access: StorageAccess, policy: RetryPolicy
) -> None:
    """A chunk URI names the commit; places built from chunk URIs list the tree no second time."""
    repo = FakeRepo(httpserver)
    place = github_place(f"github://octo/{repo.name}@main/src", access, policy)
    uris = [place.uri(info.key) for info in place.store.list(place.path)]
    assert uris[0] == f"github://octo/{repo.name}@{repo.commit}/src/a.py"
    for uri in uris:
        chunk = github_place(uri, access, policy)
        assert read_bytes(chunk.store, chunk.path) == FILES[chunk.path]
    assert (repo.requests("/git/trees/"), repo.requests("/commits/")) == (1, 1)


def test_a_missing_ref_means_the_default_branch(
    httpserver: HTTPServer, access: StorageAccess, policy: RetryPolicy
) -> None:
    """Without @REF the repository's default branch is read."""
    repo = FakeRepo(httpserver, branch="trunk")
    place = github_place(f"github://octo/{repo.name}/src/a.py", access, policy)
    assert place.store.location == f"github://octo/{repo.name}@{repo.commit}"
    assert read_bytes(place.store, place.path) == FILES["src/a.py"]
    assert repo.requests("/commits/trunk") == 1


def test_a_truncated_tree_is_walked_one_directory_at_a_time(
    httpserver: HTTPServer, access: StorageAccess, policy: RetryPolicy
) -> None:
    """When the recursive listing is truncated, the same files come from the subtrees."""
    repo = FakeRepo(httpserver, truncated=True)
    place = github_place(f"github://octo/{repo.name}@main", access, policy)
    assert [info.key for info in place.store.list("")] == sorted(FILES)
    assert repo.requests("/git/trees/") == 1 + 1 + 8  # recursive, root, and each of the 8 directories


def test_rate_limit_403_waits_until_the_reset_and_logs_it(
    httpserver: HTTPServer, access: StorageAccess, policy: RetryPolicy, sleep_log: RecordedSleep,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A 403 with no requests left waits until X-RateLimit-Reset, says so in the log, then goes on."""
    repo = FakeRepo(httpserver)
    reset = int(time.time()) + 120
    httpserver.expect_oneshot_request(f"{repo.base}/commits/main").respond_with_response(
        Response("limit", 403, {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(reset)}))
    with caplog.at_level(logging.WARNING, logger="colabflow.github"):
        location = github_place(f"github://octo/{repo.name}@main", access, policy).store.location
    assert len(sleep_log.delays) == 1 and 115 <= sleep_log.delays[0] <= 120
    assert "GitHub rate limit reached (403)" in caplog.text
    assert f"waiting {sleep_log.delays[0]:.1f} s before attempt 2 of 3" in caplog.text
    assert location.endswith(repo.commit)


def test_429_honours_retry_after(
    httpserver: HTTPServer, access: StorageAccess, policy: RetryPolicy, sleep_log: RecordedSleep
) -> None:
    """A 429 on a blob waits the Retry-After seconds, then reads the blob."""
    repo = FakeRepo(httpserver)
    httpserver.expect_oneshot_request(repo.base + repo.blob_path(FILES["src/a.py"])).respond_with_response(
        Response("slow down", 429, {"Retry-After": "7"}))
    place = github_place(f"github://octo/{repo.name}@main", access, policy)
    assert read_bytes(place.store, "src/a.py") == FILES["src/a.py"]
    assert sleep_log.delays == [7.0]


def test_503_then_success_backs_off(
    httpserver: HTTPServer, access: StorageAccess, policy: RetryPolicy, sleep_log: RecordedSleep
) -> None:
    """A 503 on the tree is retried after the base delay."""
    repo = FakeRepo(httpserver)
    httpserver.expect_oneshot_request(f"{repo.base}/git/trees/{repo.commit}").respond_with_data("busy", status=503)
    place = github_place(f"github://octo/{repo.name}@main", access, policy)
    assert place.store.stat("README.md") is not None
    assert sleep_log.delays == [0.5]


def test_a_github_that_stays_down_gives_up_retryably(
    httpserver: HTTPServer, policy: RetryPolicy, sleep_log: RecordedSleep
) -> None:
    """Persistent 502s exhaust the attempts and raise the retryable RemoteUnavailableError."""
    httpserver.expect_request("/repos/octo/down/commits/main").respond_with_data("bad gateway", status=502)
    store = GitHubStore("octo", "down", "main", api_url=httpserver.url_for("/"), policy=policy)
    with pytest.raises(RemoteUnavailableError, match="gave up after 3 attempts: GitHub answered 502"):
        store.stat("README.md")
    assert sleep_log.delays == [0.5, 1.0]


@pytest.mark.parametrize(
    ("status", "token", "error", "expected"),
    [
        (401, TOKEN, StorageRejectedError, "the token in Secret block 'gh-reader' (401): it is invalid or expired"),
        (401, None, StorageRejectedError, "set github_token to a Secret block holding a token with Contents: read"),
        (403, TOKEN, StorageRejectedError, "the token in Secret block 'gh-reader' may not read ref 'main' of octo/"),
        (404, None, SourceNotFoundError, "private repositories answer 404 without a token: set github_token"),
        (404, TOKEN, SourceNotFoundError, "or the token in Secret block 'gh-reader' cannot see it"),
        (422, TOKEN, SourceNotFoundError, "GitHub has no ref 'main' of octo/"),
    ],
)
def test_refusals_fail_at_once_naming_the_setting_and_never_the_token(
    httpserver: HTTPServer, policy: RetryPolicy, status: int, token: str | None, error: type[Exception], expected: str
) -> None:
    """401/403/404/422 are not retried; the message names the block or the object, never the token."""
    repo = FakeRepo(httpserver)
    httpserver.expect_oneshot_request(f"{repo.base}/commits/main").respond_with_data(f"echo {TOKEN}", status=status)
    store = store_for(repo, policy, token)
    with pytest.raises(error) as caught:
        store.stat("README.md")
    assert expected in str(caught.value)
    assert TOKEN not in str(caught.value) and TOKEN not in repr(store) and TOKEN not in repr(vars(store))
    assert repo.requests("/commits/") == 1


def test_a_path_not_in_the_commit_is_named(httpserver: HTTPServer, access: StorageAccess, policy: RetryPolicy) -> None:
    """A location whose path is neither a file nor a directory fails naming the path and the commit."""
    repo = FakeRepo(httpserver)
    expected = f"'src/nope' is not a file or directory of github://octo/{repo.name}@{repo.commit}"
    with pytest.raises(SourceNotFoundError, match=expected):
        github_place(f"github://octo/{repo.name}@main/src/nope", access, policy)


def test_a_blob_that_does_not_match_its_sha_is_refused(
    httpserver: HTTPServer, access: StorageAccess, policy: RetryPolicy
) -> None:
    """Bytes of the right length but the wrong content are refused, not retried."""
    repo = FakeRepo(httpserver)
    httpserver.expect_oneshot_request(repo.base + repo.blob_path(FILES["src/a.py"])).respond_with_data(b"print('z')\n")
    place = github_place(f"github://octo/{repo.name}@main", access, policy)
    with pytest.raises(CorruptOutputError, match="do not match the blob sha"):
        read_bytes(place.store, "src/a.py")


def test_a_cut_short_blob_is_fetched_again(
    httpserver: HTTPServer, access: StorageAccess, policy: RetryPolicy, sleep_log: RecordedSleep
) -> None:
    """A short body is transient: the next attempt's full body is what the reader gets."""
    repo = FakeRepo(httpserver)
    big = FILES["data/big.bin"]
    httpserver.expect_oneshot_request(repo.base + repo.blob_path(big)).respond_with_data(big[:1000])
    place = github_place(f"github://octo/{repo.name}@main", access, policy)
    assert read_bytes(place.store, "data/big.bin") == big
    assert sleep_log.delays == [0.5]


@pytest.mark.parametrize("token", [TOKEN, None])
def test_a_blob_over_100_mb_is_refused_as_too_large_not_as_a_permission(
    httpserver: HTTPServer, policy: RetryPolicy, sleep_log: RecordedSleep, token: str | None
) -> None:
    """GitHub's 403 too_large on a blob says the 100 MB limit and what to do, not that the token may not read."""
    repo = FakeRepo(httpserver, token=token)
    refusal = {"message": "the requested blob is too large", "errors": [{"resource": "Blob", "field": "data",
                                                                          "code": "too_large"}]}
    httpserver.expect_oneshot_request(repo.base + repo.blob_path(FILES["data/big.bin"])).respond_with_json(refusal, 403)
    with pytest.raises(StorageRejectedError) as caught:
        read_bytes(store_for(repo, policy, token), "data/big.bin")
    message = str(caught.value)
    assert "as too large (403 too_large): its blobs API serves blobs up to 100 MB" in message
    assert "clone the repository" in message and "may not read" not in message and "anonymous" not in message
    assert sleep_log.delays == []


def test_503_with_retry_after_is_waited_out_before_the_next_request(
    httpserver: HTTPServer, caplog: pytest.LogCaptureFixture
) -> None:
    """After a 503 asking Retry-After: 1, the retry reaches the server at least 1 s later, and the log says so."""
    repo = FakeRepo(httpserver)
    with fault_proxy(httpserver.url_for("/")) as proxy:
        proxy.add(Fault("GET", "/git/blobs/", 503, {"Retry-After": "1"}, b'{"message": "busy"}'))
        store = GitHubStore(repo.owner, repo.name, "main", api_url=proxy.url,
                            policy=RetryPolicy(attempts=3, base_delay=0.01, max_delay=3600.0))
        with caplog.at_level(logging.WARNING, logger="colabflow.github"):
            assert read_bytes(store, "src/a.py") == FILES["src/a.py"]
    faulted, retried = [request for request in proxy.requests if "/git/blobs/" in request.path]
    assert faulted.faulted and not retried.faulted
    assert retried.arrived - faulted.arrived >= 1.0
    assert "GitHub answered 503 for blob" in caplog.text and "waiting 1.0 s before attempt 2 of 3" in caplog.text


@pytest.mark.parametrize("cut_body_at", [None, 1000], ids=["before-the-answer", "mid-body"])
def test_a_dropped_connection_is_retried_and_the_bytes_are_right(
    httpserver: HTTPServer, policy: RetryPolicy, sleep_log: RecordedSleep, caplog: pytest.LogCaptureFixture,
    cut_body_at: int | None,
) -> None:
    """A connection closed before or in the middle of a blob's answer is retried; the reader gets the whole blob."""
    repo = FakeRepo(httpserver)
    big = FILES["data/big.bin"]
    with fault_proxy(httpserver.url_for("/")) as proxy:
        proxy.add(Fault("GET", "/git/blobs/", None, cut_body_at=cut_body_at))
        store = GitHubStore(repo.owner, repo.name, "main", api_url=proxy.url, policy=policy)
        with caplog.at_level(logging.WARNING, logger="colabflow.github"):
            assert hashlib.sha256(read_bytes(store, "data/big.bin")).digest() == hashlib.sha256(big).digest()
    blobs = [request for request in proxy.requests if "/git/blobs/" in request.path]
    assert [request.faulted for request in blobs] == [True, False]
    assert sleep_log.delays == [0.5]
    assert "GitHub could not be reached for blob" in caplog.text and "RemoteProtocolError" in caplog.text


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        ("github://", "is malformed"),
        ("github://octo", "is malformed"),
        ("github://octo/", "is malformed"),
        ("github://oc to/repo", "is malformed"),
        ("github://-octo/repo", "is malformed"),
        ("github://octo/..", "is malformed"),
        ("github://octo/repo@", "names no ref after '@'"),
        ("github://octo/repo@/src", "names no ref after '@'"),
        ("github://octo/repo@main/src/../etc", "without '.', '..', empty segments"),
        ("github://octo/repo@main/a//b", "without '.', '..', empty segments"),
        ("github://octo/repo@main/a\nb", "control characters"),
    ],
)
def test_malformed_locations_are_refused_with_the_expected_form(location: str, expected: str) -> None:
    """Each malformed location names itself and what was expected."""
    with pytest.raises(InvalidParameterError) as caught:
        parse_github_uri(location)
    assert expected in str(caught.value) and repr(location) in str(caught.value)


def test_a_ref_with_a_slash_is_written_percent_encoded() -> None:
    """%2F in REF stands for '/', so a branch like feature/x can be named."""
    assert parse_github_uri("github://octo/repo@feature%2Fx/src/a.py") == ("octo", "repo", "feature/x", "src/a.py")
    assert parse_github_uri("github://octo/my.repo") == ("octo", "my.repo", None, "")


def test_the_token_comes_from_a_prefect_secret_block(
    prefect_api: str, httpserver: HTTPServer, policy: RetryPolicy
) -> None:
    """The token of a real Secret block is sent as Bearer, and appears in no URI, location or repr."""
    from prefect.blocks.system import Secret
    from pydantic import SecretStr

    block = f"gh-token-{uuid.uuid4().hex[:8]}"
    Secret(value=SecretStr(TOKEN)).save(block)
    repo = FakeRepo(httpserver, token=TOKEN)
    access = StorageAccess(github_token=block, github_api_url=httpserver.url_for("/"))
    place = github_place(f"github://octo/{repo.name}@main/src", access, policy)
    assert read_bytes(place.store, "src/a.py") == FILES["src/a.py"]
    assert all(request.headers["Authorization"] == f"Bearer {TOKEN}" for request, _ in httpserver.log)
    assert TOKEN not in place.uri("src/a.py") + place.store.location + repr(place) + repr(vars(place.store))
