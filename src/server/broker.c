/* broker.c — the Redis side of the job broker (see broker.h for why it exists and the
 * model): one hiredis connection per handle, reconnected after any failure, and the Lua
 * scripts that make each state change atomic.
 *
 * Keys (one logical Redis database; not cluster-safe: the scripts touch keys derived
 * from the job's):
 *   dfd:jobs                 the stream; entries {id}; group dfd:workers
 *   dfd:job:<id>             the job hash (state, progress, attempts, result, ...)
 *   dfd:job:<id>:upload      the upload's bytes (unless spooled), with a TTL
 *   dfd:queued               zset id -> submit time (ms), for queue depth and oldest age
 *   dfd:workers:seen         zset consumer -> last heartbeat (ms, Redis clock)
 *   dfd:notify:<server>      list of ended job ids a server instance waits for
 *   dfd:stat:retries, dfd:stat:finished:<state>  counters
 * Times are Redis's clock (TIME in the scripts), so machines with skewed clocks agree.
 * Everything read from Redis is treated as untrusted: sizes are capped, ids checked.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "broker.h"

#define STREAM "dfd:jobs"
#define GROUP "dfd:workers"
#define QUEUED "dfd:queued"
#define SEEN "dfd:workers:seen"
#define OPEN_TTL_S 604800   /* an unfinished job's hash is kept a week at most */
#define UPLOAD_TTL_S 86400  /* an upload waits a day at most for a worker */
#define STREAM_MAXLEN "1000000"

struct srv_broker {
    pthread_mutex_t mu;
    redisContext *c;
    char host[300];
    int port;
    char user[128];
    char pass[256];
    int db;
    double timeout_s;
    char where[360];
    int down;        /* the last attempt failed (logged once per outage) */
};

/* ---- URL and connection ---------------------------------------------------------------- */

static int url_decode(char *out, size_t cap, const char *in, size_t n) {
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char ch = in[i];
        if (ch == '%') {
            if (i + 2 >= n) return -1;
            char hx[3] = {in[i + 1], in[i + 2], 0};
            char *e;
            long v = strtol(hx, &e, 16);
            if (*e || v <= 0) return -1;
            ch = (char)v;
            i += 2;
        }
        if (o + 1 >= cap) return -1;
        out[o++] = ch;
    }
    out[o] = 0;
    return 0;
}

int srv_broker_open(const char *url, double timeout_s, srv_broker **out, dfd_error *err) {
    *out = NULL;
    if (!url || strncmp(url, "redis://", 8) != 0 || strlen(url) > SRV_BROKER_MAX_URL)
        return srv_fail(err, DFD_E_ARG, "the broker must be redis://[user:password@]HOST:PORT[/DB]");
    srv_broker *b = calloc(1, sizeof *b);
    if (!b) return srv_fail(err, DFD_E_NOMEM, "out of memory");
    b->port = 6379;
    b->timeout_s = timeout_s > 0 ? timeout_s : 5;
    const char *p = url + 8;
    const char *at = strrchr(p, '@');
    const char *slash = strchr(at ? at : p, '/');
    if (at && (!slash || at < slash)) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        if (colon) {
            if (url_decode(b->user, sizeof b->user, p, (size_t)(colon - p)) ||
                url_decode(b->pass, sizeof b->pass, colon + 1, (size_t)(at - colon - 1)))
                goto bad;
        } else if (url_decode(b->pass, sizeof b->pass, p, (size_t)(at - p))) {
            goto bad;
        }
        p = at + 1;
    }
    size_t hl = slash ? (size_t)(slash - p) : strlen(p);
    char hostport[300];
    if (hl == 0 || hl >= sizeof hostport) goto bad;
    memcpy(hostport, p, hl);
    hostport[hl] = 0;
    char *colon = strrchr(hostport, ':');
    if (hostport[0] == '[') { /* [v6]:port */
        char *close = strchr(hostport, ']');
        if (!close) goto bad;
        *close = 0;
        colon = close[1] == ':' ? close + 1 : NULL;
        memmove(hostport, hostport + 1, strlen(hostport + 1) + 1);
    }
    if (colon) {
        *colon = 0;
        char *e;
        long port = strtol(colon + 1, &e, 10);
        if (*e || port < 1 || port > 65535) goto bad;
        b->port = (int)port;
    }
    if (!hostport[0] || strlen(hostport) >= sizeof b->host) goto bad;
    snprintf(b->host, sizeof b->host, "%s", hostport);
    if (slash && slash[1]) {
        char *e;
        long db = strtol(slash + 1, &e, 10);
        if (*e || db < 0 || db > 1000000) goto bad;
        b->db = (int)db;
    }
    snprintf(b->where, sizeof b->where, "%s:%d/%d", b->host, b->port, b->db);
    pthread_mutex_init(&b->mu, NULL);
    *out = b;
    return DFD_OK;
bad:
    free(b);
    return srv_fail(err, DFD_E_ARG, "cannot read the broker URL (expected redis://[user:password@]HOST:PORT[/DB])");
}

void srv_broker_close(srv_broker *b) {
    if (!b) return;
    if (b->c) redisFree(b->c);
    pthread_mutex_destroy(&b->mu);
    memset(b->pass, 0, sizeof b->pass);
    free(b);
}

const char *srv_broker_where(const srv_broker *b) { return b->where; }

static void drop_locked(srv_broker *b) {
    if (b->c) redisFree(b->c);
    b->c = NULL;
}

