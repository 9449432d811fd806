# netreduce API and worker image: CPU-only PyTorch, the project installed from this repo.
# Build arguments (defaults: Docker Hub's Python image and PyTorch's CPU wheel index); a network
# that reaches neither sets them, as docker-compose.override-local.yml does:
#   BASE_IMAGE             an image with python3.11 and its venv module
#   TORCH_INDEX_URL        the index torch==2.14.1 and torchvision==0.29.1 are taken from
#   TORCH_EXTRA_INDEX_URL  more indexes for torch's own dependencies (space-separated; none by default)
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG TORCH_EXTRA_INDEX_URL=""

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH

WORKDIR /app

# A virtual environment: works on python:3.11-slim and on a distribution's python3 alike
# (Debian's refuses system-wide pip installs, PEP 668).
RUN python3 -m venv /opt/venv

# torch first (from TORCH_INDEX_URL: the CPU build by default), so that installing the project
# below finds torch==2.14.1 already satisfied instead of pulling the multi-GB CUDA build from PyPI.
RUN extra=""; for url in $TORCH_EXTRA_INDEX_URL; do extra="$extra --extra-index-url $url"; done; \
    pip install --index-url "$TORCH_INDEX_URL" $extra torch==2.14.1 torchvision==0.29.1

# The project's dependencies in a layer of their own (empty packages stand in for the code), so a
# change of code reinstalls only the project, not FastAPI, Celery, SciPy ...
COPY pyproject.toml README.md ./
RUN for p in compress store api worker cli; do mkdir -p $p && touch $p/__init__.py; done \
    && pip install . && pip uninstall -y netreduce && rm -rf compress store api worker cli build *.egg-info

COPY alembic.ini ./
COPY compress ./compress
COPY store ./store
COPY api ./api
COPY worker ./worker
COPY cli ./cli
COPY migrations ./migrations
RUN pip install --no-deps . && useradd --create-home --uid 1000 netreduce \
    && mkdir -p /app/var/artifacts /app/var/work /data && chown -R netreduce /app/var /data

USER netreduce
EXPOSE 8000
CMD ["uvicorn", "api.main:app", "--host", "0.0.0.0", "--port", "8000"]
