# Where botgate's and Redis's CPU goes: reads `perf script -F comm,tid,ip,sym,dso` of a
# `perf record --call-graph dwarf` (tests/bench/run.sh with BENCH_PROFILE=1) and prints, per
# process, the share of its samples that each part of the request path took.
#
#   perf script -F comm,tid,ip,sym,dso -i perf.data | awk -f profile.awk -v map=symbols.tsv
#
# map: "symbol<TAB>source file" for botgate's own functions (from `nm` of its objects), so
# that a sample in a botgate function is charged to the module it is in.
#
# Each sample is charged to one part, found from its leaf up the stack: the first frame that
# belongs to a part charges it there. A sample in the kernel is charged to "kernel: NAME()",
# NAME the system call's libc wrapper (the first user-space frame under the kernel's), or to
# page faults, or to "no system call" (an interrupt, loopback TCP's softirq). libc (malloc,
# memcpy), libcrypto and unknown frames do not decide: the frame above them does (AES under
# SSL_write is TLS, SHA-256 under the token cache is authentication, malloc under the JSON
# reader is JSON); libcrypto with nothing above it (its assembly has no unwind tables) stays
# "libcrypto, caller not unwound". Debian's libh2o has no symbols for its internal
# functions, so HTTP/1 parsing (picohttpparser, inside libh2o) counts as h2o.

BEGIN {
    FS = "\n"
    while (map != "" && (getline line < map) > 0) {
        split(line, f, "\t")
        module[f[1]] = f[2]
    }
}

# The part a botgate source file belongs to.
function part_of_module(m) {
    if (m ~ /^(json|activity)\.c$/) return "JSON: reading the activity (policy/json.c, activity.c)"
    if (m ~ /^(auth|token_cache|keys)\.c$/) return "authentication: token check + verified-token cache"
    if (m ~ /^entry\.c$/) return "queue entry: msgpack encoding (policy/entry.c)"
    if (m ~ /^(redis|queue|private_redis)\.c$/) return "botgate's Redis client side (proxy/redis.c, queue.c)"
    if (m ~ /^(metrics|log|admin)\.c$/) return "metrics + logging"
    if (m ~ /^(http_client|dispatcher|dlq|failures)\.c$/) return "dispatcher (idle: bot down)"
    return "botgate handler + server (ingress.c, respond.c, request.c, server.c, ...)"
}

# The part a frame decides, or "" when it does not decide.
function part_of(sym, dso) {
    if (dso ~ /kernel|vmlinux|\[k\]/) return ""
    if (dso ~ /redis-(server|check)/) return redis_part(sym)
    if (dso ~ /botgate/ && (sym in module)) return part_of_module(module[sym])
    if (dso ~ /libssl/) return "TLS: OpenSSL record layer + AES-GCM"
    if (dso ~ /libh2o/) {
        if (sym ~ /^phr_/) return "HTTP/1 parsing (picohttpparser)"
        return "h2o: event loop, HTTP/1 connection, buffers, headers"
    }
    if (dso ~ /libhiredis/) return "hiredis: command formatting + reply parsing"
    if (dso ~ /libmsgpack/) return "queue entry: msgpack encoding (policy/entry.c)"
    if (dso ~ /libjansson/) return "JSON: jansson"
    if (dso ~ /libyaml/) return "configuration (libyaml)"
    if (dso ~ /libcurl/) return "dispatcher (idle: bot down)"
    return ""
}

