"""The DriveFolder block: Prefect's block checks, result storage over the fake Drive, and the pickle guard."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from prefect import flow, task
from prefect.results import ResultStore
from prefect.serializers import JSONSerializer, PickleSerializer

from blocks.drive import DriveFolder
from tasks.errors import CorruptOutputError, InvalidParameterError, StorageRejectedError
from tasks.storage.drive import drive_place
from tasks.storage.result_guard import require_json_result
from tasks.storage.stores import StorageAccess
from tests.drive_server import FakeDrive, fake_drive


@pytest.fixture
def drive() -> Iterator[FakeDrive]:
    with fake_drive() as fake:
        yield fake


@pytest.fixture
def folder(drive: FakeDrive) -> DriveFolder:
    return DriveFolder(folder_id=drive.root, api_endpoint=drive.endpoint, upload_chunk_mib=1)


@pytest.fixture(scope="module")
def service_account_info() -> dict[str, str]:
    """A service-account key of a made-up account, its token URI filled in per test."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    return {"type": "service_account", "client_email": "robot@example.iam.gserviceaccount.com",
            "private_key": pem, "private_key_id": "key-1", "token_uri": ""}


def test_paths_round_trip_sync_and_async(folder: DriveFolder, drive: FakeDrive) -> None:
    """write_path/read_path and their async twins store and return the same bytes below the folder."""
    assert folder.write_path("results/a.json", b'{"a": 1}') == f"gdrive://{drive.root}/results/a.json"
    assert folder.read_path("results/a.json") == b'{"a": 1}'
    asyncio.run(folder.awrite_path("results/b.bin", b"\x00\x01"))
    assert asyncio.run(folder.aread_path("results/b.bin")) == b"\x00\x01"
    assert drive.file_at("results/b.bin").content == b"\x00\x01"


def test_a_pickled_result_record_is_refused(folder: DriveFolder) -> None:
    """A record written by Prefect's pickle serializer is not handed back; a JSON one is."""
    ResultStore(result_storage=folder, serializer=PickleSerializer()).write({"ratio": 2.5}, key="pickled")
    ResultStore(result_storage=folder, serializer=JSONSerializer()).write({"ratio": 2.5}, key="plain")
    with pytest.raises(CorruptOutputError, match="'gdrive://.*/pickled' was written with the serializer.*pickle"):
        folder.read_path("pickled")
    assert ResultStore(result_storage=folder, serializer=JSONSerializer()).read("plain").result == {"ratio": 2.5}


def test_the_guard_refuses_custom_decoders_and_passes_other_content() -> None:
    """A JSON record naming its own decoder is refused; bytes that are no record pass unchanged."""
    record = {"metadata": {"storage_key": "k", "serializer": {"type": "json", "object_decoder": "subprocess.run"}},
              "result": "{}"}
    with pytest.raises(CorruptOutputError, match="subprocess.run"):
        require_json_result(json.dumps(record).encode(), "k")
    metadata_only = {"storage_key": "k", "serializer": {"type": "pickle", "picklelib": "cloudpickle"}}
    with pytest.raises(CorruptOutputError, match="never loads pickled"):
        require_json_result(json.dumps(metadata_only).encode(), "k")
    for content in (b"\x80\x04K\x01.", b"[1, 2]", b'{"serializer_free": true}'):
        assert require_json_result(content, "k") == content


def test_a_task_persists_its_result_on_drive(prefect_api: str, folder: DriveFolder, drive: FakeDrive) -> None:
    """A task with a saved DriveFolder as result storage writes a JSON result record to the Drive folder."""
    folder.save(f"drive-results-{uuid.uuid4().hex[:8]}")

    @task(result_storage=folder, persist_result=True, result_serializer="json", result_storage_key="measure.json")
    def measure() -> dict[str, float]:
        return {"ratio": 2.6}

    @flow
    def measure_flow() -> dict[str, float]:
        return measure()

    assert measure_flow() == {"ratio": 2.6}
    record = json.loads(drive.file_at("measure.json").content or b"")
    assert record["metadata"]["serializer"]["type"] == "json"
    assert json.loads(record["result"]) == {"ratio": 2.6}


def test_gdrive_locations_use_the_named_block(prefect_api: str, drive: FakeDrive) -> None:
    """StorageAccess(drive=NAME) reaches gdrive:// through that block; an unknown name says how to create one."""
    name = f"drive-access-{uuid.uuid4().hex[:8]}"
    DriveFolder(api_endpoint=drive.endpoint).save(name)
    place = drive_place(f"gdrive://{drive.root}/out", StorageAccess(drive=name))
    place.writable("destination").write_bytes(place.key("job/a.gz"), b"x")
    assert drive.file_at("out/job/a.gz").content == b"x"
    with pytest.raises(InvalidParameterError, match="DriveFolder block 'absent' was not found; create it"):
        drive_place(f"gdrive://{drive.root}", StorageAccess(drive="absent"))


def test_service_account_credentials_reach_drive_and_stay_secret(
    drive: FakeDrive, service_account_info: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    """The block's key signs in at its token URI; the key shows in no repr and no error or log."""
    info = {**service_account_info, "token_uri": f"{drive.endpoint}/token"}
    folder = DriveFolder(folder_id=drive.root, api_endpoint=drive.endpoint, service_account_info=info)
    folder.write_path("a.txt", b"signed")
    assert drive.made("POST", "/token")
    assert drive.made("GET", "/drive/v3/files")[0].headers["authorization"] == "Bearer fake-access-token"
    drive.fail("GET", "/drive/v3/files", 401, times=3)  # google-auth refreshes the token twice on a 401
    with caplog.at_level(logging.DEBUG), pytest.raises(StorageRejectedError, match="refused the credentials") as error:
        folder.read_path("a.txt")
    secret = info["private_key"].splitlines()[1]
    for text in (repr(folder), str(folder), folder.model_dump_json(), str(error.value), caplog.text):
        assert secret not in text


def test_a_bad_key_says_what_a_key_looks_like(drive: FakeDrive) -> None:
    """Service account info that is no key fails with what a key holds, not with its content."""
    folder = DriveFolder(folder_id=drive.root, api_endpoint=drive.endpoint, service_account_info={"x": "secret-x"})
    with pytest.raises(InvalidParameterError, match="needs type, client_email, private_key") as error:
        folder.read_path("a.txt")
    assert "secret-x" not in str(error.value)


def test_a_block_without_folder_says_so() -> None:
    """A credentials-only block cannot store results."""
    with pytest.raises(InvalidParameterError, match="no folder_id"):
        DriveFolder().read_path("a")