/* why may point into the context, which is freed here: it is copied first. */
static int unreachable(srv_broker *b, const char *why_in, dfd_error *err) {
    char why[200];
    snprintf(why, sizeof why, "%s", why_in && why_in[0] ? why_in : "connection lost");
    if (!b->down) dfd_log(DFD_LOG_ERROR, "broker: Redis at %s is unreachable: %s", b->where, why);
    b->down = 1;
    drop_locked(b);
    return srv_fail(err, DFD_E_IO, "the job broker (Redis at %s) is unreachable: %s", b->where, why);
}

static int connect_locked(srv_broker *b, dfd_error *err) {
    if (b->c) return DFD_OK;
    struct timeval tv = {(time_t)b->timeout_s, (suseconds_t)((b->timeout_s - floor(b->timeout_s)) * 1e6)};
    redisContext *c = redisConnectWithTimeout(b->host, b->port, tv);
    if (!c) return unreachable(b, "out of memory", err);
    if (c->err) {
        char why[160];
        snprintf(why, sizeof why, "%s", c->errstr);
        redisFree(c);
        return unreachable(b, why, err);
    }
    redisSetTimeout(c, tv);
    b->c = c;
    redisReply *r = NULL;
    if (b->pass[0]) {
        r = b->user[0] ? redisCommand(c, "AUTH %s %s", b->user, b->pass) : redisCommand(c, "AUTH %s", b->pass);
        if (!r) return unreachable(b, c->errstr, err);
        int bad = r->type == REDIS_REPLY_ERROR;
        char msg[200];
        snprintf(msg, sizeof msg, "%s", bad && r->str ? r->str : "");
        freeReplyObject(r);
        if (bad) {
            drop_locked(b);
            return srv_fail(err, DFD_E_IO, "Redis at %s refused the credentials: %s", b->where, msg);
        }
    }
    if (b->db) {
        r = redisCommand(c, "SELECT %d", b->db);
        if (!r) return unreachable(b, c->errstr, err);
        int bad = r->type == REDIS_REPLY_ERROR;
        freeReplyObject(r);
        if (bad) {
            drop_locked(b);
            return srv_fail(err, DFD_E_IO, "Redis at %s has no database %d", b->where, b->db);
        }
    }
    if (b->down) dfd_log(DFD_LOG_WARN, "broker: Redis at %s is reachable again", b->where);
    b->down = 0;
    return DFD_OK;
}

/* Runs one command (argv form); the reply, or NULL with err set (a Redis error reply is
 * DFD_E_INTERNAL with Redis's message; a lost connection DFD_E_IO). Caller holds mu. */
static redisReply *run_locked(srv_broker *b, int argc, const char **argv, const size_t *lens, dfd_error *err) {
    if (connect_locked(b, err) != DFD_OK) return NULL;
    redisReply *r = redisCommandArgv(b->c, argc, argv, lens);
    if (!r) {
        unreachable(b, b->c && b->c->errstr[0] ? b->c->errstr : "connection lost", err);
        return NULL;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        srv_fail(err, DFD_E_INTERNAL, "Redis at %s: %.300s", b->where, r->str ? r->str : "error");
        freeReplyObject(r);
        return NULL;
    }
    return r;
}

/* Arguments of a command, built up one at a time (strings copied into a buffer). */
typedef struct args {
    int n;
    const char *v[24];
    size_t len[24];
    char num[24][32];
} args;

static void arg(args *a, const char *s) {
    if (a->n >= 24) return;
    a->v[a->n] = s;
    a->len[a->n] = strlen(s);
    a->n++;
}
static void arg_bin(args *a, const void *s, size_t n) {
    if (a->n >= 24) return;
    a->v[a->n] = s;
    a->len[a->n] = n;
    a->n++;
}
static void arg_num(args *a, double v) {
    if (a->n >= 24) return;
    if (v == floor(v) && fabs(v) < 9e15) snprintf(a->num[a->n], sizeof a->num[0], "%.0f", v);
    else snprintf(a->num[a->n], sizeof a->num[0], "%.9g", v);
    arg(a, a->num[a->n]);
}

static redisReply *run(srv_broker *b, args *a, dfd_error *err) {
    pthread_mutex_lock(&b->mu);
    redisReply *r = run_locked(b, a->n, a->v, a->len, err);
    pthread_mutex_unlock(&b->mu);
    return r;
}

/* ---- reading replies (untrusted: types checked, strings bounded) --------------------------- */

static const redisReply *elem(const redisReply *r, size_t i) {
    return r && r->type == REDIS_REPLY_ARRAY && i < r->elements ? r->element[i] : NULL;
}

static int is_str(const redisReply *r) { return r && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS); }

static void copy_str(char *out, size_t cap, const redisReply *r) {
    out[0] = 0;
    if (!is_str(r)) return;
    size_t n = r->len < cap - 1 ? r->len : cap - 1;
    memcpy(out, r->str, n);
    out[n] = 0;
    for (size_t i = 0; i < n; i++)
        if (out[i] == 0) out[i] = '?';
}

static double num_of(const redisReply *r, double dflt) {
    if (!r) return dflt;
    if (r->type == REDIS_REPLY_INTEGER) return (double)r->integer;
    if (!is_str(r) || r->len == 0 || r->len > 40) return dflt;
    char b[48];
    copy_str(b, sizeof b, r);
    char *e;
    double v = strtod(b, &e);
    return *e || !isfinite(v) ? dflt : v;
}

