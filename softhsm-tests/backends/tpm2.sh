#!/usr/bin/env bash
# A throw-away software TPM for the tpm2-pkcs11 backend tests: swtpm, a private D-Bus session bus and
# the tpm2-abrmd resource manager (without it, leaked TPM object contexts make logins fail after a few
# runs). Everything lives in DIR and is stopped by the PIDs recorded there, never by name.
#   tpm2.sh start DIR   prints the environment lines to export (DBUS_SESSION_BUS_ADDRESS, TPM2_PKCS11_*)
#   tpm2.sh stop DIR
set -euo pipefail
cmd=${1:?usage: tpm2.sh start|stop DIR}
dir=${2:?usage: tpm2.sh start|stop DIR}
module=/usr/lib/x86_64-linux-gnu/pkcs11/libtpm2_pkcs11.so

stop() {
  for name in tpm2-abrmd dbus swtpm; do
    if [ -f "$dir/$name.pid" ]; then
      pid=$(cat "$dir/$name.pid")
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      rm -f "$dir/$name.pid"
    fi
  done
}

case "$cmd" in
stop) stop; exit 0 ;;
start) ;;
*) echo "tpm2.sh: unknown command $cmd" >&2; exit 2 ;;
esac

for tool in swtpm dbus-daemon tpm2-abrmd tpm2_startup; do
  command -v "$tool" >/dev/null || { echo "tpm2.sh: $tool is missing: run softhsm-tests/setup.sh" >&2; exit 3; }
done
[ -f "$module" ] || { echo "tpm2.sh: $module is missing: run softhsm-tests/setup.sh" >&2; exit 3; }
mkdir -p "$dir/state" "$dir/store"
trap 'stop' ERR

# Random ports on loopback, tried a few times: several test runs may share the machine.
for _ in 1 2 3 4 5 6 7 8; do
  port=$(( 20000 + RANDOM % 20000 ))
  if swtpm socket --tpm2 --tpmstate dir="$dir/state" \
      --server type=tcp,port=$port,bindaddr=127.0.0.1 --ctrl type=tcp,port=$((port + 1)),bindaddr=127.0.0.1 \
      --flags not-need-init,startup-clear --pid file="$dir/swtpm.pid" --daemon 2>"$dir/swtpm.err"; then
    break
  fi
  port=""
done
[ -n "$port" ] || { echo "tpm2.sh: swtpm did not start: $(cat "$dir/swtpm.err")" >&2; exit 4; }

dbus-daemon --session --fork --address="unix:path=$dir/bus" --print-pid=3 3>"$dir/dbus.pid" >/dev/null
bus="unix:path=$dir/bus"
DBUS_SESSION_BUS_ADDRESS=$bus setsid tpm2-abrmd --allow-root --session \
  --tcti="swtpm:host=127.0.0.1,port=$port" --flush-all >"$dir/tpm2-abrmd.log" 2>&1 < /dev/null &
echo $! > "$dir/tpm2-abrmd.pid"
# Ready when a client gets an answer through the resource manager (deadline 20 s).
for _ in $(seq 200); do
  if DBUS_SESSION_BUS_ADDRESS=$bus tpm2_getcap -T tabrmd:bus_type=session properties-fixed >/dev/null 2>&1; then
    echo "DBUS_SESSION_BUS_ADDRESS=$bus"
    echo "TPM2_PKCS11_TCTI=tabrmd:bus_type=session"
    echo "TPM2_PKCS11_STORE=$dir/store"
    exit 0
  fi
  sleep 0.1
done
echo "tpm2.sh: tpm2-abrmd did not answer: $(cat "$dir/tpm2-abrmd.log")" >&2
stop
exit 4
