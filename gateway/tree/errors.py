"""The errors of :mod:`gateway.tree`: a closed set, each naming the path it is about.

Every message is lowercase and names the member (as a quoted, escaped path) so the
command line can print it as it is: ``gateway: error: <message>``. None of them carries
a secret.
"""

from __future__ import annotations


class TreeError(Exception):
    """Base of every error of this package; ``path`` is the member concerned, if any."""

    def __init__(self, detail: str, *, path: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.path = path


class PlanError(TreeError):
    """A directory that cannot be pushed as it is: a link, a device, a bad or clashing name."""


class BadName(TreeError):
    """A member name outside the profile (absolute, ``..``, control characters, too long)."""


class FileChanged(TreeError):
    """A file changed (size, identity or content length) between planning and reading."""


class ExtractError(TreeError):
    """An archive refused while extracting: hostile or malformed, or not what the manifest says."""


class CommitmentMismatch(ExtractError):
    """A member's content, or the archive's structure, differs from its signed commitment."""


class ResumeError(TreeError):
    """An interrupted extraction that cannot be resumed as it stands."""


class OmsError(TreeError):
    """An OpenSSF Model Signing signature that is absent, malformed or does not verify."""
