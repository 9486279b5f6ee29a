"""Every run saves its checkpoint storage block, whoever else saves one at the same moment and however busy the server.

Both found by the pool soak (docs/benchmarks.md). On PostgreSQL, the first runs on a new server
register the block's type, schema and document at the same moment, and Prefect's `Block.save`
lets the losers fail with 409 or 404 (the run then ended Failed, "ObjectNotFound"): six
processes, released at once by a file the test creates after every one has imported colabflow,
each save a block for its own job. On SQLite under eight workers, the server answered 503 after
the client's own retries: a proxy answers 503 twice to a client that does not retry by itself.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.fault_proxy import Fault, fault_proxy
from tests.postgres import postgres_server, psql
from tests.servers import prefect_server, server_environment, wait_until

SAVERS = 6
SAVER = r'''
import sys
from pathlib import Path

from tasks.engine.checkpoints import saved_storage
from tasks.storage.stores import StorageAccess

number, folder = sys.argv[1], Path(sys.argv[2])
(folder / f"ready-{number}").touch()
while not (folder / "go").exists():
    pass
saved_storage(str(folder / f"job-{number}" / ".checkpoints"), StorageAccess())
print("saved")
'''


def test_runs_starting_together_on_a_fresh_postgres_server_all_save_their_checkpoint_block(tmp_path: Path) -> None:
    """Every saver succeeds, and PostgreSQL holds one block document per saver."""
    with postgres_server() as url, prefect_server(tmp_path / "server", database_url=url) as api_url:
        env = server_environment(tmp_path / "client-home", api_url)
        savers = [subprocess.Popen([sys.executable, "-c", SAVER, str(number), str(tmp_path)], env=env,
                                   cwd=Path(__file__).resolve().parents[2], stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True) for number in range(SAVERS)]
        try:
            wait_until(lambda: len(list(tmp_path.glob("ready-*"))) == SAVERS, 120, 0.05, "every saver to start")
            (tmp_path / "go").touch()
            outputs = [saver.communicate(timeout=120)[0] for saver in savers]
        finally:
            for saver in savers:
                saver.kill()
        assert all(output.strip().endswith("saved") for output in outputs), "\n".join(outputs)
        documents = psql(url, "select count(*) from block_document where name like 'colabflow-checkpoints-%'")
    assert documents == str(SAVERS)


def test_a_server_answering_503_delays_the_save_but_does_not_fail_it(prefect_api: str, tmp_path: Path) -> None:
    """Two 503s to the block document's creation, then the upstream's answer: the save succeeds on the third."""
    (tmp_path / "go").touch()
    with fault_proxy(prefect_api.removesuffix("/api")) as proxy:
        proxy.add(Fault("POST", r"^/api/block_documents/?$", 503, times=2))
        env = server_environment(tmp_path / "client-home", f"{proxy.url}/api")
        env["PREFECT_CLIENT_MAX_RETRIES"] = "0"
        saver = subprocess.run([sys.executable, "-c", SAVER, "busy", str(tmp_path)], env=env,
                               cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True, timeout=300)
        creations = [request for request in proxy.requests if request.method == "POST" and "/block_documents" in request.path]
    assert saver.returncode == 0 and saver.stdout.strip().endswith("saved"), saver.stdout + saver.stderr
    assert len(creations) == 3
