# Interlock: one image for the worker, the intake API and the one-shot migration job.
# Pinned base; the virtualenv is built in a throwaway stage and copied into a slim runtime that
# runs as an unprivileged user.
FROM python:3.11.10-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/interlock/venv
WORKDIR /src
COPY pyproject.toml README.md ./
COPY interlock ./interlock
COPY workflows ./workflows
COPY activities ./activities
COPY worker ./worker
# The built-in playbooks install as package data (interlock.playbooks); a team's own tree is
# mounted and named by INTERLOCK_PLAYBOOKS instead.
COPY playbooks ./playbooks
RUN /opt/interlock/venv/bin/pip install . \
    && find /opt/interlock/venv -name __pycache__ -prune -exec rm -rf {} +

FROM python:3.11.10-slim-bookworm
# ssh for playbooks that reach real hosts; nothing else is added to the base.
RUN apt-get update \
    && apt-get install -y --no-install-recommends openssh-client \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --home-dir /var/lib/interlock --create-home interlock
COPY --from=build /opt/interlock/venv /opt/interlock/venv
ENV PATH=/opt/interlock/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    INTERLOCK_HOME=/var/lib/interlock
USER 10001:10001
WORKDIR /var/lib/interlock
ENTRYPOINT ["interlock"]
CMD ["worker"]
