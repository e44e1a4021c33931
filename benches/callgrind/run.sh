#!/usr/bin/env bash
# Instruction-count benchmark: user-space instructions (callgrind `Ir`) per request for Tollgate
# and for nginx doing the same key check, on one keep-alive connection. Counts, unlike the
# wall-clock figures of benches/load/run.sh, do not depend on what else the (shared) machine is
# doing: nginx's repeat to ~0.5 %, Tollgate's to ~±2 % (time-dependent one-off work at start,
# see below). Writes benches/callgrind/results.md.
#
#   bash benches/callgrind/run.sh            # N1=2000 N2=10000 KEYS=20000 (as root: installs
#                                            # nginx-light and valgrind where missing)
#
# ~21 minutes with the defaults, 17 of them nginx starting: building its `map` hash of 20 000
# keys with map_hash_max_size 4194304 (as benches/load/run.sh) takes ~17 G instructions, ~4 min
# per start under valgrind. TARGETS=tollgate alone takes ~2 minutes.
#
# Method: each proxy runs under `valgrind --tool=callgrind --separate-threads=no` (all threads
# summed) twice, once serving N1 requests and once N2, all sequential on ONE keep-alive HTTP/1.1
# connection from examples/ir_client.rs (not under valgrind; it has no reconnect, so N answers
# are N requests on one connection). The proxy is then stopped gracefully (Tollgate SIGTERM,
# nginx SIGQUIT) so callgrind writes its totals, and
#     Ir/request = (Ir(N2) - Ir(N1)) / (N2 - N1)
# so start-up (loading the keys), the first request's lazy set-up and shutdown cancel. Readiness
# is awaited with `ss` (the proxy port listening), which costs the proxy nothing. Only user space
# is counted: the kernel's TCP path (about half the CPU of a proxied request natively, see
# benches/load/results.md) is not in these figures.
#
# Targets (all on 127.0.0.1):
#   tollgate `tollgate serve` with every check on, the config of benches/load/run.sh (key lookup,
#            IP allow-list, permission, rate and concurrency limits, daily/total cost limits,
#            partner balance, plan byte quotas, a cost metered on every request, usage flushed
#            every FLUSH_INTERVAL), KEYS keys seeded with examples/seed_keys.rs
#   nginx    nginx 1 worker, `daemon off; master_process off;` (callgrind follows the one
#            process), the `map` of the KEYS keys' Authorization values and an upstream
#            keep-alive pool, as in benches/load/run.sh
# The upstream is a plain nginx (a 65-byte body), not under valgrind. Its access log records the
# connection of every request, so each run also reports how many upstream connections the proxy
# used.
# Scenarios: small (allowed key, small body, 200), reject (unknown key, 401, never reaches the
# upstream), and for Tollgate small-noflush (flush_interval 1h: the usage flush only at shutdown,
# so the periodic flush's share of `small` shows; under valgrind a request takes ~1 ms, so a
# once-a-second flush of the one active key is spread over far fewer requests than natively).
#
# The HMAC-SHA-256 key digest: valgrind hides the CPU's SHA extensions, so the sha2 crate runs
# its portable code under callgrind (~7 k instructions per request that natively run on
# SHA-NI, a few hundred). The results report that share separately.
#
# Noise: Tollgate's totals vary by a few million instructions from run to run, from work that
# depends on wall time rather than on requests: quanta's TSC calibration (once, at the first
# allowed request; its difference is reported and taken out of the headline figures), glibc malloc consolidation in SQLite's allocations at
# start, the once-a-second usage flush and WAL checkpoints. With N2 - N1 = 8000 that is ~±1k
# Ir/request; raise N2 for less. nginx is one thread with no such work.
#
# Cores: proxy on core 1 (`taskset -c 1`), client and upstream on core 0.
#
# Environment knobs: N1 (2000), N2 (10000), KEYS (20000), TARGETS ("tollgate nginx"),
# HTTP1 (tollgate: Tollgate's own HTTP/1.1 server; hyper: `listen.http1 = "hyper"`),
# FLUSH_INTERVAL (1s, as the load benchmark), REJECT (1; 0 = skip the reject runs), NOFLUSH (1;
# 0 = skip small-noflush), TOP (15 functions listed), WORK (/dev/shm/tollgate-callgrind, removed
# at the end unless KEEP_WORK=1; the callgrind.out files are there), RESULTS
# (benches/callgrind/results.md), SKIP_BUILD=1.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
N1="${N1:-2000}"
N2="${N2:-10000}"
KEYS="${KEYS:-20000}"
FLUSH_INTERVAL="${FLUSH_INTERVAL:-1s}"
REJECT="${REJECT:-1}"
TARGETS="${TARGETS:-tollgate nginx}"
NOFLUSH="${NOFLUSH:-1}"
HTTP1="${HTTP1:-tollgate}"
TOP="${TOP:-15}"
WORK="${WORK:-/dev/shm/tollgate-callgrind}"
RESULTS="${RESULTS:-$ROOT/benches/callgrind/results.md}"
PROXY_CPU=1
LOAD_CPU=0
P_UP=18100 P_NGINX=18101 P_TG=18103 P_TG_API=18104
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
TOLLGATE="$CARGO_TARGET_DIR/release/tollgate"
SEED="$CARGO_TARGET_DIR/release/examples/seed_keys"
CLIENT="$CARGO_TARGET_DIR/release/examples/ir_client"

