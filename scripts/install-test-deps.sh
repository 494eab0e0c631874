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
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  # tshark asks whether non-root users may capture; answer no without a prompt.
  echo "wireshark-common wireshark-common/install-setuid boolean false" | $SUDO debconf-set-selections
  $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# The tests start their own nginx instances; keep the distribution's default one from holding port 80.
if have systemctl && systemctl is-active --quiet nginx 2>/dev/null; then
  systemctl stop nginx || true
fi
