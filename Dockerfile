# syntax=docker/dockerfile:1
#
# One image for the three services and the schema migration command. Kubernetes picks
# the service through the container arguments, e.g. `gateway --port 8000`, or runs
# `chat-migrate` as the command. Build from the repository root:
#
#   docker build --build-arg VERSION=0.1.0 --build-arg REVISION=$(git rev-parse HEAD) \
#     -t chat-platform:0.1.0 .
#
# Both stages start from the same Python image so the virtual environment built in the
# first one finds its interpreter at the same path in the second.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder

ARG UV_VERSION=0.13.9
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_NO_CACHE=1 \
    UV_PYTHON_DOWNLOADS=never

RUN python -m pip install --no-cache-dir --disable-pip-version-check "uv==${UV_VERSION}"

WORKDIR /src
RUN uv venv --python /usr/local/bin/python3.11 /opt/venv

# Dependencies first, so editing the code reuses this layer. --no-build accepts wheels
# only: a dependency that would need compiling fails here instead of pulling a compiler
# into the build. Every artifact is checked against the lock's hashes.
COPY requirements-runtime.lock ./
RUN uv pip install --python /opt/venv/bin/python --require-hashes --no-build \
        -r requirements-runtime.lock

# The workspace packages, without their dependencies (the lock already brought them).
COPY shared ./shared
COPY services ./services
RUN uv pip install --python /opt/venv/bin/python --no-deps \
        ./shared ./services/auth ./services/history ./services/chat-gateway


FROM ${PYTHON_IMAGE} AS runtime

ARG VERSION=0.1.0
ARG REVISION=unknown
ARG SOURCE_URL=unknown
LABEL org.opencontainers.image.title="chat-platform" \
      org.opencontainers.image.description="Real-time chat backend: auth, chat gateway and history services" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="${SOURCE_URL}"

# A fixed numeric id: Kubernetes can only prove runAsNonRoot for a numeric user, and
# the manifests set the same id.
RUN groupadd --system --gid 10001 chat \
    && useradd --system --uid 10001 --gid chat --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin chat

# Only the virtual environment crosses over: the code is installed inside it, and no
# build tool, lock file or source tree comes along.
COPY --from=builder /opt/venv /opt/venv

# CHAT_DATA_DIR points at /tmp, the one writable place under a read-only root
# filesystem (an emptyDir in Kubernetes); the cluster keeps no state there.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    CHAT_HOST=0.0.0.0 \
    CHAT_DATA_DIR=/tmp/chat

WORKDIR /app
USER 10001:10001
EXPOSE 8000 8001 8002

# No HEALTHCHECK: the port depends on the service the container runs, and Kubernetes
# uses its own probes on /healthz and /readyz.
ENTRYPOINT ["python", "-m", "chat_shared.serve"]
CMD ["gateway", "--host", "0.0.0.0", "--port", "8000"]
