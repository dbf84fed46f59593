"""One exception hierarchy for every loading and saving failure in `sae_analysis.io`.

Every message names the file (or repository) concerned and says what to do. All classes derive from `SAELoadError`,
itself a `sae_analysis.errors.ProjectError` (a `ValueError`), so callers can catch one type; the CLI turns them into a
one-line message and exit code 2.
"""

from __future__ import annotations

from sae_analysis.errors import ProjectError


class SAELoadError(ProjectError):
    """Base class: a checkpoint, config or model could not be loaded or saved."""


class MissingFileError(SAELoadError):
    """A required file is absent (locally, or in a Hub repository)."""


class CorruptFileError(SAELoadError):
    """A file exists but cannot be parsed: truncated, corrupt, or of the wrong kind."""


class UnsafePickleError(CorruptFileError):
    """A pickle holds objects other than tensors; it was refused (`weights_only=True`), never executed."""


class ShapeMismatchError(SAELoadError):
    """Weights disagree with the config (or with each other) about d_in / d_sae."""


class NonFiniteWeightsError(SAELoadError):
    """A weight tensor holds NaN or inf."""


class UnknownFormatError(SAELoadError):
    """The files found match no known checkpoint format, or the format's variant is unsupported."""


class HubError(SAELoadError):
    """The Hugging Face Hub could not provide a file (offline and not cached, unreachable, server error, not found)."""


__all__ = [
    "SAELoadError",
    "MissingFileError",
    "CorruptFileError",
    "UnsafePickleError",
    "ShapeMismatchError",
    "NonFiniteWeightsError",
    "UnknownFormatError",
    "HubError",
]
