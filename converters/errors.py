"""The toolkit's one error family.

It lives in the lowest layer so that `converters` and `validation` can raise it
without importing `migrate`; `migrate.cli.errors` maps it to messages and exit codes.
Every message is one line that says what is wrong; `hint` says what to do.
"""

from __future__ import annotations


class MigrateError(Exception):
    """Base of every error the toolkit reports to a user."""

    exit_code: int = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def one_line(self) -> str:
        text = self.message if not self.hint else f"{self.message} ({self.hint})"
        return " ".join(text.split())


class UsageError(MigrateError):
    """A flag, argument or input file the user gave is wrong."""

    exit_code = 2


class StoreError(MigrateError):
    """The Ollama store (on disk or over the API) cannot be read."""


class GGUFError(MigrateError):
    """A GGUF file is missing, truncated, corrupt or of an unsupported kind."""


class MappingError(UsageError):
    """A `--map` override or mapping file is malformed."""


class PlanError(MigrateError):
    """A plan file is missing, malformed or from an incompatible schema version."""

    exit_code = 2


class NothingToDoError(MigrateError):
    """Input was readable but held nothing usable (e.g. no migratable model)."""


class NetworkError(MigrateError):
    """An endpoint (Ollama, the hub, vLLM) could not be reached or answered badly."""

    exit_code = 4


class DiskSpaceError(MigrateError):
    """Not enough free disk for what is about to be written."""


class HubError(MigrateError):
    """A Hugging Face hub repo cannot be fetched: missing, gated, or not in the cache offline."""


class GatedRepoError(HubError):
    """The repo exists but needs an accepted licence and a token."""


class HubUnreachableError(HubError, NetworkError):
    """The Hugging Face hub could not be reached (connection refused, DNS, timeout, 5xx)."""

    exit_code = 4
