"""Runs that start together on a fresh server all save their checkpoint storage block.

Found by the pool soak on PostgreSQL: the first runs on a new server register the block's type,
schema and document at the same moment, and Prefect's `Block.save` lets the losers fail with 409
or 404 (the run then ended Failed, "ObjectNotFound"). Six processes, released at once by a file
the test creates after every one has imported colabflow, each save a block for its own job.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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
