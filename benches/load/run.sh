#!/usr/bin/env bash
# Load benchmark: Tollgate against nginx and haproxy doing the same key check, on this machine,
# in one run. Writes benches/load/results.md.
#
#   sudo bash benches/load/run.sh            # as root (installs nginx, haproxy, wrk if missing)
#
# Targets (all on 127.0.0.1, traffic never leaves loopback):
#   direct   the upstream itself (nginx: a small fixed body and a 1 MiB file)
#   nginx    nginx reverse proxy, `map` of the N keys' Authorization values, keep-alive pool
#   haproxy  haproxy, a map file of the N keys, `http-request deny unless` the key is in it
#   tollgate `tollgate serve` with every check on: key lookup, IP allow-list (127.0.0.1),
#            permission, rate limit, concurrency limit, daily/total cost limits, partner balance,
#            plan byte quotas, metering (a cost on every request), usage flushed every second
#   tollgate-pc  the same, in the per-core shape (`listen.proxy_cores` = the proxy's cores: one
#            current_thread runtime, SO_REUSEPORT socket and upstream pool per core)
# Scenarios: small (allowed, small body), reject (unknown key, 401), 1m (allowed, 1 MiB body
# streamed). Rounds are interleaved: round r runs every target once per scenario.
#
# Cores: the machine has 2. Each proxy gets core 1 alone (`taskset -c 1`; nginx 1 worker,
# haproxy nbthread 1, Tollgate's runtime sees 1 CPU); wrk (2 threads) and the upstream share
# core 0. "direct" runs with the same placement, so it is bounded by core 0, not by a proxy.
# PROXY_CPUS=0,1 gives every proxy both cores (nginx 2 workers, haproxy nbthread 2, Tollgate 2
# runtime threads or 2 per-core threads), shared with wrk and the upstream (LOAD_CPUS=0,1).
#
# Environment knobs: KEYS (100000), KEYS_BIG (1000000; 0 = skip), DURATION (8 s per run),
# ROUNDS (3), CONNECTIONS (64), THREADS (2), SAMPLE (10000 keys rotated by wrk), RATE (5000:
# the fixed request rate of the added-latency runs, 0 = skip them),
# WORK (/dev/shm/tollgate-load, removed at the end unless KEEP_WORK=1), RESULTS
# (benches/load/results.md), SKIP_BUILD=1.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
KEYS="${KEYS:-100000}"
KEYS_BIG="${KEYS_BIG:-1000000}"
DURATION="${DURATION:-8}"
ROUNDS="${ROUNDS:-3}"
CONNECTIONS="${CONNECTIONS:-64}"
THREADS="${THREADS:-2}"
SAMPLE="${SAMPLE:-10000}"
RATE="${RATE:-5000}"
WORK="${WORK:-/dev/shm/tollgate-load}"
PROXY_CPU="${PROXY_CPUS:-1}"
LOAD_CPU="${LOAD_CPUS:-$([[ "$PROXY_CPU" == *,* ]] && echo "$PROXY_CPU" || echo 0)}"
# How many cores each proxy gets.
NPROXY=$(tr ',' '\n' <<<"$PROXY_CPU" | wc -l)
P_UP=18000 P_NGINX=18001 P_HAPROXY=18002 P_TG=18003 P_TG_API=18004 P_BIG=18005 P_BIG_API=18006
P_PC=18007 P_PC_API=18008
RESULTS="${RESULTS:-$ROOT/benches/load/results.md}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
TOLLGATE="$CARGO_TARGET_DIR/release/tollgate"
SEED="$CARGO_TARGET_DIR/release/examples/seed_keys"
CLK_TCK="$(getconf CLK_TCK)"

