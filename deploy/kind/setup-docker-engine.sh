#!/bin/sh
# Installs and starts a Docker engine that can run kind nodes on this machine.
#
# Idempotent; run as root (CI's .ci/run calls it on a fresh machine):
#   sh deploy/kind/setup-docker-engine.sh
#
# - Debian's docker.io (dockerd, containerd, runc), debootstrap (the kind node image
#   and the Python base image are built from Debian packages, nothing is pulled from
#   an image registry) and jq (used by the runc wrapper below).
# - Where CAP_SYS_RESOURCE is missing from the capability bounding set (as in these
#   VMs), `docker run --privileged` (every kind node) fails with "unable to apply
#   caps": dockerd asks for every capability it knows. A small runc wrapper, made
#   docker's default runtime, removes that one capability from each container's
#   spec before handing it to the real runc.
# - Starts dockerd through systemd where systemd runs, else in the background with
#   its log in $KUBETEE_DOCKERD_LOG (default /var/log/kubetee-dockerd.log), and waits
#   for `docker info`.
set -eu

DOCKERD_LOG=${KUBETEE_DOCKERD_LOG:-/var/log/kubetee-dockerd.log}
WRAPPER=/usr/local/libexec/kubetee/runc-without-sys-resource
DAEMON_JSON=/etc/docker/daemon.json
RUNTIME_NAME=kubetee-runc
CAP_SYS_RESOURCE_BIT=24

say() { printf 'setup-docker-engine: %s\n' "$*"; }
fail() {
	printf 'setup-docker-engine: error: %s\n' "$*" >&2
	exit 1
}

[ "$(id -u)" -eq 0 ] || fail "must run as root (it installs packages and starts dockerd): sudo sh $0"
command -v apt-get >/dev/null 2>&1 ||
	fail "apt-get not found: this script installs Debian's docker.io; on another system install Docker 20.10+ yourself, make sure 'docker info' works, and run 'kubetee kind up'"

# --- packages ---------------------------------------------------------------------
missing=""
for pkg in docker.io debootstrap jq; do
	dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $pkg"
done
if [ -n "$missing" ]; then
	say "installing$missing with apt-get (log: /var/log/kubetee-apt.log)"
	# Another apt run (for example a second setup script) may hold the lock: wait for it.
	if ! { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
		--no-install-recommends -o DPkg::Lock::Timeout=600 $missing; } >/var/log/kubetee-apt.log 2>&1; then
		tail -n 15 /var/log/kubetee-apt.log >&2
		fail "apt-get install$missing failed; full log: /var/log/kubetee-apt.log (is the Debian mirror reachable?)"
	fi
fi
command -v dockerd >/dev/null 2>&1 || fail "dockerd is not on PATH after installing docker.io (looked in: $PATH)"
REAL_RUNC=$(command -v runc) || fail "runc is not on PATH after installing docker.io"

# --- capability check and runc wrapper ----------------------------------------------
cap_bnd=$(awk '/^CapBnd:/ {print $2}' /proc/self/status)
has_sys_resource=$(( (0x$cap_bnd >> CAP_SYS_RESOURCE_BIT) & 1 ))
if [ "$has_sys_resource" -eq 0 ]; then
	say "CAP_SYS_RESOURCE is not in this machine's capability bounding set (CapBnd=$cap_bnd):"
	say "installing $WRAPPER as docker's default runtime so privileged kind nodes start"
	mkdir -p "$(dirname "$WRAPPER")"
	cat >"$WRAPPER.tmp" <<EOF
#!/bin/sh
# Installed by KubeTEE's deploy/kind/setup-docker-engine.sh. This machine's capability
# bounding set lacks CAP_SYS_RESOURCE, yet dockerd puts it into every privileged
# container's spec and runc then fails with "unable to apply caps". Remove it from the
# spec (config.json on create/run, the --process file on exec), then run the real runc.
REAL_RUNC=$REAL_RUNC
EOF
	cat >>"$WRAPPER.tmp" <<'EOF'
