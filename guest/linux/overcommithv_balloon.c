// SPDX-License-Identifier: GPL-2.0
/*
 * overcommithv_balloon: the guest side of the OvercommitHV paravirtual balloon.
 * (Not hv_balloon: that is Hyper-V's driver, which Debian's kernels ship.)
 *
 * The hypervisor sets a target per VM, in pages the balloon should hold.
 * A kernel thread polls it with a hypercall every poll_ms and moves the
 * balloon towards it in batches of up to 512 pages: inflating allocates
 * pages and hands their frame numbers to the hypervisor, which frees
 * whatever backed them; deflating takes frames back and frees the pages
 * to the guest's allocator. Every stats_ms the thread also reports the
 * guest's memory statistics. The ABI is docs/hypercall.md of the
 * hypervisor's source tree, version 1.
 *
 * Ballooned pages are marked PageOffline, as virtio_balloon and Hyper-V's
 * driver do, so that /proc/kcore, hibernation and crash dumps skip them
 * instead of touching them. Inflating takes 2 MiB blocks first (split into
 * 4 KiB pages, one batch each) so the balloon does not fragment the guest,
 * and falls back to single pages. It never inflates below a floor of the
 * guest's available memory (floor_pct of its RAM): a target that would
 * take the guest below it is reported and not met.
 *
 * A hypercall that refuses one entry of a batch (RAX EINVAL, RBX its
 * index) costs that entry only: the page is the guest's (the hypervisor
 * holds nothing for it) and the rest of the batch is sent again. EAGAIN
 * (no frame for the hypervisor's records now) and EIO (the list page
 * could not be read) end the round; the next poll tries again.
 *
 * Under memory pressure the balloon gives pages back on its own: an OOM
 * notifier deflates a batch before the OOM killer picks a victim (as
 * virtio-balloon's deflate-on-OOM does) and, with shrinker=1, a shrinker
 * deflates whatever reclaim asks for. A shrinker is off by default because
 * reclaim calls it for any pressure, page cache included, which would let
 * the guest take back what the host asked for (virtio-balloon went back
 * from a shrinker to the OOM notifier for that reason). After a deflate
 * under pressure the thread waits holdoff_ms before inflating again, so
 * that it does not fight the guest's own reclaim.
 *
 * A target the driver cannot meet (the floor, no free memory) is said in
 * the guest's log once per target and passed to the hypervisor with every
 * poll (BALLOON_TARGET's RCX: the pages it cannot give now). A holdoff is
 * a pause, not a shortfall: it reports 0 until a round after it ends; so
 * is a failed allocation while available memory is above the floor (our
 * allocations do not retry, and reclaim catches up), until it lasts
 * HB_NOMEM_ROUNDS rounds.
 *
 * Reclaim for the thread's own allocation never calls its shrinker (it
 * would deflate what the thread inflates), and pages allocated while a
 * deflate under pressure ran are given back, not inflated. The counters
 * pressure (deflates under pressure), cycles (inflating again after one)
 * and self_reclaim (our own allocation's reclaim, declined) show whether
 * the balloon fights the guest.
 *
 * State: /sys/kernel/overcommithv_balloon/{target,current,inflated,deflated,
 * errors,floor,short,pressure,cycles,self_reclaim,up_ms}. Unloading the module deflates everything, then asks the
 * hypervisor to release whatever it still holds as ballooned for this VM
 * (BALLOON_RELEASE), so that both sides agree; loading does the same for
 * pages a previous instance left behind.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/freezer.h>
#include <linux/ktime.h>
#include <linux/math64.h>
#include <linux/timex.h>
#include <linux/gfp.h>
#include <linux/io.h>
#include <linux/kobject.h>
#include <linux/kthread.h>
#include <linux/list.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/notifier.h>
#include <linux/oom.h>
#include <linux/shrinker.h>
#include <linux/sysfs.h>
#include <linux/version.h>
#include <linux/vmstat.h>
#include <linux/wait.h>
#include <asm/cpufeature.h>
#include <asm/processor.h>

/*
 * The ABI (docs/hypercall.md; the hypervisor's constants are in
 * mm/balloon.h). Kept here because a kernel module cannot include the
 * hypervisor's headers.
 */
#define HC_CPUID_BASE		0x40000000u	/* EAX max leaf, EBX/ECX/EDX signature */
#define HC_CPUID_INFO		0x40000001u	/* EAX ABI version, EBX features */
#define HC_SIGNATURE		"OvercommitHV"
#define HC_ABI_VERSION		1
#define HC_FEATURE_BALLOON	(1u << 0)
#define HC_FEATURE_STATS	(1u << 1)
#define HC_FEATURE_LENIENT	(1u << 2)	/* entries already in the state asked for count */
#define HC_FEATURE_RELEASE	(1u << 3)	/* BALLOON_RELEASE */
#define HC_FEATURE_GUEST	(1u << 4)	/* GUEST_FEATURES */
#define HC_GUEST_DEFLATE_ON_OOM	(1u << 0)
#define HC_GUEST_HELD		(1u << 1)	/* BALLOON_TARGET's RBX: pages we hold */
#define HC_GUEST_SHORT		(1u << 2)	/* BALLOON_TARGET's RCX: pages we cannot give */
#define HC_BATCH_MAX		512		/* GFNs per inflate/deflate: a page of u64 */
#define HB_BLOCK_ORDER		9		/* 2 MiB blocks: one batch of 4 KiB GFNs */

