"""`google.colab.userdata.get`, answered from secrets.json in the state folder."""

from __future__ import annotations

import json

from google.colab import errors, state_file


class NotebookAccessError(Exception):
    """The notebook may not read this secret (Notebook access is off)."""

    def __init__(self, key: str) -> None:
        super().__init__(f"Notebook does not have access to secret {key}")


class SecretNotFoundError(errors.Error):
    """No secret of this name."""

    def __init__(self, key: str) -> None:
        super().__init__(f"Secret {key} does not exist.")


def get(key: str) -> str:
    """The secret's value, or the errors Colab raises for a missing or unshared one."""
    path = state_file("secrets.json")
    secrets = json.loads(path.read_text()) if path.exists() else {}
    if key not in secrets:
        raise SecretNotFoundError(key)
    if secrets[key] is None:
        raise NotebookAccessError(key)
    return str(secrets[key])
