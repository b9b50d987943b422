"""What the kube-apiserver did during a phase of a benchmark, from its own /metrics.

A snapshot before and after the phase; their difference says how many requests each
client made by verb and resource, how long the apiserver spent serving them, how many
watch events it sent (and how many bytes), the apiserver's CEL validation metric, and
the apiserver's CPU seconds.

The CEL metric (``apiserver_cel_evaluation_duration_seconds``) is wall time, observed
at every schema node on the way down to a rule, each observation including the nodes
below it: about six per EnclaveContainer write, and a sum that exceeds the CPU it
measures (more than the whole apiserver's extra CPU in a busy run). It says that and
where rules run, not what they cost; ``crd_validation_cost.py`` measures the cost.

Works against any cluster whose kubeconfig may read ``/metrics`` (the local cluster's
admin may).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from kubernetes import client
from prometheus_client.parser import text_string_to_metric_families

WRITE_VERBS = frozenset({"POST", "PUT", "PATCH", "APPLY", "DELETE", "DELETECOLLECTION"})
# Long-running requests: their duration is how long they stayed open, not work.
_LONG_RUNNING = frozenset({"WATCH", "CONNECT"})
# Node heartbeats (KWOK renews every node's Lease and status): not per workload.
BACKGROUND_RESOURCES = frozenset({"coordination.k8s.io/leases", "nodes/status"})
_KEPT = {
    "apiserver_request_total",
    "apiserver_request_duration_seconds_sum",
    "apiserver_watch_events_total",
    "apiserver_watch_events_sizes_sum",
    "apiserver_cel_evaluation_duration_seconds_sum",
    "apiserver_cel_evaluation_duration_seconds_count",
    "process_cpu_seconds_total",
}

Sample = tuple[str, tuple[tuple[str, str], ...]]


@dataclass(frozen=True)
class Snapshot:
    """The counters of interest at one moment: (name, labels) -> value."""

    values: dict[Sample, float]


def snapshot(api: client.ApiClient) -> Snapshot:
    method, url, headers, _, _ = api.param_serialize(
        "GET", "/metrics", auth_settings=["BearerToken"]
    )
    response = api.call_api(method, url, headers)
    response.read()
    text = response.data.decode()
    values: dict[Sample, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in _KEPT:
                values[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return Snapshot(values)


def _resource(labels: dict[str, str]) -> str:
    """``group/resource/subresource`` with the core group and an empty part left out."""
    parts = [labels.get("group", ""), labels.get("resource", ""), labels.get("subresource", "")]
    return "/".join(part for part in parts if part)


@dataclass(frozen=True)
class PhaseFigures:
    """The difference of two snapshots, grouped for reading."""

    apiserver_cpu_seconds: float
    writes: dict[str, int]  # "VERB group/resource/subresource" -> requests
    reads: dict[str, int]  # verb -> requests
    serving_seconds: dict[str, float]  # "VERB resource" -> seconds spent answering
    watch_events: dict[str, int]  # resource -> events sent to watchers
    watch_mib: dict[str, float]  # resource -> MiB sent to watchers
    cel_seconds: float  # nested wall time (see above), not CPU
    cel_evaluations: int  # schema nodes visited, not rules evaluated

    def workload_writes(self) -> int:
        """Writes that scale with the workloads (all but node heartbeats)."""
        return sum(
            count
            for key, count in self.writes.items()
            if key.split(" ", 1)[1] not in BACKGROUND_RESOURCES
        )

    def summary(self, top: int = 20) -> dict[str, Any]:
        def largest(figures: dict[str, Any]) -> dict[str, Any]:
            ranked = sorted(figures.items(), key=lambda item: -item[1])
            return dict(ranked[:top])

        return {
            "apiserver_cpu_seconds": round(self.apiserver_cpu_seconds, 1),
            "writes": largest(self.writes),
            "reads": largest(self.reads),
            "serving_seconds": {k: round(v, 1) for k, v in largest(self.serving_seconds).items()},
            "watch_events": largest(self.watch_events),
            "watch_mib": {k: round(v, 1) for k, v in largest(self.watch_mib).items()},
            "cel_seconds": round(self.cel_seconds, 2),
            "cel_evaluations": self.cel_evaluations,
        }


def difference(before: Snapshot, after: Snapshot) -> PhaseFigures:
    writes: dict[str, int] = defaultdict(int)
    reads: dict[str, int] = defaultdict(int)
    serving: dict[str, float] = defaultdict(float)
    events: dict[str, int] = defaultdict(int)
    sizes: dict[str, float] = defaultdict(float)
    cpu = cel_seconds = cel_count = 0.0
    for key, value in after.values.items():
        delta = value - before.values.get(key, 0.0)
        if delta <= 0:
            continue
        name, label_items = key
        labels = dict(label_items)
        verb = labels.get("verb", "")
        if name == "apiserver_request_total":
            if verb in WRITE_VERBS:
                writes[f"{verb} {_resource(labels)}"] += int(delta)
            else:
                reads[verb] += int(delta)
        elif name == "apiserver_request_duration_seconds_sum" and verb not in _LONG_RUNNING:
            serving[f"{verb} {_resource(labels)}"] += delta
        elif name == "apiserver_watch_events_total":
            events[_resource(labels)] += int(delta)
        elif name == "apiserver_watch_events_sizes_sum":
            sizes[_resource(labels)] += delta / 2**20
        elif name == "apiserver_cel_evaluation_duration_seconds_sum":
            cel_seconds += delta
        elif name == "apiserver_cel_evaluation_duration_seconds_count":
            cel_count += delta
        elif name == "process_cpu_seconds_total":
            cpu += delta
    return PhaseFigures(
        apiserver_cpu_seconds=cpu,
        writes=dict(writes),
        reads=dict(reads),
        serving_seconds=dict(serving),
        watch_events=dict(events),
        watch_mib=dict(sizes),
        cel_seconds=cel_seconds,
        cel_evaluations=int(cel_count),
    )
