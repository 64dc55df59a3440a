# Dockerfile — dfd's container image: `docker run -p 8000:8000 dfd` (or podman) serves the
# HTTP API and the web page on one port. Three stages:
#   ffmpeg   a small FFmpeg (video decoding only) built from Debian's own source package;
#   build    the README's own steps (./setup.sh on Debian 12) with the build tools;
#   runtime  Debian 12 slim + only the shared libraries the dfd binary links, a non-root
#            user, the models, and start.sh.
# Build: `podman build --format docker -t dfd .` or `docker build -t dfd .`
# (podman needs --format docker to keep HEALTHCHECK; the OCI format has no such field).
# ci/container-test.sh builds and tests this image in CI.

ARG DEBIAN_IMAGE=debian:12-slim
# minimal: the ffmpeg stage below (image about 130 MB);
# debian:  Debian's libavcodec59 & co. as on a setup.sh machine: every codec, but they pull
#          in ~190 MB of codec, X, ICU, Intel media and network libraries (image ~330 MB).
ARG FFMPEG=minimal

# ---- ffmpeg stage ------------------------------------------------------------------
# Debian's FFmpeg 5.1 (the source of its libavcodec59, same version and patches, fetched
# and verified by apt) configured for what dfd does with it: demux the containers that
# src/media/sniff.c allows, decode their video, convert pixels. No encoders, muxers,
# filters, network, devices or external libraries but dav1d (AV1), so the runtime needs
# ~8 MB instead of ~190 MB. Built hardened, since it parses uploaded files.
FROM ${DEBIAN_IMAGE} AS ffmpeg
ARG FFMPEG
RUN set -eu; mkdir -p /opt/ffmpeg/lib; \
    if [ "$FFMPEG" != minimal ]; then exit 0; fi; \
    sed -i 's/^Types: deb$/Types: deb deb-src/' /etc/apt/sources.list.d/debian.sources; \
    apt-get update -qq; \
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      build-essential dpkg-dev pkg-config nasm libdav1d-dev >/dev/null; \
    mkdir /tmp/ff; cd /tmp/ff; \
    apt-get source -qq ffmpeg >/dev/null; \
    cd ffmpeg-*/; \
    ./configure --prefix=/opt/ffmpeg --enable-shared --disable-static --toolchain=hardened \
      --disable-debug --disable-doc --disable-programs --disable-autodetect --disable-network \
      --disable-avdevice --disable-avfilter --disable-swresample --disable-postproc \
      --disable-everything --enable-libdav1d \
      --enable-demuxer='mov,matroska,avi,flv,mpegts,mpegps,asf,ogg,ivf,nut,h264,hevc,m4v,mpegvideo,yuv4mpegpipe,rm' \
      --enable-decoder='h264,hevc,mpeg4,msmpeg4*,h263,h263p,flv,mpeg1video,mpeg2video,vp8,vp9,vp6*,theora,vc1,wmv1,wmv2,wmv3,mjpeg,rv10,rv20,rv30,rv40,prores,rawvideo,libdav1d' \
      --enable-parser='h264,hevc,mpeg4video,mpegvideo,vp8,vp9,av1,vc1,h263,mjpeg' \
      >/tmp/ff/configure.log; \
    make -j"$(nproc)" >/tmp/ff/make.log 2>&1 || { tail -n 40 /tmp/ff/make.log; exit 1; }; \
    make install >/dev/null; \
    rm -rf /opt/ffmpeg/share /tmp/ff

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
COPY --from=ffmpeg /opt/ffmpeg /opt/ffmpeg
COPY . .
# Exactly the README's steps, building against the ffmpeg stage's FFmpeg where there is
# one (pkg-config looks in PKG_CONFIG_PATH first). DFD_NATIVE=OFF: the binary must run on
# any x86-64, not only on the CPU that built it. Keras import and plots are left out
# (cmake options): the image serves, and HDF5 and cairo would take it over 150 MB. Behind a TLS-intercepting proxy, setup.sh's npm fetch
# needs the proxy's CA: pass the host's bundle as a build secret (never stored in a layer):
#   --secret id=host_ca,src=/etc/ssl/certs/ca-certificates.crt   (ci/container-test.sh does)
RUN --mount=type=secret,id=host_ca,required=false \
    if [ -s /run/secrets/host_ca ]; then \
      export NODE_EXTRA_CA_CERTS=/run/secrets/host_ca SSL_CERT_FILE=/run/secrets/host_ca; \
    fi; \
    if [ -d /opt/ffmpeg/lib/pkgconfig ]; then export PKG_CONFIG_PATH=/opt/ffmpeg/lib/pkgconfig; fi; \
    DFD_CMAKE_ARGS="-DDFD_NATIVE=OFF -DDFD_WITH_KERAS=OFF -DDFD_WITH_PLOTS=OFF" ./setup.sh
# Collect what the runtime stage needs under /out: the stripped binary, the models
# (committed ones and models/registry/ converted by setup.sh, but for the ImageNet
# backbones and the face-landmark model: those are for `dfd train` (--init, --sbi-mask
# landmarks), never used to analyse, and would take 11 MB of the 150 MB the image may
# weigh; and of each family of shipped models, dfd-image-* and dfd-synthetic-*, only the
# newest, the one dfd uses by default: the older ones stay in the repository), and the Debian packages
# that own each shared library the binary loads (ldd -> dpkg -S), so the runtime stage
# installs those and nothing else, and follows the binary as modules add libraries.
# The ffmpeg stage's libraries are copied as they are instead.
RUN set -eu; \
    mkdir -p /out; \
    strip --strip-unneeded -o /out/dfd build/dfd; \
    cp -a models /out/models; \
    rm -f /out/models/registry/*-imagenet.safetensors /out/models/registry/face-landmark.safetensors; \
    for fam in dfd-image dfd-synthetic; do \
      for old in $(ls /out/models/$fam-*.safetensors 2>/dev/null | sort -V | head -n -1); do rm -f "$old"; done; \
    done; \
    cp -a examples /out/examples; \
    : > /out/runtime-packages.txt; \
    for lib in $(ldd build/dfd | awk '$2 == "=>" && $3 ~ /^\// {print $3}'); do \
      case "$lib" in /opt/ffmpeg/*) continue ;; esac; \
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
COPY --from=ffmpeg /opt/ffmpeg/lib /opt/ffmpeg/lib
RUN echo /opt/ffmpeg/lib > /etc/ld.so.conf.d/dfd-ffmpeg.conf && ldconfig
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