static int valid_id(const char *id) {
    size_t n = strlen(id);
    if (n != 32) return 0;
    for (size_t i = 0; i < n; i++)
        if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f'))) return 0;
    return 1;
}

static srv_job_state state_of(const char *s) {
    for (int k = 0; k < SRV_JOB__COUNT; k++)
        if (strcmp(s, srv_job_state_name((srv_job_state)k)) == 0) return (srv_job_state)k;
    return SRV_JOB_FAILED;
}

static void job_key(char out[64], const char *id) { snprintf(out, 64, "dfd:job:%s", id); }

/* ---- the scripts -------------------------------------------------------------------------- */

/* Shared by the scripts: Redis's clock in ms, and the one way a job ends (its fields, its
 * TTL, the acknowledgement, the counters, the waiting server told, the upload dropped). */
#define LUA_COMMON                                                                                      \
    "local function now_ms() local t = redis.call('TIME') "                                             \
    "return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) end\n"                            \
    "local function finish(job, entry, state, status, err, result, verdict, pfake)\n"                  \
    "  redis.call('HSET', job, 'state', state, 'status', status, 'error', err, 'finished_ms', now_ms())\n" \
    "  if state == 'done' then redis.call('HSET', job, 'result', result, 'verdict', verdict, "           \
    "'p_fake', pfake, 'progress', 1) end\n"                                                              \
    "  local ttl = tonumber(redis.call('HGET', job, 'ttl') or '3600') or 3600\n"                         \
    "  if ttl < 30 then ttl = 30 end\n"                                                                  \
    "  redis.call('EXPIRE', job, math.floor(ttl))\n"                                                     \
    "  if entry ~= '' then redis.call('XACK', '" STREAM "', '" GROUP "', entry) end\n"                   \
    "  redis.call('INCR', 'dfd:stat:finished:' .. state)\n"                                              \
    "  local id = redis.call('HGET', job, 'id') or ''\n"                                                 \
    "  redis.call('ZREM', '" QUEUED "', id)\n"                                                           \
    "  local n = redis.call('HGET', job, 'notify')\n"                                                    \
    "  if n and n ~= '' then redis.call('RPUSH', 'dfd:notify:' .. n, id) "                              \
    "redis.call('EXPIRE', 'dfd:notify:' .. n, 3600) end\n"                                               \
    "  redis.call('DEL', job .. ':upload')\n"                                                            \
    "end\n"                                                                                              \
    "local function over(s) return s == 'done' or s == 'failed' or s == 'cancelled' end\n"

/* KEYS: job. ARGV: id name kind explain notify upload bytes ttl open_ttl */
static const char lua_submit[] = LUA_COMMON
    "local now = now_ms()\n"
    "redis.call('HSET', KEYS[1], 'id', ARGV[1], 'state', 'queued', 'name', ARGV[2], 'kind', ARGV[3], "
    "'explain', ARGV[4], 'notify', ARGV[5], 'upload', ARGV[6], 'bytes', ARGV[7], 'ttl', ARGV[8], "
    "'created_ms', now, 'progress', 0, 'attempts', 0, 'cancel', 0)\n"
    "redis.call('EXPIRE', KEYS[1], ARGV[9])\n"
    "redis.call('ZADD', '" QUEUED "', now, ARGV[1])\n"
    "redis.call('XADD', '" STREAM "', 'MAXLEN', '~', " STREAM_MAXLEN ", '*', 'id', ARGV[1])\n"
    "return now\n";

/* KEYS: job. ARGV: entry consumer max_attempts cancelled_code internal_code id */
static const char lua_start[] = LUA_COMMON
    "local entry = ARGV[1]\n"
    "local st = redis.call('HGET', KEYS[1], 'state')\n"
    "if not st then redis.call('XACK', '" STREAM "', '" GROUP "', entry) redis.call('ZREM', '" QUEUED "', ARGV[6]) "
    "return {'gone'} end\n"
    "redis.call('ZREM', '" QUEUED "', redis.call('HGET', KEYS[1], 'id') or '')\n"
    "if over(st) then redis.call('XACK', '" STREAM "', '" GROUP "', entry) return {'over'} end\n"
    "if redis.call('HGET', KEYS[1], 'cancel') == '1' then\n"
    "  finish(KEYS[1], entry, 'cancelled', ARGV[4], 'cancelled', '', '', '') return {'over'} end\n"
    "local a = redis.call('HINCRBY', KEYS[1], 'attempts', 1)\n"
    "if a > tonumber(ARGV[3]) then\n"
    "  redis.call('HSET', KEYS[1], 'attempts', a - 1)\n"
    "  local last = redis.call('HGET', KEYS[1], 'worker') or '?'\n"
    "  finish(KEYS[1], entry, 'failed', ARGV[5], string.format('gave up after %d attempts: each time the worker "
    "running it stopped responding for longer than the visibility timeout (last: %s)', a - 1, last), '', '', '')\n"
    "  return {'over'} end\n"
    "if a > 1 then redis.call('INCR', 'dfd:stat:retries') end\n"
    "redis.call('HSET', KEYS[1], 'state', 'running', 'started_ms', now_ms(), 'worker', ARGV[2], 'progress', 0)\n"
    "local h = redis.call('HMGET', KEYS[1], 'name', 'kind', 'explain', 'upload')\n"
    "return {'run', a, h[1] or 'upload', h[2] or 'image', h[3] or '0', h[4] or 'redis'}\n";

