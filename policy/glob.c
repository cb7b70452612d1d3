// SPDX-License-Identifier: MIT
/*
 * Host globs, path globs and request-target normalisation.
 *
 * Host globs (sluice format): compared lower-case, one trailing dot ignored
 * on both sides. The glob is read label by label: a '*' inside a label
 * matches any run of characters of that label only, so "api-*.test" matches
 * "api-eu.test" but not "api.eu.test". A leading "*." stands for ONE OR MORE
 * whole labels: "*.github.com" matches api.github.com and a.b.github.com,
 * never github.com, evilgithub.com or github.com.evil.io. "*" alone matches
 * every host. Deeper levels are included on purpose: that is what people
 * mean by "*.githubusercontent.com", and the anchoring is what keeps
 * look-alike names out.
 *
 * Path globs: matched segment by segment on the normalised path. '*' inside
 * a segment matches any characters of that segment (never '/'); a segment
 * that is exactly "**" matches zero or more whole segments, so the glob
 * "/v1" + "/" + "**" matches "/v1", "/v1/" and "/v1/a/b". Case-sensitive.
 */
#include <ctype.h>
#include <errno.h>
#include <fnmatch.h>
#include <string.h>
#include "policy_int.h"

static inline char lc(char c)
{
	return (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
}

/* Classic single-star glob over one label/segment; '*' matches any run.
 * Greedy with backtracking to the last star: linear for practical input. */
static bool seg_glob(const char *g, size_t gl, const char *s, size_t sl, bool fold)
{
	size_t gi = 0, si = 0, star_g = (size_t)-1, star_s = 0;

	while (si < sl) {
		if (gi < gl && g[gi] == '*') {
			star_g = ++gi;
			star_s = si;
			continue;
		}
		if (gi < gl && (fold ? lc(g[gi]) == lc(s[si]) : g[gi] == s[si])) {
			gi++;
			si++;
			continue;
		}
		if (star_g != (size_t)-1) {
			si = ++star_s;
			gi = star_g;
			continue;
		}
		return false;
	}
	while (gi < gl && g[gi] == '*')
		gi++;
	return gi == gl;
}

/* Label-by-label match of equal label counts. */
static bool labels_match(const char *g, size_t gl, const char *h, size_t hl)
{
	for (;;) {
		const char *gd = memchr(g, '.', gl), *hd = memchr(h, '.', hl);
		size_t gseg = gd ? (size_t)(gd - g) : gl, hseg = hd ? (size_t)(hd - h) : hl;

		if (!gd != !hd)
			return false;
		if (!seg_glob(g, gseg, h, hseg, true))
			return false;
		if (!gd)
			return true;
		g += gseg + 1; gl -= gseg + 1;
		h += hseg + 1; hl -= hseg + 1;
	}
}

static bool host_label_match(const char *glob, const char *host, size_t hl)
{
	size_t gl = strlen(glob);

	if (gl && glob[gl - 1] == '.')
		gl--;
	if (hl && host[hl - 1] == '.')
		hl--;
	if (!hl || !gl)
		return false;
	if (gl == 1 && glob[0] == '*')
		return true;
	if (gl >= 2 && glob[0] == '*' && glob[1] == '.') {
		/* one or more whole labels, then the rest label by label */
		for (size_t i = 1; i + 1 < hl; i++)
			if (host[i] == '.' && host[i - 1] != '.' &&
			    labels_match(glob + 2, gl - 2, host + i + 1, hl - i - 1))
				return true;
		return false;
	}
	return labels_match(glob, gl, host, hl);
}

/* Copies host lower-cased without the trailing dot; false when it cannot be a name. */
static bool host_copy(const char *host, size_t hl, char *out, size_t outlen)
{
	if (hl && host[hl - 1] == '.')
		hl--;
	if (!hl || hl >= outlen || memchr(host, '\0', hl))
		return false;
	for (size_t i = 0; i < hl; i++)
		out[i] = lc(host[i]);
	out[hl] = '\0';
	return true;
}

bool host_match_mode(enum host_mode m, const char *glob, const char *host, size_t hl)
{
	char h[256];

	switch (m) {
	case HOST_LABEL:
		return host_label_match(glob, host, hl);
	case HOST_FNMATCH:
		/* Python's fnmatch: no backslash escapes, '*' crosses dots. Names are
		 * case-insensitive, so fold both sides (globs are stored lower-case). */
		if (!host_copy(host, hl, h, sizeof(h)))
			return false;
		return fnmatch(glob, h, FNM_NOESCAPE) == 0;
	case HOST_SUFFIX: {
		size_t n, gl = strlen(glob);

		if (!host_copy(host, hl, h, sizeof(h)))
			return false;
		n = strlen(h);
		if (gl >= 2 && glob[0] == '*' && glob[1] == '.') {
			const char *suf = glob + 2;
			size_t sl = gl - 2;

			if (n == sl && !memcmp(h, suf, sl))
				return true;
			return n > sl && h[n - sl - 1] == '.' && !memcmp(h + n - sl, suf, sl);
		}
		return n == gl && !memcmp(h, glob, gl);
	}
	}
	return false;
}

bool policy_host_glob_match(const char *glob, const char *host, size_t host_len)
{
	if (!glob || !host)
		return false;
	return host_label_match(glob, host, host_len);
}

/* Segment iterator over "/a/b": pos starts at 1 (after the leading '/');
 * the walk is over when pos > len. */
static size_t seg_len(const char *s, size_t len, size_t pos)
{
	const char *sl = memchr(s + pos, '/', len - pos);

	return sl ? (size_t)(sl - (s + pos)) : len - pos;
}

static bool path_glob(const char *glob, const char *path, size_t path_len, bool fold)
{
	size_t gl, gi = 1, pi = 1, star_g = (size_t)-1, star_p = 0;

	if (!glob || !path || glob[0] != '/' || !path_len || path[0] != '/')
		return false;
	gl = strlen(glob);
	/* Greedy match with backtracking to the last "**", with segments as the
	 * symbols: the same argument as for '*' over characters applies. */
	while (pi <= path_len) {
		size_t ps = seg_len(path, path_len, pi);

		if (gi <= gl) {
			size_t gs = seg_len(glob, gl, gi);

			if (gs == 2 && glob[gi] == '*' && glob[gi + 1] == '*') {
				gi += gs + 1;
				star_g = gi;
				star_p = pi;
				continue;
			}
			if (seg_glob(glob + gi, gs, path + pi, ps, fold)) {
				gi += gs + 1;
				pi += ps + 1;
				continue;
			}
		}
		if (star_g != (size_t)-1) {
			star_p += seg_len(path, path_len, star_p) + 1;
			pi = star_p;
			gi = star_g;
			continue;
		}
		return false;
	}
	while (gi <= gl) {
		size_t gs = seg_len(glob, gl, gi);

		if (!(gs == 2 && glob[gi] == '*' && glob[gi + 1] == '*'))
			return false;
		gi += gs + 1;
	}
	return true;
}

bool policy_path_glob_match(const char *glob, const char *path, size_t path_len)
{
	return path_glob(glob, path, path_len, false);
}

bool policy_path_glob_match_fold(const char *glob, const char *path, size_t path_len)
{
	return path_glob(glob, path, path_len, true);
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = lc(c);
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

static bool unreserved(unsigned char c)
{
	return isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~';
}

/* Length of a separator at t[i] in the view some servers take: '/', '\\',
 * %2F or %5C (any case); 0 when t[i] starts none. */
static size_t alt_sep(const char *t, size_t len, size_t i)
{
	if (t[i] == '/' || t[i] == '\\')
		return 1;
	if (t[i] == '%' && i + 2 < len &&
	    ((t[i + 1] == '2' && lc(t[i + 2]) == 'f') || (t[i + 1] == '5' && lc(t[i + 2]) == 'c')))
		return 3;
	return 0;
}

/* Whether t[i] starts a segment's ";parameters" (';' or %3B, any case). */
static bool param_start(const char *t, size_t len, size_t i)
{
	return t[i] == ';' || (t[i] == '%' && i + 2 < len && t[i + 1] == '3' && lc(t[i + 2]) == 'b');
}

bool policy_target_ambiguous(const char *t, size_t len)
{
	size_t i, end = len, ps = 0, k, dots = 0;
	bool other = false, param = false;

	for (i = 0; i < len; i++) {
		if (t[i] == '#')
			return true;
		if (t[i] == '?' && end == len)
			end = i;
	}
	if (len && t[0] != '/') { /* absolute-form: the path starts after the authority */
		ps = (len >= 7 && !strncasecmp(t, "http://", 7)) ? 7 :
		     (len >= 8 && !strncasecmp(t, "https://", 8)) ? 8 : 0;
		while (ps && ps < end && t[ps] != '/')
			ps++;
	}
	/* "//x" reads as an authority to URL parsers (new URL("//x/a", base)). */
	if (end - ps >= 2 && t[ps] == '/' && t[ps + 1] == '/')
		return true;
	/* Segments split at every separator of the widest view, %2E read as '.';
	 * what follows a ';' (%3B) in a segment is a parameter that Tomcat and
	 * Jetty drop before resolving dots, so "..;x" is a dot-segment there. */
	for (i = ps; i <= end; i += k ? k : 1) {
		k = i < end ? alt_sep(t, end, i) : 1;
		if (k || i == end) {
			if (!other && (dots == 1 || dots == 2))
				return true;
			dots = 0;
			other = false;
			param = false;
		} else if (t[i] == '%' && i + 2 < end && t[i + 1] == '0' && t[i + 2] == '0') {
			return true; /* NUL: C servers end the path there */
		} else if (param) {
			continue;
		} else if (param_start(t, end, i)) {
			param = true;
		} else if (t[i] == '.') {
			dots++;
		} else if (t[i] == '%' && i + 2 < end && t[i + 1] == '2' && lc(t[i + 2]) == 'e') {
			dots++;
			k = 3;
		} else {
			other = true;
		}
	}
	return false;
}

int policy_path_normalise(const char *target, size_t len, char *out, size_t outlen)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t n = 0, w, r;

	if (!target || !out || !outlen)
		return -EINVAL;
	if (len == 1 && target[0] == '*') { /* asterisk-form (OPTIONS *) */
		if (outlen < 2)
			return -ENOSPC;
		memcpy(out, "*", 2);
		return 1;
	}
	if (len && target[0] != '/') {
		/* absolute-form: skip scheme://authority */
		size_t skip;

		if (len >= 7 && !strncasecmp(target, "http://", 7))
			skip = 7;
		else if (len >= 8 && !strncasecmp(target, "https://", 8))
			skip = 8;
		else
			return -EINVAL;
		while (skip < len && target[skip] != '/' && target[skip] != '?' && target[skip] != '#')
			skip++;
		target += skip;
		len -= skip;
	}
	for (size_t i = 0; i < len; i++)
		if (target[i] == '?' || target[i] == '#') {
			len = i;
			break;
		}
	if (outlen < len + 2)
		return -ENOSPC;
	out[n++] = '/';
	/* pass 1: percent-decode unreserved characters, upper-case the other escapes */
	for (size_t i = (len && target[0] == '/') ? 1 : 0; i < len; i++) {
		unsigned char c = (unsigned char)target[i];

		if (c <= 0x20 || c >= 0x7f)
			return -EINVAL;
		if (c == '%') {
			int hi, lo;

			if (i + 2 >= len)
				return -EINVAL;
			hi = hexval(target[i + 1]);
			lo = hexval(target[i + 2]);
			if (hi < 0 || lo < 0)
				return -EINVAL;
			c = (unsigned char)(hi << 4 | lo);
			i += 2;
			if (unreserved(c)) {
				out[n++] = (char)c;
			} else {
				out[n++] = '%';
				out[n++] = hex[hi];
				out[n++] = hex[lo];
			}
			continue;
		}
		out[n++] = (char)c;
	}
	/* pass 2, in place: resolve dot-segments, merge empty segments */
	w = 0;
	r = 1;
	while (r <= n) {
		const char *seg = out + r;
		size_t sl = seg_len(out, n, r);
		bool last = r + sl >= n;

		if ((sl == 1 && seg[0] == '.') || sl == 0) {
			if (last)
				out[w++] = '/';
		} else if (sl == 2 && seg[0] == '.' && seg[1] == '.') {
			if (!w)
				return -EINVAL; /* would escape above the root */
			while (w && out[w - 1] != '/')
				w--;
			if (w)
				w--; /* drop the '/' before the popped segment */
			if (last)
				out[w++] = '/';
		} else {
			out[w++] = '/';
			memmove(out + w, seg, sl);
			w += sl;
		}
		r += sl + 1;
	}
	if (!w)
		out[w++] = '/';
	out[w] = '\0';
	return (int)w;
}

int policy_path_wide(const char *path, size_t len, char *out, size_t outlen)
{
	size_t w = 0, i = 0, k;
	bool param = false;

	if (!path || !out || outlen < len + 2)
		return -EINVAL;
	out[w++] = '/';
	while (i < len) {
		k = alt_sep(path, len, i);
		if (k) {
			param = false;
			if (out[w - 1] != '/')
				out[w++] = '/';
			i += k;
			continue;
		}
		if (param_start(path, len, i))
			param = true;
		if (!param)
			out[w++] = lc(path[i]);
		i++;
	}
	out[w] = '\0';
	return (int)w;
}
