// SPDX-License-Identifier: MIT
/* Pure parts of the sluice CLI: mountinfo parsing, the broker's READY line and
 * argv, the sandbox's environment. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "../../user/sluice.h" /* tests/build.mk has no -Iuser */

static const char *MI_HYBRID =
	"23 1 0:21 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw\n"
	"31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
	"32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n"
	"41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";

static void test_mountinfo_hybrid(void **st)
{
	char out[256];

	assert_int_equal(cg2_mount_parse(MI_HYBRID, out, sizeof(out)), 0);
	assert_string_equal(out, "/sys/fs/cgroup/unified");
}

static void test_mountinfo_unified_optional_fields(void **st)
{
	/* optional fields (shared:N master:M) before the separator */
	const char *mi = "30 23 0:26 / /sys/fs/cgroup rw,nosuid shared:4 master:1 - cgroup2 cgroup2 rw,nsdelegate\n";
	char out[256];

	assert_int_equal(cg2_mount_parse(mi, out, sizeof(out)), 0);
	assert_string_equal(out, "/sys/fs/cgroup");
}

static void test_mountinfo_escaped_and_missing(void **st)
{
	const char *esc = "50 1 0:40 / /mnt/my\\040cg rw - cgroup2 none rw\n";
	const char *none = "31 23 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n"
			   "32 31 0:29 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n";
	/* "cgroup2" as a mount point name must not match: only the fstype counts */
	const char *trick = "33 1 0:30 / /cgroup2 rw - ext4 /dev/sda1 rw\n";
	char out[256], small[8];

	assert_int_equal(cg2_mount_parse(esc, out, sizeof(out)), 0);
	assert_string_equal(out, "/mnt/my cg");
	assert_int_equal(cg2_mount_parse(none, out, sizeof(out)), -ENOENT);
	assert_int_equal(cg2_mount_parse(trick, out, sizeof(out)), -ENOENT);
	assert_int_equal(cg2_mount_parse("", out, sizeof(out)), -ENOENT);
	assert_int_equal(cg2_mount_parse(MI_HYBRID, small, sizeof(small)), -ENAMETOOLONG);
}

static void test_ready_line(void **st)
{
	uint16_t p = 0, q = 0;

	assert_int_equal(broker_parse_ready("READY 4321 5353\n", &p, &q), 0);
	assert_int_equal(p, 4321);
	assert_int_equal(q, 5353);
	assert_int_equal(broker_parse_ready("READY 1 2", &p, &q), 0);
	assert_int_equal(broker_parse_ready("READY 0 53\n", &p, &q), -EINVAL);
	assert_int_equal(broker_parse_ready("READY 70000 53\n", &p, &q), -EINVAL);
	assert_int_equal(broker_parse_ready("READY 80\n", &p, &q), -EINVAL);
	assert_int_equal(broker_parse_ready("READY 80 x\n", &p, &q), -EINVAL);
	assert_int_equal(broker_parse_ready("READY 80 53 9\n", &p, &q), -EINVAL);
	assert_int_equal(broker_parse_ready("ERROR bind failed\n", &p, &q), -EINVAL);
	assert_int_equal(broker_parse_ready("", &p, &q), -EINVAL);
}

static void test_broker_argv(void **st)
{
	struct run_opts o = { .policy = "p.yaml", .audit = "a.log", .name = "sb1", .pin_root = "/pins" };
	const char *argv[64], *few[6];
	char storage[64];
	int n, i;
	char joined[1024] = "";

	o.allow[o.n_allow++] = "api.test";
	o.allow[o.n_allow++] = "*.x.test";
	o.resolve[o.n_resolve++] = "api.test:10.99.1.2";
	o.upstream_ca[o.n_upstream_ca++] = "ca.pem";
	snprintf(o.sandbox_cgid, sizeof(o.sandbox_cgid), "%u", 4242u);
	n = broker_argv(&o, "/b/sluiced", 8080, 3, storage, sizeof(storage), argv, 64);
	assert_true(n > 0);
	assert_null(argv[n]);
	for (i = 0; i < n; i++) {
		strcat(joined, argv[i]);
		strcat(joined, " ");
	}
	assert_string_equal(joined, "/b/sluiced --listen 127.0.0.1:8080 --ready-fd 3 --policy p.yaml "
			    "--allow api.test --allow *.x.test --upstream-ca ca.pem "
			    "--resolve api.test:10.99.1.2 --audit a.log --pin-root /pins --sandbox sb1 "
			    "--cgroup-id 4242 ");
	assert_int_equal(broker_argv(&o, "/b/sluiced", 0, 3, storage, sizeof(storage), few, 6), -E2BIG);
}

