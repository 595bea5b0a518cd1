#!/usr/bin/env bash
# Mutation testing of graphsparse with cosmic-ray; prints the kill rate.
#
#   bash tools/mutation.sh                       # every target in tools/mutation.toml
#   bash tools/mutation.sh graphsparse/graph/weighted.py learner   # chosen targets
#   SAMPLE=40 SEED=1 bash tools/mutation.sh      # a uniform sample of 40 mutants per target
#   bash tools/mutation.sh --recheck OLD_OUT     # re-test only the survivors of an earlier
#                                                # run (its MUTATION_OUT) with today's tests
#     (the mutants are found again by operator and occurrence in a fresh copy:
#     recheck before the source changes, or the same occurrence may be another
#     spot; each result's diff, in its session, shows what was mutated)
#
# Targets are module paths, or any unique substring of one, listed in
# tools/mutation.toml's [targets] with the tests that cover them. The source
# tree is never mutated: the repository (without .venv/.git/caches) is copied
# into $MUTATION_OUT/tree and cosmic-ray mutates that copy in place, so other
# people editing or testing the working tree are not disturbed. Each target's
# session database ($MUTATION_OUT/<name>.sqlite) keeps every mutant's diff and
# test output; `cr-report --show-diff --surviving-only FILE` lists survivors.
#
# Environment: SAMPLE (mutants per target, 0 = all; default 0), SEED (default 0),
# MUTATION_OUT (default: a new temporary folder), PYTHON (default .venv/bin/python),
# GRAPHSPARSE_DATA (passed to the tests). Needs `pip install cosmic-ray` (8.7).
set -euo pipefail

