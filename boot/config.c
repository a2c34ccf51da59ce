/* Line-oriented parser for hv.cfg. Every rejected input names its line and
 * the reason, because the user's only feedback is a serial log. */
#include "boot/config.h"
#include "lib/fmt.h"
#include "lib/string.h"
#include "mm/trace.h"

enum value_kind { V_SIZE, V_PATH, V_STRING, V_LEVEL, V_BOOL, V_CRASH, V_UINT, V_PERCENT, V_DEVICE, V_SELFTEST, V_FIXED2, V_RATIO };

struct key_desc {
    const char *name;
    enum value_kind kind;
    bool vm;        /* true: only inside [vm NAME]; false: only global */
    bool required;  /* for vm keys */
    uint64_t bit;   /* for duplicate detection */
};

static const struct key_desc keys[] = {
    { "memory", V_SIZE, true, true, 1u << 0 },
    { "kernel", V_PATH, true, true, 1u << 1 },
    { "initrd", V_PATH, true, false, 1u << 2 },
    { "cmdline", V_STRING, true, false, 1u << 3 },
    { "log", V_LEVEL, false, false, 1u << 4 },
    { "poweroff", V_BOOL, false, false, 1u << 5 },
    { "crash", V_CRASH, false, false, 1u << 6 },
    { "reserve", V_SIZE, true, false, 1u << 7 },
    { "limit", V_SIZE, true, false, 1u << 8 },
    { "watermark", V_SIZE, false, false, 1u << 9 },
    { "stats", V_UINT, false, false, 1u << 10 },
    { "sweep", V_UINT, false, false, 1u << 11 },
    { "pool", V_PERCENT, false, false, 1u << 12 },
    { "pool_max", V_UINT, false, false, 1u << 13 },
    { "pool_check", V_BOOL, false, false, 1u << 14 },
    { "compress", V_BOOL, true, false, 1u << 15 },
    { "dump_pages", V_UINT, true, false, 1u << 16 },
    { "share_rate", V_UINT, false, false, 1u << 17 },
    { "share_ms", V_UINT, false, false, 1u << 18 },
    { "share", V_BOOL, true, false, 1u << 19 },
    { "share_salt", V_UINT, true, false, 1u << 20 },
    { "share_cpu", V_PERCENT, false, false, 1u << 21 },
    { "swap", V_DEVICE, false, false, 1u << 22 },
    { "swap_offset", V_SIZE, false, false, 1u << 23 },
    { "swap_size", V_SIZE, false, false, 1u << 24 },
    { "swap_format", V_BOOL, false, false, 1u << 25 },
    { "swap_partition", V_UINT, false, false, 1u << 26 },
    { "swap_selftest", V_SELFTEST, false, false, 1u << 27 },
    { "nvme_test_hold", V_UINT, false, false, 1u << 28 },
    { "balloon", V_SIZE, true, false, 1u << 29 },
    { "balloon_policy", V_BOOL, false, false, 1u << 30 },
    { "nvme_test_stuck", V_BOOL, false, false, 1u << 31 },
    /* The seed's alerts (mm/alerts.h): decimals allowed, 0 disables. */
    { "alert_balloon_pct", V_FIXED2, false, false, 1ull << 32 },
    { "alert_swap_mbps", V_FIXED2, false, false, 1ull << 33 },
    { "alert_zip_ratio", V_FIXED2, false, false, 1ull << 34 },
    { "alert_share_pct", V_FIXED2, false, false, 1ull << 35 },
    { "alert_periods", V_UINT, false, false, 1ull << 36 },
    { "min_free", V_SIZE, false, false, 1ull << 37 },
    { "reclaim_cpu", V_PERCENT, false, false, 1ull << 38 },
    { "overcommit_max", V_RATIO, false, false, 1ull << 39 },
    { "max_memory", V_SIZE, true, false, 1ull << 40 },
};

static const char *const crash_names[] = {
    [CRASH_NONE] = "none", [CRASH_WRITE_TEXT] = "write-text",
    [CRASH_EXEC_DATA] = "exec-data", [CRASH_NULL] = "null", [CRASH_UD] = "ud",
};

static const char *const subsys_names[LS_COUNT] = {
    "hv", "boot", "arch", "mm", "vmx", "drv", "test", "con",
};
static const char *const level_names[] = { "error", "warn", "info", "debug" };

