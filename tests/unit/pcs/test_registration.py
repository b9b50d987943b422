"""Platform registration: only an authenticated node gets a PCK certificate, for itself,
for a key it holds; the PCS records which platform is whose."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from cryptography import x509

from enclave_runtime.quoting.registration import (
    REGISTRATION_PATH,
    registration_request,
)
from enclave_runtime.sgx.authority import SimulatedAuthority, new_platform_identity
from enclave_runtime.sgx.platform import PlatformKeys
from kubetee.pcs.auth import (
    NODE_NAME_EXTRA,
    POD_NAME_EXTRA,
    POD_UID_EXTRA,
    AuthenticationError,
    NodeAuthenticator,
    NodeIdentity,
)
from kubetee.pcs.registry import InMemoryRegistry
from kubetee.pcs.server import Registrar, create_app
from kubetee.pcs.stores import SimulatedStore

NODE_TOKEN = "token-of-node-b"


class _Authenticator:
    """Accepts one token as node-b's; anything else as the real one would refuse it."""

    async def authenticate(self, authorization: str | None) -> NodeIdentity:
        if authorization != f"Bearer {NODE_TOKEN}":
            raise AuthenticationError("not a node token", code="UNAUTHENTICATED", status=401)
        return NodeIdentity("node-b", "system:serviceaccount:kubetee-sgx:sgx-node", "")


@pytest.fixture
async def pcs(
    authority: SimulatedAuthority,
) -> AsyncIterator[tuple[TestClient[Any, Any], InMemoryRegistry]]:
    registry = InMemoryRegistry()
    app = create_app(SimulatedStore(authority), Registrar(authority, _Authenticator(), registry))
    async with TestClient(TestServer(app)) as http:
        yield http, registry


def _keys(**family: Any) -> PlatformKeys:
    return PlatformKeys.generate(new_platform_identity(**family))


async def _register(
    http: TestClient[Any, Any], body: object, token: str | None = NODE_TOKEN
) -> tuple[int, dict[str, Any], Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = await http.post(REGISTRATION_PATH, json=body, headers=headers)
    return response.status, await response.json(), response.headers


async def test_a_node_gets_the_pck_certificate_of_its_own_key_and_is_recorded(
    pcs: tuple[TestClient[Any, Any], InMemoryRegistry], authority: SimulatedAuthority
) -> None:
    http, registry = pcs
    keys = _keys(fmspc=bytes.fromhex("00606A000000"), ca="platform")
    status, answer, headers = await _register(http, registration_request(keys))

    assert status == 201
    assert answer["node"] == "node-b"
    platform = keys.registered(
        x509.load_pem_x509_certificates(answer["pck_certificate_chain"].encode()),
        authority.settings.quoting_enclave,
    )
    assert platform.pck_chain[1] == authority.pck_ca_certificate("platform")
    assert (headers["SGX-FMSPC"], headers["SGX-PCK-Certificate-CA-Type"]) == (
        "00606A000000",
        "PLATFORM",
    )
    record = registry.records["node-b"]
    assert record.matches(platform.pck_certificate) is None
    assert (record.fmspc, record.ca, record.ppid) == (
        "00606A000000",
        "platform",
        keys.identity.ppid.hex(),
    )
    assert record.matches(authority.issue_platform().pck_certificate) is not None


@pytest.mark.parametrize("token", [None, "forged", ""])
async def test_an_unauthenticated_client_gets_nothing_and_changes_nothing(
    pcs: tuple[TestClient[Any, Any], InMemoryRegistry], token: str | None
) -> None:
    http, registry = pcs
    status, answer, _ = await _register(http, registration_request(_keys()), token)
    assert (status, answer["error"]) == (401, "UNAUTHENTICATED")
    assert "pck_certificate_chain" not in answer
    assert registry.records == {}


async def test_a_request_not_signed_by_its_pck_key_is_refused(
    pcs: tuple[TestClient[Any, Any], InMemoryRegistry],
) -> None:
    http, registry = pcs
    mine, theirs = _keys(), _keys()
    body = registration_request(mine)
    body["pck_public_key"] = registration_request(theirs)["pck_public_key"]
    status, answer, _ = await _register(http, body)
    assert (status, answer["error"]) == (400, "PROOF_INVALID")
    assert registry.records == {}


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"fmspc": "112233445566"}, "PROOF_INVALID"),  # signed fields cannot be changed
        ({"ca": "root"}, "REGISTRATION_MALFORMED"),
        ({"ppid": "zz"}, "REGISTRATION_MALFORMED"),
        ({"pcesvn": True}, "REGISTRATION_MALFORMED"),
        (
            {"pck_public_key": "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----"},
            "REGISTRATION_MALFORMED",
        ),
        ({"node": "node-a"}, "REGISTRATION_MALFORMED"),  # the node comes from the token only
    ],
)
async def test_malformed_requests_get_a_specific_refusal(
    pcs: tuple[TestClient[Any, Any], InMemoryRegistry], change: dict[str, object], code: str
) -> None:
    http, registry = pcs
    body = {**registration_request(_keys()), **change}
    status, answer, _ = await _register(http, body)
    assert (status, answer["error"]) == (400, code)
    assert registry.records == {}


