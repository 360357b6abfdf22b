#!/usr/bin/env bash
# The Debian packages end to end, as .ci/run's stage "Debian packages" runs
# them (as root):
#   bash contrib/deb/test.sh
#
# 1. builds mailgate and mailgate-mta (contrib/deb/build.sh) and checks
#    their fields and contents;
# 2. lintian on both: no error, and no warning without an override that
#    gives its reason (contrib/deb/lintian/);
# 3. debootstraps a clean root of this machine's Debian release (minbase,
#    plus man-db to read the pages; in the background while 1 and 2 run),
#    installs both with dpkg -i there, points
#    /etc/mailgate at a recording SMTP server on the host's loopback (the
#    aiosmtpd test peer; a chroot shares the network) and sends through the
#    installed /usr/sbin/sendmail: as root with cronie's command line, as a
#    member of the group mailgate, as the service user with `send --queue`,
#    and as a user outside the group (refused, exit 78, naming the file);
#    the man pages and completions are where Debian looks for them;
# 4. removes and purges both and checks that nothing of them is left.
#
# Needs: root, cargo-deb 3.8.0, lintian, debootstrap, dpkg-dev, python3 with
# pip (for aiosmtpd); .ci/run installs them. The clean root is a temporary
# folder (TMPDIR, else /var/tmp), removed on exit with the /proc mounted in it.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$repo"

die() {
  echo "contrib/deb/test.sh: $*" >&2
  exit 1
}
step() { printf -- '-- %s\n' "$*"; }

[ "$(id -u)" = 0 ] || die "run as root: debootstrap, chroot and dpkg in the clean root need it"
for tool in lintian debootstrap dpkg-shlibdeps python3; do
  command -v "$tool" >/dev/null || die "$tool is missing (apt-get install lintian debootstrap dpkg-dev python3)"
done

# --- the clean root, debootstrapped while the packages build -------------------
# shellcheck disable=SC1091
codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
[ -n "$codename" ] || die "/etc/os-release names no VERSION_CODENAME: the clean root must be this machine's Debian release"
# The mirror apt uses here (deb822 sources first, then sources.list).
mirror=$(sed -n 's/^URIs:[[:space:]]*\([^[:space:]]*\).*/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null |
  grep -v security | head -n 1 || true)
if [ -z "$mirror" ] && [ -f /etc/apt/sources.list ]; then
  mirror=$(awk '$1 == "deb" && $0 !~ /security/ { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; exit } }' /etc/apt/sources.list)