enum hc_function {
	HC_VERSION		= 0,
	HC_BALLOON_TARGET	= 1,
	HC_BALLOON_INFLATE	= 2,
	HC_BALLOON_DEFLATE	= 3,
	HC_REPORT_STATS		= 4,
	HC_BALLOON_RELEASE	= 5,
	HC_GUEST_FEATURES	= 6,
};

/* The ABI's results (RAX): its own names, not Linux errno values. */
enum hc_result {
	HC_OK		= 0,
	HC_EPERM	= -1,
	HC_ENOSYS	= -2,
	HC_EINVAL	= -3,
	HC_EFAULT	= -4,
	HC_E2BIG	= -5,
	HC_EIO		= -6,
	HC_EAGAIN	= -7,
};

/* REPORT_STATS' argument, at the start of a page; counts in pages. */
struct hc_guest_stats {
	u64 size;		/* bytes of this structure filled: 64 */
	u64 total;
	u64 free;
	u64 available;
	u64 swap_in;
	u64 swap_out;
	u64 major_faults;
	u64 minor_faults;
};

/* Pages for the balloon: any zone, no emergency reserves, no retrying
 * or OOM killing on our behalf, no warning when there is none. 2 MiB
 * blocks are only taken when free: no reclaim or compaction for them. */
#define HB_GFP		(GFP_HIGHUSER | __GFP_NOMEMALLOC | __GFP_NORETRY | __GFP_NOWARN)
#define HB_GFP_BLOCK	((HB_GFP | __GFP_NORETRY) & ~__GFP_DIRECT_RECLAIM)
#define HB_MIN_MS	100	/* floor of the poll and statistics periods */
#define HB_ROUND_PAGES	16384	/* pages per round (64 MiB) before the thread looks around */
#define HB_POLL_JIFFIES	(HZ / 4) /* a long round reads the target this often */
#define HB_NOMEM_ROUNDS	4	/* rounds without free memory before we say we are short */

static unsigned int poll_ms = 1000;
module_param(poll_ms, uint, 0644);
MODULE_PARM_DESC(poll_ms, "How often to poll the balloon target, in ms (default 1000)");

static unsigned int stats_ms = 5000;
module_param(stats_ms, uint, 0644);
MODULE_PARM_DESC(stats_ms, "How often to report memory statistics, in ms; 0: never (default 5000)");

static unsigned int oom_pages = 256;
module_param(oom_pages, uint, 0644);
MODULE_PARM_DESC(oom_pages, "Pages to deflate when the OOM killer is about to run (default 256)");

static bool shrinker;
module_param(shrinker, bool, 0444);
MODULE_PARM_DESC(shrinker, "Also deflate on any reclaim through a shrinker (default off)");

static unsigned int batch = HC_BATCH_MAX;
module_param(batch, uint, 0644);
MODULE_PARM_DESC(batch, "GFNs per inflate or deflate hypercall, 1 to 512 (default 512; 1 is the unbatched baseline of make bench-balloon)");

/* The batch size in force: the parameter, kept within the ABI's bounds. */
static unsigned long hb_batch(void)
{
	return clamp_t(unsigned long, READ_ONCE(batch), 1, HC_BATCH_MAX);
}

static unsigned int floor_pct = 4;
module_param(floor_pct, uint, 0644);
MODULE_PARM_DESC(floor_pct, "Never inflate while available memory is below this share of RAM, in % (default 4)");

/* Testing only: the next N deflate calls pass a misaligned list address,
 * which the hypervisor refuses (HC_EFAULT): a deflate refused at unload. */
static unsigned int fail_deflate;
module_param(fail_deflate, uint, 0644);
MODULE_PARM_DESC(fail_deflate, "Testing: have the next N deflate hypercalls refused (default 0)");

static unsigned int holdoff_ms = 10000;
module_param(holdoff_ms, uint, 0644);
MODULE_PARM_DESC(holdoff_ms, "No inflating for this long after a deflate under pressure, in ms (default 10000)");

