"""The service's view of the cluster, through the Kubernetes API.

Reads pods, EnclaveContainers and Secrets from the watch caches of ``cluster_cache``
(no apiserver request on an attestation's path); writes the ``kubetee.io/attested``
readiness gate condition of an attested pod and Events. The kubernetes client is
synchronous, so every write runs in a worker thread.

Only successes change a pod, and only what changed: a steady re-attestation moves the
``attested-until`` annotation (one patch); the condition is patched and a Normal Event
recorded only when the pod first attests or what it proved changes. A refusal of
verified evidence becomes a Warning Event on the EnclaveContainer that evidence names
(at most one per pod and reason a minute from one process), never a change to the pod;
requests whose evidence did not verify write nothing at all. Replicas lose the
condition through the operator (policy changed, attestation validity run out).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from kubetee.api.v1alpha1 import API_VERSION, SecretKeyRef
from kubetee.attestation.errors import AttestationError
from kubetee.attestation.verified import VerifiedQuote
from kubetee.attestation_service.cluster_cache import ClusterCache, InvalidEnclaveContainer
from kubetee.attestation_service.errors import (
    BackendUnavailableError,
    ResourceNotFoundError,
    WorkloadUnknownError,
)
from kubetee.attestation_service.names import (
    ATTESTED_CLAIMS_ANNOTATION,
    ATTESTED_CONDITION,
    ATTESTED_POLICY_ANNOTATION,
    ATTESTED_UNTIL_ANNOTATION,
    COMPONENT,
    EC_LABEL,
)
from kubetee.attestation_service.printable import printable
from kubetee.attestation_service.replicas import claims_of
from kubetee.attestation_service.sessions import PodRef
from kubetee.attestation_service.watch_cache import NotSyncedError, WatchCache
from kubetee.attestation_service.workloads import (
    EnclaveContainerView,
    RecordedAttestation,
    Workload,
)
from kubetee.tcb.names import DEADLINE_ANNOTATION
from kubetee.tcb.recovery import parse_deadline, pending_since

log = logging.getLogger(__name__)
T = TypeVar("T")
_NOT_FOUND = 404
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
# Read objects as the API's JSON (camelCase, as in manifests) rather than client models.
_RAW: dict[str, Any] = {"_preload_content": False}
# A refusal of the same pod for the same reason is recorded as an Event once in this long.
REFUSAL_EVENT_INTERVAL_SECONDS = 60.0
_REFUSALS_REMEMBERED = 4096
_ATTESTED_ANNOTATIONS = (
    ATTESTED_POLICY_ANNOTATION,
    ATTESTED_UNTIL_ANNOTATION,
    ATTESTED_CLAIMS_ANNOTATION,
)


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class KubernetesBackend:
    """Implements ``WorkloadDirectory`` and ``AttestationReporter`` on the Kubernetes API."""

    def __init__(
        self,
        api_client: Any,
        cache: ClusterCache,
        *,
        instance: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._core = client.CoreV1Api(api_client)
        self._cache = cache
        self._instance = instance
        self._clock = clock
        # (pod uid, reason) -> when its last Warning Event was recorded (oldest first).
        self._refusals: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._refusals_lock = threading.Lock()

    # -- WorkloadDirectory: dictionary reads of the watch caches, no apiserver request

    async def workload_of(self, pod: PodRef) -> Workload:
        return self._workload_of(pod)

    async def enclave_container(self, namespace: str, name: str) -> EnclaveContainerView:
        return self._enclave_container(namespace, name)

    async def secret_value(self, namespace: str, ref: SecretKeyRef) -> bytes:
        return self._secret_value(namespace, ref)

    def _workload_of(self, ref: PodRef) -> Workload:
        # The cache holds only labelled replicas: an unlabelled pod is "no pod" here too.
        pod = _cached(self._cache.pods, ref.namespace, ref.name)
        if pod is None:
            raise WorkloadUnknownError(f"there is no replica pod {ref}")
        metadata = pod.get("metadata") or {}
        if metadata.get("uid") != ref.uid:
            raise WorkloadUnknownError(f"pod {ref} has another UID: it was replaced")
        if metadata.get("deletionTimestamp"):
            raise WorkloadUnknownError(f"pod {ref} is being deleted")
        ec_name = (metadata.get("labels") or {}).get(EC_LABEL)
        if not ec_name:
            raise WorkloadUnknownError(f"pod {ref} is not a replica of an EnclaveContainer")
        node_name = (pod.get("spec") or {}).get("nodeName")
        if not node_name:
            raise WorkloadUnknownError(f"pod {ref} is not bound to a node")
        view = self._enclave_container(ref.namespace, ec_name)
        deadline = parse_deadline((metadata.get("annotations") or {}).get(DEADLINE_ANNOTATION))
        return Workload(
            pod=ref,
            node_name=node_name,
            enclave_container=view,
            tcb_recovery_deadline=deadline,
            tcb_recovery_since=pending_since(pod),
            recorded=_recorded(pod),
        )

    def _enclave_container(self, namespace: str, name: str) -> EnclaveContainerView:
        view = _cached(self._cache.enclave_containers, namespace, name)
        if view is None:
            raise WorkloadUnknownError(f"there is no EnclaveContainer {namespace}/{name}")
        if isinstance(view, InvalidEnclaveContainer):
            raise WorkloadUnknownError(f"EnclaveContainer {namespace}/{name} has an invalid spec")
        return view

    def _secret_value(self, namespace: str, ref: SecretKeyRef) -> bytes:
        secrets = self._cache.secrets_of(namespace)
        if secrets is None:
            raise ResourceNotFoundError(
                f"the Secret {namespace}/{ref.name} is in a namespace the service may not "
                "read (attestationService.secretNamespaces)"
            )
        data = _cached(secrets, namespace, ref.name)
        if data is None:
            raise ResourceNotFoundError(f"the Secret {namespace}/{ref.name} does not exist")
        encoded = data.get(ref.key)
        if encoded is None:
            raise ResourceNotFoundError(f"the Secret {namespace}/{ref.name} has no key {ref.key}")
        try:
            return base64.b64decode(encoded, validate=True)
        except binascii.Error:
            raise ResourceNotFoundError(
                f"the Secret {namespace}/{ref.name} key {ref.key} is not base64"
            ) from None

    # -- AttestationReporter

    async def attested(
        self, workload: Workload, verified: VerifiedQuote, valid_until: datetime
    ) -> None:
        if workload.recorded is not None:
            changes = _changes(workload, workload.recorded, verified, valid_until)
            if not changes.annotations and changes.condition_unchanged:
                # Most steady re-attestations (attested-until moves by the second): nothing
                # to write, so no hop to a thread.
                return
        await asyncio.to_thread(self._attested, workload, verified, valid_until)

    async def refused(self, workload: Workload, error: AttestationError) -> None:
        await asyncio.to_thread(self._refused, workload, error)

    def _attested(self, workload: Workload, verified: VerifiedQuote, valid_until: datetime) -> None:
        pod = workload.pod
        recorded = workload.recorded or _recorded_now(self._core, pod)
        changes = _changes(workload, recorded, verified, valid_until)
        now = _rfc3339(datetime.now(UTC))
        try:
            if changes.annotations:
                self._core.patch_namespaced_pod(
                    pod.name,
                    pod.namespace,
                    {"metadata": {"annotations": changes.annotations}},
                    _content_type=MERGE_PATCH,
                )
            if not changes.condition_unchanged:
                self._patch_condition(pod, changes.message, recorded.condition or {}, now)
        except ApiException as exc:
            raise _unavailable("mark the pod attested", exc) from None
        if not changes.condition_unchanged:  # a first attestation, or one that proved more
            self._event(
                workload.enclave_container,
                "Normal",
                "Attested",
                f"pod {pod.name}: {changes.message}",
            )

    def _patch_condition(
        self, pod: PodRef, message: str, condition: Mapping[str, str], now: str
    ) -> None:
        was_true = condition.get("status") == "True"
        self._core.patch_namespaced_pod_status(
            pod.name,
            pod.namespace,
            {
                "status": {
                    "conditions": [
                        {
                            "type": ATTESTED_CONDITION,
                            "status": "True",
                            "reason": "Attested",
                            "message": message,
                            "lastProbeTime": now,
                            # Kept while the condition stays True.
                            "lastTransitionTime": (
                                condition.get("lastTransitionTime") or now if was_true else now
                            ),
                        }
                    ]
                }
            },
            # Strategic merge: conditions merge by type, the others stay as they are.
            _content_type=STRATEGIC_MERGE_PATCH,
        )

    def _refused(self, workload: Workload, error: AttestationError) -> None:
        if not self._refusal_due(workload.pod.uid, error.reason):
            return  # the same refusal was just recorded: a flood must not load the apiserver
        message = f"pod {workload.pod.name}: attestation refused: {printable(error.message, 900)}"
        self._event(workload.enclave_container, "Warning", error.reason, message)

    def _refusal_due(self, pod_uid: str, reason: str) -> bool:
        key, moment = (pod_uid, reason), self._clock()
        with self._refusals_lock:
            last = self._refusals.get(key)
            if last is not None and moment - last < REFUSAL_EVENT_INTERVAL_SECONDS:
                return False
            self._refusals[key] = moment
            self._refusals.move_to_end(key)
            while len(self._refusals) > _REFUSALS_REMEMBERED:
                self._refusals.popitem(last=False)
        return True

    def _event(self, ec: EnclaveContainerView, kind: str, reason: str, message: str) -> None:
        involved = {
            "apiVersion": API_VERSION,
            "kind": "EnclaveContainer",
            "namespace": ec.namespace,
            "name": ec.name,
            "uid": ec.uid,
        }
        self._event_on(involved, ec.namespace, kind, reason, message)

    def _event_on(
        self, involved: dict[str, str], namespace: str, kind: str, reason: str, message: str
    ) -> None:
        now = _rfc3339(datetime.now(UTC))
        body = {
            "metadata": {"generateName": f"{involved['name']}."},
            "involvedObject": involved,
            "reason": reason,
            "message": message[:1024],
            "type": kind,
            "source": {"component": COMPONENT},
            "reportingComponent": COMPONENT,
            "reportingInstance": self._instance,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            self._core.create_namespaced_event(namespace, cast(Any, body))
        except ApiException as exc:
            # An Event is advisory: failing to record one must not fail the request.
            log.warning("cannot record Event %s: %s %s", reason, exc.status, exc.reason)


@dataclass(frozen=True, slots=True)
class _Changes:
    """What an attestation changes on its pod: the annotations that differ, and whether
    the ``kubetee.io/attested`` condition already says ``message``."""

    annotations: dict[str, str]
    message: str
    condition_unchanged: bool


def _changes(
    workload: Workload,
    recorded: RecordedAttestation,
    verified: VerifiedQuote,
    valid_until: datetime,
) -> _Changes:
    message = (
        f"enclave {verified.mrenclave.hex()[:16]} (isvSvn {verified.isv_svn}) passed "
        f"attestation on a {verified.tcb_status} platform"
    )
    wanted = {
        ATTESTED_POLICY_ANNOTATION: workload.enclave_container.policy_hash,
        ATTESTED_UNTIL_ANNOTATION: _rfc3339(valid_until),
        ATTESTED_CLAIMS_ANNOTATION: json.dumps(claims_of(verified), sort_keys=True),
    }
    condition = recorded.condition or {}
    return _Changes(
        annotations={k: v for k, v in wanted.items() if recorded.annotations.get(k) != v},
        message=message,
        condition_unchanged=(
            condition.get("status") == "True"
            and condition.get("reason") == "Attested"
            and condition.get("message") == message
        ),
    )


def _recorded(pod: dict[str, Any]) -> RecordedAttestation:
    """The attestation annotations and condition of a pod as read from the API."""
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    condition = next(
        (
            {k: str(v) for k, v in c.items()}
            for c in (pod.get("status") or {}).get("conditions") or []
            if isinstance(c, dict) and c.get("type") == ATTESTED_CONDITION
        ),
        None,
    )
    return RecordedAttestation(
        annotations={k: str(annotations[k]) for k in _ATTESTED_ANNOTATIONS if k in annotations},
        condition=condition,
    )


def _recorded_now(core: Any, pod: PodRef) -> RecordedAttestation:
    """For a workload that came without its pod's state: read it."""
    try:
        return _recorded(_json(core.read_namespaced_pod(pod.name, pod.namespace, **_RAW)))
    except ApiException as exc:
        raise _unavailable("read pod", exc) from None


def _cached(cache: WatchCache[T], namespace: str, name: str) -> T | None:
    try:
        return cache.get(namespace, name)
    except NotSyncedError as exc:
        raise BackendUnavailableError(f"{exc}: retry in a moment") from None


def _json(response: Any) -> dict[str, Any]:
    """The raw JSON of a response read with ``_preload_content=False``."""
    document = json.loads(response.data)
    if not isinstance(document, dict):
        raise BackendUnavailableError("the Kubernetes API answered with a non-object")
    return document


def _unavailable(action: str, exc: ApiException) -> BackendUnavailableError:
    return BackendUnavailableError(
        f"cannot {action}: Kubernetes API answered {exc.status} {exc.reason}"
    )
