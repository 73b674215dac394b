# The functions image: every Workbench function in one image; FUNCTION_TARGET picks the one to serve.
# Build: docker build -t workbench-functions:latest .
FROM python:3.11-slim

# No pydantic plugin is installed: PYDANTIC_DISABLE_PLUGINS spares every cold start pydantic's search for
# them, a read of every installed distribution's metadata.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PYDANTIC_DISABLE_PLUGINS=__all__ \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    WORKBENCH_DATA_DIR=/var/lib/workbench \
    PORT=8080

WORKDIR /app
COPY pyproject.toml README.md ./
COPY events events
COPY shared shared
COPY shovel shovel
COPY functions functions

# The package with its pinned runtime dependencies only (no dev extras: no test or lint tools). The
# function modules also stay in /app/functions, where --source points; compiled now, because the
# user below cannot write next to them and a cold start should not recompile.
RUN pip install . \
    && python -m compileall -q /app/functions \
    && useradd --system --uid 10001 --home-dir /var/lib/workbench --create-home workbench

# A numeric user, so that the kubelet can check runAsNonRoot without looking the name up.
USER 10001

EXPOSE 8080
# Knative sets PORT; FUNCTION_SOURCE may be set too (the manifests do), else it follows the target.
ENTRYPOINT ["/bin/sh", "-c", "exec functions-framework --target \"$FUNCTION_TARGET\" --source \"${FUNCTION_SOURCE:-functions/$FUNCTION_TARGET.py}\" --port \"${PORT:-8080}\""]
