# Dockerfile — dfd's container image: `docker run -p 8000:8000 dfd` (or podman) serves the
# HTTP API and the web page on one port. Two stages:
#   build    the README's own steps (./setup.sh on Debian 12) with the build tools;
#   runtime  Debian 12 slim + only the shared libraries the dfd binary links, a non-root
#            user, the models, and start.sh.
# Build: `podman build --format docker -t dfd .` or `docker build -t dfd .`
# (podman needs --format docker to keep HEALTHCHECK; the OCI format has no such field).
# ci/container-test.sh builds and tests this image in CI.

ARG DEBIAN_IMAGE=debian:12-slim

# ---- build stage -------------------------------------------------------------------
FROM ${DEBIAN_IMAGE} AS build
WORKDIR /src
# The Debian packages first, in a layer of their own, so that editing a source file does
# not re-download the toolchain: the list is read from setup.sh itself (one truth). If
# this parse ever breaks, ./setup.sh below still installs whatever is missing.
COPY setup.sh ./
RUN set -eu; \
    pkgs=$(sed -n '/^PACKAGES=(/,/^)/p' setup.sh | sed -e 's/#.*//' -e 's/^PACKAGES=(//' -e 's/)$//' | tr -s ' \n' ' '); \
    apt-get update -qq; \
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $pkgs >/dev/null
COPY . .
# Exactly the README's steps. DFD_NATIVE=OFF: the binary must run on any x86-64, not
# only on the CPU that built it. Behind a TLS-intercepting proxy, setup.sh's npm fetch
# needs the proxy's CA: pass the host's bundle as a build secret (never stored in a layer):
#   --secret id=host_ca,src=/etc/ssl/certs/ca-certificates.crt   (ci/container-test.sh does)
RUN --mount=type=secret,id=host_ca,required=false \
    if [ -s /run/secrets/host_ca ]; then \
      export NODE_EXTRA_CA_CERTS=/run/secrets/host_ca SSL_CERT_FILE=/run/secrets/host_ca; \
    fi; \
    DFD_CMAKE_ARGS="-DDFD_NATIVE=OFF" ./setup.sh
# Collect what the runtime stage needs under /out: the stripped binary, the models
# (committed ones and models/registry/ converted by setup.sh), and the Debian packages
# that own each shared library the binary loads (ldd -> dpkg -S), so the runtime stage
# installs those and nothing else, and follows the binary as modules add libraries.
RUN set -eu; \
    mkdir -p /out; \
    strip --strip-unneeded -o /out/dfd build/dfd; \
    cp -a models /out/models; \
    cp -a examples /out/examples; \
    : > /out/runtime-packages.txt; \
    for lib in $(ldd build/dfd | awk '$2 == "=>" && $3 ~ /^\// {print $3}'); do \
      real=$(readlink -f "$lib"); pkg=""; \
      for cand in "$lib" "$real" "/usr$lib" "/usr$real" "${lib#/usr}" "${real#/usr}"; do \
        pkg=$(dpkg-query -S "$cand" 2>/dev/null | head -n1 | cut -d: -f1) && [ -n "$pkg" ] && break; \
      done; \
      if [ -z "$pkg" ]; then echo "no Debian package owns $lib (needed by dfd)" >&2; exit 1; fi; \
      echo "$pkg" >> /out/runtime-packages.txt; \
    done; \
    sort -u -o /out/runtime-packages.txt /out/runtime-packages.txt; \
    echo "runtime packages: $(tr '\n' ' ' < /out/runtime-packages.txt)"

# ---- runtime stage -----------------------------------------------------------------
FROM ${DEBIAN_IMAGE}
COPY --from=build /out/runtime-packages.txt /tmp/runtime-packages.txt
RUN set -eu; \
    apt-get update -qq; \
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(cat /tmp/runtime-packages.txt) >/dev/null; \
    apt-get clean; \
    rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/apt /var/log/dpkg.log /tmp/runtime-packages.txt; \
    groupadd --system --gid 10001 dfd; \
    useradd --system --uid 10001 --gid dfd --home-dir /app --no-create-home --shell /usr/sbin/nologin dfd
COPY --from=build /out/dfd /usr/local/bin/dfd
COPY --from=build /out/models /app/models
COPY --from=build /out/examples /app/examples
COPY start.sh /app/start.sh
# Numeric user, so that orchestrators can verify "not root" without reading /etc/passwd.
USER 10001:10001
WORKDIR /app
ENV PORT=8000
EXPOSE 8000
# No curl in the image: bash's /dev/tcp asks /v1/health and wants "200" in the status line.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${PORT:-8000} && printf 'GET /v1/health HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n' >&3 && read -r -t 4 _ code _ <&3 && [ \"$code\" = 200 ]"]
CMD ["/app/start.sh"]
