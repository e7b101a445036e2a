#!/bin/sh
# Makes a throw-away CA and one certificate per ambassador (ECDSA P-256, 30 days) in $1
# (default ./certs). Used by the `certs` service of compose.yaml; runnable by hand too.
# Production: use your own CA / cert-manager / Vault instead.
set -eu
out=${1:-./certs}
mkdir -p "$out"
cd "$out"
if [ -s ca.pem ]; then echo "certificates already in $out"; exit 0; fi
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
  -subj "/CN=ambassador demo CA" -keyout ca-key.pem -out ca.pem 2>/dev/null
for name in redis-ambassador app-ambassador; do
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -subj "/CN=$name" -keyout "$name-key.pem" -out "$name.csr" 2>/dev/null
  printf 'subjectAltName=DNS:%s\nextendedKeyUsage=serverAuth,clientAuth\n' "$name" > "$name.ext"
  openssl x509 -req -in "$name.csr" -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 30 \
    -extfile "$name.ext" -out "$name.pem" 2>/dev/null
  rm -f "$name.csr" "$name.ext"
done
rm -f ca.srl
# the ambassadors run as uid 1000 (node); the CA key is not needed by them and stays root-only
chown 1000:1000 ./*-ambassador-key.pem ./*-ambassador.pem ca.pem 2>/dev/null || true
chmod 0600 ./*-key.pem
chmod 0644 ca.pem ./*-ambassador.pem
echo "certificates written to $out"
