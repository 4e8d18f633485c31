#!/usr/bin/env bash
# Set up PC/SC for euicc-sim: pcscd with the vsmartcard vpcd driver (virtual readers on TCP
# 35963/35964) and pyscard in the project's virtual environment.
#
#   scripts/setup-pcsc.sh            # install what is missing, start pcscd if it is not running
#
# Idempotent and non-interactive (safe in CI with no stdin). Every action is printed.
#   * Debian packages pcscd vsmartcard-vpcd swig libpcsclite-dev: installed with apt-get when
#     missing and we are root; otherwise the command to run is printed.
#   * pyscard (the `pcsc` extra): pip-installed into $VENV (default: .venv next to this
#     script's parent) unless it already imports.
#   * pcscd: started when not running (systemd: `systemctl start pcscd`; otherwise the daemon
#     directly). A pcscd that runs but has no vpcd reader (started before vsmartcard-vpcd was
#     installed) is only reported, unless PCSC_RESTART=1 allows restarting it.
# Exit status: 0 when everything is in place, 1 when something could not be done.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
PACKAGES=(pcscd vsmartcard-vpcd swig libpcsclite-dev)
VPCD_PORT=35963
status=0

say() { printf 'setup-pcsc: %s\n' "$*"; }

is_root() { [ "$(id -u)" -eq 0 ]; }

# -- Debian packages ------------------------------------------------------------------------
missing=()
for pkg in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$pkg")
    fi
done
if [ ${#missing[@]} -eq 0 ]; then
    say "Debian packages present: ${PACKAGES[*]}"
elif is_root; then
    export DEBIAN_FRONTEND=noninteractive
    say "installing ${missing[*]}"
    if ! apt-get install -y -q --no-install-recommends "${missing[@]}" </dev/null; then
        say "apt-get install failed; running apt-get update and trying again"
        apt-get update -q </dev/null
        apt-get install -y -q --no-install-recommends "${missing[@]}" </dev/null
    fi
else
    say "missing Debian packages: ${missing[*]}"
    say "not root; install them with: sudo apt-get install ${missing[*]}"
    status=1
fi

# -- pyscard --------------------------------------------------------------------------------
if [ ! -x "$VENV/bin/python" ]; then
    say "no virtual environment at $VENV (run 'make test' or create it first); skipping pyscard"
    status=1
elif "$VENV/bin/python" -c 'import smartcard' 2>/dev/null; then
    say "pyscard present in $VENV"
else
    say "pip install pyscard into $VENV"
    if ! "$VENV/bin/python" -m pip install --quiet 'pyscard>=2.0' </dev/null; then
        say "pyscard did not install (it builds with swig and libpcsclite-dev)"
        status=1
    fi
fi

# -- pcscd ----------------------------------------------------------------------------------
pcscd_running() {
    local comm
    for comm in /proc/[0-9]*/comm; do
        if [ "$(cat "$comm" 2>/dev/null)" = pcscd ]; then
            return 0
        fi
    done
    return 1
}

vpcd_listening() {
    # /proc/net/tcp{,6}: local address "IP:PORT" in hex, state 0A = LISTEN.
    local port_hex
    port_hex=$(printf '%04X' "$VPCD_PORT")
    awk -v p=":$port_hex" '$2 ~ p"$" && $4 == "0A" { found = 1 } END { exit !found }' \
        /proc/net/tcp /proc/net/tcp6 2>/dev/null
}

wait_for_vpcd() {
    local i
    for i in $(seq 50); do
        if vpcd_listening; then
            return 0
        fi
        sleep 0.1
    done
    return 1
}

start_pcscd() {
    if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
        say "starting pcscd through systemd"
        systemctl start pcscd.service
    else
        say "starting pcscd (daemon)"
        pcscd
    fi
}

if ! command -v pcscd >/dev/null; then
    say "pcscd is not installed; not starting it"
    status=1
elif pcscd_running; then
    if vpcd_listening; then
        say "pcscd is running; vpcd listens on port $VPCD_PORT (slot 0)"
    elif [ "${PCSC_RESTART:-0}" = 1 ] && is_root; then
        say "pcscd is running without a vpcd reader; restarting it (PCSC_RESTART=1)"
        if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
            systemctl restart pcscd.service
        else
            for comm in /proc/[0-9]*/comm; do
                if [ "$(cat "$comm" 2>/dev/null)" = pcscd ]; then
                    pid=${comm#/proc/}
                    pid=${pid%/comm}
                    say "stopping pcscd pid $pid"
                    kill "$pid" || true
                fi
            done
            for _ in $(seq 50); do pcscd_running || break; sleep 0.1; done
            start_pcscd
        fi
        wait_for_vpcd || { say "vpcd does not listen on port $VPCD_PORT"; status=1; }
    else
        say "pcscd is running but nothing listens on port $VPCD_PORT (was it started before"
        say "vsmartcard-vpcd was installed?); restart pcscd, or rerun with PCSC_RESTART=1"
        status=1
    fi
elif is_root; then
    start_pcscd
    if wait_for_vpcd; then
        say "pcscd started; vpcd listens on port $VPCD_PORT (slot 0)"
    else
        say "pcscd started but nothing listens on port $VPCD_PORT"
        status=1
    fi
else
    say "pcscd is not running; start it as root: sudo pcscd (or sudo systemctl start pcscd)"
    status=1
fi

for conf in /etc/reader.conf.d/*; do
    [ -f "$conf" ] || continue
    if grep -qi vpcd "$conf"; then
        say "vpcd readers configured in $conf:"
        grep -E '^\s*(FRIENDLYNAME|DEVICENAME)' "$conf" | sed 's/^/setup-pcsc:   /'
    fi
done
exit $status
