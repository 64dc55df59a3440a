#!/bin/sh
# start.sh — the container's entry command, either role:
#   /app/start.sh [ARGS...]                  dfd's HTTP server (API and web page on one port)
#                                            on all interfaces, port $PORT (default 8000);
#   /app/start.sh worker --broker URL [...]  a `dfd worker` taking analyses from Redis
#                                            (docs/scale-out.md).
# Both use the models baked into the image. `exec` makes dfd PID 1's process, so
# `docker stop` (SIGTERM) reaches dfd itself and it can finish the work in hand before
# exiting. Extra arguments are passed on, e.g. `docker run dfd /app/start.sh --threads 4`.
set -eu
if [ "${1:-}" = worker ]; then
  shift
  exec dfd worker --models /app/models "$@"
fi
exec dfd serve --host 0.0.0.0 --port "${PORT:-8000}" --models /app/models "$@"
