#!/bin/sh
# tools/deb-src.sh against sample apt configurations in a temporary
# directory (never /etc/apt): the deb-src entry follows the machine's own
# mirror and key, from deb822 .sources files and one-line sources.list;
# disabled entries, other suites, comments and files apt does not read
# are ignored; an existing deb-src entry is respected; ensure is
# idempotent and replaces a stale entry of its own.
set -u

tool="$(cd "$(dirname "$0")/../.." && pwd)/tools/deb-src.sh"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0
n=0

fail() {
    echo "FAIL: $*"
    fails=$((fails + 1))
}

# A fresh apt directory for one case.
apt() {
    n=$((n + 1))
    dir="$tmp/apt$n"
    mkdir -p "$dir/sources.list.d"
}

# print's output must be exactly $2.
expect_print() {
    got=$(sh "$tool" print "$dir" 2>"$tmp/err") || fail "$1: print failed: $(cat "$tmp/err")"
    [ "$got" = "$2" ] || fail "$1: got
$got
--- want
$2"
}

# 1. Debian's default deb822 file (as on this project's machines).
apt
cat > "$dir/sources.list.d/debian.sources" <<'EOF'
Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
expect_print "default deb822" "Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg"
sh "$tool" have "$dir" && fail "default deb822: have found a deb-src entry where there is none"

# 2. Another mirror and key, field names in other case, an extra
#    component, a disabled stanza, a file apt does not read.
apt
cat > "$dir/sources.list.d/mirror.sources" <<'EOF'
Types: deb
URIs: http://old.example.net/debian
Suites: bookworm
Components: main
Enabled: no

types: deb
uris: https://mirror.example.org/debian/
suites: bookworm bookworm-updates
components: main contrib non-free-firmware
signed-by: /etc/apt/keyrings/example.gpg
EOF
cat > "$dir/sources.list.d/other.list.disabled-by-farm" <<'EOF'
deb http://wrong.example.com/debian bookworm main
EOF
expect_print "another mirror" "Types: deb-src
URIs: https://mirror.example.org/debian/
Suites: bookworm
Components: main
Signed-By: /etc/apt/keyrings/example.gpg"

# 3. One-line sources.list with options, a comment, a deb-src line for
#    another suite, an entry without main.
apt
rm -r "$dir/sources.list.d"
cat > "$dir/sources.list" <<'EOF'
# deb http://commented.example.com/debian bookworm main
deb-src http://ftp.fr.debian.org/debian bullseye main
deb http://ftp.fr.debian.org/debian bookworm contrib
deb [ arch=amd64 signed-by=/usr/share/keyrings/fr.gpg ] http://ftp.fr.debian.org/debian bookworm main non-free
deb http://ftp.fr.debian.org/debian-security bookworm-security main # security
EOF
expect_print "one-line" "Types: deb-src
URIs: http://ftp.fr.debian.org/debian
Suites: bookworm
Components: main
Signed-By: /usr/share/keyrings/fr.gpg"
sh "$tool" have "$dir" && fail "one-line: a bullseye deb-src taken for bookworm"
# ... ensure creates sources.list.d when it is missing.
out=$(sh "$tool" ensure "$dir") || fail "one-line: ensure failed"
[ -f "$dir/sources.list.d/hv-deb-src.sources" ] || fail "one-line: ensure wrote nothing"
case $out in *"from http://ftp.fr.debian.org/debian)"*) ;; *) fail "one-line: ensure said '$out'" ;; esac

# 4. One-line without options in a .list file: no Signed-By line; two
#    mirrors give two stanzas, a repeated one only one.
apt
cat > "$dir/sources.list.d/a.list" <<'EOF'
deb http://one.example.org/debian bookworm main
deb http://two.example.org/debian bookworm main
deb http://one.example.org/debian bookworm main
EOF
expect_print "two mirrors" "Types: deb-src
URIs: http://one.example.org/debian
Suites: bookworm
Components: main

Types: deb-src
URIs: http://two.example.org/debian
Suites: bookworm
Components: main"