/* KEYS: job. ARGV: entry consumer progress */
static const char lua_lease[] = LUA_COMMON
    "local st = redis.call('HGET', KEYS[1], 'state')\n"
    "if not st or over(st) then return -1 end\n"
    "local p = redis.call('XPENDING', '" STREAM "', '" GROUP "', ARGV[1], ARGV[1], 1, ARGV[2])\n"
    "if #p == 0 then return -1 end\n"
    "redis.call('XCLAIM', '" STREAM "', '" GROUP "', ARGV[2], 0, ARGV[1], 'JUSTID')\n"
    "local cur = tonumber(redis.call('HGET', KEYS[1], 'progress') or '0') or 0\n"
    "if tonumber(ARGV[3]) > cur then redis.call('HSET', KEYS[1], 'progress', ARGV[3]) end\n"
    "if redis.call('HGET', KEYS[1], 'cancel') == '1' then return 1 end\n"
    "return 0\n";

/* KEYS: job. ARGV: entry state status error result verdict p_fake */
static const char lua_finish[] = LUA_COMMON
    "local st = redis.call('HGET', KEYS[1], 'state')\n"
    "if not st or over(st) then redis.call('XACK', '" STREAM "', '" GROUP "', ARGV[1]) return 0 end\n"
    "finish(KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7])\n"
    "return 1\n";

/* KEYS: job. ARGV: cancelled_code forget */
static const char lua_cancel[] = LUA_COMMON
    "local st = redis.call('HGET', KEYS[1], 'state')\n"
    "if not st then return {'none', 0} end\n"
    "if st == 'queued' then redis.call('HSET', KEYS[1], 'cancel', 1)\n"
    "  finish(KEYS[1], '', 'cancelled', ARGV[1], 'cancelled', '', '', '') return {'cancelled', 0} end\n"
    "if st == 'running' then redis.call('HSET', KEYS[1], 'cancel', 1) return {'running', 0} end\n"
    "if ARGV[2] == '1' then redis.call('DEL', KEYS[1]) end\n"
    "return {st, 1}\n";

/* KEYS: job. */
static const char lua_get[] = LUA_COMMON
    "local h = redis.call('HMGET', KEYS[1], 'state', 'kind', 'progress', 'cancel', 'created_ms', 'started_ms', "
    "'finished_ms', 'attempts', 'status', 'verdict', 'p_fake', 'error', 'worker', 'result')\n"
    "if not h[1] then return {} end\n"
    "table.insert(h, 1, now_ms())\n"
    "return h\n";

/* ARGV: window_ms */
static const char lua_stats[] = LUA_COMMON
    "local now = now_ms()\n"
    "local depth = redis.call('ZCARD', '" QUEUED "')\n"
    "local oldest = redis.call('ZRANGE', '" QUEUED "', 0, 0, 'WITHSCORES')\n"
    "local age = 0\n"
    "if #oldest == 2 then age = now - tonumber(oldest[2]) end\n"
    "local running = 0\n"
    "local p = redis.pcall('XPENDING', '" STREAM "', '" GROUP "')\n"
    "if type(p) == 'table' and not p.err then running = p[1] end\n"
    "redis.call('ZREMRANGEBYSCORE', '" SEEN "', '-inf', now - 86400000)\n"
    "local workers = redis.call('ZCOUNT', '" SEEN "', now - tonumber(ARGV[1]), '+inf')\n"
    "local function cnt(k) return tonumber(redis.call('GET', k) or '0') or 0 end\n"
    "return {depth, age, running, workers, cnt('dfd:stat:retries'), cnt('dfd:stat:finished:done'), "
    "cnt('dfd:stat:finished:failed'), cnt('dfd:stat:finished:cancelled')}\n";

/* ARGV: consumer */
static const char lua_heartbeat[] = LUA_COMMON "redis.call('ZADD', '" SEEN "', now_ms(), ARGV[1]) return 1\n";

static void arg_eval(args *a, const char *script, int nkeys) {
    arg(a, "EVAL");
    arg(a, script);
    arg_num(a, nkeys);
}

/* ---- the group ------------------------------------------------------------------------------ */

static int ensure_group_locked(srv_broker *b, dfd_error *err) {
    const char *argv[] = {"XGROUP", "CREATE", STREAM, GROUP, "0", "MKSTREAM"};
    size_t lens[6];
    for (int i = 0; i < 6; i++) lens[i] = strlen(argv[i]);
    dfd_error e;
    srv_error_clear(&e);
    redisReply *r = run_locked(b, 6, argv, lens, &e);
    if (r) {
        freeReplyObject(r);
        return DFD_OK;
    }
    if (e.code == DFD_E_INTERNAL && strstr(e.message, "BUSYGROUP")) return DFD_OK; /* it exists */
    *err = e;
    return e.code;
}

int srv_broker_ping(srv_broker *b, dfd_error *err) {
    pthread_mutex_lock(&b->mu);
    int rc = ensure_group_locked(b, err);
    pthread_mutex_unlock(&b->mu);
    return rc;
}

/* ---- server side ------------------------------------------------------------------------------ */

static int read_file_bytes(const char *path, uint64_t bytes, char **out, size_t *n, dfd_error *err) {
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return srv_fail(err, DFD_E_IO, "cannot read the upload: %s", strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || (uint64_t)st.st_size > bytes + 0 || st.st_size <= 0) {
        close(fd);
        return srv_fail(err, DFD_E_IO, "the upload changed size");
    }
    size_t len = (size_t)st.st_size;
    char *buf = malloc(len);
    if (!buf) {
        close(fd);
        return srv_fail(err, DFD_E_NOMEM, "out of memory for the upload");
    }
    size_t got = 0;
    while (got < len) {
        ssize_t k = read(fd, buf + got, len - got);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) {
            free(buf);
            close(fd);
            return srv_fail(err, DFD_E_IO, "cannot read the upload");
        }
        got += (size_t)k;
    }
    close(fd);
    *out = buf;
    *n = len;
    return DFD_OK;
}

