# pywharf as a container image: the zipapp dist/pywharf.pyz on a slim Python base.
#
# Build the zipapp first; the image build itself then needs no network:
#     python3 build.py
#     docker build -t pywharf .          (or: podman build --format docker -t pywharf .)
# --build-arg PYTHON_IMAGE=... swaps the base: any Debian-like image with python3 >= 3.9 and
# useradd. (podman needs --format docker to keep the HEALTHCHECK.)
#
# With no arguments the container runs in environment mode: PYWHARF_COMMAND picks the command and
# PYWHARF_COMMAND_<FLAG> sets each flag, e.g.
#     docker run -d -p 8888:8888 -v pywharf-data:/data pywharf
#     docker run ... -e PYWHARF_COMMAND_CONFIG=/etc/pywharf/repos.toml -v ./repos.toml:/etc/pywharf/repos.toml:ro pywharf
ARG PYTHON_IMAGE=python:3.12-slim
FROM ${PYTHON_IMAGE}

# A fixed numeric uid, so that a host directory mounted on /data can be handed to it
# (chown 10001:10001 DIR) and Kubernetes' runAsNonRoot can verify it.
ARG PYWHARF_UID=10001

RUN groupadd --gid "${PYWHARF_UID}" pywharf \
    && useradd --no-log-init --uid "${PYWHARF_UID}" --gid pywharf \
        --home-dir /data --no-create-home --shell /usr/sbin/nologin pywharf \
    && mkdir -p /data \
    && chown "${PYWHARF_UID}:${PYWHARF_UID}" /data \
    && chmod 0750 /data

# Owned by root: the server cannot change its own code.
COPY dist/pywharf.pyz /opt/pywharf/pywharf.pyz

# shiv unpacks the zipapp's site-packages on first start. Do it now, with bytecode, into a
# root-owned directory: start-up is fast and the root filesystem may be read-only (--read-only).
# A different pyz mounted over this one would need SHIV_ROOT set to a writable directory.
ENV SHIV_ROOT=/opt/pywharf/shiv
RUN SHIV_COMPILE_PYC=1 python3 /opt/pywharf/pywharf.pyz --version

ENV PYWHARF_COMMAND=server \
    PYWHARF_COMMAND_ROOT=/data \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

USER ${PYWHARF_UID}:${PYWHARF_UID}
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8888
STOPSIGNAL SIGTERM

# GET / answers 200 without auth. The probe follows PYWHARF_COMMAND_PORT and _HOST (names are
# case-insensitive, as in environment mode); http.client, unlike urllib, ignores any HTTP_PROXY.
# The first probe runs one interval after the start, and a GitHub Actions service is waited for
# until healthy: hence 10 s, not Docker's 30 s. (--start-interval would be better, but podman 4
# and Docker before 25 reject it.)
# /healthz answers 200 while the process serves; over HTTPS (unverified: it is our own
# loopback) when PYWHARF_COMMAND_CERTFILE turns TLS on.
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python3", "-c", "import os, ssl, http.client; e = {k.upper(): v for k, v in os.environ.items()}; h = e.get('PYWHARF_COMMAND_HOST') or '0.0.0.0'; h = {'0.0.0.0': '127.0.0.1', '::': '::1'}.get(h, h); p = int(e.get('PYWHARF_COMMAND_PORT') or 8888); c = http.client.HTTPSConnection(h, p, timeout=4, context=ssl._create_unverified_context()) if e.get('PYWHARF_COMMAND_CERTFILE') else http.client.HTTPConnection(h, p, timeout=4); c.request('GET', '/healthz'); raise SystemExit(c.getresponse().status != 200)"]

# Exec form: the Python process is PID 1 and receives SIGTERM itself; the server handles it and
# exits 0. It starts no child processes, so it needs no init to reap them.
ENTRYPOINT ["python3", "/opt/pywharf/pywharf.pyz"]
