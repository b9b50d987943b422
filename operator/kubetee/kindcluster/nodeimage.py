"""Assemble a kind node image offline, once per machine, cached under a versioned tag.

``kind build node-image`` pulls its base image and every component image from
registries. Here each piece comes from a package registry instead: the root file system
from ``debootstrap`` (Debian's systemd, containerd, runc and CNI plugins), kind's own
base files from its Go module, the Kubernetes components, crictl, CoreDNS and flannel
built from Go modules, and the pause container compiled from its C source in the
Kubernetes module. Component images (tagged as kubeadm expects them) are preloaded into
the node's containerd, as kind's own build does. Where the official node image can be
pulled, it is used instead.

The tag carries a digest of every version and file that goes into the image, so a
change to any of them builds a new image and an unchanged recipe builds nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO, TypeVar

from kubetee.cluster.errors import ClusterError
from kubetee.cluster.toolchain import (
    ETCD,
    KUBERNETES,
    KUBERNETES_VERSION,
    Builder,
    Progress,
    cache_dir,
    find_go,
    format_duration,
)
from kubetee.kindcluster import nodefiles
from kubetee.kindcluster.components import (
    COREDNS,
    CRI_TOOLS,
    FLANNEL,
    FLANNEL_CNI,
    KIND,
    KUBERNETES_NODE,
    NODE_IMAGE_COMPONENTS,
)
from kubetee.kindcluster.docker import Docker

# Bumped when the assembly steps change in a way the hashed texts do not show.
RECIPE_REVISION = 1
NODE_IMAGE_REPOSITORY = "kubetee.local/kind-node"
BASE_IMAGE_REPOSITORY = "kubetee.local/kind-base"
# kind v0.30.0's default node image (pkg/apis/config/defaults/image.go), used as is
# where it can be pulled.
OFFICIAL_NODE_IMAGE = (
    "kindest/node:v1.34.0@sha256:7416a61b42b1662ca6ca89f02028ac133a309a2a30ba309614e8ec94d976dc5a"
)
DEBIAN_MIRROR = os.environ.get("KUBETEE_DEBIAN_MIRROR", "http://deb.debian.org/debian")
PAUSE_VERSION = "3.10.1"  # build/pause/Makefile's TAG in Kubernetes v1.34
_T = TypeVar("_T")


def _digest(parts: list[str]) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:12]


def rootfs_key() -> str:
    return _digest([nodefiles.ROOTFS_SUITE, *nodefiles.ROOTFS_PACKAGES, DEBIAN_MIRROR])


def node_image_ref() -> str:
    """The node image's tag: Kubernetes version plus a digest of everything in it."""
    parts = [
        str(RECIPE_REVISION),
        rootfs_key(),
        PAUSE_VERSION,
        *(f"{c.name}={c.version}-r{c.revision}" for c in NODE_IMAGE_COMPONENTS),
        nodefiles.CONTAINERD_CONFIG,
        nodefiles.STATIC_IMAGE_DOCKERFILE,
        nodefiles.TOOLS_IMAGE_DOCKERFILE,
        nodefiles.NODE_DOCKERFILE,
        nodefiles.FLANNEL_MANIFEST,
    ]
    return f"{NODE_IMAGE_REPOSITORY}:{KUBERNETES_VERSION}-{_digest(parts)}"


@dataclass(frozen=True)
class ComponentImage:
    """One image preloaded into the node's containerd, made from one binary."""

    ref: str
    binary: Path
    path: str  # where the binary lives in the image
    needs_tools: bool = False  # calls iptables & co., so built on the Debian base


def component_images(kubeadm_images: list[str], pause: Path) -> list[ComponentImage]:
    """Map ``kubeadm config images list`` to the binaries that make each image."""
    images: list[ComponentImage] = []
    for ref in kubeadm_images:
        name = ref.rsplit("/", 1)[-1].split(":", 1)[0]
        if name in KUBERNETES.binaries:
            images.append(ComponentImage(ref, KUBERNETES.binary(name), f"/usr/local/bin/{name}"))
        elif name == "kube-proxy":
            images.append(
                ComponentImage(ref, KUBERNETES_NODE.binary(name), "/usr/local/bin/kube-proxy", True)
            )
        elif name == "etcd":
            images.append(ComponentImage(ref, ETCD.binary("etcd"), "/usr/local/bin/etcd"))
        elif name == "coredns":
            images.append(ComponentImage(ref, COREDNS.binary("coredns"), "/coredns"))
        elif name == "pause":
            images.append(ComponentImage(ref, pause, "/pause"))
        else:
            raise ClusterError(
                f"kubeadm {KUBERNETES_VERSION} asks for image {ref}, which the offline node "
                "image build does not know how to make; update kubetee.kindcluster.nodeimage."
            )
    images.append(
        ComponentImage(
            nodefiles.FLANNEL_IMAGE, FLANNEL.binary("flanneld"), "/opt/bin/flanneld", True
        )
    )
    return images


