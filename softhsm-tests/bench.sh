#!/usr/bin/env bash
# keyrite's performance bench (issue 15; method and figures in docs/performance.md). Prints every
# figure beside its target:
#   B1   `keyrite rehearse --auto` of the baseline's HSM work vs softhsm-tests/baseline.sh   ≤ 1.0×
#   B1b  a P-256 root at high, 2-of-3 quorum, three carded signers vs the same baseline      ≤ 3.0×
#   B2   keyrite's time outside PKCS#11 calls in B1b (wall − summed HSM time)                 ≤ 30 ms
#   B3   `keyrite verify` of generated ceremonies of 10k, 100k and 1M log entries            ≥ 300k entries/s, RSS ≤ 64 MB
#   B4   peak RSS of B1b (≤ 30 MB) and of a 10,000-step rehearsal (≤ 64 MB)
#   and the criterion benches: a TUI frame ≤ 1 ms, a 200-step report.pdf ≤ 100 ms, the quorum.
# Pairs run alternately (A, B, A, B, …); ratios are per pair, reported as median [min, max].
#
# Usage: softhsm-tests/bench.sh [--quick] [--runs N] [--only LIST]
#   --quick   one run each, small sizes, a short criterion pass: proves every bench works and asserts
#             no time (CI runs this after the tests).
#   --only    a comma-separated subset of b1, b1b (with B2 and B1b's RSS), b4, b3, criterion: e.g.
#             `--only b1b --runs 21` to compare two builds' B2 without the rest.
# CARGO=kcargo selects the cargo wrapper (default: cargo). KEEP=1 keeps the work folder.
# KEYRITE_BIN=PATH benches that keyrite binary instead of building one (e.g. a build from before a
# change; B2 needs a build that knows KEYRITE_HSM_TIMES). NO_CRITERION=1 skips the criterion benches.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

quick=0
runs=9
only=""
while [ $# -gt 0 ]; do
  case $1 in
    --quick) quick=1 ;;
    --runs) runs=${2:?--runs needs a number}; shift ;;
    --only) only=${2:?--only needs a list, e.g. b1b,b3}; shift ;;
    *) echo "bench: unknown argument $1 (use --quick, --runs N or --only LIST)" >&2; exit 2 ;;
  esac
  shift
done
for part in ${only//,/ }; do
  case $part in
    b1 | b1b | b4 | b3 | criterion) ;;
    *) echo "bench: --only knows b1, b1b, b4, b3 and criterion, not \"$part\"" >&2; exit 2 ;;
  esac
done
# wants PART: is PART to run (all of them without --only)?
wants() { [ -z "$only" ] || [[ ",$only," == *",$1,"* ]]; }
if [ "$quick" = 1 ]; then
  runs=1
  sizes=(10000)
  steps_b4=1000
else
  sizes=(10000 100000 1000000)
  steps_b4=10000
fi
# B3_SIZES="10000 100000" limits B3's log sizes (e.g. for an old build that needs gigabytes at 1M).
[ -n "${B3_SIZES:-}" ] && read -r -a sizes <<<"$B3_SIZES"
for need in /usr/bin/time softhsm2-util pkcs11-tool openssl python3; do
  command -v "$need" >/dev/null || { echo "bench: $need is missing; run softhsm-tests/setup.sh" >&2; exit 1; }
done

cargo=${CARGO:-cargo}
if [ -n "${KEYRITE_BIN:-}" ]; then
  bin=$KEYRITE_BIN # another build to compare, e.g. one made before a change
else
  $cargo build --release --locked --quiet --bin keyrite
  bin=$root/target/release/keyrite
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/keyrite-bench.XXXXXX")
# Generated B3/B4 bundles are large and their making is not measured: on tmpfs when there is one.
if [ -d /dev/shm ] && [ -w /dev/shm ]; then big=$(mktemp -d /dev/shm/keyrite-bench.XXXXXX); else big=$work/big; mkdir -p "$big"; fi
cleanup() { [ "${KEEP:-0}" = 1 ] || rm -rf "$work" "$big"; }
trap cleanup EXIT
run_id=0

# timed NAME CMD…: run CMD, fail loudly on error, append "wall_ms cpu_ms maxrss_kb" to $work/NAME.
timed() {
  local name=$1; shift
  local t0 t1
  t0=$(date +%s%N)
  if ! /usr/bin/time -f '%U %S %M' -o "$work/time.out" "$@" >"$work/cmd.out" 2>&1; then
    echo "bench: $name failed: $*" >&2
    cat "$work/cmd.out" >&2
    exit 1
  fi
  t1=$(date +%s%N)
  read -r user sys rss <"$work/time.out"
  awk -v w="$(( (t1 - t0) / 1000 ))" -v u="$user" -v s="$sys" -v m="$rss" \
    'BEGIN { printf "%.1f %.0f %d\n", w / 1000, (u + s) * 1000, m }' >>"$work/$name"
}

