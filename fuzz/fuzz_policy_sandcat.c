// SPDX-License-Identifier: MIT
/* Policy loader, format POLICY_FMT_SANDCAT: see fuzz_policy.h. */
#include "fuzz_policy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	return fuzz_policy(data, size, POLICY_FMT_SANDCAT);
}
