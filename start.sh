#!/bin/sh
# start.sh — the container's entry command: dfd's HTTP server (API and web page on one
# port) on all interfaces of the container, port $PORT (default 8000), with the models
# baked into the image. `exec` makes dfd PID 1's process, so `docker stop` (SIGTERM)
# reaches the server itself and it can finish requests in flight before exiting.
# Extra arguments are passed on, e.g. `docker run dfd /app/start.sh --threads 4`.
set -eu
exec dfd serve --host 0.0.0.0 --port "${PORT:-8000}" --models /app/models "$@"