log() { printf '[load %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

# --- install what is missing -------------------------------------------------------------------
missing=()
command -v nginx >/dev/null 2>&1 || missing+=(nginx-light)
command -v haproxy >/dev/null 2>&1 || missing+=(haproxy)
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
command -v taskset >/dev/null 2>&1 || missing+=(util-linux)
command -v curl >/dev/null 2>&1 || missing+=(curl)
if ((${#missing[@]})); then
    log "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# Room for every connection of every process (as far as the hard limit allows).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [[ "$(nproc)" -lt 2 ]]; then
    echo "needs at least 2 cores (one for the proxy, one for wrk and the upstream)" >&2
    exit 1
fi

# --- build -------------------------------------------------------------------------------------
if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
    log "cargo build --release (target dir $CARGO_TARGET_DIR)"
    (cd "$ROOT" && cargo build --release --bin tollgate --example seed_keys --example open_loop)
fi

# --- processes ---------------------------------------------------------------------------------
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT

# Starts "$@" in the background, records its pid in $STARTED.
start() {
    "$@" &
    STARTED=$!
    PIDS+=("$STARTED")
}

stop() {
    kill "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

wait_http() { # url [expected status]
    local code
    for _ in $(seq 1 600); do
        kill -0 "$STARTED" 2>/dev/null || { echo "process $STARTED exited" >&2; return 1; }
        code="$(curl -s -o /dev/null -w '%{http_code}' "$1" || true)"
        if [[ "$code" == "${2:-200}" ]]; then return 0; fi
        sleep 0.1
    done
    echo "timed out waiting for $1 (last status $code)" >&2
    return 1
}

# The pid and its children (nginx workers).
# shellcheck disable=SC2046 # one pid per word
family() { echo "$1" $(pgrep -P "$1" || true); }

cpu_ticks() { # pids... → utime+stime of all, in clock ticks
    local total=0 pid stat
    for pid in "$@"; do
        stat="$(cat "/proc/$pid/stat" 2>/dev/null)" || continue
        stat="${stat##*) }"
        # After the comm field: state is field 3, utime 14, stime 15 (1-based on the full line).
        total=$((total + $(awk '{print $12 + $13}' <<<"$stat")))
    done
    echo "$total"
}

status_kib() { # field pids... → sum of a /proc/PID/status field (kB)
    local field="$1" total=0 pid v
    shift
    for pid in "$@"; do
        v="$(awk -v f="$field:" '$1 == f {print $2}' "/proc/$pid/status" 2>/dev/null || true)"
        total=$((total + ${v:-0}))
    done
    echo "$total"
}

# --- working directory, bodies, configs --------------------------------------------------------
rm -rf "$WORK"
mkdir -p "$WORK/www" "$WORK/nginx-tmp" "$WORK/tg" "$WORK/tg-big"
chmod 755 "$WORK" "$WORK/www"
head -c 1048576 /dev/zero | tr '\0' 'x' >"$WORK/www/1m"
chmod 644 "$WORK/www/1m"
SMALL_BODY='{"ok":true,"note":"small fixed body from the benchmark upstream"}'

export TOLLGATE_SECRET
TOLLGATE_SECRET="$(head -c 48 /dev/urandom | base64 | tr -d '\n')"

tollgate_config() { # dir proxy_port api_port [proxy_cores]
    mkdir -p "$1"
    cat >"$1/tollgate.toml" <<EOF
default_plan = 1

[listen]
proxy = "127.0.0.1:$2"
api = "127.0.0.1:$3"
proxy_cores = ${4:-0}

[store]
url = "sqlite://$1/store.db"
flush_interval = "1s"

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
# No access log (nginx and haproxy run without one too).
level = "warn"

# Byte quotas far above what the benchmark moves.
[[plans]]
id = 1
name = "bench"
price_usd = "0.00"
ingress_limit = "1000TB"
egress_limit = "1000TB"
EOF
}

cat >"$WORK/upstream.conf" <<EOF
worker_processes 1;
daemon off;
pid $WORK/upstream.pid;
error_log $WORK/upstream-error.log warn;
events { worker_connections 8192; }
http {
    access_log off;
    client_body_temp_path $WORK/nginx-tmp/up-body;
    proxy_temp_path $WORK/nginx-tmp/up-proxy;
    fastcgi_temp_path $WORK/nginx-tmp/up-fcgi;
    uwsgi_temp_path $WORK/nginx-tmp/up-uwsgi;
    scgi_temp_path $WORK/nginx-tmp/up-scgi;
    keepalive_requests 10000000;
    keepalive_timeout 300s;
    sendfile on;
    tcp_nopush on;
    server {
        listen 127.0.0.1:$P_UP backlog=4096;
        location = /small { default_type application/json; return 200 '$SMALL_BODY'; }
        location = /1m { root $WORK/www; }
    }
}
EOF

cat >"$WORK/nginx-proxy.conf" <<EOF
worker_processes $NPROXY;
daemon off;
pid $WORK/nginx-proxy.pid;
error_log $WORK/nginx-proxy-error.log warn;
worker_rlimit_nofile 16384;
events { worker_connections 8192; }
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
        listen 127.0.0.1:$P_NGINX backlog=4096;
        location / {
            if (\$key_ok = 0) {
                return 401 '{"error":{"code":"invalid_key"}}';
            }
            proxy_pass http://up;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Authorization "";
            # Stream like Tollgate does (no whole-response buffering, no temp files), in
            # 64 KiB reads.
            proxy_buffering off;
            proxy_buffer_size 64k;
            proxy_buffers 4 64k;
            proxy_busy_buffers_size 128k;
        }
    }
}
EOF

cat >"$WORK/haproxy.cfg" <<EOF
global
    nbthread $NPROXY
    maxconn 8000
defaults
    mode http
    option http-keep-alive
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 300s
    http-reuse always
frontend fe
    bind 127.0.0.1:$P_HAPROXY
    http-request deny deny_status 401 unless { req.hdr(authorization),word(2,' '),map_str($WORK/haproxy-keys.map) -m found }
    http-request del-header authorization
    default_backend be
backend be
    server up 127.0.0.1:$P_UP
EOF

# --- seed the stores ---------------------------------------------------------------------------
tollgate_config "$WORK/tg" "$P_TG" "$P_TG_API"
log "seeding $KEYS keys"
seed_start=$(date +%s.%N)
"$SEED" --config "$WORK/tg/tollgate.toml" --keys "$KEYS" --out "$WORK/keys.txt"
SEED_SECONDS=$(awk -v a="$seed_start" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}')
awk '{print "\"Bearer " $0 "\" 1;"}' "$WORK/keys.txt" >"$WORK/nginx-keys.map"
awk '{print $0 " 1"}' "$WORK/keys.txt" >"$WORK/haproxy-keys.map"
shuf -n "$SAMPLE" "$WORK/keys.txt" >"$WORK/sample.txt"
GOOD_KEY="$(head -n 1 "$WORK/sample.txt")"
# The per-core instance gets a copy of the seeded store (same keys, same secret).
tollgate_config "$WORK/tg-pc" "$P_PC" "$P_PC_API" "$NPROXY"
cp "$WORK/tg/store.db"* "$WORK/tg-pc/"
BAD_KEY="cr_$(head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"

# --- start everything --------------------------------------------------------------------------
log "starting the upstream, nginx, haproxy and tollgate"
start taskset -c "$LOAD_CPU" nginx -c "$WORK/upstream.conf"
UP_PID=$STARTED
wait_http "http://127.0.0.1:$P_UP/small"

start taskset -c "$PROXY_CPU" nginx -c "$WORK/nginx-proxy.conf"
NGINX_PID=$STARTED
start taskset -c "$PROXY_CPU" haproxy -db -f "$WORK/haproxy.cfg"
HAPROXY_PID=$STARTED
tg_start=$(date +%s.%N)
start taskset -c "$PROXY_CPU" "$TOLLGATE" serve --config "$WORK/tg/tollgate.toml"
TG_PID=$STARTED
wait_http "http://127.0.0.1:$P_TG_API/readyz"
TG_READY_SECONDS=$(awk -v a="$tg_start" -v b="$(date +%s.%N)" 'BEGIN {printf "%.2f", b - a}')
TG_RSS_IDLE=$(status_kib VmRSS "$TG_PID")
start taskset -c "$PROXY_CPU" "$TOLLGATE" serve --config "$WORK/tg-pc/tollgate.toml"
PC_PID=$STARTED
wait_http "http://127.0.0.1:$P_PC_API/readyz"
wait_http "http://127.0.0.1:$P_NGINX/small" 401
wait_http "http://127.0.0.1:$P_HAPROXY/small" 401

declare -A PORT=([direct]=$P_UP [nginx]=$P_NGINX [haproxy]=$P_HAPROXY [tollgate]=$P_TG [tollgate-pc]=$P_PC)
declare -A PID=([direct]=$UP_PID [nginx]=$NGINX_PID [haproxy]=$HAPROXY_PID [tollgate]=$TG_PID [tollgate-pc]=$PC_PID)
TARGETS=(direct nginx haproxy tollgate tollgate-pc)
SCENARIOS=(small reject 1m)

# Every proxy must allow a good key, refuse a bad one and return the whole body.
for t in nginx haproxy tollgate tollgate-pc; do
    base="http://127.0.0.1:${PORT[$t]}"
    good=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $GOOD_KEY" "$base/small")
    bad=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $BAD_KEY" "$base/small")
    size=$(curl -s -o /dev/null -w '%{size_download}' -H "Authorization: Bearer $GOOD_KEY" "$base/1m")
    if [[ "$good" != 200 || "$bad" != 401 || "$size" != 1048576 ]]; then
        echo "$t: good key → $good, bad key → $bad, 1m body → $size bytes" >&2
        exit 1
    fi
done

# --- measure -----------------------------------------------------------------------------------
RAW="$WORK/raw.tsv"
printf 'round\ttarget\tscenario\trequests\trps\tp50_us\tp99_us\tnon2xx\tsock_err\tcpu_us_per_req\n' >"$RAW"

run_wrk() { # target scenario seconds → prints the RESULT line
    local t="$1" s="$2" secs="$3" path env=()
    case "$s" in
        small) path=/small ;;
        1m) path=/1m ;;
        reject) path=/small ;;
    esac
    if [[ "$s" == reject ]]; then
        env=(BAD_KEY="$BAD_KEY")
    elif [[ "$t" != direct ]]; then
        env=(KEYS_FILE="$WORK/sample.txt")
    fi
    env "${env[@]}" taskset -c "$LOAD_CPU" wrk -t"$THREADS" -c"$CONNECTIONS" -d"${secs}s" \
        --latency -s "$ROOT/benches/load/load.lua" "http://127.0.0.1:${PORT[$t]}$path" |
        grep '^RESULT'
}

