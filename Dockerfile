# One image runs every Aftercare service; the command picks which:
#   python worker.py                           the worker
#   python starter.py serve                    the HTTP API
#   python -m aftercare.temporal.codec_server  the codec endpoint
#   python -m aftercare.setup                  the cluster setup (search attributes, audit schema)
#   python auditor.py ...                      the auditor's CLI

FROM python:3.11-slim AS dependencies
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/venv
COPY requirements.lock /tmp/requirements.lock
# Exactly the locked versions, each checked against its hash.
RUN /opt/venv/bin/pip install --require-hashes --no-deps -r /tmp/requirements.lock

FROM python:3.11-slim
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
RUN useradd --system --uid 10001 --no-create-home --home-dir /app aftercare \
    && install -d -o aftercare -m 0700 /var/lib/aftercare
COPY --from=dependencies /opt/venv /opt/venv
WORKDIR /app
COPY . .
# The image writes no bytecode at run time: compiled here, every process loads its modules
# rather than compiling their source at each start.
RUN python -m compileall -q /app
USER aftercare
EXPOSE 8000 8081 9464
CMD ["python", "worker.py"]
