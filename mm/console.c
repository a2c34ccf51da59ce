/* The serial console's commands (console.h). */
#include "mm/console.h"
#include "lib/fmt.h"
#include "lib/log.h"
#include "lib/string.h"
#include "mm/balloon.h"
#include "mm/mm.h"
#include "mm/alerts.h"
#include "mm/stats_json.h"
#include "mm/policy_admit.h"
#include "mm/trace.h"

static char line[CONSOLE_LINE_MAX + 1];
static unsigned len;
static bool overlong;

static bool is_space(char c)
{
    return c == ' ' || c == '\t';
}

/* Splits line into at most max words; returns how many. */
static int split(char *s, char **w, int max)
{
    int n = 0;
    while (*s) {
        while (is_space(*s))
            *s++ = 0;
        if (!*s)
            break;
        if (n == max)
            return max + 1; /* too many */
        w[n++] = s;
        while (*s && !is_space(*s))
            s++;
    }
    return n;
}

/* "123", "64K", "32M", "1G" (bytes, page-aligned down) or "100p" (pages). */
static int parse_pages(const char *s, uint64_t *pages)
{
    uint64_t v = 0;
    const char *d = s;
    while (*d >= '0' && *d <= '9') {
        if (v > (UINT64_MAX - 9) / 10)
            return -1;
        v = v * 10 + (uint64_t)(*d++ - '0');
    }
    if (d == s)
        return -1;
    unsigned shift = 0;
    switch (*d) {
    case 0: break;
    case 'p': case 'P': if (d[1]) return -1; *pages = v; return 0;
    case 'k': case 'K': shift = 10; break;
    case 'm': case 'M': shift = 20; break;
    case 'g': case 'G': shift = 30; break;
    default: return -1;
    }
    if (*d && d[1] && strcmp(d + 1, "B") && strcmp(d + 1, "iB"))
        return -1; /* 32M, 32MB and 32MiB alike */
    if (shift && v > (UINT64_MAX >> shift))
        return -1;
    v <<= shift;
    if (v & (PAGE_SIZE - 1))
        return -2; /* bytes that are not whole pages: surely a typo */
    *pages = v >> PAGE_SHIFT;
    return 0;
}

static struct p2m *find_vm(const char *name)
{
    for (int i = 0; i < mm_vm_count(); i++)
        if (!strcmp(mm_vm_at(i)->name, name))
            return mm_vm_at(i);
    return NULL;
}

static void cmd_vms(void)
{
    char a[16], b[16];
    if (!mm_vm_count())
        pr_info(LS_CON, "no VM is running");
    for (int i = 0; i < mm_vm_count(); i++) {
        struct p2m *p = mm_vm_at(i);
        pr_info(LS_CON, "vm %s: RAM %s, resident %s, idle %llu pages; balloon target %llu "
                        "(set %llu + policy %llu), holds %llu, driver %s",
                p->name, fmt_size(a, sizeof(a), p->ngfn * PAGE_SIZE),
                fmt_size(b, sizeof(b), p->count[P2M_RESIDENT] * PAGE_SIZE),
                (unsigned long long)p->st.idle_pages, (unsigned long long)p->bl.target,
                (unsigned long long)p->bl.set, (unsigned long long)p->bl.policy,
                (unsigned long long)p->count[P2M_BALLOONED],
                p->bl.polls ? "polling" : "not seen");
    }
}

/* mem NAME SIZE: live resizing, decided by mm/policy_admit.c. */
static void cmd_mem(const char *name, const char *size)
{
    struct p2m *p = find_vm(name);
    uint64_t pages = 0;
    int rc = 0;
    char msg[224];
    if (!p) {
        pr_warn(LS_CON, "mem: no running VM is called '%s'", name);
    } else if ((rc = parse_pages(size, &pages)) == -2) {
        pr_warn(LS_CON, "mem: %s bytes is not a whole number of 4K pages (sizes without a unit "
                        "are bytes; pages take a p: 1000p)", size);
    } else if (rc) {
        pr_warn(LS_CON, "mem: '%s' is not a size (like 256M, 1G or 65536p)", size);
    } else if (policy_resize_request(p, pages, msg, sizeof(msg)) == RS_REFUSED) {
        pr_warn(LS_CON, "%s", msg);
    } else {
        pr_info(LS_CON, "%s", msg);
    }
}

