// SPDX-License-Identifier: MIT
#include <errno.h>
#include <string.h>
#include <arpa/inet.h>
#include "sni.h"

/*
 * An address is never a server name (RFC 6066 section 3), and one written as a
 * name is read two ways: OpenSSL's host check takes "0177.0.0.1" as decimal
 * 177.0.0.1 while getaddrinfo dials octal 127.0.0.1. So a name that inet_aton
 * takes (hex, octal, fewer than four parts) or whose last label is all digits
 * (no top-level domain is) is refused.
 */
static int looks_like_address(const char *name, size_t len)
{
	char tmp[256];
	struct in_addr a;
	size_t i = len;

	while (i > 0 && name[i - 1] >= '0' && name[i - 1] <= '9')
		i--;
	if (i == 0 || name[i - 1] == '.')
		return 1;
	memcpy(tmp, name, len);
	tmp[len] = 0;
	return inet_aton(tmp, &a);
}

int sni_name_valid(const char *name, size_t len)
{
	size_t i, label = 0;

	if (len == 0 || len > 253)
		return 0;
	for (i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)name[i];

		if (ch == '.') {
			if (label == 0)
				return 0;
			label = 0;
			continue;
		}
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '-' || ch == '_'))
			return 0;
		if (++label > 63)
			return 0;
	}
	/* An empty last label: "x.." would leave "x." after the one dot the caller strips. */
	return label != 0 && !looks_like_address(name, len);
}

int sni_parse_ext(const uint8_t *p, size_t len, char *out, size_t outlen)
{
	size_t list_len, off, i;

	if (len < 2)
		return -EINVAL;
	list_len = (size_t)p[0] << 8 | p[1];
	if (list_len + 2 != len)
		return -EINVAL;
	off = 2;
	while (off < len) {
		uint8_t type;
		size_t nlen;

		if (len - off < 3)
			return -EINVAL;
		type = p[off];
		nlen = (size_t)p[off + 1] << 8 | p[off + 2];
		off += 3;
		if (nlen > len - off)
			return -EINVAL;
		if (type == 0) {
			const char *name = (const char *)p + off;

			/* A client may write the absolute form; certificates never carry the dot. */
			if (nlen && name[nlen - 1] == '.')
				nlen--;
			if (!sni_name_valid(name, nlen))
				return -EINVAL;
			if (nlen + 1 > outlen)
				return -ENOSPC;
			for (i = 0; i < nlen; i++) {
				char ch = name[i];

				out[i] = (ch >= 'A' && ch <= 'Z') ? ch + 32 : ch;
			}
			out[nlen] = 0;
			return (int)nlen;
		}
		off += nlen;
	}
	return 0;
}
