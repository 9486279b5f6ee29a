"""The Colab worker notebook and the GitHub Actions workflow: their structure, and their code run off Colab."""

from __future__ import annotations

import ast
import contextvars
import os
import re
import subprocess
import sys
import threading
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any
from uuid import UUID

import nbformat
import pytest
import yaml

from tests.servers import wait_until

ROOT = Path(__file__).parents[2]
NOTEBOOK = ROOT / "deployments" / "colab_worker.ipynb"
WORKFLOW = ROOT / "deployments" / "github-actions.yml"
SECRET_NAMES = ("PREFECT_API_KEY", "PREFECT_API_AUTH_STRING")
FORK = '"git+https://github.com/YOUR-ORG/colabflow"'
LAB_FORK = '"git+https://github.com/lab/colabflow"'
PIP_INSTALL = re.compile(r"\bpip3?\s+install\b")


def read_notebook() -> Any:
    return nbformat.read(NOTEBOOK, as_version=4)


def code_cells() -> list[str]:
    return [cell.source for cell in read_notebook().cells if cell.cell_type == "code"]


def as_python(source: str) -> str:
    """A cell's source with IPython's `!` and `%` lines turned into calls of `__shell__`."""
    lines = []
    for line in source.splitlines():
        stripped = line.lstrip()
        if stripped.startswith(("!", "%")):
            indent = line[: len(line) - len(stripped)]
            lines.append(f"{indent}__shell__({stripped!r})")
        else:
            lines.append(line)
    return "\n".join(lines)


def test_notebook_is_valid_nbformat_4() -> None:
    """The notebook passes nbformat's schema validation."""
    notebook = read_notebook()
    nbformat.validate(notebook)
    assert notebook.nbformat == 4


def test_notebook_opens_with_a_markdown_intro() -> None:
    """The first cell is markdown that says what the runtime becomes."""
    first = read_notebook().cells[0]
    assert first.cell_type == "markdown"
    assert "colab-gpu" in first.source and "worker" in first.source


def test_no_cell_installs_or_upgrades_torch() -> None:
    """colabflow is installed, and no pip line mentions torch (Colab's own build must stay)."""
    installs = [line for source in code_cells() for line in source.splitlines() if PIP_INSTALL.search(line)]
    assert any("colabflow" in line for line in installs)
    assert not [line for line in installs if "torch" in line.lower()]


def test_api_url_is_read_through_the_host() -> None:
    """PREFECT_API_URL comes from the host's secrets (Colab's userdata) and goes into the environment the worker inherits."""
    cells = [source for source in code_cells() if "host.secret(" in source]
    assert len(cells) == 1
    assert "host = current_host()" in cells[0]
    assert '"PREFECT_API_URL"' in cells[0] and 'os.environ["PREFECT_API_URL"]' in cells[0]
    assert "Notebook access" in cells[0]
    assert not [source for source in code_cells() if "userdata.get(" in source or "drive.mount(" in source]


def test_worker_runs_as_a_child_process() -> None:
    """`colabflow worker` starts on a `!` line; the kernel imports only colabflow's host interface."""
    lines = [line.strip() for source in code_cells() for line in source.splitlines()]
    assert any(line.startswith("!colabflow worker") for line in lines)
    imports = re.compile(r"^(from|import)\s+(flows|tasks|deployments|blocks|prefect)\b")
    assert [line for line in lines if imports.match(line)] == ["from tasks.hosts import current_host"]
    assert not [line for line in lines if "asyncio" in line]


def test_the_host_interface_imports_no_prefect() -> None:
    """Importing tasks.hosts (as the notebook's kernel does) loads neither Prefect nor colabflow's flows."""
    code = ("import sys, tasks.hosts; print(sorted({name.split('.')[0] for name in sys.modules} "
            "& {'prefect', 'flows', 'deployments', 'blocks', 'asyncio'}))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert result.stdout.strip() == "[]", result.stdout + result.stderr


def secret_variables(trees: list[ast.Module]) -> set[str]:
    """Names assigned from `host.secret(...)` or `userdata.get(...)`, or from a notebook function that calls one."""
    readers = {node.name for tree in trees for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)
               and ("userdata.get(" in ast.unparse(node) or "host.secret(" in ast.unparse(node))}
    names = set()
    for tree in trees:
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Assign) and isinstance(node.value, ast.Call)):
                continue
            called = ast.unparse(node.value.func)
            if called in ("userdata.get", "host.secret") or called in readers:
                names |= {target.id for target in node.targets if isinstance(target, ast.Name)}
    return names


