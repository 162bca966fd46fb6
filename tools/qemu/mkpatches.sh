#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Maintainer tool: regenerates tools/qemu/patches/: usage() says what it does
# and how to run it (--help prints it).
set -euo pipefail
usage() {
	cat <<'EOT'
Maintainer tool: regenerates tools/qemu/patches/ from a QEMU work tree:
a git repository whose first commit is the pristine Debian source and
whose later commits are the series, one commit per patch (make one with
the series applied by `git am`, see tools/qemu/README.md).

  tools/qemu/mkpatches.sh [WORKTREE]   (default $CACHE/qemu-work)

Writes mbox-format patches (From, Date, Subject, the commit message, the
diff) with `git format-patch`, and patches/series in commit order;
tools/qemu/build-qemu.sh applies them with `git am`. Refuses a work tree
with uncommitted changes to tracked files (they would be left out).
EOT
}
case ${1:-} in -h|--help) usage; exit 0 ;; esac
here=$(cd "$(dirname "$0")" && pwd)
CACHE=${VHOST_MDEV_CACHE:-$HOME/.cache/vhost-mdev}
wt=${1:-$CACHE/qemu-work}
die() { echo "error: $*" >&2; exit 1; }
git -C "$wt" rev-parse --git-dir >/dev/null 2>&1 || die "$wt is not a git work tree"
dirty=$(git -C "$wt" status --porcelain --untracked-files=no)
[ -z "$dirty" ] || die "uncommitted changes in $wt (commit them into their patch first):
$dirty"
untracked=$(git -C "$wt" status --porcelain | sed -n 's/^?? //p')
[ -z "$untracked" ] || echo "warning: untracked files in $wt are not in the series:" $untracked >&2
base=$(git -C "$wt" rev-list --max-parents=0 HEAD)
[ "$(echo "$base" | wc -l)" = 1 ] || die "$wt has more than one root commit"
n=$(git -C "$wt" rev-list --count "$base..HEAD")
[ "$n" -gt 0 ] || die "$wt has no commits after the pristine one"
[ -z "$(git -C "$wt" rev-list --merges "$base..HEAD")" ] || die "$wt has merge commits: a series is linear"
out=$here/patches
tmp=$(mktemp -d "$here/.patches.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
# --zero-commit: the From line does not depend on the work tree's hashes;
# --no-signature: nor on the git version.
git -C "$wt" format-patch -q --zero-commit --no-signature --stat=72 \
	-o "$tmp" "$base..HEAD"
rm -f "$out"/*.patch
mkdir -p "$out"
(cd "$tmp" && ls -1 ./*.patch | sed 's|^\./||') >"$tmp/series"
mv "$tmp"/*.patch "$out"/
mv "$tmp/series" "$out/series"
echo "wrote $n patches to $out"
