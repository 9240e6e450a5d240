# poco-rt's serving image: the real-time server without torch (onnxruntime, numpy, pyzmq, FastAPI, uvicorn).
#
#   docker build -t poco-rt .
#   docker run -p 8700-8702:8700-8702 -e POCO_RT_AUTH_TOKEN=$(openssl rand -hex 32) -v poco-rt-data:/data poco-rt
#
# The train target is the same server with the train extra (CPU torch), for a server whose job workers
# fine-tune new animals live (the finetune job needs torch; the default image refuses it, saying so):
#
#   docker build --target train -t poco-rt:train .
#
# Both need BuildKit (the default since Docker 23; on older engines, such as Debian 12's docker.io 20.10, set
# DOCKER_BUILDKIT=1): the legacy builder builds every stage, so the default image would wait on the train
# stage's torch download, and fail where PyTorch's index cannot be reached. The train stage takes torch from
# PyTorch's CPU index; TORCH_PIP_ARGS points it elsewhere (a mirror, or a folder of wheels served over HTTP):
#
#   DOCKER_BUILDKIT=1 docker build --network host --target train \
#       --build-arg TORCH_PIP_ARGS="--find-links http://127.0.0.1:8765/" -t poco-rt:train .
#
# Ports: 8700 HTTP (REST, WebSocket, /metrics, /docs), 8701 ZeroMQ frames in (PULL), 8702 ZeroMQ forecasts out (PUB).
# Volumes: /data, where every accepted frame is recorded (and job results go); /bundle, for a model bundle of
# your own: mount it and set POCO_RT_BUNDLE=/bundle (unset, the server uses the embedded bundle).
# The server binds 0.0.0.0 here, which it refuses without a bearer token: set POCO_RT_AUTH_TOKEN, or
# POCO_RT_ALLOW_UNAUTHENTICATED_REMOTE=true on a trusted, isolated network. The token guards REST and
# WebSocket; the ZeroMQ ports carry no token, so publish them only on the rig's own network.
# Every other setting is a POCO_RT_* variable or a key of a TOML file (POCO_RT_CONFIG_FILE), see docs/server.md.

FROM python:3.11-slim AS builder
WORKDIR /src
COPY . .
RUN sh deploy/install-serving.sh wheel /wheels

# What both targets share: the user, the folders, the ports, the health check and the command.
FROM python:3.11-slim AS base
RUN useradd --system --uid 10001 --no-create-home poco-rt && mkdir /data /bundle && chown poco-rt /data
WORKDIR /data
VOLUME ["/data", "/bundle"]
EXPOSE 8700 8701 8702
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8700/readyz', timeout=2)"]
CMD ["poco-rt", "serve", "--host", "0.0.0.0", "--data-dir", "/data"]

# --target train: the wheel with its train extra; torch from PyTorch's CPU index (no CUDA libraries).
FROM base AS train
ARG TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu"
COPY --from=builder /wheels /wheels
RUN pip install --no-cache-dir ${TORCH_PIP_ARGS} torch==2.13.0 \
    && wheel=$(ls /wheels/poco_rt-*.whl) && pip install --no-cache-dir "${wheel}[train]" && rm -r /wheels
USER poco-rt

# The default target (the last stage): the serving install, without torch.
FROM base AS serving
COPY --from=builder /wheels /wheels
COPY deploy/install-serving.sh /tmp/install-serving.sh
RUN sh /tmp/install-serving.sh install /wheels && rm -r /wheels /tmp/install-serving.sh
USER poco-rt