static const char *env_get(char **env, const char *name)
{
	size_t n = strlen(name);

	for (; *env; env++)
		if (!strncmp(*env, name, n) && (*env)[n] == '=')
			return *env + n + 1;
	return NULL;
}

static void test_env_build(void **st)
{
	char *in[] = {
		"PATH=/usr/bin", "HOME=/root", "REAL_TOKEN=s3cr3t-value",
		"COPY=prefix-s3cr3t-value-suffix", "GH=ghp_abc", "SSL_CERT_FILE=/etc/old.pem",
		"API_TOKEN=stale", "CLAUDE_KEY=sk-f1le-v4lue", "OTHER=v4l",
		"TMUX=/tmp/tmux-1000/default,42,0", "TMUX_PANE=%1", "VSCODE_IPC_HOOK_CLI=/run/user/1000/vscode-ipc-1.sock",
		NULL,
	};
	struct env_secret s[] = {
		{ "API_TOKEN", "SLUICE_PLACEHOLDER_API_TOKEN", "REAL_TOKEN", NULL, 0 },
		{ "GH_TOKEN", "SLUICE_PLACEHOLDER_GH_TOKEN", "GH", NULL, 0 },
		/* value: or file: secrets: the CLI read the value to find copies of it */
		{ "LITERAL", "SLUICE_PLACEHOLDER_LITERAL", NULL, "f1le-v4lue", 10 },
	};
	char **out = env_build(in, s, 3, "/run/sluice/ca-bundle.pem");
	size_t n = 0;

	assert_non_null(out);
	assert_string_equal(env_get(out, "PATH"), "/usr/bin");
	assert_string_equal(env_get(out, "HOME"), "/root");
	assert_null(env_get(out, "REAL_TOKEN"));    /* the source var */
	assert_null(env_get(out, "GH"));
	assert_null(env_get(out, "COPY"));          /* holds the secret value */
	assert_null(env_get(out, "CLAUDE_KEY"));    /* holds a file: secret's value */
	assert_string_equal(env_get(out, "OTHER"), "v4l");
	/* the servers sluice runs under, whose sockets the sandbox does not see */
	assert_null(env_get(out, "TMUX"));
	assert_null(env_get(out, "TMUX_PANE"));
	assert_null(env_get(out, "VSCODE_IPC_HOOK_CLI"));
	assert_string_equal(env_get(out, "API_TOKEN"), "SLUICE_PLACEHOLDER_API_TOKEN");
	assert_string_equal(env_get(out, "GH_TOKEN"), "SLUICE_PLACEHOLDER_GH_TOKEN");
	assert_string_equal(env_get(out, "LITERAL"), "SLUICE_PLACEHOLDER_LITERAL");
	assert_string_equal(env_get(out, "SSL_CERT_FILE"), "/run/sluice/ca-bundle.pem");
	assert_string_equal(env_get(out, "CURL_CA_BUNDLE"), "/run/sluice/ca-bundle.pem");
	assert_string_equal(env_get(out, "REQUESTS_CA_BUNDLE"), "/run/sluice/ca-bundle.pem");
	assert_string_equal(env_get(out, "NODE_EXTRA_CA_CERTS"), "/run/sluice/ca-bundle.pem");
	assert_string_equal(env_get(out, "GIT_SSL_CAINFO"), "/run/sluice/ca-bundle.pem");
	for (char **e = out; *e; e++) {
		assert_null(strstr(*e, "s3cr3t"));
		assert_null(strstr(*e, "ghp_abc"));
		n++;
	}
	/* PATH, HOME, OTHER, 3 placeholders, 5 CA vars; no duplicates of API_TOKEN/SSL_CERT_FILE */
	assert_int_equal(n, 11);
	free(out);
}

