"""The certs package's exceptions; every message is one line a user can act on."""

from __future__ import annotations


class CertError(Exception):
    """Base class for identity and certificate problems."""


class InvalidSpiffeId(CertError):
    """A SPIFFE ID, app ID, namespace or trust domain is malformed."""


class CaNotFound(CertError):
    """The certificate authority files are missing."""


class CaInvalid(CertError):
    """The certificate authority files are unreadable, expired or do not match."""
