"""``kubetee enclave``: make, sign, inspect and run enclave applications.

    kubetee enclave keygen --out KEY.pem          an author's RSA-3072 signing key (e=3)
    kubetee enclave init --entrypoint app/server.py [--trusted PATH]... [--dir DIR]
    kubetee enclave build --key KEY.pem [--dir DIR] [--image BASE --tag NEW]
    kubetee enclave run [--dir DIR | --bundle DIR]
    kubetee enclave measure [--dir DIR | --enclave-container FILE.yaml]
    kubetee enclave bundle --name NAME [--dir DIR]   the enclave as a ConfigMap (YAML)

Exit codes: 0 done, 2 bad input, 5 launch refused (EINIT or a modified trusted file),
6 image build failed; ``run`` otherwise exits with the runtime's codes (3 attestation
refused, 4 attestation unreachable) or the workload's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from enclave_runtime.enclave import bundle, image
from enclave_runtime.enclave.build import BuiltEnclave, build_directory, init_manifest
from enclave_runtime.enclave.errors import EnclaveError, LaunchRefusedError, ManifestError
from enclave_runtime.enclave.keys import (
    load_author_key,
    sample_mrsigner,
    sample_signer,
    write_new_key,
)
from enclave_runtime.enclave.launcher import Launcher
from enclave_runtime.enclave.loader import (
    FileSource,
    LoadedEnclave,
    check_launch,
    from_bundle,
    from_directory,
    identity_of,
    load,
)
from enclave_runtime.enclave.manifest import (
    MANIFEST_FILE,
    SIGSTRUCT_FILE,
    EnclaveManifest,
    load_manifest,
)
from enclave_runtime.quoting import QuotingClient
from enclave_runtime.runtime.attestation import tls_context
from enclave_runtime.runtime.errors import RuntimeFailure
from enclave_runtime.runtime.settings import RuntimeSettings, load_settings
from enclave_runtime.sgx.enclave import EnclaveSigner
from enclave_runtime.sgx.sigstruct import Sigstruct, SigstructError
from kubetee.metrics.runtime import start_runtime_metrics

log = logging.getLogger("kubetee.enclave")
PROG = "kubetee enclave"
PRIVATE_DIR_ENV = "KUBETEE_ENCLAVE_PRIVATE_DIR"
MEMORY_DIR = Path("/dev/shm")  # noqa: S108  # tmpfs: the secrets never reach a disk


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "enclave",
        help="build, sign and run an application inside an enclave",
        description="Enclave applications, as Occlum and Gramine make them: a manifest of "
        "trusted files, measured into MRENCLAVE and signed by its author (SIGSTRUCT); the "
        "runtime refuses to launch what does not match, attests, and only then starts the "
        "workload with its secrets.",
    )
    parser.set_defaults(func=lambda _args: parser.print_help() or 2)
    actions = parser.add_subparsers(dest="action", metavar="ACTION")

    keygen = actions.add_parser("keygen", help="make an author signing key (RSA-3072, e=3)")
    keygen.add_argument("--out", type=Path, required=True, help="PEM file to create (0600)")
    keygen.set_defaults(func=_keygen)

    init = actions.add_parser("init", help="write enclave.manifest.json for a program")
    init.add_argument("--dir", type=Path, default=Path(), help="enclave directory (default .)")
    init.add_argument(
        "--root", type=Path, default=None, help="where the files are (default: --dir)"
    )
    init.add_argument("--entrypoint", required=True, help="the program, relative to the root")
    init.add_argument("--arg", action="append", default=[], help="an argument (repeatable)")
    init.add_argument(
        "--trusted", action="append", default=[], help="a trusted file or directory (repeatable)"
    )
    init.add_argument("--env", action="append", default=[], help="NAME=VALUE (measured)")
    init.add_argument("--heap-mib", type=int, default=32)
    init.add_argument("--threads", type=int, default=4)
    init.add_argument("--isv-prod-id", type=int, default=0)
    init.add_argument("--isv-svn", type=int, default=0)
    init.add_argument("--debug", action="store_true", help="a DEBUG enclave (never for secrets)")
    init.add_argument(
        "--image", default=None, help="take the files from this container image (docker)"
    )
    init.add_argument("--force", action="store_true", help="overwrite an existing manifest")
    init.set_defaults(func=_init)

    build = actions.add_parser("build", help="measure and sign (SIGSTRUCT); or wrap an image")
    build.add_argument("--dir", type=Path, default=Path())
    build.add_argument(
        "--root", type=Path, default=None, help="where the files are (default: --dir)"
    )
    _signing_key_arguments(build)
    build.add_argument("--image", default=None, help="base image holding the trusted files")
    build.add_argument("--tag", default=None, help="tag of the enclave image to build")
    build.add_argument("--runtime-image", default=image.DEFAULT_RUNTIME_IMAGE)
    build.add_argument(
        "--context", type=Path, default=None, help="keep the image build context here"
    )
    build.set_defaults(func=_build)

    run = actions.add_parser("run", help="launch: EINIT checks, attest, start the workload")
    run.add_argument("--dir", type=Path, default=Path())
    run.add_argument("--root", type=Path, default=None)
    run.add_argument("--bundle", type=Path, default=None, help="a mounted enclave bundle")
    run.add_argument("--private-dir", type=Path, default=None)
    run.set_defaults(func=_run)

    measure = actions.add_parser("measure", help="print MRENCLAVE and MRSIGNER to pin")
    measure.add_argument("--dir", type=Path, default=Path())
    measure.add_argument("--root", type=Path, default=None, help="files root (default: --dir)")
    measure.add_argument(
        "--enclave-container",
        type=Path,
        default=None,
        help="a YAML file with an EnclaveContainer and the bundle ConfigMap it names",
    )
    measure.set_defaults(func=_measure)

    bundle_cmd = actions.add_parser("bundle", help="print the built enclave as a ConfigMap")
    bundle_cmd.add_argument("--dir", type=Path, default=Path())
    bundle_cmd.add_argument("--root", type=Path, default=None)
    bundle_cmd.add_argument("--name", required=True, help="name of the ConfigMap")
    bundle_cmd.set_defaults(func=_bundle)


def _signing_key_arguments(parser: argparse.ArgumentParser) -> None:
    keys = parser.add_mutually_exclusive_group(required=True)
    keys.add_argument("--key", type=Path, help="the author's signing key (PEM)")
    keys.add_argument(
        "--sample-key",
        action="store_true",
        help="KubeTEE's public sample key: tests and the simulator only",
    )


def _fail(error: EnclaveError | RuntimeFailure) -> int:
    sys.stderr.write(f"{PROG}: error: {error}\n")
    return error.exit_code


def _signer(args: argparse.Namespace) -> EnclaveSigner:
    if args.sample_key:
        sys.stderr.write(
            f"{PROG}: warning: signing with the public sample key; its MRSIGNER pins "
            "nothing and is refused outside the simulator\n"
        )
        return sample_signer()
    return load_author_key(args.key)


def _print_identity(mrenclave: bytes, mrsigner: bytes, manifest: EnclaveManifest) -> None:
    sys.stdout.write(
        json.dumps(
            {
                "mrenclave": mrenclave.hex(),
                "mrsigner": mrsigner.hex(),
                "isvProdId": manifest.isv_prod_id,
                "isvSvn": manifest.isv_svn,
                "debug": manifest.debug,
                "sampleKey": mrsigner == sample_mrsigner(),
            }
        )
        + "\n"
    )


def _keygen(args: argparse.Namespace) -> int:
    try:
        signer = write_new_key(args.out)
    except EnclaveError as error:
        return _fail(error)
    sys.stdout.write(f"wrote {args.out} (keep it secret); MRSIGNER {signer.mrsigner.hex()}\n")
    return 0


def _init(args: argparse.Namespace) -> int:
    target = args.dir / MANIFEST_FILE
    try:
        if target.exists() and not args.force:
            raise ManifestError(f"{target} exists; pass --force to overwrite it")
        env = dict(item.split("=", 1) for item in args.env if "=" in item)
        if len(env) != len(args.env):
            raise ManifestError("--env takes NAME=VALUE")
        root = args.root or args.dir
        if args.image:
            root = args.dir / "root"
            image.extract(args.image, [args.entrypoint, *args.trusted], root)
        manifest = init_manifest(
            root,
            entrypoint=args.entrypoint,
            args=args.arg,
            trusted=args.trusted,
            env=env,
            heap_mib=args.heap_mib,
            threads=args.threads,
            isv_prod_id=args.isv_prod_id,
            isv_svn=args.isv_svn,
            debug=args.debug,
        )
        args.dir.mkdir(parents=True, exist_ok=True)
        target.write_text(manifest.to_json())
    except EnclaveError as error:
        return _fail(error)
    except OSError as exc:
        return _fail(EnclaveError(f"cannot write {target}: {exc.strerror or exc}"))
    sys.stdout.write(
        f"wrote {target}: entrypoint {manifest.entrypoint}, "
        f"{len(manifest.trusted_files)} trusted file(s); next: kubetee enclave build\n"
    )
    return 0


def _build(args: argparse.Namespace) -> int:
    if (args.image is None) != (args.tag is None):
        return _fail(EnclaveError("--image and --tag go together"))
    try:
        signer = _signer(args)
        if args.image is None:
            built = build_directory(args.dir, signer, root=args.root)
        elif args.context is not None:
            built = _build_image(args, signer, args.context)
        else:
            with tempfile.TemporaryDirectory(prefix="kubetee-enclave-image-") as scratch:
                built = _build_image(args, signer, Path(scratch))
    except EnclaveError as error:
        return _fail(error)
    for path in built.changed:
        sys.stderr.write(f"{PROG}: trusted file {path} changed since the manifest; re-hashed\n")
    _print_identity(built.mrenclave, built.mrsigner, built.manifest)
    return 0


def _build_image(args: argparse.Namespace, signer: EnclaveSigner, context: Path) -> BuiltEnclave:
    manifest = load_manifest(args.dir / MANIFEST_FILE)
    root = context / "root"
    shutil.rmtree(root, ignore_errors=True)
    context.mkdir(parents=True, exist_ok=True)
    sys.stderr.write(
        f"[1/3] copying {len(manifest.trusted_files)} trusted file(s) out of {args.image}\n"
    )
    image.extract(args.image, [f.path for f in manifest.trusted_files], root)
    shutil.copyfile(args.dir / MANIFEST_FILE, context / MANIFEST_FILE)
    sys.stderr.write("[2/3] measuring and signing\n")
    built = build_directory(context, signer, root=root)
    shutil.copyfile(context / MANIFEST_FILE, args.dir / MANIFEST_FILE)
    shutil.copyfile(context / SIGSTRUCT_FILE, args.dir / SIGSTRUCT_FILE)
    image.write_context(
        context,
        runtime_image=args.runtime_image,
        base=args.image,
        mrenclave=built.mrenclave.hex(),
        mrsigner=built.mrsigner.hex(),
    )
    sys.stderr.write(f"[3/3] docker build --tag {args.tag} {context}\n")
    image.build_image(context, args.tag)
    return built


def _read_sigstruct(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ManifestError(
            f"cannot read the SIGSTRUCT {path}: {exc.strerror or exc}; sign the enclave "
            "with `kubetee enclave build`"
        ) from None


def _rerooted(path: Path | None) -> Path | None:
    """Container paths under ``KUBETEE_ROOT`` (the local cluster's node agent)."""
    root = os.environ.get("KUBETEE_ROOT")
    if path is None or not root or not path.is_absolute():
        return path
    return Path(root) / path.relative_to(path.anchor)


def _source(args: argparse.Namespace) -> tuple[EnclaveManifest, bytes, FileSource]:
    bundle_dir = _rerooted(args.bundle)
    if bundle_dir is not None:
        manifest = load_manifest(bundle_dir / MANIFEST_FILE)
        return manifest, _read_sigstruct(bundle_dir / SIGSTRUCT_FILE), from_bundle(bundle_dir)
    directory = _rerooted(args.dir) or Path()
    manifest = load_manifest(directory / MANIFEST_FILE)
    root = _rerooted(args.root) or directory
    return manifest, _read_sigstruct(directory / SIGSTRUCT_FILE), from_directory(root)


def _private_base(args: argparse.Namespace) -> Path:
    if args.private_dir is not None:
        return Path(_rerooted(args.private_dir) or args.private_dir)
    configured = os.environ.get(PRIVATE_DIR_ENV)
    if configured:
        return Path(_rerooted(Path(configured)) or configured)
    return MEMORY_DIR if os.access(MEMORY_DIR, os.W_OK) else Path(tempfile.gettempdir())


def _run(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        manifest, sigstruct, source = _source(args)
        settings = _attestation_settings()
        base = _private_base(args)
        base.mkdir(parents=True, exist_ok=True, mode=0o700)
        private = Path(tempfile.mkdtemp(prefix="enclave-", dir=base))
    except (EnclaveError, RuntimeFailure) as error:
        log.error("%s", error)  # noqa: TRY400  # the reason is the message
        return error.exit_code
    except OSError as exc:
        log.error("cannot make the enclave's private directory: %s", exc)  # noqa: TRY400
        return 2
    try:
        loaded = load(manifest, sigstruct, source, private)
        identity = loaded.identity
        log.info(
            "EINIT passed: MRENCLAVE %s, MRSIGNER %s, isvProdId %d, isvSvn %d%s; "
            "%d trusted file(s) verified",
            identity.mrenclave.hex(),
            identity.mrsigner.hex(),
            identity.isv_prod_id,
            identity.isv_svn,
            ", DEBUG" if identity.debug else "",
            len(manifest.trusted_files),
        )
        return asyncio.run(_launch(loaded, settings, private))
    except EnclaveError as error:
        log.error("launch refused: %s", error)  # noqa: TRY400
        return error.exit_code
    finally:
        shutil.rmtree(private, ignore_errors=True)


def _attestation_settings() -> RuntimeSettings | None:
    """The runtime's settings in a pod (the operator sets ``KUBETEE_ENCLAVE_CONFIG``):
    attestation is then required. None on a workstation: no attestation, no secrets."""
    if not os.environ.get("KUBETEE_ENCLAVE_CONFIG"):
        return None
    return load_settings()


async def _launch(loaded: LoadedEnclave, settings: RuntimeSettings | None, private: Path) -> int:
    if settings is None:
        return await Launcher(loaded, None).run()
    secrets_dir = private / "secrets"
    secrets_dir.mkdir(mode=0o700)
    settings = settings.model_copy(
        update={"secrets_dir": secrets_dir, "state_dir": settings.state_dir or private}
    )
    try:
        context = tls_context(settings)
    except OSError as exc:
        log.error("cannot read the attestation service's CA: %s", exc)  # noqa: TRY400
        return 2
    start_runtime_metrics(settings.pod_namespace, settings.pod_name, settings.enclave_container)
    launcher = Launcher(loaded, settings, QuotingClient(settings.quoting_socket), context)
    return await launcher.run()


def _measure(args: argparse.Namespace) -> int:
    try:
        if args.enclave_container is not None:
            manifest, sigstruct = _bundle_of_enclave_container(args.enclave_container)
            parsed = _verified(sigstruct)
        else:
            manifest = load_manifest(args.dir / MANIFEST_FILE)
            sigstruct = _read_sigstruct(args.dir / SIGSTRUCT_FILE)
            parsed = check_launch(manifest, sigstruct, from_directory(args.root or args.dir))
    except EnclaveError as error:
        return _fail(error)
    identity = identity_of(parsed)
    _print_identity(identity.mrenclave, identity.mrsigner, manifest)
    return 0


def _verified(sigstruct: bytes) -> Sigstruct:
    """The SIGSTRUCT's identity after its signature check (the files are not at hand)."""
    try:
        parsed = Sigstruct.parse(sigstruct)
        parsed.verify()
    except SigstructError as exc:
        raise LaunchRefusedError(str(exc)) from None
    return parsed


def _bundle_of_enclave_container(path: Path) -> tuple[EnclaveManifest, bytes]:
    try:
        documents = [d for d in yaml.safe_load_all(path.read_text()) if isinstance(d, dict)]
    except (OSError, yaml.YAMLError) as exc:
        raise ManifestError(f"cannot read {path}: {exc}") from None
    containers = [d for d in documents if d.get("kind") == "EnclaveContainer"]
    if not containers:
        raise ManifestError(f"{path} holds no EnclaveContainer")
    enclave = (containers[0].get("spec") or {}).get("enclave") or {}
    name = (enclave.get("bundle") or {}).get("name")
    if not name:
        raise ManifestError(
            "the EnclaveContainer names no spec.enclave.bundle; for an enclave image run "
            "`kubetee enclave measure --dir` on the directory it was built from"
        )
    for document in documents:
        if document.get("kind") == "ConfigMap" and document["metadata"].get("name") == name:
            return bundle.from_configmap(document)
    raise ManifestError(f"{path} does not hold the ConfigMap {name} the EnclaveContainer names")


def _bundle(args: argparse.Namespace) -> int:
    try:
        manifest = load_manifest(args.dir / MANIFEST_FILE)
        sigstruct = _read_sigstruct(args.dir / SIGSTRUCT_FILE)
        root = args.root or args.dir
        check_launch(manifest, sigstruct, from_directory(root))
        document = bundle.bundle_configmap(manifest, sigstruct, root, args.name)
    except EnclaveError as error:
        return _fail(error)
    sys.stdout.write(yaml.safe_dump(document, sort_keys=False))
    return 0
