#!/usr/bin/env bash
# Installs a newer CPython (default 3.14) from Debian's unstable binary packages into
# ~/.pyenv/versions/<version>-debian (`pyenv versions` lists it; a matrix script that picks
# versions by name must allow the `-debian` suffix).
#
#   tools/debian-python.sh 3.14      # or 3.15
#
# This machine's Debian release is older than the one those packages are built for, so the
# interpreter is given its own copy of unstable's C library: the binary's ELF interpreter and
# library path point into the install folder (patchelf). Extensions built here (cargo, maturin)
# link against the older C library and load into it unchanged. Nothing is installed system-wide.
# Needs: apt-get (Debian's registry), patchelf (installed if missing). Takes about a minute.
set -euo pipefail
minor="${1:-3.14}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/lists/partial" "$work/cache/archives/partial" "$work/debs"
# The same Debian mirror this machine's apt already uses (its first `URIs:`/`deb` entry), unstable suite.
mirror="$(grep -hsE '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' | grep -v security | head -1)"
[ -n "$mirror" ] || mirror="$(grep -hsE '^deb ' /etc/apt/sources.list | awk '{print $2}' | head -1)"
[ -n "$mirror" ] || { echo "no Debian mirror configured for apt" >&2; exit 1; }
echo "deb $mirror sid main" >"$work/sources.list"
apt_opts=(-o "Dir::Etc::sourcelist=$work/sources.list" -o Dir::Etc::sourceparts=-
          -o "Dir::State::Lists=$work/lists" -o "Dir::Cache=$work/cache" -o APT::Sandbox::User=root)
apt-get -qq "${apt_opts[@]}" update
full="$(apt-cache "${apt_opts[@]}" show "python$minor-minimal" | awk '/^Version:/{print $2; exit}')"
[ -n "$full" ] || { echo "no python$minor in Debian unstable" >&2; exit 1; }
version="${full%%-*}"
prefix="$HOME/.pyenv/versions/$version-debian"
if "$prefix/bin/python$minor" -c '' 2>/dev/null; then echo "already installed: $prefix"; exit 0; fi
command -v patchelf >/dev/null || apt-get install -y -qq patchelf >/dev/null
libc_pkgs=(libc6 libmpdec4 libssl3t64 libffi8 libexpat1 zlib1g libzstd1 liblzma5 libbz2-1.0
           libsqlite3-0 libuuid1 libncursesw6 libtinfo6 libreadline8t64 libgcc-s1 libcrypt1)
py_pkgs=("python$minor" "python$minor-minimal" "libpython$minor" "libpython$minor-minimal"
         "libpython$minor-stdlib" "libpython$minor-dev" "python$minor-dev" "python$minor-venv"
         python3-pip-whl python3-setuptools-whl)
(cd "$work/debs" && apt-get -qq "${apt_opts[@]}" download "${libc_pkgs[@]}" "${py_pkgs[@]}" 2>/dev/null)
root="$work/root"
for deb in "$work"/debs/*.deb; do dpkg -x "$deb" "$root"; done
rm -rf "$prefix"; mkdir -p "$prefix"
cp -a "$root/usr/." "$prefix/"
mkdir -p "$prefix/libc"
cp -a "$root/lib/x86_64-linux-gnu/." "$prefix/libc/" 2>/dev/null || true
cp -a "$root/usr/lib/x86_64-linux-gnu/." "$prefix/libc/" 2>/dev/null || true
[ -e "$prefix/libc/ld-linux-x86-64.so.2" ] || { echo "no loader in libc6" >&2; exit 1; }
for exe in "$prefix/bin/python$minor"; do
  patchelf --set-interpreter "$prefix/libc/ld-linux-x86-64.so.2" --force-rpath \
           --set-rpath "$prefix/libc:$prefix/lib/x86_64-linux-gnu" "$exe"
done
# venv's ensurepip takes pip from Debian's wheel folder: point it at the one installed here
# (the system's older pip does not run on a newer Python).
sed -i "s|^_pkg_dir = sysconfig.get_config_var('WHEEL_PKG_DIR')|_pkg_dir = '$prefix/share/python-wheels'|" \
    "$prefix/lib/python$minor/ensurepip/__init__.py"
ln -sf "python$minor" "$prefix/bin/python3"
ln -sf "python$minor" "$prefix/bin/python"
# Debian's site module looks in dist-packages; a venv made from this interpreter is what tests use.
"$prefix/bin/python$minor" -c 'import sys, ssl, ctypes, venv, sqlite3; print(sys.version)'
"$prefix/bin/python$minor" -m venv "$work/check" && "$work/check/bin/python" -m pip --version
echo "installed: $prefix"
