# One image for the code server, the webserver and the daemon (see docker-compose.yml).
FROM python:3.11-slim

# The CPU build of torch first, so nothing pulls a CUDA build.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
RUN pip install --no-cache-dir torch==2.13.0 --index-url "$TORCH_INDEX_URL"

WORKDIR /opt/flywheel
COPY pyproject.toml README.md definitions.py ./
COPY pipeline pipeline
COPY assets assets
COPY resources resources
RUN pip install --no-cache-dir ".[deploy]"

ENV DAGSTER_HOME=/opt/dagster/home \
    FLYWHEEL_HOME=/data/flywheel
COPY deploy/dagster.yaml deploy/workspace.yaml /opt/dagster/home/
