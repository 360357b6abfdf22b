#!/usr/bin/env bash
# Installs the third-party SMTP test peers' dependencies, once.
#
#   bash integration-tests/peers/install.sh [node|python|all]
#
# node:   `npm ci` in node/ (Nodemailer's smtp-server, pinned by package-lock.json)
# python: `pip install --target python/.deps -r python/requirements.txt` (aiosmtpd)
#
# A peer counts as installed when its stamp file is a byte copy of its lock
# file (node/node_modules/.mailgate-installed == node/package-lock.json,
# python/.deps/.mailgate-installed == python/requirements.txt), so editing the
# lock file triggers a reinstall. The Rust test support
# (integration-tests/src/install.rs) checks the same stamps and runs this
# script under its own file lock on .install.lock; when run by hand, this
# script takes that lock itself with flock(1).
#
# Environment: MAILGATE_TEST_NPM (default npm), MAILGATE_TEST_PYTHON (default python3).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
what="${1:-all}"
npm_bin="${MAILGATE_TEST_NPM:-npm}"
python_bin="${MAILGATE_TEST_PYTHON:-python3}"

if [ -z "${MAILGATE_PEER_INSTALL_LOCKED:-}" ] && command -v flock >/dev/null 2>&1; then
    exec 9>"$here/.install.lock"
    flock 9
fi

install_node() {
    local dir="$here/node"
    local stamp="$dir/node_modules/.mailgate-installed"
    if [ -f "$stamp" ] && cmp -s "$stamp" "$dir/package-lock.json"; then
        echo "node peer: already installed"
        return
    fi
    echo "node peer: npm ci in $dir"
    (cd "$dir" && "$npm_bin" ci --no-audit --no-fund --loglevel=error)
    cp "$dir/package-lock.json" "$stamp"
}

install_python() {
    local dir="$here/python"
    local deps="$dir/.deps"
    local stamp="$deps/.mailgate-installed"
    if [ -f "$stamp" ] && cmp -s "$stamp" "$dir/requirements.txt"; then
        echo "python peer: already installed"
        return
    fi
    echo "python peer: pip install --target $deps"
    rm -rf "$deps" "$deps.tmp"
    "$python_bin" -m pip install --disable-pip-version-check --no-input --quiet \
        --root-user-action=ignore --target "$deps.tmp" -r "$dir/requirements.txt"
    cp "$dir/requirements.txt" "$deps.tmp/.mailgate-installed"
    mv "$deps.tmp" "$deps"
}

case "$what" in
    node) install_node ;;
    python) install_python ;;
    all) install_node; install_python ;;
    *) echo "usage: $0 [node|python|all]" >&2; exit 64 ;;
esac