static void test_env_no_secrets(void **st)
{
	char *in[] = { "A=1", NULL };
	char **out = env_build(in, NULL, 0, "/b.pem");

	assert_non_null(out);
	assert_string_equal(env_get(out, "A"), "1");
	assert_string_equal(env_get(out, "GIT_SSL_CAINFO"), "/b.pem");
	free(out);
}

static void test_kernel_release(void **st)
{
	static const char *const ok[] = { "5.8.0", "5.10.0-28-amd64", "6.1.0-18-amd64", "6.18.0", "10.0" };
	static const char *const old[] = { "5.7.19", "5.4.0-150-generic", "4.19.0-26-amd64", "3.10.0-1160.el7" };
	char err[256];

	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
		assert_int_equal(kernel_release_check(ok[i], err, sizeof(err)), 0);
	for (size_t i = 0; i < sizeof(old) / sizeof(old[0]); i++) {
		err[0] = 0;
		assert_int_equal(kernel_release_check(old[i], err, sizeof(err)), -EOPNOTSUPP);
		assert_non_null(strstr(err, "5.8 or later"));
	}
	assert_int_equal(kernel_release_check("5.4.0-150-generic", err, sizeof(err)), -EOPNOTSUPP);
	assert_non_null(strstr(err, "kernel 5.4 is too old"));
	assert_int_equal(kernel_release_check("", err, sizeof(err)), -EINVAL);
	assert_int_equal(kernel_release_check("linux", err, sizeof(err)), -EINVAL);
	assert_int_equal(kernel_release_check("6", err, sizeof(err)), -EINVAL);
}

static void test_caps(void **st)
{
	const uint64_t sys_admin = 1ULL << 21, net_admin = 1ULL << 12, bpf = 1ULL << 39;
	char err[512];

	assert_int_equal(caps_check(~0ULL, err, sizeof(err)), 0);
	assert_int_equal(caps_check(sys_admin | net_admin, err, sizeof(err)), 0); /* SYS_ADMIN covers BPF */
	assert_int_equal(caps_check(sys_admin | net_admin | bpf, err, sizeof(err)), 0);
	assert_int_equal(caps_check(0, err, sizeof(err)), -EPERM);
	assert_non_null(strstr(err, "CAP_SYS_ADMIN"));
	assert_non_null(strstr(err, "CAP_NET_ADMIN"));
	assert_non_null(strstr(err, "CAP_BPF"));
	assert_int_equal(caps_check(net_admin | bpf, err, sizeof(err)), -EPERM);
	assert_non_null(strstr(err, "CAP_SYS_ADMIN"));
	assert_null(strstr(err, "CAP_BPF"));
	assert_null(strstr(err, "CAP_NET_ADMIN"));
	assert_int_equal(caps_check(sys_admin | bpf, err, sizeof(err)), -EPERM);
	assert_non_null(strstr(err, "CAP_NET_ADMIN"));
	assert_non_null(strstr(err, "--cap-add"));
}

/* The broker's listening uid is never a sandbox's: as that uid, a sandbox
 * could join the broker's SO_REUSEPORT group. */
static void test_ident_reserved_uid(void **st)
{
	struct sb_ident id;
	char err[512], v[32];

	(void)st;
	snprintf(v, sizeof(v), "%u", SLUICE_LISTEN_UID);
	setenv("SUDO_UID", v, 1);
	unsetenv("SUDO_GID");
	assert_int_equal(sb_ident_resolve(NULL, &id, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "reserved for the broker"));
	setenv("SUDO_UID", "1000", 1);
	assert_int_equal(sb_ident_resolve(NULL, &id, err, sizeof(err)), 0);
	assert_int_equal(id.uid, 1000);
	unsetenv("SUDO_UID");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_kernel_release),
		cmocka_unit_test(test_caps),
		cmocka_unit_test(test_ident_reserved_uid),
		cmocka_unit_test(test_mountinfo_hybrid),
		cmocka_unit_test(test_mountinfo_unified_optional_fields),
		cmocka_unit_test(test_mountinfo_escaped_and_missing),
		cmocka_unit_test(test_ready_line),
		cmocka_unit_test(test_broker_argv),
		cmocka_unit_test(test_env_build),
		cmocka_unit_test(test_env_no_secrets),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