static int copy_file(const char *from, const char *to, dfd_error *err) {
    int in = open(from, O_RDONLY | O_CLOEXEC);
    if (in < 0) return srv_fail(err, DFD_E_IO, "cannot read the upload: %s", strerror(errno));
    int out = open(to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0640);
    if (out < 0) {
        close(in);
        return srv_fail(err, DFD_E_IO, "cannot write into the spool folder: %s", strerror(errno));
    }
    char buf[65536];
    int rc = DFD_OK;
    for (;;) {
        ssize_t k = read(in, buf, sizeof buf);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0) {
            rc = srv_fail(err, DFD_E_IO, "cannot read the upload: %s", strerror(errno));
            break;
        }
        if (k == 0) break;
        for (ssize_t o = 0; o < k;) {
            ssize_t w = write(out, buf + o, (size_t)(k - o));
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) {
                rc = srv_fail(err, DFD_E_IO, "cannot write into the spool folder: %s", strerror(errno));
                break;
            }
            o += w;
        }
        if (rc != DFD_OK) break;
    }
    if (close(out) != 0 && rc == DFD_OK) rc = srv_fail(err, DFD_E_IO, "cannot write into the spool folder");
    close(in);
    if (rc != DFD_OK) unlink(to);
    return rc;
}

static void spool_path(char *out, size_t cap, const char *dir, const char *id) {
    snprintf(out, cap, "%s/%s.upload", dir, id);
}

int srv_broker_submit(srv_broker *b, const srv_broker_submit_args *s, dfd_error *err) {
    if (!valid_id(s->id)) return srv_fail(err, DFD_E_ARG, "bad job id");
    char key[64], ukey[80];
    job_key(key, s->id);
    snprintf(ukey, sizeof ukey, "%s:upload", key);
    char *data = NULL;
    size_t n = 0;
    char spooled[4400] = "";
    if (s->spool_dir) {
        spool_path(spooled, sizeof spooled, s->spool_dir, s->id);
        if (rename(s->path, spooled) != 0) {
            int rc = copy_file(s->path, spooled, err);
            if (rc != DFD_OK) return rc;
        }
    } else {
        int rc = read_file_bytes(s->path, s->bytes ? s->bytes : UINT64_MAX, &data, &n, err);
        if (rc != DFD_OK) return rc;
    }
    pthread_mutex_lock(&b->mu);
    int rc = DFD_OK;
    if (data) {
        args a = {0};
        arg(&a, "SET");
        arg(&a, ukey);
        arg_bin(&a, data, n);
        arg(&a, "EX");
        arg_num(&a, UPLOAD_TTL_S);
        redisReply *r = run_locked(b, a.n, a.v, a.len, err);
        if (!r) rc = err->code ? err->code : DFD_E_IO;
        freeReplyObject(r);
    }
    if (rc == DFD_OK) {
        args a = {0};
        arg_eval(&a, lua_submit, 1);
        arg(&a, key);
        arg(&a, s->id);
        arg(&a, s->name ? s->name : "upload");
        arg(&a, s->kind == DFD_MEDIA_VIDEO ? "video" : "image");
        arg(&a, s->explain ? "1" : "0");
        arg(&a, s->notify ? s->notify : "");
        arg(&a, s->spool_dir ? "spool" : "redis");
        arg_num(&a, (double)(data ? n : s->bytes));
        arg_num(&a, floor(s->job_ttl_s));
        arg_num(&a, OPEN_TTL_S);
        redisReply *r = run_locked(b, a.n, a.v, a.len, err);
        if (!r) rc = err->code ? err->code : DFD_E_IO;
        freeReplyObject(r);
    }
    pthread_mutex_unlock(&b->mu);
    free(data);
    if (rc != DFD_OK && spooled[0]) unlink(spooled);
    return rc;
}

void srv_broker_job_clear(srv_broker_job *j) {
    free(j->result);
    memset(j, 0, sizeof *j);
}

