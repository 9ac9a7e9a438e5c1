# One image recipe for every service: docker build --build-arg SERVICE=routing --build-arg MODULE=centralino_routing .
# Multi-stage: uv resolves the locked workspace in the build stage; the runtime stage
# carries only the virtual environment and runs as an unprivileged user.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ARG SERVICE
RUN pip install --no-cache-dir uv==0.13.9
WORKDIR /src
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never
COPY pyproject.toml uv.lock ./
COPY proto proto
COPY services services
RUN uv sync --frozen --no-dev --no-editable --package "centralino-${SERVICE}"

FROM ${PYTHON_IMAGE} AS runtime
ARG SERVICE
ARG MODULE
ARG HTTP_PORT=8000
RUN useradd --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin centralino
COPY --from=build /src/.venv /app/.venv
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    SERVICE_MODULE=${MODULE} \
    HTTP_PORT=${HTTP_PORT}
USER 10001:10001
EXPOSE ${HTTP_PORT}
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ['HTTP_PORT'], timeout=2)"]
# `serve` by default; the migration job runs the same image with `migrate`.
ENTRYPOINT ["sh", "-c", "exec python -m \"$SERVICE_MODULE\" \"$@\"", "--"]
CMD ["serve"]
