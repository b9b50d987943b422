# syntax=docker/dockerfile:1
# One image for every KubeTEE component: `kubetee operator`, `kubetee attestation-service
# serve`, `kubetee device-plugin`, `kubetee quoting-service serve`, `kubetee runtime`, ...
#
#   docker build -t kubetee/kubetee:0.1.0 .
#
# Stage 1 builds wheels of KubeTEE and its dependencies; stage 2 installs them into a slim
# Python without build tools, and runs as an unprivileged user. Needs BuildKit (the
# default builder since Docker 23) for the RUN --mount below.
ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator/kubetee operator/kubetee
COPY enclave_runtime enclave_runtime
RUN pip wheel --wheel-dir /wheels .

FROM python:${PYTHON_VERSION}-slim
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
# Installed from the build stage's wheels through a bind mount: the wheels never become a
# layer of the final image. Bytecode is compiled at install time, so a read-only root
# filesystem costs no start-up time.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels --compile kubetee
# The uid the chart's security contexts name (runAsUser 65532); numeric below, so the
# kubelet can check runAsNonRoot.
RUN groupadd --system --gid 65532 kubetee \
    && useradd --system --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin kubetee
USER 65532:65532
ENTRYPOINT ["kubetee"]
CMD ["--help"]