int srv_broker_get(srv_broker *b, const char *id, srv_broker_job *j, dfd_error *err) {
    memset(j, 0, sizeof *j);
    j->p_fake = NAN;
    if (!valid_id(id)) return DFD_OK;
    char key[64];
    job_key(key, id);
    args a = {0};
    arg_eval(&a, lua_get, 1);
    arg(&a, key);
    redisReply *r = run(b, &a, err);
    if (!r) return err->code;
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 15) {
        freeReplyObject(r);
        return DFD_OK;
    }
    j->found = 1;
    snprintf(j->id, sizeof j->id, "%s", id);
    double now = num_of(elem(r, 0), 0);
    char s[32];
    copy_str(s, sizeof s, elem(r, 1));
    j->state = state_of(s);
    copy_str(s, sizeof s, elem(r, 2));
    j->kind = strcmp(s, "video") == 0 ? DFD_MEDIA_VIDEO : DFD_MEDIA_IMAGE;
    j->progress = num_of(elem(r, 3), 0);
    if (!(j->progress >= 0)) j->progress = 0;
    if (j->progress > 1) j->progress = 1;
    j->cancel_requested = num_of(elem(r, 4), 0) != 0;
    double created = num_of(elem(r, 5), now), started = num_of(elem(r, 6), 0), finished = num_of(elem(r, 7), 0);
    j->age_s = now > created ? (now - created) / 1000.0 : 0;
    if (j->state == SRV_JOB_RUNNING && started > 0) j->run_s = now > started ? (now - started) / 1000.0 : 0;
    else if (started > 0 && finished >= started) j->run_s = (finished - started) / 1000.0;
    double at = num_of(elem(r, 8), 0);
    j->attempts = at >= 0 && at < 1e6 ? (int)at : 0;
    double st = num_of(elem(r, 9), 0);
    j->status = st >= 0 && st < DFD_E__COUNT ? (int)st : DFD_E_INTERNAL;
    double v = num_of(elem(r, 10), DFD_VERDICT_ERROR);
    j->verdict = v >= 0 && v <= DFD_VERDICT_ERROR ? (int)v : DFD_VERDICT_ERROR;
    j->p_fake = num_of(elem(r, 11), NAN);
    copy_str(j->error, sizeof j->error, elem(r, 12));
    copy_str(j->worker, sizeof j->worker, elem(r, 13));
    const redisReply *res = elem(r, 14);
    if (j->state == SRV_JOB_DONE && is_str(res) && res->len > 0 && res->len < (64u << 20)) {
        j->result = malloc(res->len + 1);
        if (!j->result) {
            freeReplyObject(r);
            return srv_fail(err, DFD_E_NOMEM, "out of memory for a result");
        }
        memcpy(j->result, res->str, res->len);
        j->result[res->len] = 0;
    }
    freeReplyObject(r);
    return DFD_OK;
}

int srv_broker_state(srv_broker *b, const char *id, int *state, dfd_error *err) {
    *state = -1;
    if (!valid_id(id)) return DFD_OK;
    char key[64];
    job_key(key, id);
    args a = {0};
    arg(&a, "HGET");
    arg(&a, key);
    arg(&a, "state");
    redisReply *r = run(b, &a, err);
    if (!r) return err->code;
    if (is_str(r)) {
        char s[32];
        copy_str(s, sizeof s, r);
        *state = state_of(s);
    }
    freeReplyObject(r);
    return DFD_OK;
}

static int cancel_common(srv_broker *b, const char *id, int forget, int *state, int *was_over, dfd_error *err) {
    *state = -1;
    *was_over = 0;
    if (!valid_id(id)) return DFD_OK;
    char key[64];
    job_key(key, id);
    args a = {0};
    arg_eval(&a, lua_cancel, 1);
    arg(&a, key);
    arg_num(&a, DFD_E_CANCELLED);
    arg(&a, forget ? "1" : "0");
    redisReply *r = run(b, &a, err);
    if (!r) return err->code;
    char s[32];
    copy_str(s, sizeof s, elem(r, 0));
    if (strcmp(s, "none") != 0 && s[0]) {
        *state = state_of(s);
        *was_over = num_of(elem(r, 1), 0) != 0;
    }
    freeReplyObject(r);
    return DFD_OK;
}

int srv_broker_cancel(srv_broker *b, const char *id, int *state, int *was_over, dfd_error *err) {
    return cancel_common(b, id, 1, state, was_over, err);
}

int srv_broker_request_cancel(srv_broker *b, const char *id, dfd_error *err) {
    int st, over;
    return cancel_common(b, id, 0, &st, &over, err);
}

int srv_broker_stats_get(srv_broker *b, double worker_window_s, srv_broker_stats *s, dfd_error *err) {
    memset(s, 0, sizeof *s);
    args a = {0};
    arg_eval(&a, lua_stats, 0);
    arg_num(&a, floor(worker_window_s * 1000));
    redisReply *r = run(b, &a, err);
    if (!r) return err->code;
    s->queued = (int64_t)num_of(elem(r, 0), 0);
    s->oldest_wait_s = num_of(elem(r, 1), 0) / 1000.0;
    s->running = (int64_t)num_of(elem(r, 2), 0);
    s->workers_seen = (int64_t)num_of(elem(r, 3), 0);
    s->retries = (int64_t)num_of(elem(r, 4), 0);
    s->finished[SRV_JOB_DONE] = (uint64_t)num_of(elem(r, 5), 0);
    s->finished[SRV_JOB_FAILED] = (uint64_t)num_of(elem(r, 6), 0);
    s->finished[SRV_JOB_CANCELLED] = (uint64_t)num_of(elem(r, 7), 0);
    freeReplyObject(r);
    return DFD_OK;
}

int srv_broker_pop_done(srv_broker *b, const char *sid, int timeout_s, char id[33], int *got, dfd_error *err) {
    *got = 0;
    id[0] = 0;
    char key[80];
    snprintf(key, sizeof key, "dfd:notify:%s", sid);
    args a = {0};
    arg(&a, "BLPOP");
    arg(&a, key);
    arg_num(&a, timeout_s < 1 ? 1 : timeout_s);
    redisReply *r = run(b, &a, err);
    if (!r) return err->code;
    const redisReply *v = elem(r, 1);
    if (is_str(v) && v->len == 32) {
        copy_str(id, 33, v);
        *got = valid_id(id);
    }
    freeReplyObject(r);
    return DFD_OK;
}

/* ---- worker side -------------------------------------------------------------------------------- */