static struct {
	struct mutex lock;		/* pages, held, gfns and the counters */
	struct list_head pages;		/* what the hypervisor holds, by page->lru */
	u64 *gfns;			/* the list page of INFLATE and DEFLATE */
	struct hc_guest_stats *stats;	/* the REPORT_STATS page (thread only) */
	unsigned long held;		/* pages on the list */
	unsigned long target;		/* the last target read */
	unsigned long inflated;		/* pages given up, ever */
	unsigned long deflated;		/* pages taken back, ever */
	unsigned long errors;		/* hypercalls refused */
	unsigned long floor;		/* pages of available memory inflating keeps */
	unsigned long holdoff_until;	/* jiffies: no inflating before this */
	unsigned long polled;		/* jiffies of the last BALLOON_TARGET */
	bool short_of_target;		/* the last round could not meet the target */
	unsigned long pressure;		/* deflates under pressure that freed pages */
	unsigned long pressure_seen;	/* ... when we last inflated */
	unsigned long cycles;		/* inflating again after a deflate under pressure */
	unsigned long self_reclaim;	/* our allocation's reclaim asked our shrinker */
	unsigned long held_back;	/* pages allocated, then not inflated: pressure came */
	unsigned long unload_refused;	/* pages freed at unload although refused */
	unsigned long loaded;		/* jiffies at load */
	bool error_logged;
	bool short_logged;		/* "short of the target" said for this target */
	unsigned int nomem_rounds;	/* rounds in a row that found no free memory */
	u64 call_cycles;		/* TSC cycles in INFLATE hypercalls of this round */
	unsigned long calls;		/* ... and how many */
	u32 features;
	struct task_struct *thread;
	wait_queue_head_t wait;
	struct kobject *kobj;
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 7, 0)
	struct shrinker *shrinker;
#else
	struct shrinker shrinker;
#endif
	bool shrinker_on;
#ifdef CONFIG_VM_EVENT_COUNTERS
	unsigned long events[NR_VM_EVENT_ITEMS];	/* thread only */
#endif
} hb;

/*
 * One hypercall: function in RAX, arguments in RBX and RCX; the result in
 * RAX (0 or a negative error), results in RBX and RCX. The hypervisor may
 * read guest memory (the list and statistics pages): hence "memory".
 */
static long hb_call(unsigned long fn, unsigned long arg1, unsigned long arg2,
		    unsigned long *res1, unsigned long *res2)
{
	unsigned long rax = fn, rbx = arg1, rcx = arg2;

	asm volatile("vmcall"
		     : "+a" (rax), "+b" (rbx), "+c" (rcx)
		     : "d" (0UL)
		     : "memory");
	if (res1)
		*res1 = rbx;
	if (res2)
		*res2 = rcx;
	return (long)rax;
}

static const char *hb_error_name(long rc)
{
	switch (rc) {
	case HC_EPERM: return "HC_EPERM (not from CPL 0)";
	case HC_ENOSYS: return "HC_ENOSYS (unknown function)";
	case HC_EINVAL: return "HC_EINVAL (bad GFN in the batch)";
	case HC_EFAULT: return "HC_EFAULT (argument page not in guest RAM)";
	case HC_E2BIG: return "HC_E2BIG (batch size out of range)";
	case HC_EIO: return "HC_EIO (argument page unreadable)";
	case HC_EAGAIN: return "HC_EAGAIN (no frame for the hypervisor's records now)";
	default: return "unknown error";
	}
}

/* A refused hypercall: counted always, told once. hb.lock held. */
static void hb_error(const char *what, long rc, unsigned long index, unsigned long n)
{
	WRITE_ONCE(hb.errors, hb.errors + 1);
	if (hb.error_logged)
		return;
	hb.error_logged = true;
	if (rc == HC_EINVAL || rc == HC_EAGAIN)
		pr_warn("%s of %lu pages refused: %s at entry %lu; further errors are only counted\n",
			what, n, hb_error_name(rc), index);
	else
		pr_warn("%s refused: %s (%ld); further errors are only counted\n",
			what, hb_error_name(rc), rc);
}

/* A page leaves the balloon: the guest's again. */
static void hb_free_page(struct page *page)
{
	__ClearPageOffline(page);
	__free_page(page);
}

/*
 * Sends the n pages of bp as one INFLATE or DEFLATE. An entry the
 * hypervisor refuses (HC_EINVAL, RBX its index: outside RAM, a device
 * region, twice) is one the hypervisor holds nothing for: it goes back to
 * the guest, is counted, and the rest is sent again (at most n times, so
 * never the same batch forever). Returns how many entries went (the
 * refused ones are freed and taken out of bp, which is compacted) and
 * stores the final result in *rcp (HC_OK, or the error that ended it).
 * hb.lock held.
 */
static unsigned long hb_send(unsigned long fn, struct page **bp, unsigned long n, long *rcp)
{
	unsigned long i, done, bad, list;
	long rc = HC_OK;

	while (n) {
		for (i = 0; i < n; i++)
			hb.gfns[i] = page_to_pfn(bp[i]);
		list = virt_to_phys(hb.gfns);
		if (fn == HC_BALLOON_DEFLATE && READ_ONCE(fail_deflate)) {
			WRITE_ONCE(fail_deflate, fail_deflate - 1);
			list += sizeof(u64);	/* not page aligned: HC_EFAULT */
		}
		rc = hb_call(fn, list, n, &done, NULL);
		if (rc != HC_EINVAL || done >= n)
			break;
		hb_error(fn == HC_BALLOON_INFLATE ? "inflate" : "deflate", rc, done, n);
		bad = done;
		hb_free_page(bp[bad]);
		memmove(&bp[bad], &bp[bad + 1], (n - bad - 1) * sizeof(*bp));
		n--;
	}
	*rcp = rc;
	return n;
}

