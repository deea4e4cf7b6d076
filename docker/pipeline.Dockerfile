# syntax=docker/dockerfile:1
# The pipeline image: one image, three roles (see docs/deploy.md):
#   worker  `pipeline run ...` (the daily EventBridge schedule, or by hand)
#   reaper  `pipeline reap`    (every 5 minutes)
#   luigid  `luigid --port 8082 ...` (the ECS service behind the internal ALB)
# Build from the repository root: docker build -f docker/pipeline.Dockerfile .
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
COPY docker/constraints/pipeline.txt constraints.txt
COPY pyproject.toml setup.cfg README.md ./
COPY pipeline/ pipeline/
# Every transitive dependency pinned by the constraints file (make image-constraints).
# luigid's task history (RDS PostgreSQL) needs SQLAlchemy (1.4: luigi's DbTaskHistory predates 2.0)
# and a driver; luigi does not pull them in.
RUN pip install --no-cache-dir -c constraints.txt . sqlalchemy==1.4.54 psycopg2-binary==2.9.13

FROM ${PYTHON_IMAGE} AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIPELINE_HOME=/var/lib/pipeline
# A fixed non-root uid: the EFS access point of luigid's state and the task definitions use it.
RUN groupadd --system --gid 10001 pipeline \
 && useradd --system --uid 10001 --gid pipeline --home-dir /var/lib/pipeline \
      --shell /usr/sbin/nologin pipeline \
 && mkdir -p /var/lib/pipeline /var/lib/luigid /var/log/luigid \
 && chown pipeline:pipeline /var/lib/pipeline /var/lib/luigid /var/log/luigid
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
# luigi reads ./luigi.cfg from the working directory; the cloud overrides come through
# LUIGI_CONFIG_PATH (set by the task definitions): deploy/luigi.cfg for the worker and the
# reaper, deploy/luigid.cfg for luigid.
COPY luigi.cfg ./
COPY programs/estimator/program.toml programs/estimator/program.toml
COPY docker/luigi.cloud.cfg deploy/luigi.cfg
COPY docker/luigid.cloud.cfg deploy/luigid.cfg
COPY --chmod=0755 docker/entrypoint.py /usr/local/bin/entrypoint
COPY --chmod=0755 docker/fetch_raw.py /usr/local/bin/fetch-raw
USER 10001:10001
# The task definitions run with a read-only root filesystem; these are the writable places.
# On ECS each is an empty task volume that inherits this ownership.
VOLUME ["/tmp", "/var/lib/pipeline", "/var/log/luigid"]
EXPOSE 8082
ENTRYPOINT ["/usr/local/bin/entrypoint"]
CMD ["pipeline", "--help"]