# stats FILE COLUMN: "median [min, max]" of a column (1-based).
stats() {
  cut -d' ' -f"$2" "$1" | sort -g | awk '{ v[NR] = $1 } END {
    m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
    printf "%.2f [%.2f, %.2f]", m, v[1], v[NR] }'
}
median() { stats "$1" "$2" | cut -d' ' -f1; }

# ratio A B COLUMN: per-pair ratio of line i of B to line i of A.
ratios() { paste -d' ' "$1" "$2" | awk -v c="$3" -v n="$(head -1 "$1" | wc -w)" '{ print $(n + c) / $c }'; }

verdict() { # verdict VALUE OP TARGET → "met" / "MISSED"
  awk -v v="$1" -v t="$3" -v op="$2" 'BEGIN { ok = (op == "<=") ? (v <= t) : (v >= t); print ok ? "met" : "MISSED" }'
}

line() { printf '%-58s %-34s target %s\n' "$1" "$2" "$3"; }

baseline() { run_id=$((run_id + 1)); timed "$1" bash softhsm-tests/baseline.sh "$work/base-$run_id"; }
rehearse() { # rehearse NAME SCRIPT [env var assignment]
  local name=$1 script=$2
  run_id=$((run_id + 1))
  # The variable rides on the call (bash exports it to what `timed` runs): an `env` process in
  # between would add its exec to keyrite's wall time, and so to B2.
  KEYRITE_HSM_TIMES="$work/hsm-$run_id" timed "$name" "$bin" rehearse "$script" --auto \
    --out "$work/out-$run_id" --env "$work/env-$run_id"
  # B2: this run's wall time minus every PKCS#11 call its processes timed.
  local wall hsm
  wall=$(tail -1 "$work/$name" | cut -d' ' -f1)
  hsm=$({ cat "$work/hsm-$run_id" 2>/dev/null || true; } | awk -F'[= ]' '{ s += $2 } END { printf "%.1f", s / 1e6 }')
  awk -v w="$wall" -v h="$hsm" 'BEGIN { printf "%.1f %.1f\n", w - h, h }' >>"$work/$name.outside"
  "$bin" verify "$work/out-$run_id" >"$work/verify.out" 2>&1 ||
    { echo "bench: the $name bundle does not verify" >&2; cat "$work/verify.out" >&2; exit 1; }
}

echo "keyrite bench: $runs run(s) per figure on $(nproc) CPU(s), $(uname -sr), keyrite $(git rev-parse --short HEAD 2>/dev/null || echo '?')"

# B1 and B1b: A (baseline) and B (keyrite) alternately. One warm-up pair first, not counted.
if wants b1 || wants b1b; then
  baseline warm; rehearse warm softhsm-tests/bench/same-work.toml
fi
echo
echo "figure                                                     median [min, max]                  target"
if wants b1; then
  for _ in $(seq "$runs"); do
    baseline b1.base; rehearse b1.keyrite softhsm-tests/bench/same-work.toml
  done
  ratios "$work/b1.base" "$work/b1.keyrite" 1 >"$work/b1.ratio"
  ratios "$work/b1.base" "$work/b1.keyrite" 2 >"$work/b1.cpuratio"
  line "baseline.sh wall ms (B1 pairs)" "$(stats "$work/b1.base" 1)" "-"
  line "B1 keyrite rehearse, same work: wall ms" "$(stats "$work/b1.keyrite" 1)" "-"
  r=$(median "$work/b1.ratio" 1)
  line "B1 same work: keyrite / baseline wall" "$(stats "$work/b1.ratio" 1)" "<= 1.0x  $(verdict "$r" '<=' 1.0)"
  line "B1 same work: keyrite / baseline CPU" "$(stats "$work/b1.cpuratio" 1)" "-"
fi
if wants b1b; then
  for _ in $(seq "$runs"); do
    baseline b1b.base; rehearse b1b.keyrite softhsm-tests/bench/full-work.toml
  done
  ratios "$work/b1b.base" "$work/b1b.keyrite" 1 >"$work/b1b.ratio"
  line "baseline.sh wall ms (B1b pairs)" "$(stats "$work/b1b.base" 1)" "-"
  line "B1b keyrite rehearse, full work: wall ms" "$(stats "$work/b1b.keyrite" 1)" "-"
  r=$(median "$work/b1b.ratio" 1)
  line "B1b full work: keyrite / baseline wall" "$(stats "$work/b1b.ratio" 1)" "<= 3.0x  $(verdict "$r" '<=' 3.0)"
  line "B1b PKCS#11 time ms" "$(stats "$work/b1b.keyrite.outside" 2)" "-"
  r=$(median "$work/b1b.keyrite.outside" 1)
  line "B2 B1b outside PKCS#11: wall - HSM ms" "$(stats "$work/b1b.keyrite.outside" 1)" "<= 30 ms  $(verdict "$r" '<=' 30)"
  r=$(median "$work/b1b.keyrite" 3)
  line "B4 B1b peak RSS KB" "$(stats "$work/b1b.keyrite" 3)" "<= 30720 KB  $(verdict "$r" '<=' 30720)"