/*
 * Gives up to nr pages (at most a batch) back to the guest. With force
 * (unloading) the pages are freed even when the hypervisor refuses (the
 * caller then releases what the hypervisor still holds). hb.lock held.
 * Returns how many pages left the balloon.
 */
static unsigned long hb_deflate_batch(unsigned long nr, bool force)
{
	static struct page *bp[HC_BATCH_MAX];
	struct page *page, *tmp;
	unsigned long n = 0, sent, taken, i;
	long rc;

	nr = min3(nr, hb.held, hb_batch());
	list_for_each_entry_safe(page, tmp, &hb.pages, lru) {
		if (n == nr)
			break;
		list_del(&page->lru);
		bp[n++] = page;
	}
	if (!n)
		return 0;
	sent = hb_send(HC_BALLOON_DEFLATE, bp, n, &rc);
	taken = n - sent;		/* refused entries: freed already */
	if (rc) {
		hb_error("deflate", rc, 0, sent);
		if (force)
			hb.unload_refused += sent;
		else {
			/* HC_EIO and the like: back at the head, next time. */
			for (i = sent; i-- > 0;)
				list_add(&bp[i]->lru, &hb.pages);
			WRITE_ONCE(hb.held, hb.held - taken);
			return taken;
		}
	} else {
		WRITE_ONCE(hb.deflated, hb.deflated + sent);
	}
	for (i = 0; i < sent; i++)
		hb_free_page(bp[i]);
	WRITE_ONCE(hb.held, hb.held - n);
	return n;
}

/* Deflates up to nr pages under memory pressure and holds inflating off
 * for a while. hb.lock held. Returns how many pages were freed. */
static unsigned long hb_deflate_pressure(unsigned long nr, const char *why)
{
	unsigned long freed = 0, n;

	while (freed < nr) {
		n = hb_deflate_batch(nr - freed, false);
		if (!n)
			break;
		freed += n;
	}
	if (freed) {
		hb.pressure++;
		hb.holdoff_until = jiffies + msecs_to_jiffies(READ_ONCE(holdoff_ms));
		pr_info_ratelimited("deflated %lu pages on %s, holding %lu\n", freed, why, hb.held);
	}
	return freed;
}

/* Available memory above the floor, in pages. */
static unsigned long hb_room(void)
{
	long avail = si_mem_available();

	return avail > (long)hb.floor ? avail - hb.floor : 0;
}

/*
 * Allocates up to nr pages (at most a batch, never more than the room
 * above the floor) and hands them to the hypervisor: a 2 MiB block when a
 * whole batch is wanted and one is free, else single pages. The
 * allocation runs without hb.lock, so that reclaim may call the OOM
 * notifier or the shrinker meanwhile (except reclaim in this thread, for
 * this allocation: hb_shrink_count keeps off, it would deflate what we
 * inflate). When a deflate under pressure ran meanwhile, the pages go
 * back to the guest instead: it needs them. Returns how many pages went,
 * 0 when there was no memory or pressure came, or -EAGAIN / -EIO when
 * the hypervisor refused them.
 */
static long hb_inflate_batch(unsigned long nr)
{
	static struct page *bp[HC_BATCH_MAX];
	struct page *page;
	unsigned long n = 0, sent, i;
	cycles_t t0;
	long rc;

	nr = min3(nr, hb_batch(), hb_room());
	if (!nr)
		return 0;
	if (nr == 1ul << HB_BLOCK_ORDER) {
		page = alloc_pages(HB_GFP_BLOCK, HB_BLOCK_ORDER);
		if (page) {
			split_page(page, HB_BLOCK_ORDER);
			for (; n < nr; n++)
				bp[n] = page + n;
		}
	}
	while (n < nr) {
		page = alloc_page(HB_GFP);
		if (!page)
			break;
		bp[n++] = page;
	}
	if (!n)
		return 0;

	mutex_lock(&hb.lock);
	if (time_before(jiffies, READ_ONCE(hb.holdoff_until))) {
		/* The guest needed memory while we allocated: not now. */
		WRITE_ONCE(hb.held_back, hb.held_back + n);
		mutex_unlock(&hb.lock);
		for (i = 0; i < n; i++)
			__free_page(bp[i]);
		return 0;
	}
	if (hb.pressure != hb.pressure_seen) {
		WRITE_ONCE(hb.cycles, hb.cycles + 1);
		hb.pressure_seen = hb.pressure;
	}
	for (i = 0; i < n; i++)
		__SetPageOffline(bp[i]);
	t0 = get_cycles();
	sent = hb_send(HC_BALLOON_INFLATE, bp, n, &rc);
	hb.call_cycles += get_cycles() - t0;
	hb.calls++;
	if (rc) {
		if (rc != HC_EINVAL)
			hb_error("inflate", rc, 0, sent);
	} else {
		for (i = 0; i < sent; i++)
			list_add_tail(&bp[i]->lru, &hb.pages);
		WRITE_ONCE(hb.held, hb.held + sent);
		WRITE_ONCE(hb.inflated, hb.inflated + sent);
	}
	mutex_unlock(&hb.lock);

	if (rc) {
		for (i = 0; i < sent; i++)
			hb_free_page(bp[i]);
		return rc == HC_EAGAIN ? -EAGAIN : -EIO;
	}
	return sent;
}