bundle=.
process=""
command=""
prev=""
for arg in "$@"; do
	case "$prev" in
	--bundle | -b) bundle=$arg ;;
	--process | -p) process=$arg ;;
	esac
	case "$arg" in
	--bundle=*) bundle=${arg#--bundle=} ;;
	--process=*) process=${arg#--process=} ;;
	create | run | exec) [ -n "$command" ] || command=$arg ;;
	esac
	prev=$arg
done
drop() { # $1: JSON file, $2: jq path of the capabilities object
	[ -f "$1" ] || return 0
	jq "if $2 then $2 |= with_entries(.value |= map(select(. != \"CAP_SYS_RESOURCE\"))) else . end" \
		"$1" >"$1.kubetee-tmp" && mv "$1.kubetee-tmp" "$1"
}
case "$command" in
create | run) drop "$bundle/config.json" .process.capabilities ;;
exec) [ -z "$process" ] || drop "$process" .capabilities ;;
esac
exec "$REAL_RUNC" "$@"
EOF
	chmod 755 "$WRAPPER.tmp"
	mv "$WRAPPER.tmp" "$WRAPPER"
	runtime_path=$WRAPPER
else
	runtime_path=""
fi

# --- daemon.json: merge our runtime into whatever is there ---------------------------
mkdir -p /etc/docker
[ -s "$DAEMON_JSON" ] || echo '{}' >"$DAEMON_JSON"
if [ -n "$runtime_path" ]; then
	jq --arg name "$RUNTIME_NAME" --arg path "$runtime_path" \
		'.runtimes[$name] = {path: $path} | ."default-runtime" = $name' \
		"$DAEMON_JSON" >"$DAEMON_JSON.tmp" ||
		fail "$DAEMON_JSON is not valid JSON; fix or remove it and run this again"
else
	cp "$DAEMON_JSON" "$DAEMON_JSON.tmp"
fi
if cmp -s "$DAEMON_JSON" "$DAEMON_JSON.tmp"; then
	rm -f "$DAEMON_JSON.tmp"
	config_changed=0
else
	mv "$DAEMON_JSON.tmp" "$DAEMON_JSON"
	config_changed=1
	say "wrote $DAEMON_JSON"
fi

# --- start (or reload) dockerd ------------------------------------------------------------
systemd_running() { [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; }
if docker info >/dev/null 2>&1; then
	if [ "$config_changed" -eq 1 ]; then
		say "reloading dockerd's configuration (runtimes are reloadable)"
		pid=$(cat /var/run/docker.pid 2>/dev/null || pgrep -x dockerd | head -n 1)
		[ -n "$pid" ] && kill -HUP "$pid"
		sleep 1
	fi
elif systemd_running; then
	say "starting docker with systemd"
	systemctl enable --now docker >/dev/null 2>&1 || systemctl restart docker ||
		fail "systemctl could not start docker; see 'journalctl -u docker'"
else
	# A stale pid file from a killed dockerd stops a new one from starting.
	if [ -f /var/run/docker.pid ] && ! kill -0 "$(cat /var/run/docker.pid)" 2>/dev/null; then
		rm -f /var/run/docker.pid
	fi
	say "starting dockerd in the background (no systemd here); log: $DOCKERD_LOG"
	setsid nohup dockerd >>"$DOCKERD_LOG" 2>&1 </dev/null &
fi
waited=0
until docker info >/dev/null 2>&1; do
	waited=$((waited + 1))
	if [ "$waited" -gt 90 ]; then
		tail -n 20 "$DOCKERD_LOG" >&2 2>/dev/null || true
		fail "dockerd did not answer 'docker info' within 90 s; its log: $DOCKERD_LOG"
	fi
	sleep 1
done

if [ -n "$runtime_path" ]; then
	default_runtime=$(docker info --format '{{.DefaultRuntime}}')
	[ "$default_runtime" = "$RUNTIME_NAME" ] ||
		fail "dockerd's default runtime is '$default_runtime', not '$RUNTIME_NAME': restart dockerd so it reads $DAEMON_JSON"
fi
say "docker engine ready: $(docker version --format 'server {{.Server.Version}}') (default runtime: $(docker info --format '{{.DefaultRuntime}}'))"
