"""EnclaveContainer: a replicated workload that runs inside an SGX enclave.

The field descriptions here are the ``kubectl explain`` text of the CRD, and the
``x-kubernetes-validations`` rules are checked by the apiserver; the model validators
repeat them so the operator refuses the same specs (a CRD installed without them, or an
old object) with the same words.
"""

from __future__ import annotations

from typing import Annotated, Any, Self

from pydantic import ConfigDict, Field, StringConstraints, model_validator

from kubetee.api.base import ApiModel
from kubetee.api.conditions import CONDITIONS_SCHEMA_EXTRA, Condition
from kubetee.api.quantity import EPCQuantity, parse_mebibytes
from kubetee.attestation.policy import PIN_REQUIRED_MESSAGE, AttestationPolicy

# Names of Kubernetes objects a spec refers to (Secrets, ConfigMaps, EPCPools).
ObjectName = Annotated[
    str,
    StringConstraints(pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", min_length=1, max_length=253),
]
DataKey = Annotated[
    str, StringConstraints(pattern=r"^[-._a-zA-Z0-9]+$", min_length=1, max_length=253)
]
# A relative path without "." or ".." segments: it stays inside the volume it names a file of.
RelativePath = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$", max_length=255),
    Field(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "!('/' + self + '/').contains('/../') "
                    "&& !('/' + self + '/').contains('/./')",
                    "message": "must not contain '.' or '..' segments",
                }
            ]
        }
    ),
]
EnvName = Annotated[
    str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", min_length=1, max_length=128)
]
DnsLabel = Annotated[
    str,
    StringConstraints(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", min_length=1, max_length=63),
]

MAX_REPLICAS = 1000
MAX_SECRETS = 64
MAX_FILES = 32
MAX_INLINE_FILE = 64 * 1024

# Volumes of the operator's pod template; user containers may not mount them.
RESERVED_VOLUME_PREFIX = "kubetee-"

# Where secrets delivered as files appear in the workload's containers (a Memory emptyDir).
SECRETS_MOUNT_PATH = "/run/kubetee/secrets"


def _without_minimum(schema: dict[str, Any]) -> None:
    schema.pop("minimum", None)


def _check_relative_path(path: str) -> None:
    if any(segment in {".", ".."} for segment in path.split("/")):
        raise ValueError(f"path {path!r} must not contain '.' or '..' segments")


class PoolReference(ApiModel):
    """The EPCPool whose nodes run the replicas."""

    name: ObjectName = Field(description="Name of the EPCPool (cluster-scoped).")


class SecretKeyRef(ApiModel):
    """One key of a Kubernetes Secret in the EnclaveContainer's namespace."""

    name: ObjectName = Field(description="Name of the Secret.")
    key: DataKey = Field(description="Key within the Secret's data.")


class ConfigMapKeyRef(ApiModel):
    """One key of a ConfigMap in the EnclaveContainer's namespace."""

    name: ObjectName = Field(description="Name of the ConfigMap.")
    key: DataKey = Field(description="Key within the ConfigMap's data.")


class ConfigMapReference(ApiModel):
    """A ConfigMap in the EnclaveContainer's namespace."""

    name: ObjectName = Field(description="Name of the ConfigMap.")


class SecretDelivery(ApiModel):
    """A secret released to the workload only after its enclave passed attestation."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "has(self.file) != has(self.env)",
                    "message": "set exactly one of file or env: where the workload receives "
                    "the secret",
                }
            ]
        }
    )

    name: DnsLabel = Field(description="Name of this secret, unique within spec.secrets.")
    secret_key_ref: SecretKeyRef = Field(
        description="The Secret key holding the value. The operator never copies it into "
        "the pod spec; the attestation service reads it after a successful attestation."
    )
    file: RelativePath | None = Field(
        default=None,
        description="Deliver as a file at this path. With enclave.image or bundle: "
        "relative to $KUBETEE_SECRETS_DIR of the workload, a directory private to the "
        "enclave's process tree. Otherwise relative to "
        f"{SECRETS_MOUNT_PATH}, a memory-backed volume mounted read-only into every "
        "container of the template. Exactly one of file or env.",
    )
    env: EnvName | None = Field(
        default=None,
        description="Deliver as this environment variable: of the workload inside the "
        "enclave with enclave.image or bundle; otherwise written for the workload to "
        "source. Exactly one of file or env.",
    )

    @model_validator(mode="after")
    def _one_destination(self) -> Self:
        if (self.file is None) == (self.env is None):
            raise ValueError(
                f"secret {self.name!r}: set exactly one of file or env: where the "
                "workload receives the secret"
            )
        if self.file is not None:
            _check_relative_path(self.file)
        return self


class EnclaveFile(ApiModel):
    """A file loaded into the enclave and measured into its identity (MRENCLAVE)."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "has(self.configMapKeyRef) != has(self.content)",
                    "message": "set exactly one of configMapKeyRef or content",
                }
            ]
        }
    )

    path: RelativePath = Field(description="Path of the file inside the enclave.")
    config_map_key_ref: ConfigMapKeyRef | None = Field(
        default=None,
        description="Take the content from this ConfigMap key. Exactly one of "
        "configMapKeyRef or content.",
    )
    content: str | None = Field(
        default=None,
        max_length=MAX_INLINE_FILE,
        description="The content inline (UTF-8, at most 64 KiB). Exactly one of "
        "configMapKeyRef or content.",
    )

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        if (self.config_map_key_ref is None) == (self.content is None):
            raise ValueError(
                f"enclave file {self.path!r}: set exactly one of configMapKeyRef or content"
            )
        _check_relative_path(self.path)
        return self


