# syntax=docker/dockerfile:1
# stratoq container roles, one image:
#   worker     `stratoq worker` pollers (the default command)
#   scheduler  `stratoq scheduler`
#   provision  `stratoq provision`: template.yaml's tables and queues on an emulator
# Build: docker build -t stratoq:0.1.0 .   Run: docker run stratoq:0.1.0 worker -c 8
# Your tasks: build FROM this image, add your package, set STRATOQ_TASKS_MODULE.
ARG PYTHON_IMAGE=python:3.12-slim-bookworm

# ---------------------------------------------------------------- build: a venv
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY functions/ ./functions/
# The runtime dependencies come from pyproject.toml; aws-sam-translator and PyYAML let
# the provision role translate template.yaml (moto, the rest of [local], is not needed).
# hadolint ignore=DL3013
RUN python -m venv /opt/stratoq \
 && /opt/stratoq/bin/pip install --upgrade pip \
 && /opt/stratoq/bin/pip install . "aws-sam-translator>=1.90" "PyYAML>=6" \
 && /opt/stratoq/bin/python -c "import stratoq.cli.main, samtranslator, yaml"

# -------------------------------------------------------------- runtime: slim
FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="stratoq" \
      org.opencontainers.image.description="stratoq task queue: worker, scheduler and provision roles" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 stratoq \
 && useradd --system --uid 10001 --gid 10001 --home-dir /app --no-create-home \
      --shell /usr/sbin/nologin stratoq
COPY --from=build /opt/stratoq /opt/stratoq
WORKDIR /app
COPY template.yaml ./template.yaml
COPY infra/docker/entrypoint.py infra/docker/healthcheck.py ./
ENV PATH=/opt/stratoq/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    STRATOQ_TEMPLATE=/app/template.yaml \
    STRATOQ_METRICS_PORT=9464
USER 10001:10001
EXPOSE 9464
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "/app/healthcheck.py"]
ENTRYPOINT ["python", "/app/entrypoint.py"]
CMD ["worker"]
