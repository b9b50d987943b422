# One image for every KubeTEE component: `kubetee operator`, `kubetee attestation-service
# serve`, `kubetee device-plugin`, `kubetee quoting-service serve`, `kubetee runtime`, ...
#
#   docker build -t kubetee/kubetee:0.1.0 .
#
# Any Docker builder will do (the classic one included: no BuildKit feature is used, and
# nothing but BASE_IMAGE is pulled). `make image` builds it on a base made locally from
# Debian packages and hands the build this machine's pip index settings and CA
# certificates (kubetee image build --help).
#
# Stage 1 installs KubeTEE and its dependencies into a virtual environment (bytecode
# compiled, so a read-only root filesystem costs no start-up time); stage 2 copies only
# that environment onto the same base, without build tools or sources, and runs as an
# unprivileged user.
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS build
# Where the packages come from; unset means pip's defaults. A pip-ca.pem in the build
# context (kubetee image build puts this machine's there; a plain checkout has none) is
# the CA bundle pip trusts.
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ARG PIP_TRUSTED_HOST
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
RUN python3 -m venv /opt/kubetee
WORKDIR /src
# Dependencies first, in a layer of their own: a change to KubeTEE's code or README
# reuses it. (pip-ca.pe[m] matches the optional file; pyproject.toml always exists.)
COPY pyproject.toml pip-ca.pe[m] ./
RUN if [ -f pip-ca.pem ]; then export PIP_CERT=/src/pip-ca.pem; fi \
    && python3 -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' >/tmp/requirements.txt \
    && /opt/kubetee/bin/pip install --quiet --compile -r /tmp/requirements.txt
COPY README.md ./
COPY operator/kubetee operator/kubetee
COPY enclave_runtime enclave_runtime
# pip itself is not needed at run time.
RUN if [ -f pip-ca.pem ]; then export PIP_CERT=/src/pip-ca.pem; fi \
    && /opt/kubetee/bin/pip install --quiet --compile --no-deps /src \
    && /opt/kubetee/bin/pip uninstall --quiet --yes pip setuptools

FROM ${BASE_IMAGE}
ENV PATH=/opt/kubetee/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
COPY --from=build /opt/kubetee /opt/kubetee
# The uid the chart's security contexts name (runAsUser 65532); numeric below, so the
# kubelet can check runAsNonRoot.
RUN groupadd --system --gid 65532 kubetee \
    && useradd --system --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin kubetee
USER 65532:65532
ENTRYPOINT ["kubetee"]
CMD ["--help"]
