#!/usr/bin/env bash
# Installs the real servers and tools Sightline's tests drive (Debian/Ubuntu).
# Idempotent: does nothing when everything is present.
set -euo pipefail
need=()
have() { command -v "$1" >/dev/null 2>&1; }
have nginx   || need+=(nginx-light)
have curl    || need+=(curl)
have tcpdump || need+=(tcpdump)
have tshark  || need+=(tshark)
have wrk     || need+=(wrk)
have clang   || need+=(clang llvm)
have bpftool || need+=(bpftool)
[ -f /usr/include/bpf/bpf_helpers.h ] || need+=(libbpf-dev)
have gcc     || need+=(gcc)
# The thread-pool tests and the reference topology run a Python (stdlib only) service.
have python3 || need+=(python3)
# The TLS tests drive Debian's Python (its _ssl links the system libssl) with requests.
[ -x /usr/bin/python3 ] && /usr/bin/python3 -c 'import requests' 2>/dev/null || need+=(python3-requests)
# libssl-dev: static libssl.a/libcrypto.a for the statically linked OpenSSL test and bench programs.
[ -f /usr/lib/x86_64-linux-gnu/libssl.a ] || need+=(libssl-dev)
have openssl || need+=(openssl)
# Real servers and clients the protocol tests drive (agent/l7/*/live_test.go).
have redis-server    || need+=(redis-server)
have redis-cli       || need+=(redis-tools)
have psql            || need+=(postgresql-client)
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || need+=(postgresql)
have mariadbd        || need+=(mariadb-server)
have mariadb         || need+=(mariadb-client)
have mosquitto       || need+=(mosquitto)
have mosquitto_pub   || need+=(mosquitto-clients)
have memcached       || need+=(memcached)
have rabbitmq-server || need+=(rabbitmq-server)
have dnsmasq         || need+=(dnsmasq-base)
have dig             || need+=(dnsutils)
ls /usr/sbin/php-fpm* >/dev/null 2>&1 || need+=(php-fpm)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  # tshark asks whether non-root users may capture; answer no without a prompt.
  echo "wireshark-common wireshark-common/install-setuid boolean false" | $SUDO debconf-set-selections
  $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# The tests start their own server instances; keep the distribution's services from holding ports.
if have systemctl; then
  for svc in nginx redis-server postgresql mariadb mosquitto memcached rabbitmq-server php8.2-fpm; do
    systemctl is-active --quiet "$svc" 2>/dev/null && systemctl stop "$svc" || true
  done
fi