async def test_a_family_the_authority_does_not_certify_is_refused(
    pcs: tuple[TestClient[Any, Any], InMemoryRegistry],
) -> None:
    http, registry = pcs
    body = registration_request(_keys(fmspc=bytes.fromhex("112233445566")))
    status, answer, _ = await _register(http, body)
    assert (status, answer["error"]) == (400, "PLATFORM_UNSUPPORTED")
    assert "112233445566" in answer["message"]
    for garbage in (b"{", b"[" * 50000, b"x" * 20000):
        response = await http.post(
            REGISTRATION_PATH, data=garbage, headers={"Authorization": f"Bearer {NODE_TOKEN}"}
        )
        assert response.status in (400, 413)
    assert registry.records == {}


# -- who is a node: the TokenReview answer, read the way the PCS reads it ----------------


class _Api:
    def __init__(self, user: dict[str, Any] | None, pod: Any = None) -> None:
        self.user, self.pod, self.reviews = user, pod, []

    def create_token_review(self, body: Any, **_: Any) -> Any:
        self.reviews.append(body)
        if self.user is None:
            return SimpleNamespace(status=SimpleNamespace(authenticated=False, user=None))
        user = SimpleNamespace(username=self.user["username"], extra=self.user.get("extra"))
        return SimpleNamespace(status=SimpleNamespace(authenticated=True, user=user))

    def read_namespaced_pod(self, name: str, namespace: str, **_: Any) -> Any:
        return self.pod


NODE_ACCOUNT = "system:serviceaccount:kube-system:kubetee-node"


def _authenticator(api: _Api) -> NodeAuthenticator:
    authenticator = NodeAuthenticator(
        None, audience="kubetee-pcs", node_accounts=["kube-system/kubetee-node"]
    )
    authenticator._authn = api  # type: ignore[assignment]
    authenticator._core = api  # type: ignore[assignment]
    return authenticator


def _pod(uid: str, node: str) -> Any:
    return SimpleNamespace(metadata=SimpleNamespace(uid=uid), spec=SimpleNamespace(node_name=node))


async def test_the_node_comes_from_the_token_binding() -> None:
    pod_bound = _Api(
        {"username": NODE_ACCOUNT, "extra": {POD_NAME_EXTRA: ["node-x7"], POD_UID_EXTRA: ["u1"]}},
        _pod("u1", "sgx-node-2"),
    )
    identity = await _authenticator(pod_bound).authenticate("Bearer t")
    assert (identity.node, identity.pod) == ("sgx-node-2", "kube-system/node-x7")
    assert pod_bound.reviews[0]["spec"]["audiences"] == ["kubetee-pcs"]
    node_bound = _Api({"username": NODE_ACCOUNT, "extra": {NODE_NAME_EXTRA: ["sgx-node-3"]}})
    assert (await _authenticator(node_bound).authenticate("Bearer t")).node == "sgx-node-3"


@pytest.mark.parametrize(
    ("api", "code", "status"),
    [
        (_Api(None), "UNAUTHENTICATED", 401),
        (
            _Api(
                {
                    "username": "system:serviceaccount:default:default",
                    "extra": {NODE_NAME_EXTRA: ["n"]},
                }
            ),
            "NOT_A_NODE",
            403,
        ),
        (_Api({"username": "alice", "extra": {}}), "NOT_A_NODE", 403),
        (_Api({"username": NODE_ACCOUNT, "extra": {}}), "TOKEN_NOT_BOUND", 403),
        (
            _Api(
                {
                    "username": NODE_ACCOUNT,
                    "extra": {POD_NAME_EXTRA: ["p"], POD_UID_EXTRA: ["old"]},
                },
                _pod("new", "n1"),
            ),
            "TOKEN_NOT_BOUND",
            403,
        ),
        (
            _Api(
                {
                    "username": NODE_ACCOUNT,
                    "extra": {POD_NAME_EXTRA: ["p"], POD_UID_EXTRA: ["u"], NODE_NAME_EXTRA: ["n2"]},
                },
                _pod("u", "n1"),
            ),
            "TOKEN_NOT_BOUND",
            403,
        ),
    ],
)
async def test_tokens_that_are_not_a_nodes_are_refused(api: _Api, code: str, status: int) -> None:
    with pytest.raises(AuthenticationError) as refused:
        await _authenticator(api).authenticate("Bearer t")
    assert (refused.value.code, refused.value.status) == (code, status)


@pytest.mark.parametrize("header", [None, "", "Basic dXNlcg==", "Bearer ", "Bearer " + "x" * 20000])
async def test_requests_without_a_bearer_token_are_not_even_reviewed(header: str | None) -> None:
    api = _Api({"username": NODE_ACCOUNT, "extra": {NODE_NAME_EXTRA: ["n"]}})
    with pytest.raises(AuthenticationError) as refused:
        await _authenticator(api).authenticate(header)
    assert refused.value.status == 401
    assert api.reviews == []


def test_the_platform_directory_holds_only_the_nodes_own_keys(
    tmp_path: Path, authority: SimulatedAuthority
) -> None:
    keys = _keys()
    keys.save(tmp_path)
    platform = keys.registered(
        authority.issue_pck_chain(keys.identity, keys.pck_key.public_key()),
        authority.settings.quoting_enclave,
    )
    platform.save(tmp_path)
    keys_on_node = sorted(p.name for p in tmp_path.iterdir() if "key" in p.name)
    assert keys_on_node == ["attestation.key.pem", "pck.key.pem"]
    assert (
        json.loads((tmp_path / "platform.json").read_text())["identity"]["ppid"]
        == keys.identity.ppid.hex()
    )