/* trace [NAME]: the transition trace of one VM, or of every VM, now. */
static void cmd_trace(const char *name)
{
    struct trace_stats ts;
    trace_get_stats(&ts);
    if (!ts.mask) {
        pr_info(LS_CON, "trace: off (set trace = fault,reclaim,share,swap,balloon or all in "
                        "hv.cfg)");
        return;
    }
    struct p2m *only = name ? find_vm(name) : NULL;
    if (name && !only) {
        pr_warn(LS_CON, "trace: no running VM is called '%s'", name);
        return;
    }
    pr_info(LS_CON, "trace: %llu entries recorded, %llu overwritten (ring of %llu)",
            (unsigned long long)ts.recorded, (unsigned long long)ts.dropped,
            (unsigned long long)ts.capacity);
    for (int i = 0; i < mm_vm_count(); i++)
        if (!only || mm_vm_at(i) == only)
            trace_dump(mm_vm_at(i), "console", NULL, NULL);
}

static void cmd_help(void)
{
    pr_info(LS_CON, "commands: help | vms | balloon NAME SIZE (bytes with K/M/G, or pages "
                    "with p) | mem NAME SIZE (resize a VM with max_memory) | policy on|off | "
                    "stats | alerts | trace [NAME]");
}

void console_exec(char *s)
{
    char *w[4];
    int n = split(s, w, 3);
    if (n == 0)
        return;
    if (n > 3) {
        pr_warn(LS_CON, "too many words: try help");
        return;
    }
    if (!strcmp(w[0], "help") && n == 1) {
        cmd_help();
    } else if (!strcmp(w[0], "vms") && n == 1) {
        cmd_vms();
    } else if (!strcmp(w[0], "trace") && n <= 2) {
        cmd_trace(n == 2 ? w[1] : NULL);
    } else if (!strcmp(w[0], "stats") && n == 1) {
        mm_print_stats();
        stats_emit(STATS_CONSOLE);
    } else if (!strcmp(w[0], "alerts") && n == 1) {
        alerts_print();
    } else if (!strcmp(w[0], "policy") && n == 2 &&
               (!strcmp(w[1], "on") || !strcmp(w[1], "off"))) {
        balloon_policy_enable(!strcmp(w[1], "on"));
        pr_info(LS_CON, "balloon policy %s", w[1]);
    } else if (!strcmp(w[0], "balloon") && n == 3) {
        struct p2m *p = find_vm(w[1]);
        uint64_t pages = 0;
        int rc = 0;
        if (!p) {
            pr_warn(LS_CON, "balloon: no running VM is called '%s'", w[1]);
        } else if ((rc = parse_pages(w[2], &pages)) == -2) {
            pr_warn(LS_CON, "balloon: %s bytes is not a whole number of 4K pages (sizes without "
                            "a unit are bytes; pages take a p: 1000p)", w[2]);
        } else if (rc) {
            pr_warn(LS_CON, "balloon: '%s' is not a size (like 32M, 512K or 1000p)", w[2]);
        } else if (pages > p->ngfn) {
            pr_warn(LS_CON, "balloon: vm %s has only %llu pages of RAM", p->name,
                    (unsigned long long)p->ngfn);
        } else {
            uint64_t before = p->bl.target, t = balloon_set_target(p, pages);
            pr_info(LS_CON, "vm %s: balloon target %llu -> %llu pages (set %llu%s)", p->name,
                    (unsigned long long)before, (unsigned long long)t,
                    (unsigned long long)pages,
                    t < pages + p->bl.policy ? ", clamped to RAM less the reservation" : "");
        }
    } else if (!strcmp(w[0], "mem") && n == 3) {
        cmd_mem(w[1], w[2]);
    } else {
        pr_warn(LS_CON, "unknown command or wrong arguments: '%s': try help", w[0]);
    }
}

void console_input(int c)
{
    if (c == '\r' || c == '\n') {
        if (overlong) {
            pr_warn(LS_CON, "line longer than %u characters ignored", CONSOLE_LINE_MAX);
        } else if (len) {
            line[len] = 0;
            pr_info(LS_CON, "> %s", line);
            console_exec(line);
        }
        len = 0;
        overlong = false;
        return;
    }
    if (c == 8 || c == 127) {
        if (len)
            len--;
        return;
    }
    if (c < 32 || c > 126)
        return; /* control bytes and noise on the line */
    if (len == CONSOLE_LINE_MAX)
        overlong = true;
    else
        line[len++] = (char)c;
}
