# syntax=docker/dockerfile:1
# kzero GPU predictor: KServe model server + vLLM, on vLLM's own CUDA image
# (torch, CUDA libraries and vLLM built for each other). Runs as UID 10001 with a
# read-only root filesystem; /tmp, /home/kzero and the cache are volumes.
#
# Build from the repository root:
#   docker build -f docker/gpu.Dockerfile -t kzero-gpu:dev .
FROM vllm/vllm-openai:v0.11.0

ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY predictor ./predictor
COPY autoscaling ./autoscaling
# kzero (the predictor and autoscaling/, which `kzero cost` needs) and its light
# dependencies (kserve, fastapi...) next to the image's vLLM; the gpu extra
# would only ask for the vLLM that is already there.
RUN python3 -m pip install . \
 && python3 -c "import predictor.backends.vllm, vllm" \
 && groupadd --gid 10001 kzero \
 && useradd --uid 10001 --gid 10001 --home-dir /home/kzero --create-home --shell /usr/sbin/nologin kzero \
 && mkdir -p /var/cache/kzero \
 && chown 10001:10001 /var/cache/kzero

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/home/kzero \
    KZERO_CACHE_DIR=/var/cache/kzero \
    KZERO_HOST=0.0.0.0 \
    VLLM_NO_USAGE_STATS=1

USER 10001:10001
WORKDIR /home/kzero
EXPOSE 8080
# The vLLM image's entry point is its own server; ours is the kzero predictor.
ENTRYPOINT ["python3", "-m", "predictor"]