# All in one function: bash reads it whole before running, so editing this
# file during a run does not derail the run.
main() {

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-$repo/.venv/bin/python}"
bindir="$(dirname "$python")"
out="${MUTATION_OUT:-$(mktemp -d /tmp/graphsparse-mutation.XXXXXX)}"
sample="${SAMPLE:-0}"
seed="${SEED:-0}"
export GRAPHSPARSE_DATA="${GRAPHSPARSE_DATA:-}"
recheck=""
if [ "${1:-}" = "--recheck" ]; then
    recheck="$(cd "${2:?--recheck needs the MUTATION_OUT folder of an earlier run}" && pwd)"
    shift 2
    if [ $# -eq 0 ]; then      # default: the targets that run had
        for db in "$recheck"/*.sqlite; do
            name="$(basename "$db" .sqlite)"
            set -- "$@" "${name//.//}.py"
        done
    fi
fi

if ! "$python" -c "import cosmic_ray" 2>/dev/null; then
    echo "mutation.sh: cosmic-ray is not installed; run: $python -m pip install cosmic-ray" >&2
    exit 2
fi

mkdir -p "$out/tree"
tar -C "$repo" --exclude=./.venv --exclude=./.git --exclude=./.mypy_cache \
    --exclude=./.ruff_cache --exclude=./.hypothesis --exclude='__pycache__' \
    --exclude=./tools/mutation-out -cf - . | tar -C "$out/tree" -xf -
echo "mutation.sh: mutating a copy of the tree in $out/tree"

# One cosmic-ray config per target, from tools/mutation.toml.
targets="$("$python" - "$repo/tools/mutation.toml" "$out" "$python" "$@" <<'PY'
import json, os, shlex, sys, tomllib
cfg_path, out, python, *wanted = sys.argv[1:]
cfg = tomllib.load(open(cfg_path, "rb"))
targets = cfg["targets"]
chosen = []
for w in wanted or list(targets):
    hits = [t for t in targets if w == t or w in t]
    if len(hits) != 1:
        sys.exit(f"mutation.sh: target {w!r} matches {hits or 'nothing'} in [targets] of {cfg_path}")
    chosen.append(hits[0])
for module in chosen:
    name = os.path.splitext(module)[0].replace("/", ".")
    tests = [t for t in targets[module] if os.path.exists(os.path.join(out, "tree", t))]
    cmd = [python, "-m", "pytest", "-x", "-q", "-p", "no:xdist", "-p", "no:cacheprovider",
           "-p", "no:randomly", "--no-header", "-o", "addopts=--import-mode=importlib", *tests]
    cr = dict(cfg["cosmic-ray"], **{"module-path": module, "test-command": shlex.join(cmd)})
    with open(os.path.join(out, name + ".toml"), "w") as f:
        f.write("[cosmic-ray]\n")
        for k, v in cr.items():
            if not isinstance(v, dict):
                f.write(f"{k} = {json.dumps(v)}\n")
        for k, v in cr.items():
            if isinstance(v, dict):
                f.write(f"\n[cosmic-ray.{k}]\n")
                f.writelines(f"{kk} = {json.dumps(vv)}\n" for kk, vv in v.items())
    print(name)
PY
)"

start=$SECONDS
cd "$out/tree"
for name in $targets; do
    db="$out/$name.sqlite"
    rm -f "$db"
    if [ -n "$recheck" ]; then
        # the earlier session, with its survivors pending again
        cp "$recheck/$name.sqlite" "$db"
        "$python" -c "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); \
print(sys.argv[1] + ':', c.execute(\"DELETE FROM work_results WHERE test_outcome = 'SURVIVED'\").rowcount, \
'survivors to re-test'); c.commit()" "$db"
        "$bindir/cosmic-ray" exec "$out/$name.toml" "$db"
        continue
    fi
    "$bindir/cosmic-ray" init "$out/$name.toml" "$db"
    # Uniform sample: every mutant not drawn is marked skipped before exec.
    "$python" - "$db" "$sample" "$seed" <<'PY'
import random, sys
from cosmic_ray.work_db import WorkDB, use_db
from cosmic_ray.work_item import WorkResult, WorkerOutcome
db, n, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
with use_db(db, WorkDB.Mode.open) as wdb:
    ids = sorted(w.job_id for w in wdb.pending_work_items)
    if 0 < n < len(ids):
        keep = set(random.Random(seed).sample(ids, n))
        for j in ids:
            if j not in keep:
                wdb.set_result(j, WorkResult(worker_outcome=WorkerOutcome.SKIPPED))
    print(f"{db}: {min(n, len(ids)) if n > 0 else len(ids)} of {len(ids)} mutants to run")
PY
    echo "mutation.sh: $name: baseline (unmutated) test run"
    "$bindir/cosmic-ray" baseline "$out/$name.toml" >/dev/null
    "$bindir/cosmic-ray" exec "$out/$name.toml" "$db"
done

# Per-target and total counts; kill rate over the mutants run, with its
# binomial standard error when the mutants are a sample.
"$python" - "$out" "$((SECONDS - start))" $targets <<'PY'
import math, sys
from cosmic_ray.work_db import WorkDB, use_db
from cosmic_ray.work_item import TestOutcome, WorkerOutcome
out, wall, names = sys.argv[1], sys.argv[2], sys.argv[3:]
tot = dict(killed=0, survived=0, timeout=0, other=0, run=0, all=0)
print(f"\n{'module':36s} {'killed':>6s} {'surv':>5s} {'tmout':>5s} {'other':>5s} {'run':>5s} {'of':>5s}  kill rate")
survivors = []
for name in names:
    c = dict(killed=0, survived=0, timeout=0, other=0, run=0, all=0)
    with use_db(f"{out}/{name}.sqlite", WorkDB.Mode.open) as wdb:
        items = {w.job_id: w for w in wdb.work_items}
        c["all"] = len(items)
        for job_id, r in wdb.results:
            if r.worker_outcome == WorkerOutcome.SKIPPED:
                continue
            c["run"] += 1
            if r.worker_outcome != WorkerOutcome.NORMAL or r.test_outcome == TestOutcome.INCOMPETENT:
                c["other"] += 1
            elif r.test_outcome == TestOutcome.SURVIVED:
                c["survived"] += 1
                m = items[job_id].mutations[0]
                survivors.append(f"{m.module_path}:{m.start_pos[0]} {m.operator_name} #{m.occurrence}  [{job_id}]")
            elif r.output == "timeout":
                c["timeout"] += 1
            else:
                c["killed"] += 1
    k = c["killed"] + c["timeout"]
    n = k + c["survived"]
    rate = f"{100 * k / n:5.1f}%" if n else "  n/a"
    if n and c["run"] < c["all"]:
        rate += f" +- {100 * math.sqrt(k / n * (1 - k / n) / n):.1f} (sample)"
    print(f"{name:36s} {c['killed']:6d} {c['survived']:5d} {c['timeout']:5d} {c['other']:5d} {c['run']:5d} {c['all']:5d}  {rate}")
    for key in tot:
        tot[key] += c[key]
k = tot["killed"] + tot["timeout"]
n = k + tot["survived"]
if n:
    p = k / n
    print(f"{'TOTAL':36s} {tot['killed']:6d} {tot['survived']:5d} {tot['timeout']:5d} {tot['other']:5d} "
          f"{tot['run']:5d} {tot['all']:5d}  {100 * p:5.1f}% +- {100 * math.sqrt(p * (1 - p) / n):.1f}")
print(f"kill rate: {k}/{n} = {100 * p:.1f}% of the mutants run (timeouts count as killed); wall {wall} s" if n else "no mutants run")
if survivors:
    print("\nsurviving mutants (cr-report --show-diff --surviving-only <sqlite> for diffs):")
    print("\n".join("  " + s for s in survivors))
print(f"sessions: {out}")
PY
}

main "$@"