LOADAVG_START="$(cut -d' ' -f1-3 /proc/loadavg)"
log "warming up"
for t in "${TARGETS[@]}"; do
    for s in small 1m; do run_wrk "$t" "$s" 2 >/dev/null; done
done

for r in $(seq 1 "$ROUNDS"); do
    for s in "${SCENARIOS[@]}"; do
        for t in "${TARGETS[@]}"; do
            [[ "$t" == direct && "$s" == reject ]] && continue
            # shellcheck disable=SC2046
            pids=$(family "${PID[$t]}")
            before=$(cpu_ticks $pids)
            line=$(run_wrk "$t" "$s" "$DURATION")
            after=$(cpu_ticks $pids)
            read -r _ reqs _dur rps p50 p99 non2xx sockerr <<<"$line"
            cpu=$(awk -v d=$((after - before)) -v hz="$CLK_TCK" -v n="$reqs" \
                'BEGIN {printf "%.1f", (n > 0 ? d * 1e6 / hz / n : 0)}')
            printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
                "$r" "$t" "$s" "$reqs" "$rps" "$p50" "$p99" "$non2xx" "$sockerr" "$cpu" >>"$RAW"
            log "round $r $s $t: $rps req/s p50 ${p50}us p99 ${p99}us cpu ${cpu}us/req non2xx $non2xx err $sockerr"
        done
    done