/* Reads one stream entry [id, [field, value, ...]] into t; 0 when it is not a job entry. */
static int read_entry(const redisReply *e, srv_broker_task *t) {
    const redisReply *eid = elem(e, 0), *fields = elem(e, 1);
    if (!is_str(eid) || eid->len >= sizeof t->entry) return 0;
    copy_str(t->entry, sizeof t->entry, eid);
    t->id[0] = 0;
    for (size_t i = 0; fields && i + 1 < fields->elements; i += 2) {
        const redisReply *k = fields->element[i], *v = fields->element[i + 1];
        if (is_str(k) && k->len == 2 && memcmp(k->str, "id", 2) == 0 && is_str(v) && v->len == 32) copy_str(t->id, 33, v);
    }
    return 1;
}

int srv_broker_take(srv_broker *b, const char *consumer, double visibility_s, int block_ms, char *cursor,
                    srv_broker_task *t, int *got, dfd_error *err) {
    *got = 0;
    memset(t, 0, sizeof *t);
    pthread_mutex_lock(&b->mu);
    int rc = DFD_OK;
    /* 1. An entry another consumer took and left idle too long (it died). */
    args a = {0};
    arg(&a, "XAUTOCLAIM");
    arg(&a, STREAM);
    arg(&a, GROUP);
    arg(&a, consumer);
    arg_num(&a, floor(visibility_s * 1000));
    arg(&a, cursor[0] ? cursor : "0-0");
    arg(&a, "COUNT");
    arg(&a, "1");
    dfd_error e;
    srv_error_clear(&e);
    redisReply *r = run_locked(b, a.n, a.v, a.len, &e);
    if (!r && e.code == DFD_E_INTERNAL && strstr(e.message, "NOGROUP")) {
        /* Redis lost the group (restarted without its data): make it again. */
        if ((rc = ensure_group_locked(b, err)) != DFD_OK) goto out;
        r = run_locked(b, a.n, a.v, a.len, &e);
    }
    if (!r) {
        *err = e;
        rc = e.code;
        goto out;
    }
    const redisReply *next = elem(r, 0), *claimed = elem(r, 1);
    if (is_str(next) && next->len < 64) copy_str(cursor, 64, next);
    for (size_t i = 0; claimed && i < claimed->elements; i++) {
        if (claimed->element[i]->type != REDIS_REPLY_ARRAY) continue;
        if (read_entry(claimed->element[i], t)) {
            *got = 1;
            break;
        }
    }
    freeReplyObject(r);
    if (*got) goto out;
    /* 2. A new entry. The lock is held while blocking: this handle is the caller's own. */
    args x = {0};
    char blk[32];
    snprintf(blk, sizeof blk, "%d", block_ms > 0 ? block_ms : 1);
    arg(&x, "XREADGROUP");
    arg(&x, "GROUP");
    arg(&x, GROUP);
    arg(&x, consumer);
    arg(&x, "COUNT");
    arg(&x, "1");
    arg(&x, "BLOCK");
    arg(&x, blk);
    arg(&x, "STREAMS");
    arg(&x, STREAM);
    arg(&x, ">");
    srv_error_clear(&e);
    r = run_locked(b, x.n, x.v, x.len, &e);
    if (!r && e.code == DFD_E_INTERNAL && strstr(e.message, "NOGROUP")) {
        if ((rc = ensure_group_locked(b, err)) != DFD_OK) goto out;
        r = run_locked(b, x.n, x.v, x.len, &e);
    }
    if (!r) {
        *err = e;
        rc = e.code;
        goto out;
    }
    /* [[stream, [[id, fields], ...]]] or nil on timeout */
    const redisReply *entries = elem(elem(r, 0), 1);
    if (entries && entries->elements > 0 && read_entry(entries->element[0], t)) *got = 1;
    freeReplyObject(r);
out:
    pthread_mutex_unlock(&b->mu);
    return rc;
}

int srv_broker_start(srv_broker *b, const srv_broker_task *t, const char *consumer, int max_attempts,
                     srv_broker_start_info *info, dfd_error *err) {
    memset(info, 0, sizeof *info);
    char key[64];
    if (!valid_id(t->id)) {
        /* Not a job of ours (or mangled): acknowledge it so that it is not claimed forever. */
        args a = {0};
        arg(&a, "XACK");
        arg(&a, STREAM);
        arg(&a, GROUP);
        arg(&a, t->entry);
        redisReply *r = run(b, &a, err);
        if (!r) return err->code;
        freeReplyObject(r);
        return DFD_OK;
    }
    job_key(key, t->id);
    args a = {0};
    arg_eval(&a, lua_start, 1);
    arg(&a, key);
    arg(&a, t->entry);
    arg(&a, consumer);
    arg_num(&a, max_attempts);
    arg_num(&a, DFD_E_CANCELLED);
    arg_num(&a, DFD_E_INTERNAL);
    arg(&a, t->id);
    redisReply *r = run(b, &a, err);
    if (!r) return err->code;
    char what[16];
    copy_str(what, sizeof what, elem(r, 0));
    if (strcmp(what, "run") == 0) {
        info->run = 1;
        info->attempts = (int)num_of(elem(r, 1), 1);
        copy_str(info->name, sizeof info->name, elem(r, 2));
        char s[16];
        copy_str(s, sizeof s, elem(r, 3));
        info->kind = strcmp(s, "video") == 0 ? DFD_MEDIA_VIDEO : DFD_MEDIA_IMAGE;
        copy_str(s, sizeof s, elem(r, 4));
        info->explain = strcmp(s, "1") == 0;
        copy_str(s, sizeof s, elem(r, 5));
        info->spooled = strcmp(s, "spool") == 0;
    }
    freeReplyObject(r);
    return DFD_OK;
}

