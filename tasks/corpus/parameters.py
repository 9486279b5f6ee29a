"""`AnalyzeJob`, the one parameter model of the corpus analysis flow (rendered as a form in the UI)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tasks.corpus.languages import (
    KNOWN_LANGUAGES,
    SCRIPT_LANGUAGES,
    require_known,
    require_script_map,
)
from tasks.engine.parameters import (
    DEFAULT_DESTINATION,
    Callback,
    ComputeBudgetName,
    Destination,
    FollowSymlinks,
    Results,
    Sources,
    TaskRuns,
    refuse_outputs_in_sources,
)
from tasks.storage.locations import JOB_NAME_PATTERN
from tasks.storage.stores import StorageAccess

LanguageFrom = Literal["folder", "detect"]
Device = Literal["auto", "cpu", "cuda"]


class AnalyzeJob(BaseModel):
    """Count a multilingual corpus per language and report its statistics, week over week."""

    model_config = ConfigDict(extra="forbid")

    sources: Sources = Field(
        description="Folders (or files) of UTF-8 text: local paths, file://, github://OWNER/REPO@REF/PATH, "
        "gs://BUCKET/PATH, gdrive://FOLDER_ID/PATH.",
    )
    destination: Destination = Field(
        default=DEFAULT_DESTINATION,
        description="Where <job>/ goes, and the counts every week's job shares: a local directory, gs:// or gdrive://.",
    )
    results: Results = None
    access: StorageAccess = Field(
        default_factory=StorageAccess, description="Blocks whose credentials reach remote sources and destinations."
    )
    job: str | None = Field(
        default=None, pattern=JOB_NAME_PATTERN,
        description="Job name; empty: corpus-YYYY-MM-DD from the run's scheduled date, so weeks do not collide.",
    )
    languages: list[str] = Field(
        default_factory=lambda: [str(code) for code in KNOWN_LANGUAGES],
        description="Language codes to analyse, among fr, en, es, de, sa (Sanskrit), zh.",
    )
    language_from: LanguageFrom = Field(
        default="folder", description="folder: the first folder under a source names the language; detect: offline detection."
    )
    script_languages: dict[str, str] = Field(
        default_factory=lambda: {script: str(code) for script, code in SCRIPT_LANGUAGES.items()},
        description="With detect: Unicode script -> language code; a script listed here decides on its own.",
    )
    compare_with: str | None = Field(
        default=None, pattern=JOB_NAME_PATTERN,
        description="The job to compare with; empty: the latest other report at the destination.",
    )
    top: int = Field(default=20, ge=1, le=1000, description="How many of the most frequent 1-, 2- and 3-grams to report.")
    batch_size: int = Field(default=64, ge=1, le=100_000, description="Most documents in one batch.")
    batch_bytes: int = Field(default=64 * 1024 * 1024, ge=1, description="Most bytes of documents in one batch.")
    device: Device = Field(default="auto", description="Where counting runs: auto takes CUDA when the worker has it.")
    task_runs: TaskRuns = 64
    callback: Callback | None = Field(default=None, description="Optional notice sent once when the job ends.")
    refresh_checkpoints: bool = Field(default=False, description="Ignore saved checkpoints and count every document again.")
    compute_budget: ComputeBudgetName = None
    follow_symlinks: FollowSymlinks = False


    @field_validator("languages", mode="before")
    @classmethod
    def _comma_separated(cls, languages: object) -> object:
        return [code.strip() for code in languages.split(",")] if isinstance(languages, str) else languages

    @field_validator("languages")
    @classmethod
    def _known_languages(cls, languages: list[str]) -> list[str]:
        return list(require_known(languages))

    @field_validator("script_languages")
    @classmethod
    def _known_scripts(cls, script_languages: dict[str, str]) -> dict[str, str]:
        return dict(require_script_map(script_languages))

    @model_validator(mode="after")
    def _outputs_outside_sources(self) -> AnalyzeJob:
        refuse_outputs_in_sources(self.sources, {"destination": self.destination, "results": self.results})
        return self