class EnclaveSettings(ApiModel):
    """The simulated enclave: its launch settings and the identity it measures to."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "!has(self.files) "
                    "|| self.files.all(f, self.files.exists_one(g, g.path == f.path))",
                    "message": "enclave file paths must be unique",
                },
                {
                    "rule": "!has(self.image) || !has(self.bundle)",
                    "message": "set at most one of image or bundle",
                },
                {
                    "rule": "!(has(self.image) || has(self.bundle)) || !has(self.files) "
                    "|| size(self.files) == 0",
                    "message": "files are measured only for enclaves without an image or "
                    "bundle; the manifest of an enclave image or bundle lists its trusted files",
                },
            ]
        }
    )

    image: str | None = Field(
        default=None,
        min_length=1,
        max_length=512,
        description="Enclave image made by `kubetee enclave build --image`: the workload's "
        "trusted files, its signed manifest and SIGSTRUCT, with the enclave runtime as entry "
        "point. It runs as the pod's kubetee-enclave container, which holds the EPC, checks "
        "the enclave like EINIT, attests and only then starts the workload with its secrets. "
        "At most one of image or bundle; with either, the manifest sets threads, heap, "
        "product id, SVN and DEBUG, and the fields of the same name here are not used.",
    )
    bundle: ConfigMapReference | None = Field(
        default=None,
        description="A ConfigMap made by `kubetee enclave bundle` (signed manifest, "
        "SIGSTRUCT and trusted files), run by the enclave runtime image like an enclave "
        "image; for clusters whose nodes run no containers (the local KWOK cluster) and "
        "small enclaves. At most one of image or bundle.",
    )
    debug: bool = Field(
        default=False,
        description="Launch the enclave in DEBUG mode (its memory readable by the host). "
        "Attestation refuses debug enclaves unless attestation.policy.allowDebug is set.",
    )
    heap_size: EPCQuantity | None = Field(
        default=None,
        description="Enclave heap, a quantity such as 32Mi that fits in epc. Unset: "
        "the runtime sizes the heap from epc.",
    )
    threads: int = Field(
        default=4, ge=1, le=256, description="Number of enclave threads (TCS pages)."
    )
    files: list[EnclaveFile] = Field(
        default_factory=list,
        max_length=MAX_FILES,
        description="Files loaded into the enclave; their paths and contents are part "
        "of the measurement (MRENCLAVE), so changing one changes the enclave identity.",
    )
    isv_prod_id: int = Field(
        default=0,
        ge=0,
        le=0xFFFF,
        description="ISV product id the enclave is signed with (ISVPRODID).",
    )
    isv_svn: int = Field(
        default=0,
        ge=0,
        le=0xFFFF,
        description="ISV security version number the enclave is signed with (ISVSVN).",
    )

    @property
    def runs_workload(self) -> bool:
        """The workload runs inside the enclave (an enclave image or bundle)."""
        return self.image is not None or self.bundle is not None

    @model_validator(mode="after")
    def _unique_paths(self) -> Self:
        paths = [f.path for f in self.files]
        duplicates = sorted({p for p in paths if paths.count(p) > 1})
        if duplicates:
            raise ValueError(f"enclave file paths must be unique; repeated: {duplicates}")
        if self.image is not None and self.bundle is not None:
            raise ValueError("enclave: set at most one of image or bundle")
        if self.runs_workload and self.files:
            raise ValueError(
                "enclave.files are measured only for enclaves without an image or bundle; "
                "the manifest of an enclave image or bundle lists its trusted files"
            )
        return self


class AttestationSpec(ApiModel):
    """How replicas prove their identity before they receive secrets."""

    policy: AttestationPolicy = Field(
        default_factory=AttestationPolicy,
        description="What a replica's quote must show for its secrets to be released.",
    )


class DisruptionSpec(ApiModel):
    """A PodDisruptionBudget the operator keeps over the replicas."""

    max_unavailable: int = Field(
        ge=0,
        le=MAX_REPLICAS,
        description="Most replicas that voluntary disruptions may take down at once: node "
        "drains, evictions, and the operator's own replacements after a policy change. "
        "0 blocks every eviction (a drain waits until it is raised).",
    )


class TemplateMetadata(ApiModel):
    """Labels and annotations copied onto every replica's pod."""

    labels: dict[str, str] = Field(default_factory=dict, description="Labels of the pods.")
    annotations: dict[str, str] = Field(
        default_factory=dict, description="Annotations of the pods."
    )


