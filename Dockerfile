# The taskmill service (and `taskmill worker` for SDK workers) as a small, non-root image.
#
#   docker build -t taskmill .
#   docker run -e DATABASE_URL=postgresql://… -e TASKMILL_TOKENS=admin=…,worker=… \
#       -p 8000:8000 taskmill
#
# Installed the way the README installs it (a venv, pip install of this directory), in a
# build stage; the runtime stage gets only the venv, so no source tree or build cache.

FROM python:3.12-slim AS build
WORKDIR /opt/taskmill
COPY pyproject.toml README.md alembic.ini ./
COPY app ./app
COPY migrations ./migrations
COPY sdk ./sdk
RUN python3 -m venv .venv && .venv/bin/pip install --no-cache-dir .

FROM python:3.12-slim
RUN useradd --system --uid 10001 --user-group --create-home --home-dir /home/taskmill taskmill
COPY --from=build /opt/taskmill/.venv /opt/taskmill/.venv
# The example worker (`taskmill worker examples.worker:worker`, see docker-compose.yml).
COPY examples /srv/taskmill/examples
ENV PATH=/opt/taskmill/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /srv/taskmill
USER taskmill
EXPOSE 8000
# Liveness only; load balancers should use /readyz (database reachable and migrated).
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"]
ENTRYPOINT ["taskmill"]
# Binding 0.0.0.0 needs tokens (TASKMILL_TOKENS or TASKMILL_TOKENS_FILE): without them
# `taskmill serve` refuses to start. With DATABASE_URL unset it would start an embedded
# PostgreSQL inside the container: set DATABASE_URL in production.
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