class NodeImageBuilder:
    """Builds (or finds) the node image, one timed and logged step after another."""

    def __init__(self, builder: Builder, docker: Docker, out: TextIO = sys.stderr) -> None:
        self._builder = builder
        self._docker = docker
        self._out = out
        self._root = cache_dir() / "kind"
        self.timings: dict[str, float] = {}

    def ensure(self, *, allow_pull: bool = True) -> str:
        ref = node_image_ref()
        if self._docker.image_exists(ref):
            return ref
        if allow_pull and self._docker.try_pull(OFFICIAL_NODE_IMAGE):
            self._out.write(f"Using the official node image {OFFICIAL_NODE_IMAGE} (pulled).\n")
            return OFFICIAL_NODE_IMAGE
        self._out.write(
            f"Building the kind node image {ref} offline (no image registry reachable); "
            f"logs in {self._builder.log_dir}.\n"
        )
        started = time.monotonic()
        self._timed("Go binaries", lambda: self._builder.ensure(NODE_IMAGE_COMPONENTS))
        pause = self._timed("pause (C)", self._pause)
        rootfs = self._timed("root file system (debootstrap)", self._rootfs)
        base = self._timed("base image", lambda: self._base_image(rootfs))
        images_tar = self._timed("component images", lambda: self._component_images(base, pause))
        self._timed("node image", lambda: self._node_image(ref, base, images_tar))
        self._out.write(
            f"Node image {ref} built in {format_duration(time.monotonic() - started)}:\n"
        )
        for step, seconds in self.timings.items():
            self._out.write(f"  {step:<32} {format_duration(seconds)}\n")
        return ref

    def _timed(self, step: str, action: Callable[[], _T]) -> _T:
        started = time.monotonic()
        result = action()
        self.timings[step] = time.monotonic() - started
        return result

    def _step(self, step: str, args: list[str], cwd: Path, hint: str) -> str:
        return self._builder.run_step(step, args, cwd, hint=hint, env={"DOCKER_BUILDKIT": "0"})

    def _module_dir(self, module: str, version: str) -> Path:
        out = self._builder.run_step(
            f"locate-{module.rsplit('/', 1)[-1]}-{version}",
            [find_go(), "mod", "download", "-json", f"{module}@{version}"],
            self._root,
            hint="Check that the Go module proxy is reachable (GOPROXY) and run the command again.",
            env={"GOFLAGS": ""},
        )
        return Path(json.loads(out)["Dir"])

    def _pause(self) -> Path:
        target = cache_dir() / "bin" / f"pause-{PAUSE_VERSION}" / "pause"
        if target.is_file():
            return target
        source = (
            self._module_dir(KUBERNETES.module, KUBERNETES_VERSION) / "build/pause/linux/pause.c"
        )
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(".partial")
        with Progress(f"pause {PAUSE_VERSION} from {source.name}", self._out):
            self._builder.run_step(
                f"pause-{PAUSE_VERSION}",
                [
                    "gcc",
                    "-Os",
                    "-Wall",
                    "-Werror",
                    "-static",
                    f"-DVERSION=v{PAUSE_VERSION}",
                    "-o",
                    str(partial),
                    str(source),
                ],
                target.parent,
                hint="The pause container is compiled statically: install gcc and libc6-dev "
                "('apt-get install gcc libc6-dev') and run the command again.",
            )
            self._builder.run_step(
                f"pause-{PAUSE_VERSION}-strip", ["strip", str(partial)], target.parent, hint=""
            )
        partial.rename(target)
        return target

    def _rootfs(self) -> Path:
        target = self._root / f"rootfs-{nodefiles.ROOTFS_SUITE}-{rootfs_key()}"
        if (target / ".kubetee-complete").is_file():
            return target
        if os.geteuid() != 0:
            raise ClusterError(
                "Building the node's root file system runs debootstrap, which needs root: "
                "run 'kubetee kind build' as root."
            )
        if shutil.which("debootstrap") is None:
            raise ClusterError(
                "debootstrap is not installed: run 'sudo sh deploy/kind/setup-docker-engine.sh' "
                "(or 'apt-get install debootstrap')."
            )
        partial = target.with_name(target.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        with Progress(
            f"debootstrap {nodefiles.ROOTFS_SUITE} ({len(nodefiles.ROOTFS_PACKAGES)} packages)",
            self._out,
        ):
            self._builder.run_step(
                f"rootfs-{rootfs_key()}",
                [
                    "debootstrap",
                    "--variant=minbase",
                    "--include=" + ",".join(nodefiles.ROOTFS_PACKAGES),
                    nodefiles.ROOTFS_SUITE,
                    str(partial),
                    DEBIAN_MIRROR,
                ],
                self._root,
                hint=f"Check that the Debian mirror {DEBIAN_MIRROR} is reachable "
                "(KUBETEE_DEBIAN_MIRROR overrides it) and run the command again.",
            )
        for leftover in (
            "var/cache/apt/archives",
            "var/lib/apt/lists",
            "usr/share/doc",
            "usr/share/man",
        ):
            # debootstrap keeps the downloaded packages; documentation is of no use in a node
            shutil.rmtree(partial / leftover, ignore_errors=True)
        (partial / ".kubetee-complete").write_text(
            f"{nodefiles.ROOTFS_SUITE} {' '.join(nodefiles.ROOTFS_PACKAGES)}\n"
        )
        shutil.rmtree(target, ignore_errors=True)
        partial.rename(target)
        return target

    def _base_image(self, rootfs: Path) -> str:
        ref = f"{BASE_IMAGE_REPOSITORY}:{nodefiles.ROOTFS_SUITE}-{rootfs_key()}"
        if self._docker.image_exists(ref):
            return ref
        with Progress(f"importing the root file system as {ref}", self._out):
            self._step(
                f"base-image-{rootfs_key()}",
                ["sh", "-c", f"tar -C {shlex.quote(str(rootfs))} -c . | docker import - {ref}"],
                self._root,
                hint="Check that 'docker info' works and that the disk has room (df -h).",
            )
        return ref

    def _kubeadm_images(self) -> list[str]:
        out = self._builder.run_step(
            "kubeadm-images",
            [
                str(KUBERNETES_NODE.binary("kubeadm")),
                "config",
                "images",
                "list",
                "--kubernetes-version",
                KUBERNETES_VERSION,
            ],
            self._root,
            hint="kubeadm could not list its images; see the log.",
        )
        return [line.strip() for line in out.splitlines() if line.strip()]

    def _component_images(self, base: str, pause: Path) -> Path:
        tar = self._root / f"images-{node_image_ref().rsplit(':', 1)[1]}.tar"
        if tar.is_file():
            return tar
        images = component_images(self._kubeadm_images(), pause)
        context_root = self._root / "build" / "images"
        for index, image in enumerate(images, 1):
            if self._docker.image_exists(image.ref):
                continue
            context = context_root / image.ref.rsplit("/", 1)[-1].replace(":", "-")
            shutil.rmtree(context, ignore_errors=True)
            context.mkdir(parents=True)
            shutil.copy2(image.binary, context / image.binary.name)
            template = (
                nodefiles.TOOLS_IMAGE_DOCKERFILE
                if image.needs_tools
                else nodefiles.STATIC_IMAGE_DOCKERFILE
            )
            (context / "Dockerfile").write_text(
                template.format(base=base, binary=image.binary.name, path=image.path)
            )
            with Progress(f"[{index}/{len(images)}] image {image.ref}", self._out):
                self._step(
                    f"image-{context.name}",
                    ["docker", "build", "--quiet", "-t", image.ref, "."],
                    context,
                    hint="Check that 'docker info' works and run the command again.",
                )
        partial = tar.with_suffix(".partial")
        with Progress(f"saving {len(images)} images for the node's containerd", self._out):
            self._step(
                "images-save",
                ["docker", "save", "-o", str(partial), *(i.ref for i in images)],
                self._root,
                hint="Check that the disk has room (df -h) and run the command again.",
            )
        partial.rename(tar)
        return tar

    def _node_files(self, context: Path) -> None:
        kind_files = self._module_dir(KIND.module, KIND.version) / "images/base/files"
        files = context / "files"
        shutil.copytree(kind_files, files)
        for path in files.rglob("*"):  # the module cache is read-only
            path.chmod(0o755 if path.is_dir() else 0o644)
        (files / "etc/containerd/config.toml").write_text(
            nodefiles.CONTAINERD_CONFIG.format(pause_image=f"registry.k8s.io/pause:{PAUSE_VERSION}")
        )
        (files / "kind/manifests").mkdir(parents=True)
        (files / "kind/manifests/default-cni.yaml").write_text(nodefiles.FLANNEL_MANIFEST)
        (files / "kind/version").write_text(KUBERNETES_VERSION + "\n")
        usr_bin = files / "usr/bin"
        usr_bin.mkdir(parents=True, exist_ok=True)
        for binary in (
            KUBERNETES_NODE.binary("kubelet"),
            KUBERNETES_NODE.binary("kubeadm"),
            KUBERNETES.binary("kubectl"),
            CRI_TOOLS.binary("crictl"),
        ):
            shutil.copy2(binary, usr_bin / binary.name)
        shutil.copy2(FLANNEL_CNI.binary("flannel"), files / "kind/flannel")

    def _node_image(self, ref: str, base: str, images_tar: Path) -> None:
        context = self._root / "build" / "node"
        shutil.rmtree(context, ignore_errors=True)
        context.mkdir(parents=True)
        self._node_files(context)
        (context / "Dockerfile").write_text(nodefiles.NODE_DOCKERFILE.format(base=base))
        stage = ref.replace(NODE_IMAGE_REPOSITORY, NODE_IMAGE_REPOSITORY + "-stage")
        hint = "Check that 'docker info' works and run the command again."
        with Progress(f"node image layers ({stage})", self._out):
            self._step(
                "node-image-build", ["docker", "build", "-t", stage, "."], context, hint=hint
            )
        container = f"kubetee-kind-build-{os.getpid()}"
        with Progress("preloading the component images into the node's containerd", self._out):
            self._step(
                "node-image-run",
                [
                    "docker",
                    "run",
                    "-d",
                    "--name",
                    container,
                    "--entrypoint=sleep",
                    stage,
                    "infinity",
                ],
                context,
                hint=hint,
            )
            try:
                self._step(
                    "node-image-copy",
                    ["docker", "cp", str(images_tar), f"{container}:/kind/images.tar"],
                    context,
                    hint=hint,
                )
                self._step(
                    "node-image-preload",
                    ["docker", "exec", container, "bash", "-c", _PRELOAD],
                    context,
                    hint="containerd in the build container could not import the images.",
                )
                self._step(
                    "node-image-commit",
                    [
                        "docker",
                        "commit",
                        "--change",
                        'ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]',
                        # the build container ran "sleep infinity"; a node runs bare /sbin/init
                        "--change",
                        "CMD []",
                        container,
                        ref,
                    ],
                    context,
                    hint=hint,
                )
            finally:
                self._builder.run_step(
                    "node-image-cleanup", ["docker", "rm", "-f", container], context, hint=hint
                )
        self._builder.run_step(
            "node-image-untag-stage", ["docker", "rmi", stage], context, hint=hint
        )


# Run in the build container, as kind's own node image build does: a throw-away
# containerd imports the images (unpacked later, when the node first runs them).
_PRELOAD = """\
set -eu
containerd > /tmp/containerd.log 2>&1 &
containerd_pid=$!
for i in $(seq 1 60); do
  if [ -S /run/containerd/containerd.sock ] && ctr version > /dev/null 2>&1; then break; fi
  sleep 1
done
ctr --namespace=k8s.io images import --label=io.cri-containerd.pinned=pinned \\
  --all-platforms --no-unpack --digests /kind/images.tar
ctr --namespace=k8s.io images list -q
kill "$containerd_pid"
wait "$containerd_pid" || true
rm -rf /kind/images.tar /tmp/containerd.log
"""
