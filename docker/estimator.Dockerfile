# syntax=docker/dockerfile:1
# The estimator image: the unmodified program (programs/estimator) plus the wrapper
# (`python -m pipeline.wrapper --job s3://.../job.json`), which is the container command
# the ECS and Batch executors give every cohort.
# Build from the repository root: docker build -f docker/estimator.Dockerfile .
#
# The base is pinned to an exact patch tag. Pin it by digest as well
# (python:3.11.14-slim-bookworm@sha256:...) once you can pull it: docs/deploy.md says how.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY docker/constraints/estimator.txt constraints.txt
# The program with its own pinned dependencies (scikit-learn, pandas, pyarrow, numpy).
COPY programs/estimator/ programs/estimator/
# The wrapper needs only the standard library, boto3 and pipeline.core/errors/faults,
# so the pipeline package goes in without its dependencies (no luigi, no BigQuery client).
COPY pyproject.toml setup.cfg README.md pipeline-src/
COPY pipeline/ pipeline-src/pipeline/
# Every transitive dependency pinned by the constraints file (make image-constraints).
RUN pip install --no-cache-dir -c constraints.txt ./programs/estimator boto3==1.44.5 \
 && pip install --no-cache-dir --no-deps ./pipeline-src

FROM ${PYTHON_IMAGE} AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
RUN groupadd --system --gid 10001 estimator \
 && useradd --system --uid 10001 --gid estimator --home-dir /tmp --no-create-home \
      --shell /usr/sbin/nologin estimator
COPY --from=build /opt/venv /opt/venv
WORKDIR /tmp
USER 10001:10001
# Read-only root filesystem on ECS/Batch: the wrapper's scratch space is /tmp.
VOLUME ["/tmp"]
# A run-to-completion job: its health is its exit code and the wrapper's deadline, so no
# HEALTHCHECK. The executors override this command with `--job s3://.../job.json`.
CMD ["python", "-m", "pipeline.wrapper", "--help"]