struct parser {
    struct hv_config *cfg;
    struct cfg_error *err;
    int line;
    struct vm_config *vm;   /* current section, NULL when global */
    uint64_t seen_global;
    uint64_t seen_vm;
    unsigned seen_log_subsys;
    unsigned seen_trace; /* trace (1), trace_frames (2) */
};

__attribute__((format(printf, 2, 3))) static int fail(struct parser *p,
                                                      const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fmt_vsnprintf(p->err->reason, sizeof(p->err->reason), fmt, ap);
    va_end(ap);
    p->err->line = p->line;
    return -1;
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r';
}

static char *trim(char *s)
{
    while (is_space(*s))
        s++;
    size_t n = strlen(s);
    while (n && is_space(s[n - 1]))
        s[--n] = '\0';
    return s;
}

static bool name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c >= '0' && c <= '9') || c == '_' || c == '-';
}

int config_parse_size(const char *s, uint64_t *out)
{
    uint64_t v = 0;
    const char *p = s;
    if (*p < '0' || *p > '9')
        return -1;
    for (; *p >= '0' && *p <= '9'; p++) {
        if (v > (UINT64_MAX - 9) / 10)
            return -1;
        v = v * 10 + (uint64_t)(*p - '0');
    }
    unsigned shift = 0;
    switch (*p) {
    case 'k': case 'K': shift = 10; p++; break;
    case 'm': case 'M': shift = 20; p++; break;
    case 'g': case 'G': shift = 30; p++; break;
    case 't': case 'T': shift = 40; p++; break;
    default: break;
    }
    if (shift && (*p == 'i') && p[1] == 'B')
        p += 2;
    else if (shift && (*p == 'B' || *p == 'b'))
        p++;
    if (*p != '\0')
        return -1;
    if (shift && v > (UINT64_MAX >> shift))
        return -1;
    *out = v << shift;
    return 0;
}

/* Strips an unquoted trailing comment ('#' or ';' after whitespace) and
 * removes surrounding double quotes. Returns NULL on an unterminated quote. */
static char *clean_value(char *v)
{
    v = trim(v);
    if (*v == '"') {
        char *end = strchr(v + 1, '"');
        if (!end)
            return NULL;
        char *rest = trim(end + 1);
        if (*rest && *rest != '#' && *rest != ';')
            return NULL;
        *end = '\0';
        return v + 1;
    }
    for (char *c = v; *c; c++) {
        if ((*c == '#' || *c == ';') && (c == v || is_space(c[-1]))) {
            *c = '\0';
            break;
        }
    }
    return trim(v);
}

static int copy_str(struct parser *p, char *dst, size_t cap, const char *src,
                    const char *what)
{
    size_t n = strlen(src);
    if (n >= cap)
        return fail(p, "%s is too long (%zu bytes, at most %zu)", what, n, cap - 1);
    memcpy(dst, src, n + 1);
    return 0;
}

/* Paths name files on the boot volume: '/' is accepted for '\', and a path
 * that is not absolute is taken relative to \hv\ where hv.cfg lives. */
static int set_path(struct parser *p, char *dst, const char *v, const char *key)
{
    char tmp[CFG_PATH_MAX + 8];
    if (!*v)
        return fail(p, "'%s' needs a file name", key);
    size_t n = 0;
    if (*v != '\\' && *v != '/') {
        memcpy(tmp, "\\hv\\", 4);
        n = 4;
    }
    for (; *v; v++) {
        if (n >= sizeof(tmp) - 1)
            return fail(p, "path for '%s' is too long (at most %d bytes)", key,
                        CFG_PATH_MAX - 1);
        if ((unsigned char)*v < 0x20 || (unsigned char)*v > 0x7e)
            return fail(p, "path for '%s' has a non-printable or non-ASCII byte",
                        key);
        tmp[n++] = *v == '/' ? '\\' : *v;
    }
    tmp[n] = '\0';
    return copy_str(p, dst, CFG_PATH_MAX, tmp, "path");
}

static int parse_level(const char *v)
{
    for (int i = 0; i < 4; i++)
        if (!strcmp(v, level_names[i]))
            return i;
    return -1;
}