class Container(ApiModel):
    """A container of the workload; any field of a Kubernetes Container is accepted."""

    model_config = ConfigDict(extra="allow")

    name: DnsLabel = Field(description="Name of the container, unique within the pod.")
    image: str = Field(min_length=1, description="Container image.")


class PodSpecFragment(ApiModel):
    """The workload's pod spec; any field of a Kubernetes PodSpec is accepted.

    The operator adds the enclave runtime sidecar, the EPC requests, the readiness gate,
    the pool's node affinity and scheduler; the apiserver validates the rest when the
    Deployment is written, and a refusal shows as the condition InvalidSpec.
    """

    model_config = ConfigDict(extra="allow")

    containers: list[Container] = Field(
        max_length=32,
        description="The workload's containers; may be empty when enclave.image or "
        "enclave.bundle runs the workload inside the enclave. Other containers never "
        "receive the secrets of an enclave image or bundle.",
    )


class PodTemplate(ApiModel):
    """Template of the replicas' pods (labels, annotations and pod spec)."""

    metadata: TemplateMetadata = Field(
        default_factory=TemplateMetadata, description="Labels and annotations of the pods."
    )
    spec: PodSpecFragment = Field(description="Pod spec of the workload.")


class EnclaveContainerSpec(ApiModel):
    """Desired state of an EnclaveContainer."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    # On the spec, not the policy: an omitted policy must be refused too.
                    "rule": "has(self.attestation) && has(self.attestation.policy) && ("
                    "(has(self.attestation.policy.mrenclave) "
                    "&& size(self.attestation.policy.mrenclave) > 0) "
                    "|| (has(self.attestation.policy.mrsigner) "
                    "&& size(self.attestation.policy.mrsigner) > 0))",
                    "message": PIN_REQUIRED_MESSAGE,
                },
                {
                    "rule": "!has(self.enclave) || !has(self.enclave.heapSize) "
                    "|| !isQuantity(string(self.enclave.heapSize)) "
                    "|| !isQuantity(string(self.epc)) "
                    "|| quantity(string(self.enclave.heapSize))"
                    ".compareTo(quantity(string(self.epc))) <= 0",
                    "message": "enclave.heapSize must fit in epc, the EPC of one replica",
                },
                {
                    "rule": "!has(self.attestation) || !has(self.attestation.policy) "
                    "|| !has(self.attestation.policy.isvProdId) || !has(self.enclave) "
                    "|| has(self.enclave.image) || has(self.enclave.bundle) "
                    "|| !has(self.enclave.isvProdId) "
                    "|| self.enclave.isvProdId == self.attestation.policy.isvProdId",
                    "message": "enclave.isvProdId differs from attestation.policy.isvProdId: "
                    "no replica could pass attestation",
                },
                {
                    "rule": "!has(self.attestation) || !has(self.attestation.policy) "
                    "|| !has(self.attestation.policy.minIsvSvn) || !has(self.enclave) "
                    "|| has(self.enclave.image) || has(self.enclave.bundle) "
                    "|| !has(self.enclave.isvSvn) "
                    "|| self.enclave.isvSvn >= self.attestation.policy.minIsvSvn",
                    "message": "enclave.isvSvn is below attestation.policy.minIsvSvn: "
                    "no replica could pass attestation",
                },
                {
                    "rule": "size(self.template.spec.containers) > 0 || (has(self.enclave) "
                    "&& (has(self.enclave.image) || has(self.enclave.bundle)))",
                    "message": "template.spec.containers is empty: give the workload's "
                    "containers, or run it inside the enclave with enclave.image or bundle",
                },
            ]
        }
    )

    replicas: int = Field(
        default=1,
        ge=0,
        le=MAX_REPLICAS,
        description="Number of enclave replicas.",
        # No minimum in the CRD: the scale subresource already refuses a negative count,
        # and a schema minimum would report the same mistake a second time.
        json_schema_extra=_without_minimum,
    )
    epc: EPCQuantity = Field(
        description="EPC (enclave page cache) of one replica, a quantity such as 64Mi: a "
        "whole number of MiB, more than zero and at most 1Ti. Each replica requests this "
        "much kubetee.io/epc, so it only lands on a node with that much free."
    )
    pool_ref: PoolReference | None = Field(
        default=None,
        description="EPCPool whose nodes run the replicas, with the pool's strategy. "
        "Unset: any node advertising kubetee.io/epc, packed by the default scheduler "
        "profile.",
    )
    template: PodTemplate = Field(description="Pod template of the workload.")
    enclave: EnclaveSettings = Field(
        default_factory=EnclaveSettings,
        description="Settings of the simulated enclave each replica runs.",
    )
    attestation: AttestationSpec = Field(
        default_factory=AttestationSpec,
        description="Attestation each replica must pass before it is Ready and gets its "
        "secrets. Its policy must pin the enclave: mrenclave, mrsigner or both.",
    )
    disruption: DisruptionSpec | None = Field(
        default=None,
        description="Keep a PodDisruptionBudget of the same name over the replicas. "
        "Unset: none (BinPack may place every replica on one node, which one drain "
        "then empties).",
    )
    secrets: list[SecretDelivery] = Field(
        default_factory=list,
        max_length=MAX_SECRETS,
        description="Secrets released to the workload after attestation.",
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "self.all(s, self.exists_one(t, t.name == s.name))",
                    "message": "secret names must be unique",
                }
            ]
        },
    )

    @property
    def epc_mebibytes(self) -> int:
        """EPC of one replica in MiB."""
        return parse_mebibytes(self.epc)

    @model_validator(mode="after")
    def _cross_field(self) -> Self:
        names = [s.name for s in self.secrets]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"secret names must be unique; repeated: {duplicates}")
        heap = self.enclave.heap_size
        if heap is not None and parse_mebibytes(heap) > self.epc_mebibytes:
            raise ValueError(
                f"enclave.heapSize {heap} must fit in epc {self.epc}, the EPC of one replica"
            )
        if self.enclave.runs_workload:
            _check_isolation(self.template.spec)
            return self
        if not self.template.spec.containers:
            raise ValueError(
                "template.spec.containers is empty: give the workload's containers, or run "
                "it inside the enclave with enclave.image or bundle"
            )
        policy = self.attestation.policy
        if not policy.pins_identity:
            raise ValueError(PIN_REQUIRED_MESSAGE)
        if policy.isv_prod_id is not None and policy.isv_prod_id != self.enclave.isv_prod_id:
            raise ValueError(
                f"enclave.isvProdId {self.enclave.isv_prod_id} differs from "
                f"attestation.policy.isvProdId {policy.isv_prod_id}: no replica could pass "
                "attestation"
            )
        if policy.min_isv_svn is not None and self.enclave.isv_svn < policy.min_isv_svn:
            raise ValueError(
                f"enclave.isvSvn {self.enclave.isv_svn} is below attestation.policy.minIsvSvn "
                f"{policy.min_isv_svn}: no replica could pass attestation"
            )
        return self


def _check_isolation(pod: PodSpecFragment) -> None:
    """Nothing else in the pod may reach into the enclave's process tree or volumes."""
    extra = pod.model_extra or {}
    for field in ("shareProcessNamespace", "hostPID", "hostIPC"):
        if extra.get(field):
            raise ValueError(
                f"template.spec.{field} would let other containers read the enclave's "
                "memory and environment; it is refused when the workload runs in the enclave"
            )
    containers = [c.model_dump(by_alias=True) for c in pod.containers]
    containers.extend(c for c in extra.get("initContainers") or [] if isinstance(c, dict))
    for container in containers:
        for mount in container.get("volumeMounts") or []:
            name = str(mount.get("name", "")) if isinstance(mount, dict) else ""
            if name.startswith(RESERVED_VOLUME_PREFIX):
                raise ValueError(
                    f"container {container.get('name')!r} mounts {name!r}: volumes named "
                    f"{RESERVED_VOLUME_PREFIX}* belong to the enclave runtime"
                )