def test_no_cell_prints_a_secret() -> None:
    """No print() call takes a variable read from Colab secrets, the environment, or a secret's name."""
    trees = [ast.parse(as_python(source)) for source in code_cells()]
    secrets = secret_variables(trees)
    assert {"api_url", "value"} <= secrets
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print":
                printed = ast.unparse(node)
                names = {name.id for name in ast.walk(node) if isinstance(name, ast.Name)}
                assert not names & secrets, printed
                assert "environ" not in printed and not any(secret in printed for secret in SECRET_NAMES), printed


class FakeColab:
    """Stand-ins for google.colab's userdata, drive and auth, and for torch, installed in sys.modules."""

    def __init__(self, secrets: dict[str, str]) -> None:
        self.secrets = secrets
        self.mounted: list[str] = []
        self.signed_in = 0

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        userdata = types.ModuleType("google.colab.userdata")
        userdata.SecretNotFoundError = type("SecretNotFoundError", (Exception,), {})  # type: ignore[attr-defined]
        userdata.NotebookAccessError = type("NotebookAccessError", (Exception,), {})  # type: ignore[attr-defined]

        def get(name: str) -> str:
            if name not in self.secrets:
                raise userdata.SecretNotFoundError(name)
            return self.secrets[name]

        userdata.get = get  # type: ignore[attr-defined]
        drive = types.ModuleType("google.colab.drive")
        drive.mount = self.mounted.append  # type: ignore[attr-defined]
        auth = types.ModuleType("google.colab.auth")

        def authenticate_user() -> None:
            self.signed_in += 1

        auth.authenticate_user = authenticate_user  # type: ignore[attr-defined]
        colab = types.ModuleType("google.colab")
        colab.userdata, colab.drive, colab.auth = userdata, drive, auth  # type: ignore[attr-defined]
        torch = types.ModuleType("torch")
        torch.__version__ = "2.8.0+cu126"  # type: ignore[attr-defined]
        torch.cuda = types.SimpleNamespace(is_available=lambda: True, get_device_name=lambda index: "Tesla T4")  # type: ignore[attr-defined]
        for name, module in {"google.colab": colab, "google.colab.userdata": userdata,
                             "google.colab.drive": drive, "google.colab.auth": auth, "torch": torch}.items():
            monkeypatch.setitem(sys.modules, name, module)


@pytest.fixture
def fake_prefect(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[int], Path]:
    """A `prefect` command on PATH that records its arguments and exits with a chosen code."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "prefect-calls.txt"
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    for name in ("PREFECT_API_URL", *SECRET_NAMES):
        monkeypatch.setenv(name, "restored-after-the-test")
        monkeypatch.delenv(name)

    def make(exit_code: int) -> Path:
        script = bin_dir / "prefect"
        script.write_text(f'#!/bin/sh\necho "$* url=$PREFECT_API_URL" >> {calls}\n'
                          f'[ {exit_code} -eq 0 ] || echo "work pool not found" >&2\nexit {exit_code}\n')
        script.chmod(0o755)
        return calls

    return make


def run_notebook(settings: dict[str, str]) -> list[str]:
    """Run every code cell in order, in one namespace; return the shell lines it ran, expanded."""
    shell_lines: list[str] = []
    namespace: dict[str, Any] = {}
    namespace["__shell__"] = lambda line: shell_lines.append(line.format_map(namespace))
    for index, source in enumerate(code_cells()):
        if index == 0:
            for old, new in settings.items():
                assert old in source
                source = source.replace(old, new)
        exec(compile(as_python(source), f"<cell {index}>", "exec"), namespace)
    return shell_lines


def test_notebook_sets_up_the_worker_off_colab(
    fake_prefect: Callable[[int], Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """With secrets and a fork set: installs without torch, exports the secrets, mounts Drive, starts the worker."""
    calls = fake_prefect(0)
    colab = FakeColab({"PREFECT_API_URL": "https://prefect.example.org/api", "PREFECT_API_KEY": "pnu_not-shown"})
    colab.install(monkeypatch)
    shell_lines = run_notebook({FORK: LAB_FORK, 'QUEUE = ""': 'QUEUE = "t4, any"'})
    assert shell_lines == [
        '%pip install --quiet "colabflow @ git+https://github.com/lab/colabflow"',
        "!colabflow worker --idle-release 30 --queue t4 --queue any",
    ]
    assert os.environ["PREFECT_API_URL"] == "https://prefect.example.org/api"
    assert os.environ["PREFECT_API_KEY"] == "pnu_not-shown"
    assert "PREFECT_API_AUTH_STRING" not in os.environ
    assert colab.mounted == ["/content/drive"] and colab.signed_in == 1
    assert calls.read_text() == "work-pool inspect colab-gpu url=https://prefect.example.org/api\n"
    output = capsys.readouterr().out
    assert "Tesla T4" in output and "prefect.example.org" in output and "pnu_not-shown" not in output


def test_notebook_can_keep_the_runtime_when_idle(fake_prefect: Callable[[int], Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """IDLE_RELEASE_MINUTES = 0 starts the worker without --idle-release, so it never releases the runtime."""
    fake_prefect(0)
    FakeColab({"PREFECT_API_URL": "https://prefect.example.org/api"}).install(monkeypatch)
    shell_lines = run_notebook({FORK: LAB_FORK, "IDLE_RELEASE_MINUTES = 30": "IDLE_RELEASE_MINUTES = 0"})
    assert shell_lines[-1].split() == ["!colabflow", "worker"]


def test_notebook_can_leave_drive_unmounted(
    fake_prefect: Callable[[int], Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """MOUNT_DRIVE = False mounts nothing, says outputs on the runtime's disk are lost, and still starts the worker."""
    fake_prefect(0)
    colab = FakeColab({"PREFECT_API_URL": "https://prefect.example.org/api"})
    colab.install(monkeypatch)
    shell_lines = run_notebook({FORK: LAB_FORK, "MOUNT_DRIVE = True": "MOUNT_DRIVE = False"})
    assert colab.mounted == []
    assert "Drive not mounted: outputs and checkpoints on this runtime's disk are lost" in capsys.readouterr().out
    assert shell_lines[-1] == "!colabflow worker --idle-release 30"