static int handle_section(struct parser *p, char *s)
{
    size_t n = strlen(s);
    if (s[n - 1] != ']')
        return fail(p, "section header must end with ']'");
    s[n - 1] = '\0';
    s = trim(s + 1);
    if (!strcmp(s, "vm"))
        return fail(p, "'[vm]' needs a name");
    if (strncmp(s, "vm", 2) || !is_space(s[2]))
        return fail(p, "unknown section '[%s]' (expected '[vm NAME]')", s);
    char *name = trim(s + 2);
    if (!*name)
        return fail(p, "'[vm]' needs a name");
    for (char *c = name; *c; c++)
        if (!name_char(*c))
            return fail(p, "VM name '%s' may hold only letters, digits, '_' and '-'",
                        name);
    if (strlen(name) >= CFG_NAME_MAX)
        return fail(p, "VM name '%s' is too long (at most %d characters)", name,
                    CFG_NAME_MAX - 1);
    for (int i = 0; i < p->cfg->nvms; i++)
        if (!strcmp(p->cfg->vm[i].name, name))
            return fail(p, "VM '%s' is defined twice (first on line %d)", name,
                        p->cfg->vm[i].line);
    if (p->cfg->nvms >= CFG_MAX_VMS)
        return fail(p, "too many VMs (at most %d)", CFG_MAX_VMS);
    p->vm = &p->cfg->vm[p->cfg->nvms++];
    memset(p->vm, 0, sizeof(*p->vm));
    memcpy(p->vm->name, name, strlen(name) + 1);
    p->vm->line = p->line;
    p->vm->compress = true;
    p->vm->share = true;
    p->seen_vm = 0;
    return 0;
}

static int check_vm_complete(struct parser *p)
{
    if (!p->vm)
        return 0;
    if (p->vm->limit && p->vm->limit > p->vm->memory && p->vm->memory) {
        p->line = p->vm->line;
        return fail(p, "VM '%s': limit is above its memory", p->vm->name);
    }
    if (p->vm->max_memory && p->vm->memory && p->vm->max_memory < p->vm->memory) {
        p->line = p->vm->line;
        return fail(p, "VM '%s': max_memory is below its memory (the size it boots with)",
                    p->vm->name);
    }
    if (p->vm->max_memory && p->vm->limit) {
        p->line = p->vm->line;
        return fail(p, "VM '%s': limit and max_memory both bound what it may use: give one "
                       "(with max_memory, memory is its limit and 'mem' moves it)",
                    p->vm->name);
    }
    if (p->vm->balloon > p->vm->memory && p->vm->memory) {
        p->line = p->vm->line;
        return fail(p, "VM '%s': balloon is above its memory", p->vm->name);
    }
    if (p->vm->reserve > (p->vm->limit ? p->vm->limit : p->vm->memory) && p->vm->memory) {
        p->line = p->vm->line;
        return fail(p, "VM '%s': reserve is above its %s", p->vm->name,
                    p->vm->limit ? "limit" : "memory");
    }
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        if (keys[i].vm && keys[i].required && !(p->seen_vm & keys[i].bit)) {
            p->line = p->vm->line;
            return fail(p, "VM '%s' has no '%s' (required)", p->vm->name,
                        keys[i].name);
        }
    }
    return 0;
}

static int handle_log_subsys(struct parser *p, const char *sub, const char *v)
{
    for (int i = 0; i < LS_COUNT; i++) {
        if (strcmp(sub, subsys_names[i]))
            continue;
        if (p->seen_log_subsys & (1u << i))
            return fail(p, "'log.%s' is set twice", sub);
        p->seen_log_subsys |= 1u << i;
        int l = parse_level(v);
        if (l < 0)
            return fail(p, "bad log level '%s' (error, warn, info or debug)", v);
        p->cfg->log_level[i] = (signed char)l;
        return 0;
    }
    return fail(p, "unknown log subsystem 'log.%s'", sub);
}

/* The allocation policy's keys (issue 18, mm/policy_alloc.h): shares per
 * VM; idle_tax, sample_pages, sample_period global. Returns 1 when key is
 * not one of them. */