/* Pages of the target we cannot give now: all that is missing, once a
 * round ended short of it (0 while we are on the way). */
static unsigned long hb_short(void)
{
	unsigned long held = READ_ONCE(hb.held), target = READ_ONCE(hb.target);

	return READ_ONCE(hb.short_of_target) && target > held ? target - held : 0;
}

/* BALLOON_TARGET, passing what we hold and what we cannot give. Returns
 * the call's result. */
static long hb_poll_target(unsigned long *target, unsigned long *host_held)
{
	long rc = hb_call(HC_BALLOON_TARGET, READ_ONCE(hb.held), hb_short(), target, host_held);

	hb.polled = jiffies;
	if (rc) {
		mutex_lock(&hb.lock);
		hb_error("target", rc, 0, 0);
		mutex_unlock(&hb.lock);
		return rc;
	}
	if (*target != hb.target) {
		pr_debug("target %lu pages\n", *target);
		WRITE_ONCE(hb.target, *target);
		hb.short_logged = false;
		hb.nomem_rounds = 0;
	}
	return 0;
}

/*
 * One round: read the target and move the balloon towards it, at most
 * HB_ROUND_PAGES pages. Inside the round the target is read again
 * every HB_POLL_JIFFIES (the hypervisor takes a driver that stops polling
 * for one that stopped listening) and the holdoff after a deflate under
 * pressure is checked before every batch. Returns true when there is more
 * to do at once (the round ended on its bound, not for want of memory).
 */
static bool hb_adjust(void)
{
	unsigned long target, host_held, start, want, batches = 0;
	ktime_t t_start;
	cycles_t c_start;
	long got;
	bool more = false;

	if (hb_poll_target(&target, &host_held))
		return false;

	start = READ_ONCE(hb.held);
	if (start < target) {
		t_start = ktime_get();
		c_start = get_cycles();
		hb.call_cycles = 0;
		hb.calls = 0;
		while (!kthread_should_stop()) {
			if (time_before(jiffies, READ_ONCE(hb.holdoff_until)))
				break;	/* the guest's own reclaim needed pages */
			if (time_after_eq(jiffies, hb.polled + HB_POLL_JIFFIES) &&
			    hb_poll_target(&target, &host_held))
				break;
			want = target - min(READ_ONCE(hb.held), target);
			if (!want)
				break;
			if (++batches > HB_ROUND_PAGES / hb_batch()) {
				more = true;
				break;
			}
			got = hb_inflate_batch(want);
			if (got <= 0 || (unsigned long)got < min(want, hb_batch()))
				break;	/* refused, at the floor, or out of memory */
			cond_resched();
		}
		if (READ_ONCE(hb.held) == target && target != start) {
			/* The rate, in the guest's time (emulated time in
			 * Bochs), and the cost in TSC cycles (instructions
			 * in Bochs) of the last round: per batch hypercall,
			 * round trip, and per page for everything. */
			u64 ns = ktime_to_ns(ktime_sub(ktime_get(), t_start));
			u64 cyc = get_cycles() - c_start;
			unsigned long pages = target - min(start, target);

			pr_info("inflated to %lu pages: +%lu in %llu us, %llu pages/s; %lu batch calls, "
				"%llu cycles per call round trip, %llu cycles per page in all\n",
				target, pages, div_u64(ns, 1000),
				ns ? div64_u64((u64)pages * NSEC_PER_SEC, ns) : 0, hb.calls,
				hb.calls ? div_u64(hb.call_cycles, hb.calls) : 0,
				pages ? div64_u64(cyc, pages) : 0);
		} else if (!more && READ_ONCE(hb.held) < target) {
			/* Holding off after the guest's own reclaim deflated
			 * is a pause, not a verdict: short stays 0 and the
			 * first round after the holdoff decides (a short
			 * reported here was never logged, and its cause
			 * would have been wrong). */
			if (time_before(jiffies, READ_ONCE(hb.holdoff_until))) {
				WRITE_ONCE(hb.short_of_target, false);
				return false;
			}
			/* No free memory while available memory is above the
			 * floor is reclaim not having caught up (our
			 * allocations do not retry): a shortfall only after
			 * HB_NOMEM_ROUNDS rounds in a row, so that the floor,
			 * not a moment's lack of free pages, stops the balloon
			 * where it can. */
			if (hb_room() && ++hb.nomem_rounds < HB_NOMEM_ROUNDS) {
				WRITE_ONCE(hb.short_of_target, false);
				return false;
			}
			/* Said to the hypervisor with every poll until met. */
			WRITE_ONCE(hb.short_of_target, true);
			if (!hb.short_logged) {
				hb.short_logged = true;
				pr_info("target %lu pages not met: holding %lu, %lu short: %s\n",
					target, READ_ONCE(hb.held), hb_short(),
					hb_room() ? "no free memory" : "available memory at the floor");
			}
			return more;
		}
	} else if (start > target) {
		while (!kthread_should_stop()) {
			mutex_lock(&hb.lock);
			got = hb.held > target ? hb_deflate_batch(hb.held - target, false) : 0;
			mutex_unlock(&hb.lock);
			if (!got)
				break;
			if (++batches > HB_ROUND_PAGES / hb_batch()) {
				more = true;
				break;
			}
			cond_resched();
		}
		if (READ_ONCE(hb.held) == target)
			pr_info("deflated to %lu pages\n", target);
	}
	WRITE_ONCE(hb.short_of_target, false);	/* met, or still on the way */
	hb.nomem_rounds = 0;
	return more;
}

