# One image for the API and the workers (docker-compose.yml).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app

# torch first, CPU build, pinned: left to a dependency, pip would pull a multi-GB CUDA build.
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu

COPY pyproject.toml README.md constraints.txt ./
COPY service ./service
COPY migrations ./migrations
COPY models ./models
RUN pip install -c constraints.txt -e .

RUN useradd --create-home --uid 1000 vigil && mkdir -p /archive && chown vigil /archive
USER vigil
EXPOSE 8000
CMD ["vigil", "serve", "--host", "0.0.0.0", "--port", "8000"]