done

# --- added latency at a fixed rate ------------------------------------------------------------
# wrk keeps every connection busy, so its latencies at saturation measure throughput. Added
# latency is measured open-loop instead: examples/open_loop.rs sends RATE requests/s over
# CONNECTIONS connections, each on a fixed schedule (a rate every target sustains), one allowed
# key, small body, timed in µs; p50/p99/p99.9 per target, interleaved.
PROBE="$CARGO_TARGET_DIR/release/examples/open_loop"
LAT="$WORK/latency.tsv"
printf 'round\ttarget\tp50_us\tp99_us\trps\tp999_us\terrors\tlate\n' >"$LAT"
run_probe() { # target → "p50_us p99_us p999_us rps errors late"
    local t="$1" auth=()
    [[ "$t" != direct ]] && auth=(--header "Authorization: Bearer $(head -n 1 "$WORK/sample.txt")")
    taskset -c "$LOAD_CPU" "$PROBE" --url "http://127.0.0.1:${PORT[$t]}/small" --rate "$RATE" \
        --connections "$CONNECTIONS" --seconds "$DURATION" "${auth[@]}"
}
if [[ "$RATE" -gt 0 ]]; then
    for r in $(seq 1 "$ROUNDS"); do
        for t in "${TARGETS[@]}"; do
            read -r p50 p99 p999 rps errors late <<<"$(run_probe "$t")"
            printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$r" "$t" "$p50" "$p99" "$rps" "$p999" "$errors" "$late" >>"$LAT"
            log "round $r fixed ${RATE}/s $t: p50 ${p50}us p99 ${p99}us p99.9 ${p999}us ($rps req/s, $errors errors, $late late sends)"
        done
    done
