"""Front-proxy authentication: who the kube-apiserver says is asking.

The kube-apiserver proxies a request to an aggregated API server over TLS with its
front-proxy client certificate and puts the caller's identity in headers
(``X-Remote-User``, ``X-Remote-Group``, ``X-Remote-Extra-<key>``). The headers are
believed only when the TLS client certificate chains to the request-header client CA
and its common name is one of the allowed names: anyone else could write them. These
settings are what the kube-apiserver publishes in the ``kube-system/
extension-apiserver-authentication`` ConfigMap, where a real aggregated server reads
them (:meth:`RequestHeaderConfig.from_configmap`).

The TLS layer asks for a client certificate and checks its chain against the CA
(``CERT_OPTIONAL``: a connection without one is accepted and answered 401 here);
:meth:`FrontProxyAuthenticator.authenticate` checks the chain, validity, usage and
name again, so the decision does not hang on how the socket was configured.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import unquote

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from multidict import MultiMapping

from kubetee.metrics.errors import MetricsError, UnauthenticatedError

CONFIGMAP_NAMESPACE = "kube-system"
CONFIGMAP_NAME = "extension-apiserver-authentication"
# Every authenticated user is in this group (RBAC's discovery roles are bound to it).
AUTHENTICATED_GROUP = "system:authenticated"


class AuthenticationConfigError(MetricsError):
    """The request-header settings are missing or unreadable."""


@dataclass(frozen=True, slots=True)
class UserInfo:
    """The caller as the kube-apiserver authenticated it."""

    name: str
    groups: tuple[str, ...] = ()
    extra: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class RequestHeaderConfig:
    """Whom to believe, and which headers carry the identity."""

    client_ca_pem: str
    allowed_names: tuple[str, ...] = ()  # empty: any certificate from the CA
    username_headers: tuple[str, ...] = ("X-Remote-User",)
    group_headers: tuple[str, ...] = ("X-Remote-Group",)
    extra_header_prefixes: tuple[str, ...] = ("X-Remote-Extra-",)

    @classmethod
    def from_configmap(cls, data: Mapping[str, str]) -> RequestHeaderConfig:
        """From ``kube-system/extension-apiserver-authentication`` (values are JSON lists)."""
        pem = data.get("requestheader-client-ca-file", "")
        if "BEGIN CERTIFICATE" not in pem:
            raise AuthenticationConfigError(
                f"{CONFIGMAP_NAMESPACE}/{CONFIGMAP_NAME} has no requestheader-client-ca-file: "
                "the kube-apiserver runs without --requestheader-client-ca-file, so it cannot "
                "proxy to aggregated API servers"
            )

        def listed(key: str, default: tuple[str, ...]) -> tuple[str, ...]:
            raw = data.get(key)
            if not raw:
                return default
            try:
                values = json.loads(raw)
            except ValueError as error:
                raise AuthenticationConfigError(f"{key} is not a JSON list: {error}") from None
            return tuple(str(v) for v in values)

        return cls(
            client_ca_pem=pem,
            allowed_names=listed("requestheader-allowed-names", ()),
            username_headers=listed("requestheader-username-headers", ("X-Remote-User",)),
            group_headers=listed("requestheader-group-headers", ("X-Remote-Group",)),
            extra_header_prefixes=listed(
                "requestheader-extra-headers-prefix", ("X-Remote-Extra-",)
            ),
        )

    def ca_certificates(self) -> list[x509.Certificate]:
        try:
            return x509.load_pem_x509_certificates(self.client_ca_pem.encode())
        except ValueError as error:
            raise AuthenticationConfigError(
                f"the request-header client CA is not PEM certificates: {error}"
            ) from None


class FrontProxyAuthenticator:
    """Turns a proxied request into a :class:`UserInfo`, or refuses it."""

    def __init__(self, config: RequestHeaderConfig) -> None:
        self.config = config
        self._cas = config.ca_certificates()
        if not self._cas:
            raise AuthenticationConfigError("the request-header client CA bundle is empty")

    def authenticate(
        self,
        peer_certificate: bytes | None,
        headers: MultiMapping[str],
        now: datetime | None = None,
    ) -> UserInfo:
        if peer_certificate is None:
            raise UnauthenticatedError(
                "no client certificate: this server answers only requests proxied by the "
                "kube-apiserver (use kubectl get --raw /apis/custom.metrics.k8s.io/v1beta2/...)"
            )
        self._check_certificate(x509.load_der_x509_certificate(peer_certificate), now)
        names = [v for h in self.config.username_headers for v in headers.getall(h, []) if v]
        if not names:
            raise UnauthenticatedError(
                f"the front-proxy request names no user ({', '.join(self.config.username_headers)})"
            )
        groups = tuple(v for h in self.config.group_headers for v in headers.getall(h, []) if v)
        if AUTHENTICATED_GROUP not in groups:  # as the generic API server's authenticator adds
            groups = (*groups, AUTHENTICATED_GROUP)
        return UserInfo(name=names[0], groups=groups, extra=self._extra(headers))

    def _check_certificate(self, cert: x509.Certificate, now: datetime | None) -> None:
        moment = now or datetime.now(UTC)
        if not cert.not_valid_before_utc <= moment <= cert.not_valid_after_utc:
            raise UnauthenticatedError("the client certificate is expired or not yet valid")
        if not any(_issued_by(cert, ca) for ca in self._cas):
            raise UnauthenticatedError(
                "the client certificate is not signed by the request-header client CA"
            )
        try:
            usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        except x509.ExtensionNotFound:
            usages = None
        if usages is not None and ExtendedKeyUsageOID.CLIENT_AUTH not in usages:
            raise UnauthenticatedError("the client certificate is not for client authentication")
        allowed = self.config.allowed_names
        common_names = [
            str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        ]
        if allowed and not any(name in allowed for name in common_names):
            raise UnauthenticatedError(
                f"the client certificate's common name {common_names[:1]} is not an allowed "
                f"front-proxy name ({', '.join(allowed)})"
            )

    def _extra(self, headers: MultiMapping[str]) -> dict[str, tuple[str, ...]]:
        extra: dict[str, list[str]] = {}
        for header in dict.fromkeys(headers.keys()):  # each name once, in order
            for prefix in self.config.extra_header_prefixes:
                if header.lower().startswith(prefix.lower()):
                    key = unquote(header[len(prefix) :]).lower()
                    extra.setdefault(key, []).extend(headers.getall(header, []))
        return {key: tuple(values) for key, values in extra.items()}


def _issued_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True