class EPCStatus(ApiModel):
    """EPC of the EnclaveContainer, as quantities."""

    per_replica: str = Field(default="0Mi", description="EPC of one replica.")
    requested: str = Field(
        default="0Mi", description="EPC the desired replicas request (replicas x epc)."
    )
    allocated: str = Field(
        default="0Mi",
        description="EPC held by replicas bound to nodes and not terminated.",
    )


class AttestedEnclave(ApiModel):
    """An enclave identity replicas proved in attestation, and how many of them."""

    mrenclave: str = Field(description="MRENCLAVE the attestation service verified.")
    mrsigner: str = Field(description="MRSIGNER the attestation service verified.")
    isv_prod_id: int = Field(ge=0, description="ISVPRODID of the enclave.")
    isv_svn: int = Field(ge=0, description="ISVSVN of the enclave.")
    replicas: int = Field(ge=0, description="Attested replicas with this identity.")


class AttestationStatus(ApiModel):
    """What the policy pins and what the attested replicas proved, in words."""

    pinned: str = Field(
        default="",
        description="The enclave identities the policy accepts: its MRENCLAVE and MRSIGNER "
        "values (abbreviated), or 'any' for the one not pinned.",
    )
    enclaves: list[AttestedEnclave] = Field(
        default_factory=list,
        max_length=16,
        description="Identities the currently attested replicas proved.",
    )