fi

LOADAVG_END="$(cut -d' ' -f1-3 /proc/loadavg)"
declare -A HWM
for t in "${TARGETS[@]}"; do
    # shellcheck disable=SC2046
    HWM[$t]=$(status_kib VmHWM $(family "${PID[$t]}"))
done
TG_RSS_AFTER=$(status_kib VmRSS "$TG_PID")
stop "$TG_PID"
stop "$PC_PID"
stop "$NGINX_PID"
stop "$HAPROXY_PID"

# --- memory with many keys ---------------------------------------------------------------------
BIG_LINE="not measured (KEYS_BIG=0)"
if [[ "$KEYS_BIG" -gt 0 ]]; then
    tollgate_config "$WORK/tg-big" "$P_BIG" "$P_BIG_API"
    log "seeding $KEYS_BIG keys"
    big_seed_start=$(date +%s.%N)
    "$SEED" --config "$WORK/tg-big/tollgate.toml" --keys "$KEYS_BIG" --out "$WORK/keys-big.txt"
    BIG_SEED_SECONDS=$(awk -v a="$big_seed_start" -v b="$(date +%s.%N)" 'BEGIN {printf "%.0f", b - a}')
    big_start=$(date +%s.%N)
    start taskset -c "$PROXY_CPU" "$TOLLGATE" serve --config "$WORK/tg-big/tollgate.toml"
    BIG_PID=$STARTED
    wait_http "http://127.0.0.1:$P_BIG_API/readyz"
    BIG_READY=$(awk -v a="$big_start" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}')
    BIG_RSS=$(status_kib VmRSS "$BIG_PID")
    BIG_HWM=$(status_kib VmHWM "$BIG_PID")
    big_key="$(head -n 1 "$WORK/keys-big.txt")"
    big_ok=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $big_key" \
        "http://127.0.0.1:$P_BIG/small")
    stop "$BIG_PID"
    BIG_LINE="$KEYS_BIG keys: VmRSS $((BIG_RSS / 1024)) MiB after /readyz (peak while loading the keys $((BIG_HWM / 1024)) MiB); ready in ${BIG_READY} s; seeding took ${BIG_SEED_SECONDS} s; a seeded key → $big_ok"
fi
stop "$UP_PID"

