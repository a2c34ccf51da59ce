#!/bin/sh
# The deb-src entry tools/deps.sh needs for `apt-get source lz4` (Debian
# bookworm, main), derived from the deb entries the machine already has:
# same mirror URIs, same signing key. A fixed mirror would fail on a
# machine configured for another one (a local mirror, a proxy, a snapshot).
#
# Usage: tools/deb-src.sh MODE APT_DIR     (APT_DIR: /etc/apt, or a test copy)
#   print   the deb822 stanza, from every enabled deb entry for bookworm
#           with component main (one-line sources.list and *.list, deb822
#           *.sources); exit 1 with a message if there is none
#   have    exit 0 if APT_DIR has a deb-src entry for bookworm main of its
#           own (not the one this script writes)
#   check   exit 0 if nothing needs writing: the machine has its own entry
#           and none of ours, or ours equals what print derives now
#   ensure  write APT_DIR/sources.list.d/hv-deb-src.sources unless check
#           passes; say so on stdout
# Reads only the files apt reads (sources.list, sources.list.d/*.list and
# *.sources); ignores disabled entries (Enabled: no) and comments.
set -eu

OURS=hv-deb-src.sources
SUITE=bookworm
COMPONENT=main

# Every entry in APT_DIR as one line per entry:
#   TYPE<TAB>URIS<TAB>SUITES<TAB>COMPONENTS<TAB>SIGNED-BY
# with list fields space separated and Signed-By's continuation lines (an
# inline key) joined by "\n" literally.
entries() {
    dir=$1
    lists=""
    [ -f "$dir/sources.list" ] && lists="$dir/sources.list"
    for f in "$dir"/sources.list.d/*.list; do
        [ -f "$f" ] && lists="$lists $f"
    done
    if [ -n "$lists" ]; then
        # shellcheck disable=SC2086
        awk '
        {
            sub(/#.*/, "")
            if ($1 != "deb" && $1 != "deb-src")
                next
            type = $1; i = 2; signed = ""
            if ($i ~ /^\[/) {
                # Options: [opt=val ...], the brackets maybe apart from them.
                opts = ""
                for (; i <= NF; i++) {
                    opts = opts " " $i
                    if ($i ~ /\]$/) { i++; break }
                }
                gsub(/[\[\]]/, " ", opts)
                n = split(opts, o, " ")
                for (k = 1; k <= n; k++)
                    if (tolower(o[k]) ~ /^signed-by=/)
                        signed = substr(o[k], 11)
            }
            uri = $i; suite = $(i + 1); comps = ""
            for (k = i + 2; k <= NF; k++)
                comps = comps (comps == "" ? "" : " ") $k
            if (uri != "" && suite != "")
                printf "%s\t%s\t%s\t%s\t%s\n", type, uri, suite, comps, signed
        }' $lists
    fi
    for f in "$dir"/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        [ "${f##*/}" = "$OURS" ] && continue
        awk '
        function flush() {
            if (types != "" && tolower(enabled) != "no")
                printf "%s\t%s\t%s\t%s\t%s\n", types, uris, suites, comps, signed
            types = uris = suites = comps = signed = enabled = ""; field = ""
        }
        /^[ \t]*#/ { next }
        /^[ \t]*$/ { flush(); next }
        /^[ \t]/ {
            # A continuation line: only Signed-By (an inline key) keeps them.
            if (field == "signed-by") {
                line = $0
                sub(/^[ \t]+/, "", line)
                signed = signed "\\n " line
            } else if (field != "") {
                extra = $0
                sub(/^[ \t]+/, " ", extra)
                if (field == "uris") uris = uris extra
                else if (field == "suites") suites = suites extra
                else if (field == "components") comps = comps extra
                else if (field == "types") types = types extra
            }
            next
        }
        {
            p = index($0, ":")
            if (!p) next
            field = tolower(substr($0, 1, p - 1))
            v = substr($0, p + 1)
            sub(/^[ \t]+/, "", v); sub(/[ \t]+$/, "", v)
            if (field == "types") types = v
            else if (field == "uris") uris = v
            else if (field == "suites") suites = v
            else if (field == "components") comps = v
            else if (field == "signed-by") signed = v
            else if (field == "enabled") enabled = v
        }
        END { flush() }' "$f"
    done
}

# Entries of type $2 for SUITE with COMPONENT.
matching() {
    entries "$1" | awk -F '\t' -v want="$2" -v suite="$SUITE" -v comp="$COMPONENT" '
    function has(list, word,   n, a, k) {
        n = split(list, a, " ")
        for (k = 1; k <= n; k++)
            if (a[k] == word)
                return 1
        return 0
    }
    has($1, want) && has($3, suite) && has($4, comp)'
}

derive() {
    m=$(matching "$1" deb)
    if [ -z "$m" ]; then
        echo "deb-src.sh: no enabled deb entry for Debian $SUITE $COMPONENT in $1" \
            "(sources.list, sources.list.d/*.list or *.sources): add one, or a deb-src" \
            "entry, and run again" >&2
        return 1
    fi
    # One stanza per distinct mirror and key, in the order apt reads them.
    printf '%s\n' "$m" | awk -F '\t' -v suite="$SUITE" -v comp="$COMPONENT" '
    {
        key = $2 "\t" $5
        if (key in seen) next
        seen[key] = 1
        if (n++) printf "\n"
        printf "Types: deb-src\nURIs: %s\nSuites: %s\nComponents: %s\n", $2, suite, comp
        if ($5 != "") {
            s = $5
            gsub(/\\n/, "\n", s)
            printf "Signed-By:%s%s\n", s ~ /^\n/ ? "" : " ", s
        }
    }'
}

have() {
    [ -n "$(matching "$1" deb-src)" ]
}

check() {
    ours="$1/sources.list.d/$OURS"
    if [ ! -f "$ours" ]; then
        have "$1"
        return
    fi
    want=$(derive "$1") || return 1
    [ "$(cat "$ours")" = "$want" ]
}

ensure() {
    check "$1" && return 0
    want=$(derive "$1")
    mkdir -p "$1/sources.list.d"
    printf '%s\n' "$want" > "$1/sources.list.d/$OURS.tmp"
    mv "$1/sources.list.d/$OURS.tmp" "$1/sources.list.d/$OURS"
    echo "deps: wrote $1/sources.list.d/$OURS (deb-src for $SUITE $COMPONENT from" \
        "$(printf '%s\n' "$want" | sed -n 's/^URIs: //p' | tr '\n' ' ' | sed 's/ $//'))"
}

if [ $# -ne 2 ]; then
    echo "usage: $0 print|have|check|ensure APT_DIR" >&2
    exit 2
fi
case $1 in
print) derive "$2" ;;
have) have "$2" ;;
check) check "$2" ;;
ensure) ensure "$2" ;;
*) echo "usage: $0 print|have|check|ensure APT_DIR" >&2; exit 2 ;;
esac
