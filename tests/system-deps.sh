#!/usr/bin/env bash
# Install the Debian packages that some test tiers need; idempotent and quick when all are present.
#
#   tests/system-deps.sh                 both groups
#   tests/system-deps.sh chromium        headless Chromium (HTML-report browser test)
#   tests/system-deps.sh slurm           SLURM 22.05 + munge + slurmdbd + mariadb (the `slurm` tier)
#
# As root (or with passwordless sudo) it runs `apt-get update` once, only if something is
# missing, then `apt-get install --no-install-recommends`. Without root and without sudo it
# prints one line and exits 0: `make test` still runs the other tiers and the tests that need
# these packages skip with a reason.
set -euo pipefail

CHROMIUM_PKGS=(chromium)
SLURM_PKGS=(slurmctld slurmd slurm-client munge slurmdbd mariadb-server-core mariadb-client-core)

groups=("$@")
[ ${#groups[@]} -eq 0 ] && groups=(chromium slurm)

want=()
for g in "${groups[@]}"; do
    case "$g" in
        chromium) want+=("${CHROMIUM_PKGS[@]}") ;;
        slurm) want+=("${SLURM_PKGS[@]}") ;;
        -h|--help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "system-deps.sh: unknown group '$g' (use: chromium, slurm)" >&2; exit 2 ;;
    esac
done

installed() {  # true when dpkg reports the package fully installed
    [ "$(dpkg-query -W -f='${db:Status-Abbrev}' "$1" 2>/dev/null | cut -c1-2)" = "ii" ]
}

if ! command -v dpkg-query >/dev/null 2>&1; then
    echo "system-deps.sh: not a Debian-like system (no dpkg); install ${want[*]} yourself; the tests that need them will skip"
    exit 0
fi

missing=()
for p in "${want[@]}"; do
    installed "$p" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
    echo "system-deps.sh: all present (${groups[*]})"
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    SUDO=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO=(sudo -n)
else
    echo "system-deps.sh: not root and no sudo; skipping install of ${missing[*]} (the tests that need them will skip)"
    exit 0
fi

echo "system-deps.sh: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# Wait for another apt/dpkg run (e.g. a concurrent install) instead of failing at once.
APT=(apt-get -o DPkg::Lock::Timeout=600)
"${SUDO[@]}" "${APT[@]}" update -qq
# policy-rc.d 101 keeps the distro's own service units from starting the daemons: the
# project's launchers/slurm/cluster-up.sh runs them under its own state directory.
# It only covers this install and is removed again whatever happens.
policy=/usr/sbin/policy-rc.d
added_policy=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee "$policy" >/dev/null
    "${SUDO[@]}" chmod 755 "$policy"
    added_policy=1
fi
cleanup() { [ "$added_policy" = 1 ] && "${SUDO[@]}" rm -f "$policy"; true; }
trap cleanup EXIT
"${SUDO[@]}" "${APT[@]}" install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "system-deps.sh: installed ${missing[*]}"