class EnclaveContainerStatus(ApiModel):
    """Observed state of an EnclaveContainer."""

    observed_generation: int = Field(
        default=0, ge=0, description="metadata.generation this status was computed for."
    )
    replicas: int = Field(default=0, ge=0, description="Replicas that exist (pods).")
    scheduled_replicas: int = Field(
        default=0, ge=0, description="Replicas bound to a node that still exists."
    )
    scheduled: str = Field(
        default="",
        description="Scheduled replicas of the desired count, such as 8/9 (the SCHEDULED "
        "column of kubectl get).",
    )
    ready_replicas: int = Field(default=0, ge=0, description="Replicas that are Ready.")
    attested_replicas: int = Field(
        default=0, ge=0, description="Replicas whose enclave passed attestation."
    )
    selector: str = Field(
        default="",
        description="Label selector of the replicas' pods, serialized (for the scale "
        "subresource and an HPA).",
    )
    pool: str = Field(default="", description="EPCPool the replicas run in, if any.")
    epc: EPCStatus = Field(default_factory=EPCStatus, description="EPC requested and held.")
    attestation: AttestationStatus = Field(
        default_factory=AttestationStatus,
        description="The pinned enclave identity and the identities replicas attested with.",
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        max_length=16,
        description="Scheduled, Attested and Ready, with reasons such as InsufficientEPC, "
        "PoolNotFound, AttestationUnavailable and InvalidSpec.",
        json_schema_extra=CONDITIONS_SCHEMA_EXTRA,
    )

    def condition(self, type_: str) -> Condition | None:
        """The condition of ``type_``, if present."""
        return next((c for c in self.conditions if c.type == type_), None)


def status_from_body(status: Any) -> EnclaveContainerStatus:
    """Read the stored status leniently: a stale or foreign shape counts as empty."""
    try:
        return EnclaveContainerStatus.model_validate(status or {})
    except ValueError:
        return EnclaveContainerStatus()
