"""Colab's error types, as `google.colab.errors` names them."""

from __future__ import annotations


class Error(Exception):
    """Base class for all Colab errors."""


class RuntimeManagementError(Error):
    """The runtime management service could not be reached or refused."""