# 5. An inline key: Signed-By's continuation lines are kept as they are.
apt
cat > "$dir/sources.list.d/inline.sources" <<'EOF'
Types: deb deb-src
URIs: http://inline.example.org/debian
Suites: bookworm
Components: main
Signed-By:
 -----BEGIN PGP PUBLIC KEY BLOCK-----
 .
 mDMEZ0000xYJKwYBBAHaRw8BAQdA
 -----END PGP PUBLIC KEY BLOCK-----
EOF
expect_print "inline key" "Types: deb-src
URIs: http://inline.example.org/debian
Suites: bookworm
Components: main
Signed-By:
 -----BEGIN PGP PUBLIC KEY BLOCK-----
 .
 mDMEZ0000xYJKwYBBAHaRw8BAQdA
 -----END PGP PUBLIC KEY BLOCK-----"
# That stanza has deb-src itself: nothing needs writing.
sh "$tool" have "$dir" || fail "inline key: its deb-src type not seen"
sh "$tool" check "$dir" || fail "inline key: check wants to write though deb-src exists"
out=$(sh "$tool" ensure "$dir")
if [ -n "$out" ] || [ -f "$dir/sources.list.d/hv-deb-src.sources" ]; then
    fail "inline key: ensure wrote an entry beside the machine's own"
fi

# 6. No bookworm main anywhere: a clear error, nothing written.
apt
echo "deb http://deb.debian.org/debian bullseye main" > "$dir/sources.list"
if sh "$tool" print "$dir" >/dev/null 2>"$tmp/err"; then
    fail "no bookworm: print succeeded"
fi
grep -q "no enabled deb entry for Debian bookworm main" "$tmp/err" ||
    fail "no bookworm: message was '$(cat "$tmp/err")'"
if sh "$tool" ensure "$dir" >/dev/null 2>&1; then
    fail "no bookworm: ensure succeeded"
fi
[ -f "$dir/sources.list.d/hv-deb-src.sources" ] && fail "no bookworm: ensure wrote a file"

# 7. ensure: writes once, then changes nothing (idempotent); an entry of
#    ours with a stale mirror (the old fixed deb.debian.org) is replaced;
#    our own file never counts as the machine's deb-src entry.
apt
cat > "$dir/sources.list.d/debian.sources" <<'EOF'
Types: deb
URIs: http://mirror.internal.example/debian
Suites: bookworm
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
ours="$dir/sources.list.d/hv-deb-src.sources"
sh "$tool" check "$dir" && fail "ensure: check passed with no deb-src at all"
sh "$tool" ensure "$dir" >/dev/null || fail "ensure: first run failed"
grep -qx "URIs: http://mirror.internal.example/debian" "$ours" || fail "ensure: wrong mirror written"
sh "$tool" have "$dir" && fail "ensure: our own file counted as the machine's entry"
sh "$tool" check "$dir" || fail "ensure: check fails right after ensure"
cp "$ours" "$tmp/before"
touch -d "2000-01-01" "$ours"
out=$(sh "$tool" ensure "$dir")
[ -z "$out" ] || fail "ensure: second run said '$out'"
cmp -s "$ours" "$tmp/before" || fail "ensure: second run changed the file"
[ "$(stat -c %Y "$ours")" = "$(date -d 2000-01-01 +%s)" ] || fail "ensure: second run rewrote the file"
printf 'Types: deb-src\nURIs: http://deb.debian.org/debian\nSuites: bookworm\nComponents: main\n' > "$ours"
sh "$tool" check "$dir" && fail "ensure: a stale entry of ours passed check"
sh "$tool" ensure "$dir" >/dev/null || fail "ensure: replacing a stale entry failed"
cmp -s "$ours" "$tmp/before" || fail "ensure: the stale entry was not replaced"
[ "$(ls "$dir/sources.list.d")" = "debian.sources
hv-deb-src.sources" ] || fail "ensure: left other files: $(ls "$dir/sources.list.d")"

if [ "$fails" -ne 0 ]; then
    echo "test_deb_src: $fails failure(s) in $n cases"
    exit 1
fi
echo "test_deb_src: PASS ($n apt configurations)"
