# syntax=docker/dockerfile:1
# Another team's program image, unchanged, with the pipeline's wrapper added, so that the
# ECS and Batch executors can run it (`python -m pipeline.wrapper --job s3://.../job.json`).
# Nothing of the program is rebuilt or moved: its files, PATH, working directory and user
# stay as they are; the wrapper lives in /opt/pipeline-wrapper and starts the program with
# the command of its program spec (program.toml `command`).
#
#   docker build -f docker/wrap-program.Dockerfile \
#     --build-arg PROGRAM_IMAGE=<registry>/<their-program>:<tag>@sha256:<digest> \
#     -t <registry>/<name>/<their-program>:<tag>-wrapped .
#
# then name the wrapped image in the program spec (`image = ...`): the executors run a
# task/job definition derived with it (docs/executors.md, "The image that runs").
#
# What the program image must have: `python` 3.11 or newer on its PATH (the wrapper uses
# only the standard library plus boto3, which this file adds). The wrapper's packages reach
# that interpreter through PYTHONPATH; PIPELINE_WRAPPER_PATH tells the wrapper to take
# that entry out again before it starts the program, so a Python program keeps its own
# packages (its own boto3 included).
#
# The build stage is pinned like the other images. Pin PROGRAM_IMAGE by digest.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm
ARG PROGRAM_IMAGE

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY docker/constraints/estimator.txt constraints.txt
COPY pyproject.toml setup.cfg README.md pipeline-src/
COPY pipeline/ pipeline-src/pipeline/
# boto3 and its pure-Python dependencies, pinned by the constraints file, and the pipeline
# package without its dependencies (the wrapper needs none of them), into one directory.
RUN pip install --no-cache-dir -c constraints.txt --target /opt/pipeline-wrapper boto3==1.44.5 \
 && pip install --no-cache-dir --no-deps --target /opt/pipeline-wrapper ./pipeline-src

FROM ${PROGRAM_IMAGE} AS runtime
COPY --from=build /opt/pipeline-wrapper /opt/pipeline-wrapper
ENV PYTHONPATH=/opt/pipeline-wrapper${PYTHONPATH:+:${PYTHONPATH}} \
    PIPELINE_WRAPPER_PATH=/opt/pipeline-wrapper \
    PYTHONUNBUFFERED=1
# The program's own entrypoint would swallow the executors' command; they give it whole.
ENTRYPOINT []
# A run-to-completion job: its health is its exit code and the wrapper's deadline, so no
# HEALTHCHECK. The executors override this command with `--job s3://.../job.json`.
CMD ["python", "-m", "pipeline.wrapper", "--help"]
