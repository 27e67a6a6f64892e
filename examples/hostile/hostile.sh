#!/bin/sh
# The hostile build's components (see pergola.toml). Each prints one line per attempt:
# "<what>: GOT IT" when it succeeded, "<what>: denied" when it did not.
attempt() { # attempt WHAT COMMAND...
  what=$1; shift
  if "$@" >/dev/null 2>&1; then echo "$what: GOT IT"; else echo "$what: denied"; fi
}

case "$1" in
  snoop)
    # The server's database, its secret key, another stage's storage (given by the attacker).
    for f in $TARGET_READ; do attempt "read $f" cat "$f"; done
    # Every process's environment, for another stage's secret: SNOOP_A and SNOOP_B make it
    # (given in two parts, so that its own environment does not hold it).
    secret="$SNOOP_A$SNOOP_B"
    for e in /proc/[0-9]*/environ; do
      if [ -n "$secret" ] && grep -qa "$secret" "$e" 2>/dev/null; then echo "secret in $e: GOT IT"; fi
    done
    echo "snooped"
    ;;
  vandal)
    # Its own release (what a rollback runs), and directories of others.
    attempt "write into the release" sh -c 'echo owned > ./hostile.sh'
    attempt "create in the release" sh -c 'echo owned > ./owned'
    for d in $TARGET_WRITE; do attempt "write into $d" sh -c "echo owned > '$d/owned'"; done
    attempt "write its own storage" sh -c 'echo mine > "$PERGOLA_STORAGE_DATA/mine"'
    echo "vandalised"
    ;;
  prowl)
    # The machine's network: other stages' services, the server, the machine's databases (on
    # 127.0.0.1), and a port to listen on that is not its own.
    for p in $TARGET_CONNECT; do attempt "connect to 127.0.0.1:$p" bash -c "exec 3<>/dev/tcp/127.0.0.1/$p"; done
    for p in $TARGET_LISTEN; do
      attempt "listen on $p" python3 -c "import socket; socket.socket().bind(('127.0.0.1', $p))"
    done
    echo "prowled"
    ;;
  flood)
    # FLOOD_MB megabytes without a newline, then bytes that are not UTF-8, then it idles.
    head -c "$((${FLOOD_MB:-200} * 1000000))" /dev/zero | tr '\0' 'x'
    printf '\n\377\376 not utf-8 \300\n'
    echo "flooded"
    exec sleep 3600
    ;;
  bomb)
    # Forks without limit: every process starts two more.
    echo "bombing"
    b() { b & b & wait; }
    b 2>/dev/null
    ;;
  escape)
    # Leaves its process group and session, then ignores SIGTERM.
    setsid sh -c 'trap "" TERM; echo escaped; while :; do sleep 1; done' &
    exec sleep 3600
    ;;
  stubborn)
    trap '' TERM
    echo "ignoring SIGTERM"
    while :; do sleep 1; done
    ;;
  *)
    echo "usage: hostile.sh snoop|vandal|prowl|flood|bomb|escape|stubborn" >&2
    exit 2
    ;;
esac
