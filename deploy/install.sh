#!/bin/sh
# GPU Commons agent installer. The server fills in its address and the agent builds it offers
# (the two placeholders below) and serves this at /install.sh, so the Worker tab's command is
#
#     curl -fsSL https://SERVER/install.sh | sh -s -- --token gcr_...
#
# It downloads the agent for this machine, checks the download's SHA-256 against the one the
# server named, keeps the single-use registration token in a file only its owner reads, and
# installs a systemd service, or, where systemd is absent, says how to start the agent.
set -eu

SERVER=@SERVER@

say() { printf '%s\n' "$*"; }
die() { printf 'gpu-commons install: %s\n' "$*" >&2; exit 1; }

usage() {
    cat <<EOF
Installs the GPU Commons agent from $SERVER.

  sh install.sh --token TOKEN [--prefix DIR] [--config-dir DIR] [--no-service]

  --token TOKEN      the registration token the Worker tab showed (gcr_...)
  --prefix DIR       install the agent as DIR/bin/gpu-commons-agent
                     [default: /usr/local as root, else ~/.local]
  --config-dir DIR   keep the token, the settings and the device credential here
                     [default: /etc/gpu-commons as root, else ~/.config/gpu-commons]
  --no-service       install no systemd service; print how to start the agent instead
EOF
}

TOKEN=''
PREFIX=''
CONFIG_DIR=''
SERVICE=yes
while [ $# -gt 0 ]; do
    case "$1" in
        --token) [ $# -ge 2 ] || die "--token needs a value"; TOKEN=$2; shift 2 ;;
        --token=*) TOKEN=${1#--token=}; shift ;;
        --prefix) [ $# -ge 2 ] || die "--prefix needs a folder"; PREFIX=$2; shift 2 ;;
        --prefix=*) PREFIX=${1#--prefix=}; shift ;;
        --config-dir) [ $# -ge 2 ] || die "--config-dir needs a folder"; CONFIG_DIR=$2; shift 2 ;;
        --config-dir=*) CONFIG_DIR=${1#--config-dir=}; shift ;;
        --no-service) SERVICE=no; shift ;;
        -h|--help) usage; exit 0 ;;
        *) die "unknown option '$1' (see --help)" ;;
    esac
done

[ -n "$TOKEN" ] || die "give the registration token the Worker tab showed: --token gcr_..."
case "$TOKEN" in
    gcr_*) ;;
    *) die "'$TOKEN' is not a registration token (they start with gcr_)" ;;
esac
case "${TOKEN#gcr_}" in
    ''|*[!0-9a-f]*) die "the registration token holds characters no token has: copy it again" ;;
esac

case "$(uname -s)-$(uname -m)" in
    Linux-x86_64|Linux-amd64) PLATFORM=linux-x86_64 ;;
    Linux-aarch64|Linux-arm64) PLATFORM=linux-aarch64 ;;
    *) die "there is no GPU Commons agent for $(uname -s) on $(uname -m)" ;;
esac
case "$PLATFORM" in
@RELEASES@
    *) die "$SERVER offers no agent for $PLATFORM" ;;
esac

if [ "$(id -u)" = 0 ]; then
    PREFIX=${PREFIX:-/usr/local}
    CONFIG_DIR=${CONFIG_DIR:-/etc/gpu-commons}
else
    PREFIX=${PREFIX:-$HOME/.local}
    CONFIG_DIR=${CONFIG_DIR:-${XDG_CONFIG_HOME:-$HOME/.config}/gpu-commons}
fi
BIN="$PREFIX/bin/gpu-commons-agent"
CREDENTIALS="$CONFIG_DIR/agent.json"

fetch() {
    if command -v curl >/dev/null 2>&1; then
        curl -fsSL -o "$2" "$1"
    elif command -v wget >/dev/null 2>&1; then
        wget -q -O "$2" "$1"
    else
        die "install curl or wget first"
    fi
}

sha256_of() {
    if command -v sha256sum >/dev/null 2>&1; then
        sha256sum "$1" | cut -d ' ' -f 1
    elif command -v shasum >/dev/null 2>&1; then
        shasum -a 256 "$1" | cut -d ' ' -f 1
    else
        die "install sha256sum (coreutils) to check the download"
    fi
}

umask 077
mkdir -p "$PREFIX/bin" "$CONFIG_DIR"
STAGED=$(mktemp "$PREFIX/bin/.gpu-commons-agent.XXXXXX")
trap 'rm -f "$STAGED"' EXIT
say "downloading agent $VERSION for $PLATFORM from $SERVER"
fetch "$SERVER/agent/download/$PLATFORM" "$STAGED"
GOT=$(sha256_of "$STAGED")
[ "$GOT" = "$SHA256" ] || die "the download's SHA-256 is $GOT, not the $SHA256 the server named: nothing installed"
chmod 755 "$STAGED"
# One rename: a running agent keeps its old file until it restarts.
mv -f "$STAGED" "$BIN"
trap - EXIT
say "installed $BIN (SHA-256 $GOT)"

if [ -f "$CREDENTIALS" ]; then
    say "this machine is registered already ($CREDENTIALS); the token is not needed"
else
    printf '%s\n' "$TOKEN" > "$CONFIG_DIR/token"
fi
cat > "$CONFIG_DIR/agent.env" <<EOF
GC_AGENT_SERVER=$SERVER
GC_AGENT_TOKEN_FILE=$CONFIG_DIR/token
GC_AGENT_CREDENTIALS=$CREDENTIALS
EOF

if [ "$SERVICE" = yes ] && [ "$(id -u)" = 0 ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    UNIT=/etc/systemd/system/gpu-commons-agent.service
    cat > "$UNIT" <<EOF
[Unit]
Description=GPU Commons agent
Documentation=$SERVER/worker
After=network-online.target
Wants=network-online.target

[Service]
EnvironmentFile=$CONFIG_DIR/agent.env
ExecStart=$BIN
Restart=always
RestartSec=5
# SIGTERM to the agent alone: it stops the workloads it runs first.
KillMode=mixed
TimeoutStopSec=90

[Install]
WantedBy=multi-user.target
EOF
    chmod 644 "$UNIT"
    systemctl daemon-reload
    systemctl enable --now gpu-commons-agent.service
    say "the agent runs as the systemd service gpu-commons-agent"
    say "  status: systemctl status gpu-commons-agent    log: journalctl -u gpu-commons-agent -f"
else
    if [ "$SERVICE" = yes ]; then
        if [ "$(id -u)" != 0 ]; then
            say "not root: no system service installed."
        else
            say "no systemd on this machine: no service installed."
        fi
    fi
    say "start the agent (and again after every reboot, from your own service manager) with:"
    say "  $BIN --server $SERVER --token-file $CONFIG_DIR/token --credentials $CREDENTIALS"
fi