fi

# Long ceremonies for B3 and B4: medium, no HSM, manual steps each confirmed by K operators, so a log
# has 2 + steps × (K + 3) entries (started, K confirmations, authorised, completed per step). A script
# is at most 1 MiB, so a million entries need many confirmations per step, not a million steps.
long_script() { # long_script STEPS K
  python3 - "$1" "$2" <<'PY'
import sys
steps, k = int(sys.argv[1]), int(sys.argv[2])
print(f'''format = 1
[ceremony]
id = "BENCH-LONG-{steps}x{k}"
name = "Bench: {steps} manual steps, {k} confirmations each"
type = "bench"
place = "Bench"
security_level = "medium"
[[participants]]
name = "Mo"
role = "master-of-ceremony"''')
for i in range(max(k, 2)):
    print(f'[[participants]]\nname = "Op {i}"\nrole = "operator"')
print('[hsm]\nmodule = "/usr/lib/softhsm/libsofthsm2.so"\ntoken = { label = "bench-long" }')
# Terse, because a script is at most 1 MiB and B4 needs 10,000 steps.
more = f'min_confirmations={k}\n' if k > 1 else ''
for i in range(steps):
    print(f'[[steps]]\nid="s{i}"\ntitle="S"\ninstructions="x"\naction="manual"\nconfirm_by=["operator"]\n{more}', end='')
PY
}

# B4: a 10,000-step rehearsal (1,000 in --quick), one confirmation per step, bundle on disk.
if wants b4; then
  long_script "$steps_b4" 1 >"$work/long-$steps_b4.toml"
  timed b4.long "$bin" rehearse "$work/long-$steps_b4.toml" --auto --out "$work/b4-out" --env "$work/b4-env"
  r=$(median "$work/b4.long" 3)
  line "B4 $steps_b4-step rehearsal peak RSS KB (wall ms $(median "$work/b4.long" 1))" "$(stats "$work/b4.long" 3)" "<= 65536 KB  $(verdict "$r" '<=' 65536)"
  rm -rf "$work/b4-out" "$work/b4-env"
fi

# B3: verify generated ceremonies (200 confirmations per step); each bundle is made once by a rehearsal.
runs_b3=$(( runs < 3 ? runs : 3 ))
wants b3 || sizes=()
for entries in "${sizes[@]}"; do
  long_script $(( (entries - 2) / 203 )) 200 >"$big/v-$entries.toml"
  "$bin" rehearse "$big/v-$entries.toml" --auto --out "$big/v-$entries" --env "$big/v-env-$entries" >/dev/null
  n=$(wc -l <"$big/v-$entries/audit.jsonl")
  for _ in $(seq "$runs_b3"); do timed "b3.$entries" "$bin" verify "$big/v-$entries"; done
  awk -v n="$n" '{ printf "%.0f %d\n", n / ($1 / 1000), $3 }' "$work/b3.$entries" >"$work/b3.$entries.rate"
  r=$(median "$work/b3.$entries.rate" 1)
  line "B3 verify $n entries: entries/s ($runs_b3 runs)" "$(stats "$work/b3.$entries.rate" 1)" ">= 300000  $(verdict "$r" '>=' 300000)"
  r=$(median "$work/b3.$entries" 3)
  line "B3 verify $n entries: peak RSS KB" "$(stats "$work/b3.$entries" 3)" "<= 65536 KB  $(verdict "$r" '<=' 65536)"
  rm -rf "$big/v-$entries" "$big/v-env-$entries"
done

# The criterion benches (their own statistics; estimate with its confidence interval).
if [ "$quick" = 1 ]; then crit=(--warm-up-time 0.2 --measurement-time 0.5 --sample-size 10); else crit=(); fi
for b in tui report_pdf quorum; do
  { [ "${NO_CRITERION:-0}" = 1 ] || ! wants criterion; } && break
  if ! $cargo bench --locked --quiet --bench "$b" -- "${crit[@]}" >"$work/crit-$b.out" 2>"$work/crit-$b.err"; then
    echo "bench: criterion bench $b failed" >&2
    cat "$work/crit-$b.err" >&2
    exit 1
  fi
  # criterion prints "NAME  time: [low estimate high]", or NAME alone on the line before.
  awk '/time:/ { name = $0; sub(/ *time:.*/, "", name); if (name ~ /^ *$/) name = prev
                 iv = $0; sub(/.*time: *\[/, "", iv); sub(/\].*/, "", iv)
                 gsub(/^ +| +$/, "", name); print name "|" iv }
       NF { prev = $0 }' "$work/crit-$b.out" |
    while IFS='|' read -r name est; do
      case $name in
        *tui*) target="<= 1 ms" ;;
        *report.pdf*) target="<= 100 ms" ;;
        *) target="-" ;;
      esac
      line "criterion: $name" "[$est]" "$target"
    done
done

echo
echo "bench: done ($([ "$quick" = 1 ] && echo quick || echo "$runs runs"); ${only:+only $only, }all benches asked for ran)"