static int handle_alloc_key(struct parser *p, const char *key, const char *val)
{
    static const char *const names[] = { "shares", "idle_tax", "sample_pages", "sample_period" };
    int k = -1;
    for (int i = 0; i < 4; i++)
        if (!strcmp(key, names[i]))
            k = i;
    if (k < 0)
        return 1;
    if (k == 0 && !p->vm)
        return fail(p, "'%s' belongs in a [vm NAME] section", key);
    if (k > 0 && p->vm)
        return fail(p, "'%s' is a global key; put it before any [vm] section", key);
    bool *seen = k == 0 ? &p->cfg->alloc_seen[0] : &p->cfg->alloc_seen[k];
    if (k == 0 && (p->vm->shares_per_mib || p->vm->shares_abs))
        return fail(p, "'%s' is set twice in this section", key);
    if (k > 0 && *seen)
        return fail(p, "'%s' is set twice", key);
    *seen = true;
    if (k == 0) {
        if (!strcmp(val, "low"))
            p->vm->shares_per_mib = 5;
        else if (!strcmp(val, "normal"))
            p->vm->shares_per_mib = 10;
        else if (!strcmp(val, "high"))
            p->vm->shares_per_mib = 20;
    }
    if (k == 0 && p->vm->shares_per_mib)
        return 0;
    uint64_t v = 0;
    const char *c = val;
    if (!*c)
        return fail(p, "'%s' needs a number", key);
    for (; *c; c++) {
        if (*c < '0' || *c > '9' || v > 1000000000000ULL)
            return fail(p, k == 0 ? "bad shares '%s' (low, normal, high or a number)"
                                  : "bad number '%s' for '%s'", val, key);
        v = v * 10 + (uint64_t)(*c - '0');
    }
    switch (k) {
    case 0:
        if (v < 1 || v > 1000000000000ULL)
            return fail(p, "shares %s is out of range (1 .. 10^12)", val);
        p->vm->shares_abs = v;
        break;
    case 1:
        if (v > 99)
            return fail(p, "idle_tax %s%% is out of range (0 .. 99)", val);
        p->cfg->idle_tax = (uint8_t)v;
        break;
    case 2:
        if (v > CFG_SAMPLE_PAGES_MAX)
            return fail(p, "sample_pages %s is above %d", val, CFG_SAMPLE_PAGES_MAX);
        p->cfg->sample_pages = (uint32_t)v;
        break;
    default:
        if (v < 100 || v > 600000)
            return fail(p, "sample_period %s ms is out of range (100 .. 600000)", val);
        p->cfg->sample_period = (uint32_t)v;
        break;
    }
    return 0;
}

/* trace = fault,reclaim,share,swap,balloon,load | all | none, and
 * trace_frames = N (docs/trace.md). */
static int handle_trace(struct parser *p, const char *key, const char *val)
{
    if (p->vm)
        return fail(p, "'%s' is a global key; put it before any [vm] section", key);
    unsigned bit = strcmp(key, "trace") ? 2 : 1;
    if (p->seen_trace & bit)
        return fail(p, "'%s' is set twice", key);
    p->seen_trace |= bit;
    if (bit == 2) {
        uint64_t v = 0;
        const char *c = val;
        for (; *c >= '0' && *c <= '9' && v <= TRACE_FRAMES_MAX; c++)
            v = v * 10 + (uint64_t)(*c - '0');
        if (!*val || *c || v < 1 || v > TRACE_FRAMES_MAX)
            return fail(p, "trace_frames '%s' is not a number of frames from 1 to %u", val,
                        TRACE_FRAMES_MAX);
        p->cfg->trace_frames = (uint32_t)v;
        return 0;
    }
    uint32_t mask = 0;
    if (!strcmp(val, "none") || !strcmp(val, "off")) {
        p->cfg->trace_mask = 0;
        return 0;
    }
    for (const char *c = val; *c;) {
        const char *w = c;
        while (*c && *c != ',')
            c++;
        size_t n = (size_t)(c - w);
        while (n && is_space(*w))
            w++, n--;
        while (n && is_space(w[n - 1]))
            n--;
        uint32_t b = trace_mask_bit(w, n);
        if (!b)
            return fail(p, "trace: unknown cause '%.*s' (fault, reclaim, share, swap, balloon, "
                           "load, all or none)", (int)n, w);
        mask |= b;
        if (*c)
            c++;
    }
    if (!mask)
        return fail(p, "trace needs causes (fault, reclaim, share, swap, balloon, load, all) "
                       "or none");
    p->cfg->trace_mask = mask;
    return 0;
}

