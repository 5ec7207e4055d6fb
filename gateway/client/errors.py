"""The client's errors: what went wrong on this machine, told as one line and perhaps a hint.

None of them is an HTTP error. The server's :class:`gateway.errors.GatewayError` carries
a status and a problem type because it is rendered on the wire; these never reach a
wire, so they carry only a ``detail`` (what went wrong) and an optional ``hint`` (what
to try), which :func:`gateway.tui.reported` prints as ``gateway: error: ...`` and
``gateway: hint: ...``. An answer the gateway refused is :class:`gateway.client.http.ApiError`,
which keeps the status the gateway actually sent.
"""

from __future__ import annotations


class ClientError(Exception):
    """Base of every error the client reports to its user; ``exit_code`` its exit status."""

    exit_code = 1

    def __init__(self, detail: str, *, hint: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.hint = hint

    def diagnostics(self) -> str:
        return self.detail


class InvocationError(ClientError):
    """Options that do not fit together, or one that is missing for what was asked."""


class PrivateKeyError(ClientError):
    """A private key file that cannot be written or read (an age identity, a signing key)."""


class AgeKeyError(ClientError):
    """An age recipient, identity file or header that does not parse or open."""


class PushError(ClientError):
    """A push that cannot start or go on."""


class FileChanged(ClientError):
    """The file being pushed changed size while it was read."""


class PushStateError(ClientError):
    """A saved push state that is unreadable or absent."""


class PullError(ClientError):
    """A download that is not the lab's artifact: forged chunk, wrong size or digest."""


class WriteFailed(ClientError):
    """This machine could not write what was downloaded (a full disk, say): not retried."""

    def __init__(self, path: str, error: OSError) -> None:
        super().__init__(f"cannot write {path}: {error.strerror or error}")
        self.path = path
        self.error = error


class TransferStopped(ClientError):
    """A push or pull that stopped part-way: what was kept, and the command that resumes."""

    def __init__(self, detail: str, *, hint: str | None = None, exit_code: int = 1) -> None:
        super().__init__(detail, hint=hint)
        self.exit_code = exit_code


class UntrustedManifest(ClientError):
    """A manifest whose signature does not verify under a key this machine trusts."""


class AuditError(ClientError):
    """The gateway's answers about its log do not fit together."""


class AuditKeyError(ClientError):
    """A verifier key that is malformed, or a checkpoint that does not verify under it."""
