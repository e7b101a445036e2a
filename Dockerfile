# mdns-ambassador image: `docker build -t mdns-ambassador .`
#   docker run --rm mdns-ambassador --help
#   docker run --network mynet mdns-ambassador --advertise redis=db:6379
# With HAProxy as the data plane (--data-plane haproxy): the base image's Debian haproxy package
#   docker build --build-arg HAPROXY=true -t mdns-ambassador:haproxy .
# Multi-stage: TypeScript is compiled with the dev dependencies; the final image carries only
# the compiled JavaScript and the production dependencies, and runs as the unprivileged `node`
# with nothing to write (run it with a read-only root filesystem: `read_only: true`).
# No `# syntax=` line and no BuildKit-only feature: the classic builder and BuildKit both build
# it with no registry access beyond the base image.

ARG NODE_IMAGE=node:24-slim

FROM ${NODE_IMAGE} AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json ./
COPY src ./src
RUN npx tsc -p tsconfig.json && chmod 0755 dist/cli/bin.js

FROM ${NODE_IMAGE} AS prod-deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force

FROM ${NODE_IMAGE}
# The admin endpoint (/healthz, /peers, /metrics) is on by default in the image: the HEALTHCHECK
# below and Prometheus use it. Override with AMBASSADOR_ADMIN or --admin.
# A sidecar whose service restarted in a new network namespace exits (75) so that its restart
# policy re-attaches it (README, "Containers"); AMBASSADOR_EXIT_WHEN_STRANDED=false turns it off.
ENV NODE_ENV=production \
    AMBASSADOR_ADMIN=0.0.0.0:9901 \
    AMBASSADOR_LOG_FORMAT=json \
    AMBASSADOR_EXIT_WHEN_STRANDED=true
WORKDIR /app
# --build-arg HAPROXY=true: HAProxy for --data-plane haproxy, from the base image's Debian
# (bookworm: 2.6). It runs as the ambassador's child, as `node`, with its configuration and
# sockets in a private directory (under /dev/shm when the root filesystem is read-only).
ARG HAPROXY=false
RUN if [ "$HAPROXY" = true ]; then \
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends haproxy >/dev/null \
      && rm -rf /var/lib/apt/lists/* && haproxy -v; \
    fi
COPY --from=prod-deps /app/node_modules ./node_modules
COPY --from=build /src/dist ./dist
COPY package.json ./
RUN ln -s /app/dist/cli/bin.js /usr/local/bin/ambassador
USER node
EXPOSE 9901
# node:24-slim has no curl or wget: node's own fetch asks /healthz on the admin port.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["node", "-e", "const a=(process.env.AMBASSADOR_ADMIN||'9901').split(':');const p=a.pop();const h=a.join(':');fetch('http://'+(!h||h==='0.0.0.0'?'127.0.0.1':h)+':'+p+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
# SIGTERM → goodbyes, stop accepting, drain, exit 0 (node runs as PID 1 and handles it itself).
STOPSIGNAL SIGTERM
ENTRYPOINT ["ambassador"]
CMD ["--help"]
