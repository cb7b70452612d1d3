// SPDX-License-Identifier: MIT
/*
 * DNS (broker/dnsmsg.h): parse the bytes as a query; when they parse, check
 * what the parser promises (name charset, question inside the message) and
 * build replies of each kind into buffers of every interesting size.
 */
#include "fuzz.h"
#include "dnsmsg.h"

static void check_reply(const struct dns_query *q, const uint8_t *out, int n, size_t outlen,
			int rcode, size_t n_addrs)
{
	if (n < 0)
		return;
	if ((size_t)n > outlen)
		fz_die("reply of %d bytes in a %zu-byte buffer", n, outlen);
	if (n < 12 + (int)q->question_len)
		fz_die("reply of %d bytes shorter than header + question", n);
	if ((out[0] << 8 | out[1]) != q->id)
		fz_die("reply id differs");
	if (!(out[2] & 0x80))
		fz_die("reply without QR");
	if ((out[3] & 0x0f) != rcode)
		fz_die("reply rcode %d, wanted %d", out[3] & 0x0f, rcode);
	if ((size_t)(out[6] << 8 | out[7]) != n_addrs)
		fz_die("ANCOUNT %d, wanted %zu", out[6] << 8 | out[7], n_addrs);
	if (memcmp(out + 12, q->question, q->question_len))
		fz_die("question not echoed");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint8_t addrs[3 * 16] = { 10, 99, 0, 2, 10, 99, 0, 3, 10, 99, 0, 4, 0xfd, 0x99 };
	static const size_t lens[] = { 0, 11, 12, 40, 300, 512, 1232, 4096 };
	uint8_t *msg = (uint8_t *)fz_dup(data, size), out[4096];
	struct dns_query q;
	size_t nl;
	int r;

	memset(&q, 0xa5, sizeof(q));
	r = dns_parse_query(msg, size, &q);
	if (r && r != -EINVAL && r != -ENOTSUP)
		fz_die("dns_parse_query returned %d", r);
	if (r)
		goto out;
	nl = strnlen(q.name, sizeof(q.name));
	if (nl == sizeof(q.name))
		fz_die("name not NUL-terminated");
	for (size_t i = 0; i < nl; i++) {
		char c = q.name[i];

		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.'))
			fz_die("name byte 0x%02x passed the parser", (unsigned char)c);
	}
	if (nl && (q.name[nl - 1] == '.' || q.name[0] == '.' || strstr(q.name, "..")))
		fz_die("name '%s' has an empty label", q.name);
	if (q.question < msg + 12 || q.question_len > size || q.question + q.question_len > msg + size)
		fz_die("question slice outside the message");

	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		int rcodes[] = { 0, 2, 3, 4, 5 };

		for (size_t k = 0; k < sizeof(rcodes) / sizeof(rcodes[0]); k++) {
			r = dns_build_reply(&q, rcodes[k], NULL, 0, 60, out, lens[i]);
			if (r < 0 && r != -ENOSPC && r != -EINVAL)
				fz_die("dns_build_reply returned %d", r);
			check_reply(&q, out, r, lens[i], rcodes[k], 0);
		}
		if (q.qclass == 1 && (q.qtype == 1 || q.qtype == 28)) {
			for (size_t na = 1; na <= 3; na++) {
				r = dns_build_reply(&q, 0, addrs, na, 30, out, lens[i]);
				if (r < 0 && r != -ENOSPC)
					fz_die("dns_build_reply with %zu addresses returned %d", na, r);
				check_reply(&q, out, r, lens[i], 0, na);
			}
		}
	}
out:
	free(msg);
	return 0;
}