# Redis's own functions (its binary is redis-check-rdb on Debian: redis-server links to it).
function redis_part(sym) {
    if (sym ~ /^(lua|luaCallFunction|evalGenericCommand|evalShaCommand|script|fcall|luaRedis)/) return "Redis: EVALSHA (botgate's Lua script)"
    if (sym ~ /^(xadd|stream|lp[A-Z]|raxInsert|raxFind|raxSeek|raxNext|raxGeneric|rax[A-Z])/) return "Redis: XADD (stream: rax + listpack)"
    if (sym ~ /AppendOnly|[Aa]of|catAppendOnly/) return "Redis: AOF (building and writing it)"
    if (sym ~ /^(getCommand|getGenericCommand|setCommand|setGenericCommand|setKey|lookupKey|dbAdd|dictFind|dictAdd|xlenCommand)/) return "Redis: GET, SET, XLEN"
    if (sym ~ /^(processInputBuffer|processMultibulkBuffer|readQueryFromClient|createStringObject|createObject)/) return "Redis: reading commands (RESP)"
    if (sym ~ /^(addReply|_addReply|writeToClient|_writeToClient|handleClientsWithPendingWrites|prepareClientToWrite)/) return "Redis: replies"
    if (sym ~ /^(call|processCommand|lookupCommand)/) return "Redis: command dispatch (call, processCommand)"
    if (sym ~ /^(ae[A-Z]|beforeSleep|afterSleep|main|serverCron|clientsCron|databasesCron)/) return "Redis: event loop, beforeSleep, cron"
    return ""
}

# The system call a kernel sample is in: its libc wrapper's name, first user frame under the kernel's.
# "" when no system call is on the stack (an interrupt while in user code or idle).
function syscall_of(   i, sc, in_syscall) {
    in_syscall = 0
    for (i = 1; i <= n; i++) {
        if (dsos[i] ~ /kernel|vmlinux/) {
            if (syms[i] ~ /page_fault/) return "page faults"
            if (syms[i] ~ /^(entry_SYSCALL|do_syscall_64)/) in_syscall = 1
            continue
        }
        if (!in_syscall) return ""
        sc = syms[i]
        if (sc == "[unknown]") return "(unknown)"
        while (sub(/^(__GI_|__libc_|_)/, "", sc)) {}
        sub(/_nocancel$/, "", sc)
        return sc "()"
    }
    return ""
}

function flush(   i, p, k, sc, kernel_leaf) {
    if (comm == "") return
    samples[comm]++
    p = ""
    kernel_leaf = (n > 0 && dsos[1] ~ /kernel|vmlinux/)
    if (kernel_leaf) {
        sc = syscall_of()
        p = sc != "" ? "kernel: " sc : "kernel: interrupts (no system call on the stack)"
    } else {
        for (i = 1; i <= n && p == ""; i++) p = part_of(syms[i], dsos[i])
        if (p == "") {
            if (n > 0 && dsos[1] ~ /libcrypto/) p = "libcrypto, caller not unwound (AES-GCM, SHA assembly)"
            else if (n > 0 && dsos[1] ~ /redis-(server|check)/) p = "Redis: other"
            else if (n > 0 && dsos[1] ~ /libc[.-]/) p = "libc (other)"
            else p = "other / unknown"
        }
    }
    count[comm SUBSEP p]++
    parts[comm SUBSEP p] = p
    comm = ""
    n = 0
}

/^[^ \t]/ {
    flush()
    # "comm tid" (comm may hold spaces: take all but the last field)
    line = $0
    sub(/[ \t]+[0-9]+[ \t]*$/, "", line)
    comm = line
    n = 0
    next
}
/^[ \t]+[0-9a-f]+ / {
    line = $0
    sub(/^[ \t]+[0-9a-f]+ /, "", line)
    dso = line
    sub(/^.*\(/, "", dso)
    sub(/\)[ \t]*$/, "", dso)
    sym = line
    sub(/[ \t]+\([^()]*\)[ \t]*$/, "", sym)
    sub(/\+0x[0-9a-f]+$/, "", sym)
    n++
    syms[n] = sym
    dsos[n] = dso
    next
}
/^[ \t]*$/ { flush() }

END {
    flush()
    total = 0
    for (c in samples) total += samples[c]
    for (c in samples) {
        printf "PROCESS\t%s\t%d\t%.1f\n", c, samples[c], 100 * samples[c] / total
        for (k in count) {
            split(k, kk, SUBSEP)
            if (kk[1] != c) continue
            printf "PART\t%s\t%s\t%d\t%.1f\n", c, kk[2], count[k], 100 * count[k] / samples[c]
        }
    }
}