static int handle_key(struct parser *p, char *key, char *val)
{
    int ak = handle_alloc_key(p, key, val);
    if (ak <= 0)
        return ak;
    if (!strcmp(key, "trace") || !strcmp(key, "trace_frames"))
        return handle_trace(p, key, val);
    if (!strncmp(key, "log.", 4)) {
        if (p->vm)
            return fail(p, "'%s' is a global key; put it before any [vm] section", key);
        return handle_log_subsys(p, key + 4, val);
    }
    const struct key_desc *k = NULL;
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        if (!strcmp(keys[i].name, key))
            k = &keys[i];
    if (!k)
        return fail(p, "unknown key '%s'", key);
    if (k->vm && !p->vm)
        return fail(p, "'%s' belongs in a [vm NAME] section", key);
    if (!k->vm && p->vm)
        return fail(p, "'%s' is a global key; put it before any [vm] section", key);
    uint64_t *seen = p->vm ? &p->seen_vm : &p->seen_global;
    if (*seen & k->bit)
        return fail(p, "'%s' is set twice", key);
    *seen |= k->bit;

    switch (k->kind) {
    case V_SIZE: {
        uint64_t v;
        if (config_parse_size(val, &v))
            return fail(p, "bad size '%s' for '%s' (use e.g. 512M, 2G, 65536K)",
                        val, key);
        if (!strcmp(key, "memory") && (v < CFG_MIN_VM_MEMORY || v > CFG_MAX_VM_MEMORY))
            return fail(p, "memory %s is out of range (1M .. 1T)", val);
        if (v & 0xfff)
            return fail(p, "%s %s is not a multiple of 4K", key, val);
        if (!strcmp(key, "memory")) {
            p->vm->memory = v;
        } else if (!strcmp(key, "reserve")) {
            p->vm->reserve = v;
        } else if (!strcmp(key, "limit")) {
            if (!v)
                return fail(p, "limit must be above 0 (leave it out for no limit)");
            p->vm->limit = v;
        } else if (!strcmp(key, "balloon")) {
            p->vm->balloon = v;
        } else if (!strcmp(key, "max_memory")) {
            if (v < CFG_MIN_VM_MEMORY || v > CFG_MAX_VM_MEMORY)
                return fail(p, "max_memory %s is out of range (1M .. 1T)", val);
            p->vm->max_memory = v;
        } else if (!strcmp(key, "swap_offset")) {
            p->cfg->swap_offset = v;
        } else if (!strcmp(key, "swap_size")) {
            if (v < CFG_SWAP_MIN)
                return fail(p, "swap_size %s is below the smallest swap space (64K)", val);
            p->cfg->swap_size = v;
        } else if (!strcmp(key, "min_free")) {
            if (!v)
                return fail(p, "min_free must be above 0 (leave it out for the default)");
            p->cfg->min_free = v;
        } else {
            p->cfg->watermark = v;
        }
        return 0;
    }
    case V_UINT: {
        uint64_t v = 0;
        const char *c = val;
        if (!*c)
            return fail(p, "'%s' needs a number", key);
        for (; *c; c++) {
            if (*c < '0' || *c > '9' || v > 100000000)
                return fail(p, "bad number '%s' for '%s'", val, key);
            v = v * 10 + (uint64_t)(*c - '0');
        }
        if (!strcmp(key, "stats")) {
            if (v > 86400)
                return fail(p, "stats interval %s is above a day", val);
            p->cfg->stats_interval = (uint32_t)v;
        } else if (!strcmp(key, "pool_max")) {
            if (v < CFG_POOL_MAX_MIN || v > CFG_POOL_MAX_MAX)
                return fail(p, "pool_max %s is out of range (%d .. %d bytes)", val,
                            CFG_POOL_MAX_MIN, CFG_POOL_MAX_MAX);
            p->cfg->pool_max = (uint32_t)v;
        } else if (!strcmp(key, "share_rate")) {
            if (v > 65536)
                return fail(p, "share_rate %s is above 65536 pages per tick", val);
            p->cfg->share_rate = (uint32_t)v;
        } else if (!strcmp(key, "share_ms")) {
            if (v < 1 || v > 60000)
                return fail(p, "share_ms %s is out of range (1 .. 60000)", val);
            p->cfg->share_ms = (uint32_t)v;
        } else if (!strcmp(key, "share_salt")) {
            p->vm->share_salt = v;
            p->vm->share_salt_set = true;
        } else if (!strcmp(key, "nvme_test_hold")) {
            p->cfg->nvme_test_hold = (uint32_t)v;
        } else if (!strcmp(key, "swap_partition")) {
            if (v < 1 || v > 4)
                return fail(p, "swap_partition %s is not an MBR primary partition (1 .. 4)",
                            val);
            p->cfg->swap_partition = (uint8_t)v;
        } else if (!strcmp(key, "alert_periods")) {
            if (v < 1 || v > 1000)
                return fail(p, "alert_periods %s is out of range (1 .. 1000)", val);
            p->cfg->alert_periods = (uint32_t)v;
        } else if (!strcmp(key, "dump_pages")) {
            if (v > 65536)
                return fail(p, "dump_pages %s is above 65536", val);
            p->vm->dump_pages = (uint32_t)v;
        } else {
            if (v < 10 || v > 600000)
                return fail(p, "sweep period %s ms is out of range (10 .. 600000)", val);
            p->cfg->sweep_ms = (uint32_t)v;
        }
        return 0;
    }
    case V_PATH:
        return set_path(p, !strcmp(key, "kernel") ? p->vm->kernel : p->vm->initrd,
                        val, key);
    case V_STRING:
        return copy_str(p, p->vm->cmdline, CFG_CMDLINE_MAX, val, "cmdline");
    case V_LEVEL: {
        int l = parse_level(val);
        if (l < 0)
            return fail(p, "bad log level '%s' (error, warn, info or debug)", val);
        for (int i = 0; i < LS_COUNT; i++)
            if (!(p->seen_log_subsys & (1u << i)))
                p->cfg->log_level[i] = (signed char)l;
        return 0;
    }
    case V_CRASH:
        for (unsigned i = 0; i < sizeof(crash_names) / sizeof(crash_names[0]); i++) {
            if (!strcmp(val, crash_names[i])) {
                p->cfg->crash = (unsigned char)i;
                return 0;
            }
        }
        return fail(p, "bad crash test '%s' (none, write-text, exec-data, null or ud)",
                    val);
    case V_BOOL: {
        bool b;
        if (!strcmp(val, "yes") || !strcmp(val, "true") || !strcmp(val, "1"))
            b = true;
        else if (!strcmp(val, "no") || !strcmp(val, "false") || !strcmp(val, "0"))
            b = false;
        else
            return fail(p, "'%s' must be yes or no, not '%s'", key, val);
        if (!strcmp(key, "poweroff"))
            p->cfg->poweroff = b;
        else if (!strcmp(key, "pool_check"))
            p->cfg->pool_check = b;
        else if (!strcmp(key, "share"))
            p->vm->share = b;
        else if (!strcmp(key, "swap_format"))
            p->cfg->swap_format = b;
        else if (!strcmp(key, "balloon_policy"))
            p->cfg->balloon_policy = b;
        else if (!strcmp(key, "nvme_test_stuck"))
            p->cfg->nvme_test_stuck = b;
        else
            p->vm->compress = b;
        return 0;
    }
    case V_PERCENT: {
        /* "25%" (the % is optional): a share of machine memory, 0 = off. */
        uint64_t v = 0;
        const char *c = val;
        if (*c < '0' || *c > '9')
            return fail(p, "'%s' needs a percentage such as 20%%, not '%s'", key, val);
        for (; *c >= '0' && *c <= '9'; c++)
            if (v <= 1000)
                v = v * 10 + (uint64_t)(*c - '0'); /* beyond: too big anyway */
        if (*c == '%')
            c++;
        if (*c)
            return fail(p, "'%s' needs a percentage such as 20%%, not '%s'", key, val);
        if (!strcmp(key, "share_cpu")) {
            if (v < 1 || v > 100)
                return fail(p, "share_cpu %s is out of range (1%% .. 100%%)", val);
            p->cfg->share_cpu = (uint8_t)v;
            return 0;
        }
        if (!strcmp(key, "reclaim_cpu")) {
            if (v > 100)
                return fail(p, "reclaim_cpu %s is out of range (0%% .. 100%%, 0 = off)", val);
            p->cfg->reclaim_cpu = (uint8_t)v;
            return 0;
        }
        if (v > CFG_POOL_PCT_MAX)
            return fail(p, "pool %s is above %d%% of machine memory", val, CFG_POOL_PCT_MAX);
        p->cfg->pool_pct = (uint8_t)v;
        return 0;
    }
    case V_RATIO: {
        /* "1.5", "1.5:1", "2": guest memory per unit of machine memory, kept
         * in thousandths (at most three decimals). */
        uint64_t v = 0, frac = 0, scale = 1000;
        const char *c = val;
        if (*c < '0' || *c > '9')
            return fail(p, "'%s' needs a ratio such as 1.5 or 1.5:1, not '%s'", key, val);
        for (; *c >= '0' && *c <= '9'; c++)
            if (v <= 1000000)
                v = v * 10 + (uint64_t)(*c - '0');
        if (*c == '.') {
            c++;
            if (*c < '0' || *c > '9')
                return fail(p, "'%s' needs a ratio such as 1.5 or 1.5:1, not '%s'", key, val);
            for (; *c >= '0' && *c <= '9'; c++) {
                if (scale == 1)
                    return fail(p, "'%s' %s has more than three decimals", key, val);
                scale /= 10;
                frac += (uint64_t)(*c - '0') * scale;
            }
        }
        if (c[0] == ':' && c[1] == '1' && !c[2])
            c += 2;
        if (*c)
            return fail(p, "'%s' needs a ratio such as 1.5 or 1.5:1, not '%s'", key, val);
        if (v > 1000)
            return fail(p, "overcommit_max %s is above 1000:1", val);
        uint64_t permille = v * 1000 + frac;
        if (permille < 100)
            return fail(p, "overcommit_max %s is below 0.1:1: no VM could start", val);
        p->cfg->overcommit_max = (uint32_t)permille;
        return 0;
    }
    case V_SELFTEST:
        if (!strcmp(val, "no"))
            p->cfg->swap_selftest = SWAP_TEST_NONE;
        else if (!strcmp(val, "yes"))
            p->cfg->swap_selftest = SWAP_TEST_ALL;
        else if (!strcmp(val, "swap-only"))
            p->cfg->swap_selftest = SWAP_TEST_SWAP;
        else
            return fail(p, "'%s' must be yes, no or swap-only, not '%s'", key, val);
        return 0;
    case V_FIXED2: {
        /* "10", "1.5", "0.25": times 100, at most two decimals. */
        uint64_t v = 0;
        const char *c = val;
        if (*c < '0' || *c > '9')
            return fail(p, "'%s' needs a number such as 10 or 1.5, not '%s'", key, val);
        for (; *c >= '0' && *c <= '9'; c++) {
            if (v > 10000000)
                return fail(p, "'%s' %s is too large", key, val);
            v = v * 10 + (uint64_t)(*c - '0');
        }
        v *= 100;
        if (*c == '.') {
            c++;
            if (*c < '0' || *c > '9')
                return fail(p, "'%s' needs a number such as 10 or 1.5, not '%s'", key, val);
            v += (uint64_t)(*c++ - '0') * 10;
            if (*c >= '0' && *c <= '9')
                v += (uint64_t)(*c++ - '0');
            if (*c >= '0' && *c <= '9')
                return fail(p, "'%s' %s has more than two decimals", key, val);
        }
        if (*c)
            return fail(p, "'%s' needs a number such as 10 or 1.5, not '%s'", key, val);
        if (!strcmp(key, "alert_balloon_pct") || !strcmp(key, "alert_share_pct")) {
            if (v > 10000)
                return fail(p, "'%s' %s is above 100%%", key, val);
            if (!strcmp(key, "alert_balloon_pct"))
                p->cfg->alert_balloon_pct = (uint32_t)v;
            else
                p->cfg->alert_share_pct = (uint32_t)v;
        } else if (!strcmp(key, "alert_swap_mbps")) {
            p->cfg->alert_swap_mbps = (uint32_t)v;
        } else {
            p->cfg->alert_zip_ratio = (uint32_t)v;
        }
        return 0;
    }
    case V_DEVICE: {
        /* A block device as the drivers name it ("nvme0", "ata2"), or none. */
        if (!*val)
            return fail(p, "'%s' needs a device name such as nvme0 or ata2 (or none)", key);
        for (const char *c = val; *c; c++)
            if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9')))
                return fail(p, "bad device name '%s' for '%s' (lower-case letters and "
                               "digits, e.g. nvme0 or ata2)", val, key);
        if (strcmp(val, "none"))
            return copy_str(p, p->cfg->swap_dev, CFG_DEV_MAX, val, "device name");
        return 0;
    }
    }
    return fail(p, "internal: unhandled key kind");
}