/* Tells the hypervisor how the guest's memory is doing. */
static void hb_report_stats(void)
{
	struct hc_guest_stats *s = hb.stats;
	struct sysinfo si;
	long rc;

	si_meminfo(&si);	/* in pages: mem_unit is PAGE_SIZE */
	memset(s, 0, sizeof(*s));
	s->size = sizeof(*s);
	s->total = si.totalram;
	s->free = si.freeram;
	s->available = si_mem_available();
#ifdef CONFIG_VM_EVENT_COUNTERS
	all_vm_events(hb.events);
	s->swap_in = hb.events[PSWPIN];
	s->swap_out = hb.events[PSWPOUT];
	s->major_faults = hb.events[PGMAJFAULT];
	s->minor_faults = hb.events[PGFAULT] - hb.events[PGMAJFAULT];
#endif	/* without event counters the four counters stay zero */
	rc = hb_call(HC_REPORT_STATS, virt_to_phys(s), 0, NULL, NULL);
	if (rc) {
		mutex_lock(&hb.lock);
		hb_error("statistics report", rc, 0, 0);
		mutex_unlock(&hb.lock);
	}
}

static int hb_thread(void *unused)
{
	unsigned long next_stats = jiffies;
	unsigned int ms;

	set_freezable();
	while (!kthread_should_stop()) {
		bool more = hb_adjust();

		ms = READ_ONCE(stats_ms);
		if ((hb.features & HC_FEATURE_STATS) && ms && time_after_eq(jiffies, next_stats)) {
			hb_report_stats();
			next_stats = jiffies + msecs_to_jiffies(max(ms, (unsigned int)HB_MIN_MS));
		}
		if (more) {
			cond_resched();
			continue;	/* a long inflate or deflate goes on */
		}
		ms = max(READ_ONCE(poll_ms), (unsigned int)HB_MIN_MS);
		wait_event_freezable_timeout(hb.wait, kthread_should_stop(), msecs_to_jiffies(ms));
	}
	return 0;
}

/* The OOM killer is about to run: give a batch back first. */
static int hb_oom_notify(struct notifier_block *nb, unsigned long unused, void *parm)
{
	unsigned long *freed = parm;

	mutex_lock(&hb.lock);
	*freed += hb_deflate_pressure(READ_ONCE(oom_pages), "OOM");
	mutex_unlock(&hb.lock);
	return NOTIFY_OK;
}

static struct notifier_block hb_oom_nb = {
	.notifier_call = hb_oom_notify,
};

static unsigned long hb_shrink_count(struct shrinker *s, struct shrink_control *sc)
{
	unsigned long held = READ_ONCE(hb.held);

	if (current == hb.thread) {
		/* Reclaim for our own allocation: deflating now would give
		 * back what we are inflating. Counted, declined. */
		WRITE_ONCE(hb.self_reclaim, hb.self_reclaim + 1);
		return 0;
	}
	return held ? held : SHRINK_EMPTY;
}

static unsigned long hb_shrink_scan(struct shrinker *s, struct shrink_control *sc)
{
	unsigned long freed;

	if (current == hb.thread || !mutex_trylock(&hb.lock))
		return SHRINK_STOP;
	freed = hb_deflate_pressure(sc->nr_to_scan, "reclaim");
	mutex_unlock(&hb.lock);
	return freed ? freed : SHRINK_STOP;
}

static int hb_shrinker_register(void)
{
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 7, 0)
	hb.shrinker = shrinker_alloc(0, KBUILD_MODNAME);
	if (!hb.shrinker)
		return -ENOMEM;
	hb.shrinker->count_objects = hb_shrink_count;
	hb.shrinker->scan_objects = hb_shrink_scan;
	shrinker_register(hb.shrinker);
	return 0;
