// SPDX-License-Identifier: MIT
#include <stdio.h>
#include <string.h>
#include "log.h"

static enum log_level cur_level = LOG_LVL_INFO;
static const char *cur_prefix = "sluice";

void log_set_level(enum log_level lvl) { cur_level = lvl; }
void log_set_prefix(const char *prefix) { cur_prefix = prefix; }

void log_msg(enum log_level lvl, const char *fmt, ...)
{
	static const char *const names[] = { "error", "warning", "info", "debug" };
	char line[2048];
	va_list ap;
	int n;

	if (lvl > cur_level)
		return;
	/* One write per message so lines from several processes do not interleave. */
	n = snprintf(line, sizeof(line), "%s: %s: ", cur_prefix, names[lvl]);
	va_start(ap, fmt);
	vsnprintf(line + n, sizeof(line) - n, fmt, ap);
	va_end(ap);
	n = strlen(line);
	if (n && line[n - 1] != '\n' && n < (int)sizeof(line) - 1) {
		line[n++] = '\n';
		line[n] = 0;
	}
	fputs(line, stderr);
}
