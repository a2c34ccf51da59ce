/* The hypervisor's serial console: one command per line, typed on COM1
 * (the same port the log goes to). Pure C over the VMs registered with
 * mm.c, so the host tests drive it line by line.
 *
 *   help                      the commands
 *   vms                       each VM's memory: RAM, resident, balloon
 *   balloon NAME SIZE         set NAME's balloon target: SIZE in bytes with
 *                             K/M/G, or in pages with p (0 deflates it)
 *   mem NAME SIZE             resize NAME (a VM with max_memory) to SIZE,
 *                             between its floor and max_memory
 *   policy on|off             the machine-pressure balloon policy
 *   stats                     the memory manager's statistics now (with the
 *                             @hvstat JSON lines, mm/stats_json.h)
 *   alerts                    the active alerts and their thresholds (mm/alerts.h)
 */
#ifndef MM_CONSOLE_H
#define MM_CONSOLE_H

#define CONSOLE_LINE_MAX 80

/* One received byte; a line runs on CR or LF. Backspace edits. */
void console_input(int c);
/* Runs one command line (modified in place). */
void console_exec(char *line);
#endif