#else
	hb.shrinker.count_objects = hb_shrink_count;
	hb.shrinker.scan_objects = hb_shrink_scan;
	hb.shrinker.seeks = DEFAULT_SEEKS;
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 0, 0)
	return register_shrinker(&hb.shrinker, KBUILD_MODNAME);
#else
	return register_shrinker(&hb.shrinker);
#endif
#endif
}

static void hb_shrinker_unregister(void)
{
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 7, 0)
	shrinker_free(hb.shrinker);
#else
	unregister_shrinker(&hb.shrinker);
#endif
}

/* Read-only numbers; "current" is spelt out, as it is a macro in the kernel. */
#define HB_ATTR(field, file)							\
static ssize_t field##_show(struct kobject *kobj, struct kobj_attribute *attr,	\
			    char *buf)						\
{										\
	return sysfs_emit(buf, "%lu\n", READ_ONCE(hb.field));			\
}										\
static struct kobj_attribute field##_attr = {					\
	.attr = { .name = file, .mode = 0444 },					\
	.show = field##_show,							\
}

HB_ATTR(target, "target");
HB_ATTR(held, "current");
HB_ATTR(inflated, "inflated");
HB_ATTR(deflated, "deflated");
HB_ATTR(errors, "errors");
HB_ATTR(floor, "floor");
HB_ATTR(pressure, "pressure");
HB_ATTR(cycles, "cycles");
HB_ATTR(self_reclaim, "self_reclaim");

static ssize_t up_ms_show(struct kobject *kobj, struct kobj_attribute *attr, char *buf)
{
	return sysfs_emit(buf, "%u\n", jiffies_to_msecs(jiffies - hb.loaded));
}

static struct kobj_attribute up_ms_attr = __ATTR_RO(up_ms);

static ssize_t short_show(struct kobject *kobj, struct kobj_attribute *attr, char *buf)
{
	return sysfs_emit(buf, "%lu\n", hb_short());
}

static struct kobj_attribute short_attr = __ATTR_RO(short);

static struct attribute *hb_attrs[] = {
	&target_attr.attr,
	&held_attr.attr,
	&inflated_attr.attr,
	&deflated_attr.attr,
	&errors_attr.attr,
	&floor_attr.attr,
	&short_attr.attr,
	&pressure_attr.attr,
	&cycles_attr.attr,
	&self_reclaim_attr.attr,
	&up_ms_attr.attr,
	NULL,
};

static const struct attribute_group hb_group = {
	.attrs = hb_attrs,
};

/* Is this OvercommitHV, with an ABI and features we know? */
static int __init hb_detect(u32 *version, u32 *features)
{
	u32 max_leaf, sig[3], unused;

	if (!boot_cpu_has(X86_FEATURE_HYPERVISOR)) {
		pr_err("not running under a hypervisor (CPUID.1:ECX bit 31 clear), not loading\n");
		return -ENODEV;
	}
	cpuid(HC_CPUID_BASE, &max_leaf, &sig[0], &sig[1], &sig[2]);
	if (memcmp(sig, HC_SIGNATURE, sizeof(sig)) || max_leaf < HC_CPUID_INFO) {
		pr_err("hypervisor is not OvercommitHV (CPUID 0x40000000 signature \"%*pE\"), not loading\n",
		       (int)sizeof(sig), sig);
		return -ENODEV;
	}
	cpuid(HC_CPUID_INFO, version, features, &unused, &unused);
	if (*version != HC_ABI_VERSION) {
		pr_err("OvercommitHV ABI version %u, this driver knows %u, not loading\n",
		       *version, HC_ABI_VERSION);
		return -ENODEV;
	}
	if (!(*features & HC_FEATURE_BALLOON)) {
		pr_err("OvercommitHV without the balloon feature (features %#x), not loading\n",
		       *features);
		return -ENODEV;
	}
	return 0;
}

/*
 * Deflates, on the hypervisor's side, every page it holds as ballooned
 * for this VM (BALLOON_RELEASE, a stretch of GFNs per call). Returns how
 * many it released, or a negative HC_ error.
 */
static long hb_release_all(void)
{
	unsigned long from = 0, next, n, total = 0, calls;
	long rc;

	if (!(hb.features & HC_FEATURE_RELEASE))
		return HC_ENOSYS;
	/* Until a call gets no further (RBX back not above RBX given: the end
	 * of the VM's RAM); 2^20 stretches of 2^16 GFNs cover 256 TiB. */
	for (calls = 0; calls < (1ul << 20); calls++) {
		rc = hb_call(HC_BALLOON_RELEASE, from, 0, &next, &n);
		if (rc)
			return rc;
		total += n;
		if (next <= from)
			break;
		from = next;
		cond_resched();
	}
	return total;
}