# --- report ------------------------------------------------------------------------------------
median() { sort -g | awk '{v[NR] = $1} END {if (NR == 0) print "-"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
col() { # target scenario column-number → median
    awk -F'\t' -v t="$1" -v s="$2" -v c="$3" 'NR > 1 && $2 == t && $3 == s {print $c}' "$RAW" | median
}
fmt_int() { awk -v v="$1" 'BEGIN {if (v == "-") print "-"; else printf "%\047d", v}'; }
fmt_ms() { awk -v v="$1" 'BEGIN {if (v == "-") print "-"; else printf "%.2f", v / 1000}'; }

{
    echo "# Load benchmark results"
    echo
    echo "Written by \`benches/load/run.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC'), Tollgate $(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo '?')."
    echo
    echo "- Load average (1/5/15 min) before the runs: $LOADAVG_START; after: $LOADAVG_END (other work on the machine shows here)."
    echo "- Machine: $(nproc) cores ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)), $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo), $(uname -r)."
    echo "- Peers: $(nginx -v 2>&1 | sed 's/.*: //'), $(haproxy -v 2>&1 | head -n 1 | awk '{print "HAProxy " $3}'), $(wrk -v 2>&1 | head -n 1 | awk '{print $1 " " $2}')."
    echo "- $KEYS keys loaded in every proxy; wrk rotates over $(wc -l <"$WORK/sample.txt") of them. $CONNECTIONS connections, $THREADS wrk threads, ${DURATION} s per run, $ROUNDS interleaved rounds; medians shown."
    echo "- Cores: each proxy on core(s) $PROXY_CPU (nginx $NPROXY worker(s), haproxy \`nbthread $NPROXY\`, Tollgate's runtime sees $NPROXY CPU(s); \`tollgate-pc\` runs \`listen.proxy_cores = $NPROXY\`); wrk and the upstream nginx on core(s) $LOAD_CPU. \`direct\` has the same placement as the load, so its ceiling is core(s) $LOAD_CPU, not a proxy."
    echo "- CPU per request: the proxy's utime+stime delta (/proc/PID/stat, all its processes) over the run ÷ requests. Peak RSS: VmHWM at the end (sum over nginx master and worker)."
    echo "- Scenarios: \`small\` = allowed request, $(printf '%s' "$SMALL_BODY" | wc -c)-byte body; \`reject\` = unknown key → 401 (never reaches the upstream); \`1m\` = allowed request, 1 MiB body streamed (nginx \`proxy_buffering off\`, 64 KiB buffer)."
    echo
    echo "| scenario | target | req/s | p50 ms | p99 ms | CPU µs/req | peak RSS MiB | req/s vs Tollgate |"
    echo "|---|---|---:|---:|---:|---:|---:|---:|"
    for s in "${SCENARIOS[@]}"; do
        tg_rps=$(col tollgate "$s" 5)
        for t in "${TARGETS[@]}"; do
            [[ "$t" == direct && "$s" == reject ]] && continue
            rps=$(col "$t" "$s" 5)
            ratio=$(awk -v a="$rps" -v b="$tg_rps" 'BEGIN {printf "%.2f×", (b > 0 ? a / b : 0)}')
            cpu=$(col "$t" "$s" 10)
            [[ "$t" == direct ]] && cpu="-"
            echo "| $s | $t | $(fmt_int "${rps%.*}") | $(fmt_ms "$(col "$t" "$s" 6)") | $(fmt_ms "$(col "$t" "$s" 7)") | $cpu | $((HWM[$t] / 1024)) | $ratio |"
        done
    done
    echo
    if [[ "$RATE" -gt 0 ]]; then
        lat() { awk -F'\t' -v t="$1" -v c="$2" 'NR > 1 && $2 == t {print $c}' "$LAT" | median; }
        d50=$(lat direct 3) d99=$(lat direct 4)
        echo "Added latency at a fixed $RATE req/s (examples/open_loop.rs: $CONNECTIONS connections, each on a fixed schedule, µs timing, small body, medians of $ROUNDS runs; goal: added p99 ≤ 0.3 ms):"
        echo
        echo "| target | achieved req/s | p50 ms | p99 ms | p99.9 ms | added p50 ms | added p99 ms | errors | late sends |"
        echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
        for t in "${TARGETS[@]}"; do
            p50=$(lat "$t" 3) p99=$(lat "$t" 4)
            echo "| $t | $(fmt_int "$(lat "$t" 5)") | $(fmt_ms "$p50") | $(fmt_ms "$p99") | $(fmt_ms "$(lat "$t" 6)") | $(fmt_ms "$(awk -v a="$p50" -v b="$d50" 'BEGIN {print a - b}')") | $(fmt_ms "$(awk -v a="$p99" -v b="$d99" 'BEGIN {print a - b}')") | $(lat "$t" 7) | $(lat "$t" 8) |"
        done
        echo
    fi
    echo "Memory: Tollgate with $KEYS keys: VmRSS $((TG_RSS_IDLE / 1024)) MiB after /readyz (ready ${TG_READY_SECONDS} s after start; seeding took ${SEED_SECONDS} s), $((TG_RSS_AFTER / 1024)) MiB after the runs. With $BIG_LINE."
    echo
    echo "Non-2xx responses and socket errors per run are in the raw table; \`reject\` runs count every response as non-2xx by design."
    echo
    echo "<details><summary>Every run</summary>"
    echo
    echo "| round | target | scenario | requests | req/s | p50 µs | p99 µs | non-2xx | socket errors | CPU µs/req |"
    echo "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"
    awk -F'\t' 'NR > 1 {printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5, $6, $7, $8, $9, $10}' "$RAW"
    echo
    echo "</details>"
} >"$RESULTS.new"
mv "$RESULTS.new" "$RESULTS"
log "wrote $RESULTS"
# The stores (a million keys) live in $WORK, in memory when it is on /dev/shm.
[[ "${KEEP_WORK:-0}" == 1 ]] || rm -rf "$WORK"
cat "$RESULTS"
