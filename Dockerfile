# pgsentry: PostgreSQL wire-protocol proxy that refuses or holds dangerous statements.
#
#   docker build -t pgsentry .
#   docker run --rm -p 6432:6432 -p 9187:9187 \
#       -e PGSENTRY_UPSTREAM=postgresql://db.internal:5432/ pgsentry
#
# Every setting is a PGSENTRY_* environment variable (see the README); arguments after
# the image name replace `run` (e.g. `pgsentry check /etc/pgsentry/policies`).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Install the package exactly as the README does: `pip install .` from the source tree.
WORKDIR /src
COPY pyproject.toml README.md ./
COPY pgsentry ./pgsentry
RUN pip install . \
    && rm -rf /src

# The shipped policies; mount your own over /etc/pgsentry/policies (and send SIGHUP to reload).
COPY policies /etc/pgsentry/policies

RUN useradd --system --uid 10001 --user-group --home-dir /nonexistent --no-create-home pgsentry \
    && mkdir -p /var/log/pgsentry \
    && chown pgsentry:pgsentry /var/log/pgsentry \
    && chmod 0750 /var/log/pgsentry

ENV PGSENTRY_LISTEN=0.0.0.0:6432 \
    PGSENTRY_ADMIN_LISTEN=0.0.0.0:9187 \
    PGSENTRY_UPSTREAM=postgresql://postgres:5432/ \
    PGSENTRY_POLICIES=/etc/pgsentry/policies \
    PGSENTRY_AUDIT_LOG=-

USER pgsentry
WORKDIR /var/log/pgsentry
EXPOSE 6432 9187

# /readyz answers 200 once pgsentry accepts clients; the slim image has no curl.
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; port = os.environ.get('PGSENTRY_ADMIN_LISTEN', ':9187').rpartition(':')[2]; urllib.request.urlopen(f'http://127.0.0.1:{port}/readyz', timeout=4)"]

# SIGTERM (docker stop) drains statements in flight for PGSENTRY_SHUTDOWN_GRACE_SECONDS
# (default 30): give `docker stop -t` / stop_grace_period a little more than that.
STOPSIGNAL SIGTERM
ENTRYPOINT ["pgsentry"]
CMD ["run"]