static int parse_line(struct parser *p, char *s)
{
    s = trim(s);
    if (!*s || *s == '#' || *s == ';')
        return 0;
    if (*s == '[') {
        if (check_vm_complete(p))
            return -1;
        return handle_section(p, s);
    }
    char *eq = strchr(s, '=');
    if (!eq)
        return fail(p, "expected 'key = value' or '[vm NAME]'");
    *eq = '\0';
    char *key = trim(s);
    if (!*key)
        return fail(p, "missing key before '='");
    for (char *c = key; *c; c++)
        if (!name_char(*c) && *c != '.')
            return fail(p, "bad key '%s'", key);
    char *val = clean_value(eq + 1);
    if (!val)
        return fail(p, "unterminated or misplaced quote in value of '%s'", key);
    return handle_key(p, key, val);
}

int config_parse(const char *text, size_t len, struct hv_config *cfg,
                 struct cfg_error *err)
{
    struct parser p = { .cfg = cfg, .err = err };
    memset(cfg, 0, sizeof(*cfg));
    memset(err, 0, sizeof(*err));
    for (int i = 0; i < LS_COUNT; i++)
        cfg->log_level[i] = -1;
    cfg->poweroff = true;
    cfg->balloon_policy = true;
    cfg->sweep_ms = 1000;
    cfg->pool_pct = CFG_POOL_PCT_DEFAULT;
    cfg->pool_max = CFG_POOL_MAX_DEFAULT;
    cfg->share_rate = CFG_SHARE_RATE_DEFAULT;
    cfg->share_ms = CFG_SHARE_MS_DEFAULT;
    cfg->share_cpu = CFG_SHARE_CPU_DEFAULT;
    cfg->alert_balloon_pct = CFG_ALERT_BALLOON_PCT_DEFAULT;
    cfg->alert_swap_mbps = CFG_ALERT_SWAP_MBPS_DEFAULT;
    cfg->alert_zip_ratio = CFG_ALERT_ZIP_RATIO_DEFAULT;
    cfg->alert_share_pct = CFG_ALERT_SHARE_PCT_DEFAULT;
    cfg->alert_periods = CFG_ALERT_PERIODS_DEFAULT;
    cfg->reclaim_cpu = CFG_RECLAIM_CPU_DEFAULT;
    cfg->idle_tax = CFG_IDLE_TAX_DEFAULT;
    cfg->sample_pages = CFG_SAMPLE_PAGES_DEFAULT;
    cfg->sample_period = CFG_SAMPLE_PERIOD_DEFAULT;

