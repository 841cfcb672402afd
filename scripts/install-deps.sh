#!/usr/bin/env bash
# Installs the Debian 12 packages ferry needs to build, test and run its
# demo. Installs only what is missing; needs root (or sudo) for apt-get.
set -euo pipefail

packages=(
  # build
  g++ meson ninja-build pkg-config cmake
  libcurl4-openssl-dev rapidjson-dev libnl-3-dev libnl-route-3-dev
  libnl-idiag-3-dev libnftnl-dev libmnl-dev libzstd-dev libcpp-httplib-dev
  doctest-dev
  # fuzzing: libFuzzer comes with clang's runtime
  clang-14 libclang-rt-14-dev
  # the BPF socket census (agent/repair): libbpf loads the embedded program
  libbpf-dev
  # tests and demo
  nftables iproute2 runc podman busybox-static procps openssl python3 curl
)

missing=()
for p in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [[ "$status" == "install ok installed" ]] || missing+=("$p")
done

# kubectl-ferry's plugin-discovery test runs the real `kubectl plugin list`.
# Any kubectl will do; Debian's is in kubernetes-client.
if ! command -v kubectl >/dev/null 2>&1; then
  status=$(dpkg-query -W -f='${Status}' kubernetes-client 2>/dev/null || true)
  [[ "$status" == "install ok installed" ]] || missing+=(kubernetes-client)
fi

if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
sudo_cmd=()
((EUID == 0)) || sudo_cmd=(sudo)
"${sudo_cmd[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