static int __init hb_init(void)
{
	unsigned long version, features, host_held;
	u32 cpuid_version, cpuid_features;
	long rc;
	int err;

	err = hb_detect(&cpuid_version, &cpuid_features);
	if (err)
		return err;
	/* Only now is VMCALL defined: check that it answers as CPUID said. */
	rc = hb_call(HC_VERSION, 0, 0, &version, &features);
	if (rc || version != cpuid_version) {
		pr_err("VERSION hypercall answered %ld, version %lu (CPUID said %u), not loading\n",
		       rc, version, cpuid_version);
		return -ENODEV;
	}

	mutex_init(&hb.lock);
	INIT_LIST_HEAD(&hb.pages);
	init_waitqueue_head(&hb.wait);
	hb.features = cpuid_features;
	hb.holdoff_until = jiffies;
	hb.loaded = jiffies;
	hb.gfns = (u64 *)get_zeroed_page(GFP_KERNEL);
	hb.stats = (struct hc_guest_stats *)get_zeroed_page(GFP_KERNEL);
	err = -ENOMEM;
	if (!hb.gfns || !hb.stats)
		goto free_pages;

	hb.floor = div_u64((u64)totalram_pages() * min(READ_ONCE(floor_pct), 100u), 100);
	hb.kobj = kobject_create_and_add(KBUILD_MODNAME, kernel_kobj);
	if (!hb.kobj)
		goto free_pages;
	err = sysfs_create_group(hb.kobj, &hb_group);
	if (err)
		goto put_kobj;
	err = register_oom_notifier(&hb_oom_nb);
	if (err)
		goto put_kobj;
	if (shrinker) {
		err = hb_shrinker_register();
		if (err)
			goto oom_unregister;
		hb.shrinker_on = true;
	}
	hb.thread = kthread_create(hb_thread, NULL, "ochv_balloon");
	if (IS_ERR(hb.thread)) {
		err = PTR_ERR(hb.thread);
		goto shrinker_unregister;
	}
	pr_info("loaded (ABI %u, features %#x)\n", cpuid_version, cpuid_features);
	if (hb.shrinker_on)
		pr_info("shrinker on: reclaim may deflate the balloon\n");
	/* What we do: deflate on OOM, pass our count and what we cannot
	 * give with every poll. */
	if (hb.features & HC_FEATURE_GUEST) {
		rc = hb_call(HC_GUEST_FEATURES,
			     HC_GUEST_DEFLATE_ON_OOM | HC_GUEST_HELD | HC_GUEST_SHORT, 0,
			     &version, NULL);
		pr_info("guest features in force %#lx (rc %ld)\n", rc ? 0 : version, rc);
	}
	/* The first target now, so that sysfs shows it once insmod returns. */
	if (!hb_call(HC_BALLOON_TARGET, 0, 0, &hb.target, &host_held)) {
		pr_info("target %lu pages\n", hb.target);
		if (host_held) {
			/* A previous instance's pages, freed to the guest
			 * long ago: the hypervisor gives them up. */
			rc = hb_release_all();
			pr_warn("the hypervisor held %lu ballooned pages, not ours: %s %ld\n",
				host_held, rc >= 0 ? "released" : "release failed", rc);
		}
	}
	wake_up_process(hb.thread);
	return 0;

shrinker_unregister:
	if (hb.shrinker_on)
		hb_shrinker_unregister();
oom_unregister:
	unregister_oom_notifier(&hb_oom_nb);
put_kobj:
	kobject_put(hb.kobj);	/* removes the group with the directory */
free_pages:
	free_page((unsigned long)hb.stats);
	free_page((unsigned long)hb.gfns);
	pr_err("cannot start: error %d\n", err);
	return err;
}

static void __exit hb_exit(void)
{
	unsigned long returned = 0, n;
	long released;

	kthread_stop(hb.thread);
	if (hb.shrinker_on)
		hb_shrinker_unregister();
	unregister_oom_notifier(&hb_oom_nb);
	kobject_put(hb.kobj);

	mutex_lock(&hb.lock);
	while (hb.held) {
		n = hb_deflate_batch(hb.held, true);
		if (!n)
			break;
		returned += n;
		cond_resched();
	}
	mutex_unlock(&hb.lock);
	/* Whatever the hypervisor still holds as ballooned (a deflate it
	 * refused above) goes too: both sides agree the balloon is empty. */
	released = hb_release_all();
	/* Gone: our count no longer speaks for the balloon. */
	if (hb.features & HC_FEATURE_GUEST)
		hb_call(HC_GUEST_FEATURES, 0, 0, NULL, NULL);

	free_page((unsigned long)hb.stats);
	free_page((unsigned long)hb.gfns);
	if (released > 0)
		pr_info("unloaded, returned %lu pages, %lu of them in deflates that failed; the hypervisor released %ld more\n",
			returned, hb.unload_refused, released);
	else
		pr_info("unloaded, returned %lu pages\n", returned);
}

module_init(hb_init);
module_exit(hb_exit);

MODULE_DESCRIPTION("Balloon driver for the OvercommitHV hypervisor");
MODULE_LICENSE("GPL");