    size_t pos = 0;
    /* A UTF-8 byte-order mark from a Windows editor is harmless. */
    if (len >= 3 && (unsigned char)text[0] == 0xef &&
        (unsigned char)text[1] == 0xbb && (unsigned char)text[2] == 0xbf)
        pos = 3;
    char line[CFG_LINE_MAX + 1];
    while (pos < len) {
        p.line++;
        size_t n = 0;
        while (pos < len && text[pos] != '\n') {
            char c = text[pos++];
            if (c == '\0' || ((unsigned char)c < 0x20 && c != '\t' && c != '\r'))
                return fail(&p, "control byte 0x%02x: is this a text file?",
                            (unsigned char)c);
            if (n >= CFG_LINE_MAX)
                return fail(&p, "line is longer than %d bytes", CFG_LINE_MAX);
            line[n++] = c;
        }
        pos++; /* the '\n' */
        line[n] = '\0';
        if (parse_line(&p, line))
            return -1;
    }
    p.line++;
    if (check_vm_complete(&p))
        return -1;
    p.line = 0;
    const unsigned swap_opts = (1u << 23) | (1u << 24) | (1u << 25) | (1u << 26) | (1u << 27);
    if ((p.seen_global & swap_opts) && !cfg->swap_dev[0])
        return fail(&p, "swap_offset, swap_size, swap_partition, swap_format and swap_selftest "
                        "need a device: swap = nvme0, ata2, ...");
    if (cfg->swap_partition && (p.seen_global & (1u << 23)))
        return fail(&p, "swap_partition and swap_offset both place the swap space: give one");
    return 0;
}