log() { printf '[callgrind %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

if ((N2 <= N1)); then
    echo "N2 ($N2) must be larger than N1 ($N1)" >&2
    exit 1
fi

# --- install what is missing -------------------------------------------------------------------
missing=()
command -v nginx >/dev/null 2>&1 || missing+=(nginx-light)
command -v valgrind >/dev/null 2>&1 || missing+=(valgrind)
command -v callgrind_annotate >/dev/null 2>&1 || missing+=(valgrind)
command -v taskset >/dev/null 2>&1 || missing+=(util-linux)
command -v ss >/dev/null 2>&1 || missing+=(iproute2)
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v python3 >/dev/null 2>&1 || missing+=(python3)
if ((${#missing[@]})); then
    log "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if [[ "$(nproc)" -lt 2 ]]; then
    echo "needs at least 2 cores (one for the proxy, one for the client and the upstream)" >&2
    exit 1
fi

# --- build -------------------------------------------------------------------------------------
if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
    log "cargo build --release (target dir $CARGO_TARGET_DIR)"
    (cd "$ROOT" && cargo build --release --bin tollgate --example seed_keys --example ir_client)
fi

# The binary's source: the commit, and whether src/ differed from it when it was built.
COMMIT="$(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo '?')"
DIRTY="$(cd "$ROOT" && git status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null | wc -l)"

# --- processes ---------------------------------------------------------------------------------
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT

start() { # "$@" in the background; its pid in $STARTED
    "$@" &
    STARTED=$!
    PIDS+=("$STARTED")
}

wait_listen() { # port: until something listens on 127.0.0.1:port (no connection is made)
    for _ in $(seq 1 1200); do
        kill -0 "$STARTED" 2>/dev/null || { echo "process $STARTED exited" >&2; return 1; }
        if [[ -n "$(ss -Hltn "sport = :$1")" ]]; then return 0; fi
        sleep 0.25
    done
    echo "timed out waiting for port $1" >&2
    return 1
}

# --- working directory, configs ----------------------------------------------------------------
rm -rf "$WORK"
mkdir -p "$WORK/nginx-tmp" "$WORK/tg" "$WORK/cg" "$WORK/bin"
chmod 755 "$WORK"
# A copy of the binaries: target/ is shared, and every run must measure the same build.
cp "$TOLLGATE" "$SEED" "$CLIENT" "$WORK/bin/"
TOLLGATE="$WORK/bin/tollgate" SEED="$WORK/bin/seed_keys" CLIENT="$WORK/bin/ir_client"
SMALL_BODY='{"ok":true,"note":"small fixed body from the benchmark upstream"}'

export TOLLGATE_SECRET
TOLLGATE_SECRET="$(head -c 48 /dev/urandom | base64 | tr -d '\n')"

tollgate_config() { # file flush_interval [lease_ttl] (the config of benches/load/run.sh)
    local lease=""
    # lease_ttl must be at least three flush intervals (leases are unused with SQLite).
    [[ -n "${3:-}" ]] && lease="lease_ttl = \"$3\""
    cat >"$1" <<EOF
default_plan = 1

[listen]
proxy = "127.0.0.1:$P_TG"
api = "127.0.0.1:$P_TG_API"
http1 = "$HTTP1"

[store]
url = "sqlite://$WORK/tg/store.db"
flush_interval = "$2"
$lease

[upstream]
url = "http://127.0.0.1:$P_UP"
profile = "generic"
pool_max_idle_per_host = 256

# Every request needs "read" and costs 1 micro-USD: cost limits, partner balance and the cost
# meter are all exercised.
[[routes]]
path = "/*"
permission = "read"
cost_usd = "0.000001"

[limits]
max_connections = 10000

[log]
level = "warn"

[[plans]]
id = 1
name = "bench"
price_usd = "0.00"
ingress_limit = "1000TB"
egress_limit = "1000TB"
EOF
}
tollgate_config "$WORK/tg/tollgate.toml" "$FLUSH_INTERVAL"
tollgate_config "$WORK/tg/tollgate-noflush.toml" 1h 3h

cat >"$WORK/upstream.conf" <<EOF
worker_processes 1;
daemon off;
pid $WORK/upstream.pid;
error_log $WORK/upstream-error.log warn;
events { worker_connections 1024; }
http {
    # One line per request: the connection number (how many upstream connections a proxy used).
    log_format conn '\$connection \$connection_requests';
    access_log $WORK/upstream-access.log conn;
    client_body_temp_path $WORK/nginx-tmp/up-body;
    proxy_temp_path $WORK/nginx-tmp/up-proxy;
    fastcgi_temp_path $WORK/nginx-tmp/up-fcgi;
    uwsgi_temp_path $WORK/nginx-tmp/up-uwsgi;
    scgi_temp_path $WORK/nginx-tmp/up-scgi;
    keepalive_requests 10000000;
    keepalive_timeout 300s;
    server {
        listen 127.0.0.1:$P_UP;
        location = /small { default_type application/json; return 200 '$SMALL_BODY'; }
    }
}
EOF

# As benches/load/run.sh, but one process (`master_process off`) so callgrind sees the worker.
cat >"$WORK/nginx-proxy.conf" <<EOF
worker_processes 1;
daemon off;
master_process off;
pid $WORK/nginx-proxy.pid;
error_log $WORK/nginx-proxy-error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $WORK/nginx-tmp/px-body;
    proxy_temp_path $WORK/nginx-tmp/px-proxy;
    fastcgi_temp_path $WORK/nginx-tmp/px-fcgi;
    uwsgi_temp_path $WORK/nginx-tmp/px-uwsgi;
    scgi_temp_path $WORK/nginx-tmp/px-scgi;
    keepalive_requests 10000000;
    keepalive_timeout 300s;
    map_hash_max_size 4194304;
    map_hash_bucket_size 256;
    map \$http_authorization \$key_ok {
        default 0;
        include $WORK/nginx-keys.map;
    }
    upstream up {
        server 127.0.0.1:$P_UP;
        keepalive 256;
        keepalive_requests 10000000;
    }
    server {
        listen 127.0.0.1:$P_NGINX;
        location / {
            if (\$key_ok = 0) {
                return 401 '{"error":{"code":"invalid_key"}}';
            }
            proxy_pass http://up;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Authorization "";
            proxy_buffering off;
            proxy_buffer_size 64k;
            proxy_buffers 4 64k;
            proxy_busy_buffers_size 128k;
        }
    }
}
EOF

# --- seed --------------------------------------------------------------------------------------
log "seeding $KEYS keys"
"$SEED" --config "$WORK/tg/tollgate.toml" --keys "$KEYS" --out "$WORK/keys.txt"
awk '{print "\"Bearer " $0 "\" 1;"}' "$WORK/keys.txt" >"$WORK/nginx-keys.map"
GOOD_KEY="$(shuf -n 1 "$WORK/keys.txt")"
BAD_KEY="cr_$(head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"

start taskset -c "$LOAD_CPU" nginx -c "$WORK/upstream.conf"
UP_PID=$STARTED
wait_listen "$P_UP"
[[ "$(curl -s "http://127.0.0.1:$P_UP/small")" == "$SMALL_BODY" ]] || {
    echo "upstream does not answer" >&2
    exit 1
}

# --- measure -----------------------------------------------------------------------------------
RAW="$WORK/raw.tsv"
printf 'target\tscenario\trequests\tIr\tclient_seconds\tupstream_requests\tupstream_connections\n' >"$RAW"

measure() { # target scenario n → appends a line to $RAW, callgrind.out in $WORK/cg
    local t="$1" s="$2" n="$3" out="$WORK/cg/$1-$2-$3.out" port expect=200 key="$GOOD_KEY" pid
    local sig cmd=()
    case "$t" in
        tollgate)
            port=$P_TG sig=TERM
            local cfg="$WORK/tg/tollgate.toml"
            [[ "$s" == small-noflush ]] && cfg="$WORK/tg/tollgate-noflush.toml"
            cmd=("$TOLLGATE" serve --config "$cfg")
            ;;
        nginx)
            port=$P_NGINX sig=QUIT
            cmd=(nginx -c "$WORK/nginx-proxy.conf")
            ;;
    esac
    if [[ "$s" == reject ]]; then expect=401 key="$BAD_KEY"; fi
    : >"$WORK/upstream-access.log"
    start taskset -c "$PROXY_CPU" valgrind --tool=callgrind --separate-threads=no \
        --dump-instr=no --callgrind-out-file="$out" --log-file="$out.log" "${cmd[@]}"
    pid=$STARTED
    wait_listen "$port"
    local line
    line=$(taskset -c "$LOAD_CPU" "$CLIENT" --addr "127.0.0.1:$port" --path /small \
        --requests "$n" --expect "$expect" --header "Authorization: Bearer $key")
    kill "-$sig" "$pid"
    if [[ "$t" == nginx ]]; then
        # Under valgrind the signal does not interrupt nginx's epoll_wait (its handler only sets
        # a flag; natively the syscall returns EINTR): one connection to the listening port
        # wakes the loop, which then sees the flag and exits. The same cost in both runs.
        sleep 0.5
        for _ in 1 2 3 4 5; do
            (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || true
            sleep 1
            kill -0 "$pid" 2>/dev/null || break
        done
    fi
    wait "$pid" || { echo "$t exited with status $? (see $out.log)" >&2; return 1; }
    local ir secs up_req up_conn
    ir=$(awk '$1 == "totals:" {print $2}' "$out")
    [[ -n "$ir" ]] || { echo "no totals in $out" >&2; return 1; }
    secs=${line##*seconds=}
    up_req=$(wc -l <"$WORK/upstream-access.log")
    up_conn=$(awk '{print $1}' "$WORK/upstream-access.log" | sort -u | wc -l)
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$t" "$s" "$n" "$ir" "$secs" "$up_req" "$up_conn" >>"$RAW"
    log "$t $s N=$n: Ir $ir, client ${secs}s, upstream $up_req requests on $up_conn connections"
}

RUNS=()
has() { [[ " $TARGETS " == *" $1 "* ]]; }
has tollgate && RUNS+=("tollgate small")
has nginx && RUNS+=("nginx small")
if [[ "$REJECT" == 1 ]]; then
    has tollgate && RUNS+=("tollgate reject")
    has nginx && RUNS+=("nginx reject")
fi
[[ "$NOFLUSH" == 1 ]] && has tollgate && RUNS+=("tollgate small-noflush")
for run in "${RUNS[@]}"; do
    for n in "$N1" "$N2"; do
        # shellcheck disable=SC2086 # "target scenario"
        measure $run "$n"
    done
done
kill "$UP_PID" 2>/dev/null || true
wait "$UP_PID" 2>/dev/null || true

# --- per-function difference -------------------------------------------------------------------
# callgrind_annotate (self and inclusive) of the N1 and N2 runs of every target and scenario,
# per function (see load() below), difference ÷ (N2 − N1).
annotate() { # file inclusive(yes|no) → file.self|.incl text
    callgrind_annotate --threshold=100 --auto=no --inclusive="$2" "$1" 2>/dev/null
}
PROFILE="$WORK/profile.md"
ir_of() { awk -F'\t' -v t="$1" -v s="$2" -v n="$3" '$1 == t && $2 == s && $3 == n {print $4}' "$RAW"; }
per_req() { # target scenario → Ir/request or "-", without quanta's one-off calibration (below)
    local a b c
    a=$(ir_of "$1" "$2" "$N1") b=$(ir_of "$1" "$2" "$N2")
    if [[ -z "$a" || -z "$b" ]]; then echo "-"; return; fi
    c=$(awk -F'\t' -v p="$1-$2" '$1 == p {print $2}' "$WORK/an/calib.tsv" 2>/dev/null || true)
    awk -v a="$a" -v b="$b" -v c="${c:-0}" -v d=$((N2 - N1)) 'BEGIN {printf "%.0f", (b - a) / d - c}'
}
mkdir -p "$WORK/an"
for run in "${RUNS[@]}"; do
    read -r t s <<<"$run"
    for i in 1 2; do
        n=$N1
        ((i == 2)) && n=$N2
        annotate "$WORK/cg/$t-$s-$n.out" no >"$WORK/an/$t-$s-$i.self"
        annotate "$WORK/cg/$t-$s-$n.out" yes >"$WORK/an/$t-$s-$i.incl"
    done
done

python3 - "$WORK/an" "$((N2 - N1))" "$TOP" >"$PROFILE" <<'PY'
import re, sys, os
from collections import defaultdict

work, dn, top = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
LINE = re.compile(r"^\s*([\d,]+) \(\s*[\d.]+%\)\s+(.*?)(?: \[(.*)\])?$")

def load(path):
    """function -> Ir, object. callgrind_annotate splits a function into one entry per source
    file its instructions come from (inlined code). Self costs are disjoint across the entries
    and are summed; each entry's inclusive cost is the whole function's, so the largest is
    taken."""
    inclusive = path.endswith(".incl")
    out = defaultdict(int)
    objs = {}
    seen_totals = False
    in_table = False
    for line in open(path, encoding="utf-8", errors="replace"):
        if seen_totals and "file:function" in line:
            in_table = True
            continue
        if in_table and not line.strip():
            break  # the end of the per-function table
        m = LINE.match(line)
        if not m:
            continue
        ir, name, obj = int(m.group(1).replace(",", "")), m.group(2), m.group(3)
        if name == "PROGRAM TOTALS":
            seen_totals = True
            continue
        if not in_table:
            continue
        # "file:function": the file part has no ':'; "???:function" when unknown.
        fn = name.split(":", 1)[1] if re.match(r"^[^:]*:(?!:)", name) else name
        out[fn] = max(out[fn], ir) if inclusive else out[fn] + ir
        if obj:
            objs[fn] = os.path.basename(obj)
    return out, objs

def diff(a, b):
    (x, ox), (y, oy) = load(a), load(b)
    d = {fn: (y.get(fn, 0) - x.get(fn, 0)) / dn for fn in set(x) | set(y)}
    objs = {**ox, **oy}
    return d, objs

def short(fn, width=110):
    fn = fn.replace("|", "\\|")
    return fn if len(fn) <= width else fn[: width - 1] + "…"

def table(d, objs, total, title, n):
    print(f"| # | Ir/request | share | function | object |")
    print("|---:|---:|---:|---|---|")
    for i, (fn, v) in enumerate(sorted(d.items(), key=lambda kv: -kv[1])[:n], 1):
        print(f"| {i} | {v:,.0f} | {100 * v / total:.1f} % | `{short(fn)}` | {objs.get(fn, '?')} |")
    print()

SHA = re.compile(r"sha2::|hmac::|KeyHasher::digest|FixedOutputCore|compress256|Sha256")

def group(fn, obj):
    if obj and obj != "tollgate" and not obj.startswith("tollgate"):
        if obj.startswith("libc.so"):
            if re.search(r"malloc|free|realloc|calloc|tcache|consolidate", fn):
                return "glibc malloc/free (SQLite's allocator)"
            if "pthread_mutex" in fn:
                return "glibc pthread_mutex (SQLite)"
            return "glibc other (memcpy, syscall wrappers, …)"
        return obj
    if fn.startswith("sqlite3") or fn.startswith("pcache") or fn.startswith("vdbe") or fn.startswith("btree"):
        return "SQLite (the usage flush)"
    if fn.startswith("mi_") or fn.startswith("_mi_") or fn.startswith("mi_"):
        return "mimalloc"
    if SHA.search(fn):
        return "sha2/hmac (key digest, portable code)"
    name = re.sub(r"^(?:[<&*]|mut |dyn )+", "", fn)
    crate = name.split("::", 1)[0] if "::" in name else "other (C, no path)"
    crate = re.sub(r"[<> ].*", "", crate)
    return crate

def groups(d, objs):
    g = defaultdict(float)
    for fn, v in d.items():
        g[group(fn, objs.get(fn))] += v
    return g

def section(prefix, label):
    if not os.path.exists(f"{work}/{prefix}-1.self"):
        return
    s, objs = diff(f"{work}/{prefix}-1.self", f"{work}/{prefix}-2.self")
    inc, iobjs = diff(f"{work}/{prefix}-1.incl", f"{work}/{prefix}-2.incl")
    total = sum(s.values())
    sha_self = sum(v for fn, v in s.items() if SHA.search(fn))
    digest_incl = max((v for fn, v in inc.items() if "KeyHasher::digest" in fn), default=0.0)
    print(f"### Tollgate, {label}: where the instructions go\n")
    print(f"Per request, from the difference of the two runs' `callgrind_annotate` (functions summed "
          f"over the source files inlining splits them into): {total:,.0f} Ir/request in all "
          f"(self costs summed). HMAC-SHA-256 key digest: `KeyHasher::digest` inclusive "
          f"{digest_incl:,.0f} Ir/request; sha2/hmac/digest functions' self cost {sha_self:,.0f} "
          f"({100 * sha_self / total:.1f} %). Natively this runs on SHA-NI "
          f"(valgrind hides the SHA extensions), so subtract most of it for a native estimate: "
          f"{total - sha_self:,.0f} Ir/request without it.\n")
    calib = max((v for fn, v in inc.items() if fn == "quanta::Calibration::calibrate"), default=0.0)
    with open(f"{work}/calib.tsv", "a") as out:  # taken out of the headline figures
        out.write(f"{prefix}\t{calib:.0f}\n")
    if calib:
        print(f"Noise: `quanta::Calibration::calibrate` (inclusive) differs by {calib:,.0f} "
              f"Ir/request between the two runs. It runs once per process (at the first allowed "
              f"request, for the rate limiter's clock) for a stretch of wall time, so under "
              f"valgrind its count varies by millions from run to run; it is not per-request "
              f"work ({total - calib:,.0f} Ir/request without it, the figure in the first "
              f"table).\n")
    print(f"By crate / library (self Ir per request):\n")
    print("| crate or library | Ir/request | share |")
    print("|---|---:|---:|")
    for name, v in sorted(groups(s, {**objs, **iobjs}).items(), key=lambda kv: -kv[1]):
        if abs(v) < 0.005 * total:
            continue
        print(f"| {name} | {v:,.0f} | {100 * v / total:.1f} % |")
    print("| (crates under 0.5 % each) | "
          f"{sum(v for v in groups(s, {**objs, **iobjs}).values() if abs(v) < 0.005 * total):,.0f} | |\n")
    print(f"Top {top} functions by self Ir per request:\n")
    table(s, objs, total, "self", top)
    print(f"Top {top} of Tollgate's own functions (`tollgate::`) by inclusive Ir per request "
          f"(inclusive figures count a recursive call twice, so the outer frames can exceed "
          f"100 %):\n")
    own = {fn: v for fn, v in inc.items() if fn.startswith("tollgate::") or fn.startswith("<tollgate::")}
    table(own, iobjs, total, "inclusive", top)

section("tollgate-small", "small (allowed)")
section("tollgate-reject", "reject (unknown key)")
# small-noflush gets no profile section, but its headline is corrected the same way.
if os.path.exists(f"{work}/tollgate-small-noflush-1.incl"):
    inc, _ = diff(f"{work}/tollgate-small-noflush-1.incl", f"{work}/tollgate-small-noflush-2.incl")
    calib = max((v for fn, v in inc.items() if fn == "quanta::Calibration::calibrate"), default=0.0)
    with open(f"{work}/calib.tsv", "a") as out:
        out.write(f"tollgate-small-noflush\t{calib:.0f}\n")

for scenario in ("small", "reject"):
    if not os.path.exists(f"{work}/nginx-{scenario}-1.self"):
        continue
    s, objs = diff(f"{work}/nginx-{scenario}-1.self", f"{work}/nginx-{scenario}-2.self")
    total = sum(s.values())
    label = "small (allowed)" if scenario == "small" else "reject (unknown key)"
    print(f"### nginx, {label}: top {top} functions by self Ir per request\n")
    print(f"{total:,.0f} Ir/request in all (self costs summed). Hex names are nginx's static "
          f"functions (the Debian binary has no symbols for them).\n")
    table(s, objs, total, "self", top)
PY

# --- report ------------------------------------------------------------------------------------
fmt_int() { awk -v v="$1" 'BEGIN {if (v == "-") print "-"; else printf "%\047d", v}'; }
TG_SMALL=$(per_req tollgate small)
NG_SMALL=$(per_req nginx small)
{
    echo "# Instruction-count benchmark results"
    echo
    echo "Written by \`benches/callgrind/run.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC'), Tollgate $COMMIT$( ((DIRTY > 0)) && echo " (built with $DIRTY files under src/ or Cargo.* changed from that commit)")."
    echo
    echo "- Method: each proxy under \`valgrind --tool=callgrind --separate-threads=no\` (all threads summed; $(valgrind --version)), once for N1 = $N1 and once for N2 = $N2 sequential requests on one keep-alive HTTP/1.1 connection (examples/ir_client.rs, not under valgrind), stopped gracefully (Tollgate SIGTERM, nginx SIGQUIT); Ir/request = (Ir(N2) − Ir(N1)) / (N2 − N1). User space only: the kernel's TCP path is not counted."
    echo "- Machine: $(nproc) cores ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)), $(uname -r); proxy on core $PROXY_CPU, client and upstream on core $LOAD_CPU."
    echo "- Peers: $(nginx -v 2>&1 | sed 's/.*: //') (1 worker, \`master_process off\`, the key \`map\` and upstream keep-alive pool of benches/load/run.sh). Upstream: nginx, $(printf '%s' "$SMALL_BODY" | wc -c)-byte body, not under valgrind."
    echo "- Tollgate: the every-check-on config of benches/load/run.sh, $KEYS keys (seeded by examples/seed_keys.rs), usage flushed every $FLUSH_INTERVAL (\`small-noflush\`: every 1h, i.e. only at shutdown)."
    echo "- Under valgrind the CPU's SHA extensions are hidden, so the HMAC-SHA-256 key digest runs sha2's portable code (natively SHA-NI): see the sha2 share below."
    echo
    echo "| target | scenario | Ir/request | vs nginx |"
    echo "|---|---|---:|---:|"
    for run in "${RUNS[@]}"; do
        read -r t s <<<"$run"
        v=$(per_req "$t" "$s")
        base=$NG_SMALL
        [[ "$s" == reject ]] && base=$(per_req nginx reject)
        ratio=$(awk -v a="$v" -v b="$base" 'BEGIN {if (a == "-" || b == "-" || b == 0) print "-"; else printf "%.2f×", a / b}')
        echo "| $t | $s | $(fmt_int "$v") | $ratio |"
    done
    echo
    echo "Every run (Ir = callgrind's \`totals:\`; the client's seconds are under valgrind):"
    echo
    echo "| target | scenario | requests | Ir total | client s | upstream requests | upstream connections |"
    echo "|---|---|---:|---:|---:|---:|---:|"
    awk -F'\t' 'NR > 1 {printf "| %s | %s | %s | %\047d | %s | %s | %s |\n", $1, $2, $3, $4, $5, $6, $7}' "$RAW"
    echo
    cat "$PROFILE"
} >"$RESULTS.new"
mv "$RESULTS.new" "$RESULTS"
log "wrote $RESULTS (Tollgate small $TG_SMALL Ir/request, nginx small $NG_SMALL)"
[[ "${KEEP_WORK:-0}" == 1 ]] || rm -rf "$WORK"