static int write_fd(int fd, const char *p, size_t n) {
    while (n) {
        ssize_t k = write(fd, p, n);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return -1;
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

int srv_broker_fetch_upload(srv_broker *b, const char *id, int spooled, const char *spool_dir, uint64_t max_bytes,
                            int fd, dfd_error *err) {
    if (!valid_id(id)) return srv_fail(err, DFD_E_ARG, "bad job id");
    if (spooled) {
        if (!spool_dir) return srv_fail(err, DFD_E_ARG, "the upload is in a spool folder, and this worker has no --spool");
        char path[4400];
        spool_path(path, sizeof path, spool_dir, id);
        int in = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (in < 0) return srv_fail(err, errno == ENOENT ? DFD_E_NOT_FOUND : DFD_E_IO, "cannot open the spooled upload: %s",
                                    strerror(errno));
        char buf[65536];
        uint64_t total = 0;
        int rc = DFD_OK;
        for (;;) {
            ssize_t k = read(in, buf, sizeof buf);
            if (k < 0 && errno == EINTR) continue;
            if (k < 0) {
                rc = srv_fail(err, DFD_E_IO, "cannot read the spooled upload: %s", strerror(errno));
                break;
            }
            if (k == 0) break;
            total += (uint64_t)k;
            if (total > max_bytes) {
                rc = srv_fail(err, DFD_E_LIMIT, "the upload is over this worker's limit of %" PRIu64 " bytes", max_bytes);
                break;
            }
            if (write_fd(fd, buf, (size_t)k) != 0) {
                rc = srv_fail(err, DFD_E_IO, "cannot write a temporary file: %s", strerror(errno));
                break;
            }
        }
        close(in);
        return rc;
    }
    char key[80];
    snprintf(key, sizeof key, "dfd:job:%s:upload", id);
    pthread_mutex_lock(&b->mu);
    int rc = DFD_OK;
    args a = {0};
    arg(&a, "STRLEN");
    arg(&a, key);
    redisReply *r = run_locked(b, a.n, a.v, a.len, err);
    if (!r) {
        rc = err->code;
        goto out;
    }
    long long len = r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
    freeReplyObject(r);
    if (len <= 0) {
        rc = srv_fail(err, DFD_E_NOT_FOUND, "the upload is gone from Redis (it waits %d s at most)", UPLOAD_TTL_S);
        goto out;
    }
    if ((uint64_t)len > max_bytes) {
        rc = srv_fail(err, DFD_E_LIMIT, "the upload (%lld bytes) is over this worker's limit of %" PRIu64 " bytes", len,
                      max_bytes);
        goto out;
    }
    args g = {0};
    arg(&g, "GET");
    arg(&g, key);
    r = run_locked(b, g.n, g.v, g.len, err);
    if (!r) {
        rc = err->code;
        goto out;
    }
    if (!is_str(r) || r->len == 0 || (uint64_t)r->len > max_bytes) {
        rc = srv_fail(err, DFD_E_NOT_FOUND, "the upload is gone from Redis");
    } else if (write_fd(fd, r->str, r->len) != 0) {
        rc = srv_fail(err, DFD_E_IO, "cannot write a temporary file: %s", strerror(errno));
    }
    freeReplyObject(r);
out:
    pthread_mutex_unlock(&b->mu);
    return rc;
}

int srv_broker_lease(srv_broker *b, const srv_broker_task *t, const char *consumer, double progress, int *cancel,
                     int *lost, dfd_error *err) {
    *cancel = 0;
    *lost = 0;
    char key[64];
    job_key(key, t->id);
    args a = {0};
    arg_eval(&a, lua_lease, 1);
    arg(&a, key);
    arg(&a, t->entry);
    arg(&a, consumer);
    arg_num(&a, progress >= 0 && progress <= 1 ? floor(progress * 1000) / 1000 : 0);
    redisReply *r = run(b, &a, err);
    if (!r) return err->code;
    long long v = r->type == REDIS_REPLY_INTEGER ? r->integer : 0;
    *cancel = v == 1;
    *lost = v == -1;
    freeReplyObject(r);
    return DFD_OK;
}

int srv_broker_finish(srv_broker *b, const srv_broker_task *t, const srv_broker_end *e, int *written,
                      dfd_error *err) {
    *written = 0;
    char key[64];
    job_key(key, t->id);
    args a = {0};
    arg_eval(&a, lua_finish, 1);
    arg(&a, key);
    arg(&a, t->entry);
    arg(&a, srv_job_state_name(e->state));
    arg_num(&a, e->status);
    arg(&a, e->error ? e->error : "");
    arg(&a, e->result_json ? e->result_json : "");
    arg_num(&a, e->verdict);
    if (isfinite(e->p_fake)) arg_num(&a, e->p_fake);
    else arg(&a, "");
    redisReply *r = run(b, &a, err);
    if (!r) return err->code;
    *written = r->type == REDIS_REPLY_INTEGER && r->integer == 1;
    freeReplyObject(r);
    return DFD_OK;
}

int srv_broker_heartbeat(srv_broker *b, const char *consumer, dfd_error *err) {
    args a = {0};
    arg_eval(&a, lua_heartbeat, 0);
    arg(&a, consumer);
    redisReply *r = run(b, &a, err);
    if (!r) return err->code;
    freeReplyObject(r);
    return DFD_OK;
}
