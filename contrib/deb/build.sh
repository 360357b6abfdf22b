#!/usr/bin/env bash
# Builds the Debian packages mailgate and mailgate-mta with cargo-deb:
#   bash contrib/deb/build.sh
# The release binary, then its man pages, shell completions, the README and
# the systemd units into target/deb-assets (what cli/Cargo.toml's
# [package.metadata.deb] lists), then both .deb files into target/debian.
# Prints the path of each .deb on the last two lines of stdout.
#
# Needs cargo-deb (cargo install cargo-deb --locked --version 3.8.0) and, for
# the dependencies of the binary, dpkg-dev (dpkg-shlibdeps).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"

die() {
  echo "contrib/deb/build.sh: $*" >&2
  exit 1
}

cargo deb --version >/dev/null 2>&1 ||
  die "cargo-deb is missing: cargo install cargo-deb --locked --version 3.8.0"
command -v dpkg-shlibdeps >/dev/null ||
  die "dpkg-shlibdeps is missing (it computes the package's Depends): apt-get install dpkg-dev"

target_dir=${CARGO_TARGET_DIR:-$root/target}
assets=$root/target/deb-assets
out=$root/target/debian

cargo build --release --locked -p mailgate-cli --bin mailgate
bin=$target_dir/release/mailgate
[ -x "$bin" ] || die "$bin was not built (CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-unset})"

# The version in the binary, the Debian changelog and mailgate-mta's Depends
# must agree: the changelog's top entry is the package's version.
version=$("$bin" --version | awk '{print $2}')
deb_version="$version-1"
changelog_version=$(sed -n '1s/^mailgate (\([^)]*\)).*/\1/p' contrib/deb/changelog)
[ "$changelog_version" = "$deb_version" ] ||
  die "contrib/deb/changelog's top entry is $changelog_version, the binary is $version: add an entry for $deb_version"
grep -qF "depends = \"mailgate (= $deb_version)\"" cli/Cargo.toml ||
  die "cli/Cargo.toml: [package.metadata.deb.variants.mta] must say depends = \"mailgate (= $deb_version)\""

rm -rf "$assets"
mkdir -p "$assets/man-pages" "$assets/man/man1" "$assets/man/man8" \
  "$assets/completions" "$assets/doc" "$assets/systemd"

# One man page per command, gzipped as Debian policy asks (-n: no name or
# date in the header, so the packages are reproducible).
"$bin" man --dir "$assets/man-pages"
for page in "$assets"/man-pages/*.[18]; do
  name=$(basename "$page")
  gzip -9n <"$page" >"$assets/man/man${name##*.}/$name.gz"
done
for page in man1/mailgate.1.gz man8/mailgate-sendmail.8.gz man8/mailgate-relay.8.gz man8/mailgate-deliver.8.gz; do
  [ -f "$assets/man/$page" ] || die "mailgate man --dir wrote no $page"
done

"$bin" completions bash >"$assets/completions/mailgate"
"$bin" completions zsh >"$assets/completions/_mailgate"
"$bin" completions fish >"$assets/completions/mailgate.fish"

gzip -9n <README.md >"$assets/doc/README.md.gz"

# The units of contrib/, for the package: the binary in /usr/bin, the man
# page and README as documentation, and a header that says where the config
# is instead of the manual installation steps.
for unit in mailgate-relay mailgate-deliver; do
  {
    echo "# $unit.service, installed by the mailgate package and not enabled:"
    echo "#   edit /etc/mailgate, then: sudo systemctl enable --now $unit"
    echo "# Local changes: sudo systemctl edit $unit"
    sed -e '1,/^$/d' \
      -e 's|/usr/local/bin/mailgate|/usr/bin/mailgate|g' \
      -e "s|^Documentation=.*|Documentation=man:$unit(8) file:///usr/share/doc/mailgate/README.md.gz|" \
      "contrib/$unit.service"
  } >"$assets/systemd/$unit.service"
  grep -q '^ExecStart=/usr/bin/mailgate ' "$assets/systemd/$unit.service" ||
    die "contrib/$unit.service: no ExecStart=/usr/local/bin/mailgate ... line to adapt"
done

# Reproducible file dates in the packages: the last commit's. Only for
# cargo-deb: the C builds of aws-lc-sys and libsqlite3-sys watch this
# variable, and a change would rebuild them.
date_epoch=${SOURCE_DATE_EPOCH:-}
if [ -z "$date_epoch" ] && git -C "$root" rev-parse --git-dir >/dev/null 2>&1; then
  date_epoch=$(git -C "$root" log -1 --format=%ct)
fi

mkdir -p "$out"
debs=()
for variant in "" mta; do
  args=(-p mailgate-cli --no-build --locked --output "$out")
  [ -z "$variant" ] || args+=(--variant "$variant")
  # Two warnings of cargo-deb that say nothing here are dropped: that the
  # generated assets (../target/deb-assets) are not cargo's to build, and
  # that mailgate-mta has no maintainer scripts.
  deb=$(env ${date_epoch:+SOURCE_DATE_EPOCH="$date_epoch"} cargo deb "${args[@]}" \
    2> >(grep -v -e 'does not match the pattern, and will not be built' \
      -e 'no maintainer scripts found in .*/contrib/deb/lintian' >&2) |
    tail -n 1)
  [ -f "$deb" ] || die "cargo deb ${args[*]} printed no .deb path (got: $deb)"
  debs+=("$deb")
done
printf '%s\n' "${debs[@]}"
