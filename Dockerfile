# netreduce API and worker image: CPU-only PyTorch, the project installed from this repo.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# The CPU build of torch first (from PyTorch's CPU wheel index), so that installing the project
# below finds torch==2.14.1 already satisfied instead of pulling the multi-GB CUDA build.
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.14.1 torchvision==0.29.1

COPY pyproject.toml README.md alembic.ini ./
COPY compress ./compress
COPY store ./store
COPY api ./api
COPY worker ./worker
COPY cli ./cli
COPY migrations ./migrations
RUN pip install . && useradd --create-home --uid 1000 netreduce \
    && mkdir -p /app/var/artifacts /data && chown -R netreduce /app/var /data

USER netreduce
EXPOSE 8000
CMD ["uvicorn", "api.main:app", "--host", "0.0.0.0", "--port", "8000"]