fi
mirror=${mirror:-http://deb.debian.org/debian}

server_pid=
debootstrap_pid=
chroot_dir=$(mktemp -d "${TMPDIR:-/var/tmp}/mailgate-deb-root.XXXXXX")
# Its / : mktemp's 0700 would keep every user but root out of the whole root.
chmod 0755 "$chroot_dir"
cleanup() {
  local rc=$?
  [ -z "$server_pid" ] || kill "$server_pid" 2>/dev/null || true
  if [ -n "$debootstrap_pid" ]; then
    # Its own process group (setsid): debootstrap, dpkg and the rest.
    kill -- "-$debootstrap_pid" 2>/dev/null || true
    wait "$debootstrap_pid" 2>/dev/null || true
  fi
  rm -f "$chroot_dir.log" "$chroot_dir.done" "$chroot_dir.events" "$chroot_dir.events.err"
  # /proc (ours) and whatever an interrupted debootstrap left mounted, deepest first.
  local mount
  for mount in $(findmnt -rn -o TARGET | grep "^$chroot_dir/" | sort -r || true); do
    umount "$mount" 2>/dev/null || umount -l "$mount" 2>/dev/null || true
  done
  # Never remove through a mount point.
  if findmnt -rn -o TARGET | grep -q "^$chroot_dir"; then
    echo "contrib/deb/test.sh: $chroot_dir still has mounts; not removed" >&2
  else
    rm -rf "$chroot_dir"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step "debootstrap --variant=minbase $codename from $mirror (in the background)"
debootstrap_start=$(date +%s)
# setsid: a process group of its own, which the cleanup can stop whole.
# shellcheck disable=SC2016 # $0 and $@ belong to the inner bash
setsid bash -c 'debootstrap --variant=minbase --include=adduser,man-db "$@" && touch "$0.done"' \
  "$chroot_dir" "$codename" "$chroot_dir" "$mirror" >"$chroot_dir.log" 2>&1 &
debootstrap_pid=$!

# --- 1. build -----------------------------------------------------------------
step "build (contrib/deb/build.sh)"
built=$(bash contrib/deb/build.sh)
mapfile -t debs < <(tail -n 2 <<<"$built")
main_deb=${debs[0]:-}
mta_deb=${debs[1]:-}
[[ "$main_deb" == */mailgate_*_amd64.deb && "$mta_deb" == */mailgate-mta_*_amd64.deb ]] ||
  die "build.sh printed ${debs[*]:-nothing}, not the two .deb paths"
version=$(dpkg-deb -f "$main_deb" Version)

field() { dpkg-deb -f "$1" "$2"; }
expect_field() {
  local got
  got=$(field "$1" "$2")
  [ "$got" = "$3" ] || die "$(basename "$1"): $2 is '$got', expected '$3'"
}
expect_field "$mta_deb" Depends "mailgate (= $version)"
expect_field "$mta_deb" Provides mail-transport-agent
expect_field "$mta_deb" Conflicts mail-transport-agent
expect_field "$mta_deb" Replaces mail-transport-agent
for deb in "$main_deb" "$mta_deb"; do
  echo "$(basename "$deb"): $(field "$deb" Installed-Size) KiB installed, Depends: $(field "$deb" Depends)"
  dpkg-deb -c "$deb" | awk '$1 !~ /^d/ { printf "  %s %9s %s\n", $1, $3, substr($0, index($0, $6)) }'
done

# --- 2. lintian -----------------------------------------------------------------
step "lintian --fail-on error,warning (kept tags: contrib/deb/lintian/)"
# Shown with the overrides and their reasons (a run that shows them counts
# them as failures), then checked without.
lintian --display-info --show-overrides "$main_deb" "$mta_deb" 2>&1 |
  grep -v '^running with root privileges is not recommended!$' || true
lintian --fail-on error,warning "$main_deb" "$mta_deb" >/dev/null 2>&1 ||
  die "lintian reports an error or a warning (above); fix it, or override it with its reason in contrib/deb/lintian/"

# --- 3. install and use them in the clean root ---------------------------------
step "clean root: waiting for debootstrap"
wait "$debootstrap_pid" || {
  debootstrap_pid=
  tail -n 20 "$chroot_dir.log" >&2
  die "debootstrap --variant=minbase $codename $mirror failed (the end of its log is above)"
}
debootstrap_pid=
echo "debootstrap took $(($(stat -c %Y "$chroot_dir.done") - debootstrap_start)) s (in the background of the build)"
mount -t proc proc "$chroot_dir/proc"

# In the clean root, with a plain environment.
in_root() { chroot "$chroot_dir" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C.UTF-8 "$@"; }
# As USER (numeric ids: no PAM, no lookup on the host), optionally with more groups.
as_user() {
  local user=$1 groups=$2
  shift 2
  local uid gid
  uid=$(in_root id -u "$user")
  gid=$(in_root id -g "$user")
  chroot --userspec="$uid:$gid" --groups="${groups:-$gid}" "$chroot_dir" \
    env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C.UTF-8 HOME=/ "$@"
}
# Every path in the root but the ones dpkg, the logs, adduser's lock (/run)
# and the test's own users (/home) change.
listing() {
  (cd "$chroot_dir" && find . -xdev \
    -path ./proc -prune -o -path ./tmp -prune -o -path ./var/lib/dpkg -prune -o \
    -path ./var/log -prune -o -path ./var/cache -prune -o -path ./home -prune -o \
    -path ./root -prune -o -path ./run -prune -o -print | LC_ALL=C sort)
}
before=$(listing)

step "dpkg -i both packages"
cp "$main_deb" "$mta_deb" "$chroot_dir/tmp/"
in_root dpkg -i "/tmp/$(basename "$main_deb")" "/tmp/$(basename "$mta_deb")"
expect() { [ "$2" = "$3" ] || die "$1: '$2', expected '$3'"; }
expect "the user mailgate" "$(in_root getent passwd mailgate | cut -d: -f6,7)" "/var/lib/mailgate:/usr/sbin/nologin"
expect "/etc/mailgate/is.properties" "$(in_root stat -c '%a %U:%G' "/etc/mailgate/is.properties")" "640 root:mailgate"
expect "/etc/mailgate/security.properties" "$(in_root stat -c '%a %U:%G' "/etc/mailgate/security.properties")" "640 root:mailgate"
expect "/var/lib/mailgate" "$(in_root stat -c '%a %U:%G' "/var/lib/mailgate")" "750 mailgate:mailgate"
expect "/usr/sbin/sendmail" "$(readlink "$chroot_dir/usr/sbin/sendmail")" "../bin/mailgate"
expect "/usr/lib/sendmail" "$(readlink "$chroot_dir/usr/lib/sendmail")" "../sbin/sendmail"
for unit in mailgate-relay mailgate-deliver; do
  grep -q '^ExecStart=/usr/bin/mailgate ' "$chroot_dir/usr/lib/systemd/system/$unit.service" ||
    die "$unit.service: no ExecStart=/usr/bin/mailgate"
  [ ! -e "$chroot_dir/etc/systemd/system/multi-user.target.wants/$unit.service" ] ||
    die "$unit.service was enabled on install"
done
in_root /usr/sbin/sendmail --version

step "man pages and completions where Debian looks"
expect "man -w mailgate-sendmail" "$(in_root man -w mailgate-sendmail)" /usr/share/man/man8/mailgate-sendmail.8.gz
# sendmail(8) is mailgate-mta's link to it.
expect "man -w 8 sendmail" "$(in_root man -w 8 sendmail)" /usr/share/man/man8/mailgate-sendmail.8.gz
expect "/usr/share/man/man8/sendmail.8.gz" "$(readlink "$chroot_dir/usr/share/man/man8/sendmail.8.gz")" mailgate-sendmail.8.gz
expect "man -w mailgate" "$(in_root man -w mailgate)" /usr/share/man/man1/mailgate.1.gz
warnings=$(in_root env MANWIDTH=80 man --warnings -E UTF-8 mailgate-sendmail 2>&1 >/dev/null)
[ -z "$warnings" ] || die "man mailgate-sendmail warns: $warnings"
in_root env MANWIDTH=80 man mailgate-sendmail | grep -q 'sendmail' || die "man mailgate-sendmail shows no page"
in_root bash -c 'source /usr/share/bash-completion/completions/mailgate && complete -p mailgate' |
  grep -q -- '-F _mailgate' || die "the bash completion does not complete mailgate"
for file in /usr/share/zsh/vendor-completions/_mailgate /usr/share/fish/vendor_completions.d/mailgate.fish; do
  [ -s "$chroot_dir$file" ] || die "$file is missing"
done

# --- the recording SMTP server, on the host's loopback --------------------------
step "recording SMTP server (aiosmtpd, integration-tests/peers/python)"
bash integration-tests/peers/install.sh python
events=$chroot_dir.events
PYTHONPATH=integration-tests/peers/python/.deps python3 integration-tests/peers/python/smtp_peer.py '{}' \
  >"$events" 2>"$events.err" </dev/null &
server_pid=$!
port=
for _ in $(seq 100); do
  port=$(sed -n 's/^LISTENING \([0-9]*\)$/\1/p' "$events")
  [ -n "$port" ] && break
  kill -0 "$server_pid" 2>/dev/null || die "the SMTP peer exited: $(cat "$events.err")"
  sleep 0.1
done
[ -n "$port" ] || die "the SMTP peer did not listen within 10 s"
echo "listening on 127.0.0.1:$port"

# A message for -t (To and Bcc), with a line holding only a dot (-i, -oi).
message() {
  printf 'To: Dev <dev@example.com>\nBcc: hidden@example.com\nSubject: %s\n\nline one of the body\n.\nline after a dot\n' "$1"
}

step "the shipped /etc/mailgate sends nothing: exit 78 until a server is set"
set +e
unset_out=$(message "unconfigured" | in_root /usr/sbin/sendmail -t 2>&1)
code=$?
set -e
expect "sendmail with the shipped config: exit code" "$code" 78
[[ "$unset_out" == *mksis.logging.email.server.hostname* ]] ||
  die "sendmail with the shipped config does not name the server key: $unset_out"
echo "root: $unset_out"

# What an admin does: the server, the sender (its domain qualifies bare names).
cat >>"$chroot_dir/etc/mailgate/is.properties" <<EOF

# set by contrib/deb/test.sh
mksis.logging.email.server.hostname=127.0.0.1
mksis.logging.email.server.port=$port
mksis.logging.email.from=alm@example.com
EOF

# The n-th message the server recorded, as "from|to,to|has-subject|has-body|has-bcc".
received() {
  python3 - "$events" "$1" "$2" <<'PY'
import json, sys
events, n, subject = sys.argv[1], int(sys.argv[2]), sys.argv[3]
messages = []
for line in open(events):
    if line.startswith("{"):
        event = json.loads(line)
        if event["event"] == "message":
            messages.append(event)
if len(messages) < n:
    print(f"only {len(messages)} message(s)")
    sys.exit(0)
m = messages[n - 1]
data = m["data"]
print("|".join([m["from"], ",".join(m["to"]), str(f"Subject: {subject}" in data),
                 str("line one of the body" in data), str("Bcc:" in data)]))
PY
}
wait_for() {
  local n=$1
  for _ in $(seq 50); do
    [ "$(grep -c '"event":"message"' "$events")" -ge "$n" ] && return 0
    sleep 0.1
  done
  die "message $n did not arrive: $(tail -n 3 "$events")"
}

step "root: cronie's command line through /usr/sbin/sendmail -t"
message "as root" | in_root /usr/sbin/sendmail -FCronDaemon -i -odi -oem -oi -t -f root
wait_for 1
expect "message 1 (from|to|subject|body|bcc)" "$(received 1 'as root')" \
  "root@example.com|dev@example.com,hidden@example.com|True|True|False"

step "a member of the group mailgate: /usr/lib/sendmail -i ADDR"
in_root adduser --quiet --disabled-password --gecos '' alice
in_root adduser --quiet alice mailgate
mailgate_gid=$(in_root getent group mailgate | cut -d: -f3)
printf 'Subject: as alice\n\nline one of the body\n' | as_user alice "$(in_root id -g alice),$mailgate_gid" /usr/lib/sendmail -i dev@example.com
wait_for 2
expect "message 2 (from|to|subject|body|bcc)" "$(received 2 'as alice')" \
  "alm@example.com|dev@example.com|True|True|False"

step "the service user mailgate: send --queue into /var/lib/mailgate/outbox.db"
as_user mailgate "" /usr/bin/mailgate --config-dir /etc/mailgate send --queue \
  --to dev@example.com --subject "as mailgate" --body "line one of the body"
wait_for 3
expect "message 3 (from|to|subject|body|bcc)" "$(received 3 'as mailgate')" \
  "alm@example.com|dev@example.com|True|True|False"
expect "the outbox" "$(in_root stat -c '%U %a' "/var/lib/mailgate/outbox.db")" "mailgate 600"

step "a user outside the group mailgate: refused (78), naming the file"
in_root adduser --quiet --disabled-password --gecos '' bob
set +e
refused=$(message "as bob" | as_user bob "" /usr/sbin/sendmail -t 2>&1)
code=$?
set -e
expect "bob's sendmail exit code" "$code" 78
[[ "$refused" == *"/etc/mailgate/is.properties"* ]] || die "bob's error does not name the file: $refused"
echo "bob: $refused"
expect "messages recorded" "$(grep -c '"event":"message"' "$events")" 3
# sendmail (mailgate.sendmail.queue=false) left nothing behind for anyone.
expect "files in /etc/mailgate" "$(cd "$chroot_dir/etc/mailgate" && printf '%s ' *)" "is.properties security.properties "

# --- 4. remove and purge --------------------------------------------------------
step "dpkg -r mailgate-mta, then dpkg --purge both"
in_root dpkg -r mailgate-mta
if [ -e "$chroot_dir/usr/sbin/sendmail" ] || [ -L "$chroot_dir/usr/lib/sendmail" ]; then
  die "/usr/sbin/sendmail or /usr/lib/sendmail is left after removing mailgate-mta"
fi
# mailgate-mta has no conffiles: removed is purged already.
in_root dpkg --purge mailgate
for pkg in mailgate mailgate-mta; do
  if in_root dpkg -L "$pkg" >/dev/null 2>&1; then die "dpkg -L $pkg still lists files after the purge"; fi
done
for path in /etc/mailgate /var/lib/mailgate /usr/bin/mailgate /usr/sbin/sendmail \
  /usr/lib/systemd/system/mailgate-relay.service /usr/share/man/man8/mailgate-sendmail.8.gz; do
  [ ! -e "$chroot_dir$path" ] || die "$path is left after the purge"
done
# The user and group stay (contrib/deb/maintainer-scripts/postrm says why).
in_root getent passwd mailgate >/dev/null || die "the purge removed the user mailgate (the postrm keeps it)"
after=$(listing)
left=$(diff <(echo "$before") <(echo "$after") | grep '^[<>]' |
  grep -v -E '^> \./etc/(passwd|group|shadow|gshadow|subuid|subgid)-$' || true)
[ -z "$left" ] || die "the purge left the clean root changed: $left"
echo "purged: nothing left but the user and group mailgate"