def test_notebook_off_colab_uses_the_local_host(
    fake_prefect: Callable[[int], Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without google.colab the same cells read the Prefect API from the environment and mount no Drive."""
    calls = fake_prefect(0)
    torch = types.ModuleType("torch")
    torch.__version__ = "2.8.0+cpu"  # type: ignore[attr-defined]
    torch.cuda = types.SimpleNamespace(is_available=lambda: False)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "google.colab", None)  # `import google.colab` fails, as off Colab
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:4200/api")
    shell_lines = run_notebook({FORK: LAB_FORK, "GOOGLE_SIGN_IN = True": "GOOGLE_SIGN_IN = False"})
    assert calls.read_text() == "work-pool inspect colab-gpu url=http://127.0.0.1:4200/api\n"
    assert "Drive not mounted" in capsys.readouterr().out
    assert shell_lines[-1] == "!colabflow worker --idle-release 30"


def test_notebook_stops_at_the_placeholder_fork(fake_prefect: Callable[[int], Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """Run all with COLABFLOW_SOURCE left at YOUR-ORG stops before installing anything."""
    FakeColab({"PREFECT_API_URL": "https://prefect.example.org/api"}).install(monkeypatch)
    with pytest.raises(ValueError, match="COLABFLOW_SOURCE still names YOUR-ORG"):
        run_notebook({})


def test_notebook_explains_a_missing_api_url_secret(fake_prefect: Callable[[int], Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the PREFECT_API_URL secret, the secrets cell says where to add it and never starts a worker."""
    fake_prefect(0)
    FakeColab({"PREFECT_API_KEY": "pnu_not-shown"}).install(monkeypatch)
    with pytest.raises(RuntimeError, match=r"PREFECT_API_URL is missing.*key icon.*'Notebook access'") as error:
        run_notebook({FORK: LAB_FORK})
    assert "pnu_not-shown" not in str(error.value)


def test_notebook_explains_a_missing_work_pool(fake_prefect: Callable[[int], Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """When the API does not show the colab-gpu pool, the notebook says to run `colabflow setup`."""
    fake_prefect(1)
    FakeColab({"PREFECT_API_URL": "https://prefect.example.org/api"}).install(monkeypatch)
    with pytest.raises(RuntimeError, match=r"prefect\.example\.org.*colabflow setup.*work pool not found"):
        run_notebook({FORK: LAB_FORK})


def read_workflow() -> dict[Any, Any]:
    workflow = yaml.safe_load(WORKFLOW.read_text())
    assert isinstance(workflow, dict)
    return workflow


def run_step() -> dict[str, Any]:
    steps = [step for job in read_workflow()["jobs"].values() for step in job["steps"]
             if "prefect deployment run" in step.get("run", "")]
    assert len(steps) == 1
    step: dict[str, Any] = steps[0]
    return step


def test_workflow_is_yaml_with_a_manual_trigger() -> None:
    """The workflow parses as YAML and is started by hand with source, destination and job."""
    workflow = read_workflow()
    triggers = workflow["on"] if "on" in workflow else workflow[True]  # YAML 1.1 reads a bare `on` as true
    assert set(triggers["workflow_dispatch"]["inputs"]) == {"source", "destination", "job"}


def test_workflow_runs_the_deployment_and_watches_it() -> None:
    """The run step calls `prefect deployment run` with --watch and builds its parameters with jq."""
    step = run_step()
    assert re.search(r'prefect deployment run "\$DEPLOYMENT" --params "\$PARAMS" \\\s*--watch ', step["run"])
    assert step["env"]["DEPLOYMENT"] == "compress-chunks/colab-gpu"
    assert "jq -n --arg source" in step["run"]


def test_workflow_reads_secrets_only_from_repository_secrets() -> None:
    """Secrets reach the step only as `${{ secrets.NAME }}` env values; no script expands an expression or echoes one."""
    text = WORKFLOW.read_text()
    expressions = re.findall(r"\$\{\{\s*secrets\.(\w+)\s*\}\}", text)
    assert len(expressions) == len(re.findall(r"secrets\.", text)) == 3
    step = run_step()
    assert {name: step["env"][name] for name in ("PREFECT_API_URL", *SECRET_NAMES)} == {
        name: f"${{{{ secrets.{name} }}}}" for name in ("PREFECT_API_URL", *SECRET_NAMES)
    }
    for job in read_workflow()["jobs"].values():
        for each in job["steps"]:
            script = each.get("run", "")
            assert "${{" not in script
            assert not [line for line in script.splitlines() if "echo" in line and "PREFECT_API" in line]


@pytest.fixture
def watch_deployment(prefect_api: str) -> tuple[str, str]:
    """`compress-chunks/github-actions-test`: the real parameter schema, enforced, and no work pool."""
    from prefect.client.orchestration import get_client
    from prefect.utilities.callables import parameter_schema

    from flows.compress_chunks import compress_chunks

    with get_client(sync_client=True) as client:
        flow_id = client.create_flow_from_name("compress-chunks")
        client.create_deployment(
            flow_id=flow_id, name="github-actions-test", enforce_parameter_schema=True,
            parameter_openapi_schema=parameter_schema(compress_chunks).model_dump_for_openapi(),
        )
    return prefect_api, "compress-chunks/github-actions-test"


def run_workflow_step(
    api_url: str, deployment: str, tmp_path: Path, job: str, play: Callable[[UUID, Path], None] | None
) -> subprocess.CompletedProcess[str]:
    """Run the workflow's script as GitHub would (`bash -eo pipefail`) while `play` moves the run's states.

    `play` gets the run's id and the file the step's stdout goes to, so it can wait for the step
    to show each state before it sets the next.
    """
    env = {
        **os.environ, **run_step()["env"], "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "PREFECT_API_URL": api_url, "PREFECT_API_KEY": "", "PREFECT_API_AUTH_STRING": "", "RUNNER_TEMP": str(tmp_path),
        "SOURCE": "/content/drive/MyDrive/corpus", "DESTINATION": "/content/drive/MyDrive/out", "JOB": job,
        "DEPLOYMENT": deployment, "WATCH_MINUTES": "3", "RECOVERY_WAIT_SECONDS": "6", "POLL_SECONDS": "1",
    }
    script = tmp_path / "step.sh"
    script.write_text(run_step()["run"])
    stdout, stderr = tmp_path / "step.out", tmp_path / "step.err"
    with stdout.open("w") as out, stderr.open("w") as err:
        step = subprocess.Popen(["bash", "-eo", "pipefail", str(script)], env=env, stdout=out, stderr=err, text=True)
        player = None
        if play is not None:
            context = contextvars.copy_context()  # the thread keeps the test server's Prefect settings
            player = threading.Thread(target=context.run, args=(lambda: play(wait_for_run(job), stdout),), daemon=True)
            player.start()
        returncode = step.wait(timeout=300)
    if player is not None:
        player.join(timeout=60)
    return subprocess.CompletedProcess(step.args, returncode, stdout.read_text(), stderr.read_text())


def wait_for_run(job: str) -> UUID:
    """The id of the flow run whose request names `job`, once the step has created it."""
    from prefect.client.orchestration import get_client

    from prefect.client.schemas.filters import FlowFilter, FlowFilterName
    from prefect.client.schemas.sorting import FlowRunSort

    def created() -> UUID | None:
        runs = client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["compress-chunks"])),
                                     sort=FlowRunSort.EXPECTED_START_TIME_DESC, limit=50)
        return next((run.id for run in runs if run.parameters.get("request", {}).get("job") == job), None)

    with get_client(sync_client=True) as client:
        found: UUID = wait_until(created, 120, 0.5, f"a flow run for job {job}")
    return found


# `--watch` stops on these; the step has taken one in only once the watch has ended on it.
FINAL_STATE_NAMES = {"Completed", "Failed", "Cancelled", "Crashed", "Abandoned"}


def set_states(flow_run_id: UUID, step_output: Path, *states: str) -> None:
    """Force the run through states (`TYPE` or `TYPE:Name`), each once the step has shown the one before."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import State, StateType

    def shown(name: str) -> int:
        """How often the step took the state in: `--watch` showing it (or ending on it), or its own poll."""
        output = step_output.read_text()
        seen = output.count(f"finished in state '{name}'") + output.count(f"flow run {flow_run_id}: {name}\n")
        return seen if name in FINAL_STATE_NAMES else seen + output.count(f"prefect.flow-run.{name} ")

    with get_client(sync_client=True) as client:
        for state in states:
            state_type, _, name = state.partition(":")
            shown_name = name or state_type.capitalize()
            before = shown(shown_name)
            client.set_flow_run_state(flow_run_id, State(type=StateType(state_type), name=name or None), force=True)
            wait_until(lambda: shown(shown_name) > before, 60, 0.2, f"the step showing {shown_name}")


def test_workflow_keeps_watching_a_run_that_recovers_from_a_crash(watch_deployment: tuple[str, str], tmp_path: Path) -> None:
    """A run that crashes, is rescheduled and completes makes the step succeed, with the jq-built parameters accepted."""
    result = run_workflow_step(*watch_deployment, tmp_path, "recovers", lambda run, output: set_states(
        run, output, "RUNNING", "CRASHED", "SCHEDULED", "RUNNING", "COMPLETED"))
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Flow run finished in state 'Crashed'." in output
    assert re.search(r"Scheduled\n(.*\n)*.*Running\n(.*\n)*Flow run finished successfully in 'Completed'.\n$", result.stdout), output


def test_workflow_fails_when_the_run_fails(watch_deployment: tuple[str, str], tmp_path: Path) -> None:
    """A Failed run makes the step fail."""
    result = run_workflow_step(*watch_deployment, tmp_path, "fails", lambda run, output: set_states(
        run, output, "RUNNING", "FAILED"))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Flow run finished in state 'Failed'." in result.stdout + result.stderr


def test_workflow_gives_up_on_a_run_that_stays_crashed(watch_deployment: tuple[str, str], tmp_path: Path) -> None:
    """A Crashed run that recovery does not put back fails the step after the recovery wait, saying why."""
    result = run_workflow_step(*watch_deployment, tmp_path, "stays-crashed", lambda run, output: set_states(
        run, output, "RUNNING", "CRASHED"))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "stayed Crashed for 6 s" in result.stdout + result.stderr


def test_workflow_stops_at_a_run_that_used_up_its_attempts(watch_deployment: tuple[str, str], tmp_path: Path) -> None:
    """A run that ends Crashed as "Abandoned" (out of attempts) fails the step at once, saying why."""
    started = time.monotonic()
    result = run_workflow_step(*watch_deployment, tmp_path, "abandoned", lambda run, output: set_states(
        run, output, "RUNNING", "CRASHED:Abandoned"))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "used up its attempts" in result.stdout + result.stderr
    assert time.monotonic() - started < 30


def test_workflow_rejects_bad_parameters_before_a_run_exists(watch_deployment: tuple[str, str], tmp_path: Path) -> None:
    """A job name the CompressJob model refuses fails the step at once, and no run is created."""
    result = run_workflow_step(*watch_deployment, tmp_path, "bad name!", None)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "Created flow run" not in output and "job" in output
