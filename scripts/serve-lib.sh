# Functions of scripts/serve.sh, sourced by it and by tests/unit/test_serve_script.py (which runs them with
# stand-in children): run the processes of one machine and keep them together.

CHILDREN=()
CHILD_NAMES=()

# Export each NAME=VALUE line of file $1 whose variable is unset or empty: what the user set stays.
fill_unset_from() {
  local name value
  while IFS='=' read -r name value; do
    case "$name" in
      ''|'#'*) continue ;;
    esac
    if [ -z "${!name:-}" ]; then
      export "$name=$value"
    fi
  done < "$1"
}

# Start a command in the background as child $1 (a name for the messages). From the first one on, SIGINT or
# SIGTERM stops every child (background children of a script ignore Ctrl-C themselves) and ends with status 0.
start_child() {
  local name=$1
  shift
  trap 'stop_children; exit 0' INT TERM
  "$@" &
  CHILDREN+=("$!")
  CHILD_NAMES+=("$name")
}

stop_children() {
  kill -TERM "${CHILDREN[@]}" 2>/dev/null || true
  wait "${CHILDREN[@]}" 2>/dev/null || true
}

# Wait until any child ends, then stop the others and return its status: an api serving without its worker
# takes SOS requests whose pushes and escalations nobody sends. `|| status=$?` matters under `set -e`: a bare `wait -n` that returns non-zero ends the script on the spot and
# leaves the survivors running.
supervise() {
  local status=0 ended="" i
  wait -n -p ended "${CHILDREN[@]}" || status=$?
  trap - INT TERM
  for i in "${!CHILDREN[@]}"; do
    if [ "${CHILDREN[$i]}" = "$ended" ]; then
      echo "${CHILD_NAMES[$i]} (pid $ended) exited with status $status; stopping the others" >&2
    fi
  done
  stop_children
  return "$status"
}
