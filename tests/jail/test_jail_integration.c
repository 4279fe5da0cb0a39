/* Integration tests of the jail runtime (workers/jail) with the minimal
 * template (guest/rootfs): isolation, limits, capabilities, seccomp, the
 * agent answering in the namespace, and nothing left after stop. Needs
 * root, overlayfs, cgroups and `ip`; says why and skips otherwise. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>

#include "jail_test_util.h"
#include "warren/clock.h"
#include "warren/jail.h"
#include "warren/templates.h"
#include "warren/tokens.h"

#define CGROUP_PARENT "warren-test"
#define MEMORY_MAX    (256ULL << 20)
#define CYCLES	      20

static char base_dir[64];
static char state_dir[128];
static char netns_name[64];
static char netns_path[128];
static char agent_path[PATH_MAX];
static char token_hash[80];
static struct template_info template;
static struct jail *current;
static char current_id[64];

/* The checks the sandbox runs on itself, written to /report (the overlay
 * upper, readable from the host), then the agent or busybox httpd. */
static const char check_script[] =
    "{ echo \"pid=$$\"; echo \"init=$(cat /proc/1/comm)\"; echo \"hostname=$(hostname)\";"
    " echo \"etc_hostname=$(cat /etc/hostname)\";"
    " if [ -e /proc/$TEST_PID ]; then echo see_test=yes; else echo see_test=no; fi;"
    " if [ -d /work ]; then echo host_root=yes; else echo host_root=no; fi;"
    " echo \"procs=$(ls -d /proc/[0-9]* | wc -l)\";"
    " /bin/busybox mount -t tmpfs x /mnt 2>/dev/null; echo \"mount_rc=$?\";"
    " echo \"unshare=$(/bin/busybox unshare -U -r true 2>&1; echo rc=$?)\";"
    " echo \"tmp=$(grep ' /tmp ' /proc/mounts | cut -d' ' -f3)\";"
    " echo \"devnull=$(echo x > /dev/null && echo ok)\";"
    " echo \"uid=$(id -u)\";"
    " if echo x > /proc/sys/kernel/core_pattern; then echo core=written; else echo core=denied; fi;"
    " } > /report.tmp 2>&1; mv /report.tmp /report; exec \"$@\"";

static bool have_agent(void)
{
	return agent_path[0] != 0;
}

static int group_setup(void **state)
{
	const char *build_dir = getenv("WARREN_BUILD_DIR");
	const char *source_dir = getenv("WARREN_SOURCE_DIR");
	char err[256];
	(void)state;

	/* Sandboxes and namespaces left by an earlier run that crashed. */
	{
		char **ids;
		size_t count;

		if (jail__list_on_host("/nonexistent", CGROUP_PARENT, &ids, &count) == 0) {
			for (size_t i = 0; i < count; i++) {
				printf("NOTE: killing sandbox %s left by an earlier run\n", ids[i]);
				jail__kill_by_id("/nonexistent", CGROUP_PARENT, ids[i]);
			}
			jail__free_ids(ids, count);
		}
	}
	jt__run("for ns in $(ip netns list | awk '/^warren-jt-/ { print $1 }'); do "
		"kill -0 ${ns#warren-jt-} 2>/dev/null || ip netns delete $ns; done");
	snprintf(base_dir, sizeof(base_dir), "/tmp/warren-jail-test-XXXXXX");
	if (!mkdtemp(base_dir))
		return -1;
	snprintf(state_dir, sizeof(state_dir), "%s/sandboxes", base_dir);
	snprintf(agent_path, sizeof(agent_path), "%s/bin/warren-agent", build_dir);
	if (access(agent_path, X_OK) != 0) {
		printf("NOTE: %s not built: busybox httpd stands in for the agent\n", agent_path);
		agent_path[0] = 0;
	}
	/* A fresh minimal template in this test's own dirs. */
	if (jt__run("%s/guest/rootfs/build-template.sh --name minimal --cache-dir %s/cache "
		    "--templates-dir %s/templates --agent '%s' >/dev/null",
		    source_dir, base_dir, base_dir, agent_path) != 0) {
		printf("FAIL: building the minimal template failed\n");
		return -1;
	}
	snprintf(err, sizeof(err), "%s/templates", base_dir);
	if (templates__read(err, "minimal", &template, err, sizeof(err))) {
		printf("FAIL: template: %s\n", err);
		return -1;
	}
	/* A plain network namespace with loopback up (the slot's stand-in). */
	snprintf(netns_name, sizeof(netns_name), "warren-jt-%d", (int)getpid());
	snprintf(netns_path, sizeof(netns_path), "/run/netns/%s", netns_name);
	if (jt__run("ip netns add %s && ip -n %s link set lo up", netns_name, netns_name) != 0) {
		printf("FAIL: cannot create network namespace %s\n", netns_name);
		return -1;
	}
	{
		char hex[TOKENS_SHA256_HEX_LEN + 1];

		tokens__sha256_hex("test-access-token", strlen("test-access-token"), hex);
		snprintf(token_hash, sizeof(token_hash), "sha256:%s", hex);
	}
	return 0;
}

/* Destroys the jail the last test left running, and kills what remains
 * under its id. */
static void drop_current(void)
{
	if (current) {
		jail__destroy(current);
		current = NULL;
	}
	if (current_id[0])
		jail__kill_by_id(state_dir, CGROUP_PARENT, current_id);
}

static int group_teardown(void **state)
{
	(void)state;
	drop_current();
	if (netns_name[0])
		jt__run("ip netns delete %s 2>/dev/null", netns_name);
	/* The cgroup parents made for the test (empty by now). */
	jt__run("rmdir /sys/fs/cgroup/" CGROUP_PARENT " /sys/fs/cgroup/*/" CGROUP_PARENT
		" 2>/dev/null");
	if (base_dir[0])
		jt__run("rm -rf '%s'", base_dir);
	return 0;
}

/* Before each test: what a failed test before it left behind. */
static int test_setup(void **state)
{
	(void)state;
	drop_current();
	current_id[0] = 0;
	return 0;
}

struct started {
	struct jail *jail;
	pid_t pid;
	uint64_t pid_ns;
	uint64_t start_to_return_us;
	uint64_t start_to_answer_us;
	int http_status;
};

/* Starts a jail running argv (NULL: the check script + agent/httpd). */
static int start_jail(const char *id, const char *const *argv, struct started *out, char *err,
		      size_t err_len)
{
	static char test_pid_env[32];
	const char *agent_argv[6];
	const char *default_argv[JAIL_ARGV_MAX];
	const char *envp[] = {"PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "HOME=/root",
			      test_pid_env, NULL};
	struct jail_config config = {
	    .id = id,
	    .rootfs = template.rootfs,
	    .netns_path = netns_path,
	    .state_dir = state_dir,
	    .cgroup_parent = CGROUP_PARENT,
	    .memory_max_bytes = MEMORY_MAX,
	    .cpu_millicores = 500,
	    .pids_max = 128,
	    .argv = argv,
	    .envp = envp,
	};
	uint64_t t0;
	size_t n = 0;

	snprintf(test_pid_env, sizeof(test_pid_env), "TEST_PID=%d", (int)getpid());
	if (!argv) {
		default_argv[n++] = "/bin/sh";
		default_argv[n++] = "-c";
		default_argv[n++] = check_script;
		default_argv[n++] = "sh";
		if (have_agent()) {
			jail__agent_argv(token_hash, agent_argv);
			for (size_t i = 0; agent_argv[i]; i++)
				default_argv[n++] = agent_argv[i];
		} else {
			default_argv[n++] = "/bin/busybox";
			default_argv[n++] = "httpd";
			default_argv[n++] = "-f";
			default_argv[n++] = "-p";
			default_argv[n++] = "0.0.0.0:49983";
			default_argv[n++] = "-h";
			default_argv[n++] = "/tmp";
		}
		default_argv[n] = NULL;
		config.argv = default_argv;
	}
	memset(out, 0, sizeof(*out));
	snprintf(current_id, sizeof(current_id), "%s", id);
	t0 = clock__monotonic_ns();
	out->jail = jail__start(&config, err, err_len);
	out->start_to_return_us = (clock__monotonic_ns() - t0) / 1000;
	current = out->jail;
	if (!out->jail)
		return -1;
	out->pid = jail__pid(out->jail);
	out->pid_ns = jt__pid_ns_inode(out->pid);
	if (!argv) {
		out->http_status =
		    jt__http_get_in_netns(netns_path, JAIL_AGENT_PORT, "/health", 20000);
		out->start_to_answer_us = (clock__monotonic_ns() - t0) / 1000;
	}
	return 0;
}

/* After jail__stop: no process, mount, cgroup or state dir is left. */
static void assert_nothing_left(const char *id, const struct started *s)
{
	char path[PATH_MAX];
	struct stat st;
	static const char *const hierarchies[] = {"", "unified/", "memory/", "cpu/", "pids/"};

	assert_int_equal(jt__processes_in_pid_ns(s->pid_ns), 0);
	assert_int_equal(kill(s->pid, 0), -1);
	assert_int_equal(errno, ESRCH);
	assert_false(jt__mountinfo_mentions(base_dir));
	snprintf(path, sizeof(path), "%s/%s", state_dir, id);
	assert_int_equal(lstat(path, &st), -1);
	for (size_t i = 0; i < sizeof(hierarchies) / sizeof(hierarchies[0]); i++) {
		snprintf(path, sizeof(path), "/sys/fs/cgroup/%s" CGROUP_PARENT "/%s",
			 hierarchies[i], id);
		assert_int_equal(lstat(path, &st), -1);
	}
}

static void read_report(const char *id, char *out, size_t out_len)
{
	char path[PATH_MAX];
	FILE *f;
	size_t n;

	snprintf(path, sizeof(path), "%s/%s/upper/report", state_dir, id);
	for (int i = 0; i < 2000 && access(path, R_OK) != 0; i++)
		usleep(10000);
	f = fopen(path, "r");
	assert_non_null(f);
	n = fread(out, 1, out_len - 1, f);
	out[n] = 0;
	fclose(f);
}

static void read_text(const char *path, char *out, size_t out_len)
{
	FILE *f = fopen(path, "r");

	out[0] = 0;
	if (!f)
		fail_msg("cannot read %s", path);
	if (!fgets(out, (int)out_len, f))
		out[0] = 0;
	out[strcspn(out, "\n")] = 0;
	fclose(f);
}

/* cpu_millicores 500 and pids_max 128, as the kernel has them. */
static void check_cpu_and_pids_limits(const char *id)
{
	char path[PATH_MAX], value[64];

	if (access("/sys/fs/cgroup/cgroup.controllers", F_OK) == 0) {
		snprintf(path, sizeof(path), "/sys/fs/cgroup/" CGROUP_PARENT "/%s/cpu.max", id);
		read_text(path, value, sizeof(value));
		assert_string_equal(value, "50000 100000");
		snprintf(path, sizeof(path), "/sys/fs/cgroup/" CGROUP_PARENT "/%s/pids.max", id);
	} else {
		snprintf(path, sizeof(path),
			 "/sys/fs/cgroup/cpu/" CGROUP_PARENT "/%s/cpu.cfs_quota_us", id);
		read_text(path, value, sizeof(value));
		assert_string_equal(value, "50000");
		snprintf(path, sizeof(path), "/sys/fs/cgroup/pids/" CGROUP_PARENT "/%s/pids.max",
			 id);
	}
	read_text(path, value, sizeof(value));
	assert_string_equal(value, "128");
}

static void test_jail_isolation(void **state)
{
	const char *id = "jt-isolation";
	char err[512], report[4096], value[128], expect[128];
	struct started s;
	uint64_t memory = 0;
	(void)state;

	char leak_path[64];
	int leak_fd;

	/* A descriptor the caller forgot to mark close-on-exec. */
	snprintf(leak_path, sizeof(leak_path), "/tmp/warren-jt-leak-%d", (int)getpid());
	leak_fd = open(leak_path, O_RDWR | O_CREAT, 0600);
	assert_true(leak_fd >= 0);
	if (start_jail(id, NULL, &s, err, sizeof(err)))
		fail_msg("jail__start: %s", err);
	close(leak_fd);
	unlink(leak_path);
	printf("jail__start returned after %.1f ms; %s answered HTTP %d after %.1f ms\n",
	       s.start_to_return_us / 1000.0, have_agent() ? "agent /health" : "busybox httpd",
	       s.http_status, s.start_to_answer_us / 1000.0);
	/* The agent (or httpd) answers on 49983 inside the namespace. */
	if (have_agent())
		assert_int_equal(s.http_status, 204);
	else
		assert_true(s.http_status >= 200 && s.http_status < 600);

	read_report(id, report, sizeof(report));
	printf("inside the jail:\n%s", report);
	assert_non_null(strstr(report, "pid=2\n"));		 /* sh is pid 2 ... */
	assert_non_null(strstr(report, "init=warren-jail-ini")); /* ... under our init */
	snprintf(expect, sizeof(expect), "hostname=%s\n", id);
	assert_non_null(strstr(report, expect));
	assert_non_null(strstr(report, "etc_hostname=warren\n")); /* the template's root */
	assert_non_null(strstr(report, "host_root=no\n"));
	assert_non_null(strstr(report, "see_test=no\n"));
	assert_null(strstr(report, "mount_rc=0\n"));
	assert_non_null(strstr(report, "not permitted")); /* unshare -U: seccomp EPERM */
	assert_null(strstr(report, "rc=0)"));
	assert_non_null(strstr(report, "tmp=tmpfs\n"));
	assert_non_null(strstr(report, "devnull=ok\n"));
	assert_non_null(strstr(report, "uid=0\n"));	  /* root inside ... */
	assert_non_null(strstr(report, "core=denied\n")); /* ... without host power */

	/* From the host: pid 1 inside, caps, no_new_privs, seccomp, limits. */
	assert_int_equal(jt__status_field(s.pid, "NSpid", value, sizeof(value)), 0);
	snprintf(expect, sizeof(expect), "%d\t1", (int)s.pid);
	assert_string_equal(value, expect);
	/* ... as an unprivileged host uid, the same for every id. */
	assert_true(jail__host_uid(s.jail) >= 65536);
	snprintf(expect, sizeof(expect), "%u\t%u\t%u\t%u", jail__host_uid(s.jail),
		 jail__host_uid(s.jail), jail__host_uid(s.jail), jail__host_uid(s.jail));
	assert_int_equal(jt__status_field(s.pid, "Uid", value, sizeof(value)), 0);
	assert_string_equal(value, expect);
	assert_int_equal(jt__status_field(s.pid, "Gid", value, sizeof(value)), 0);
	assert_string_equal(value, expect);
	assert_int_equal(jt__status_field(s.pid, "CapEff", value, sizeof(value)), 0);
	/* CHOWN(0) DAC_OVERRIDE(1) FOWNER(3) KILL(5) SETGID(6) SETUID(7)
	 * NET_BIND_SERVICE(10) = 0x4eb */
	assert_string_equal(value, "00000000000004eb");
	assert_int_equal(jt__status_field(s.pid, "CapBnd", value, sizeof(value)), 0);
	assert_string_equal(value, "00000000000004eb");
	assert_int_equal(jt__status_field(s.pid, "NoNewPrivs", value, sizeof(value)), 0);
	assert_string_equal(value, "1");
	assert_int_equal(jt__status_field(s.pid, "Seccomp", value, sizeof(value)), 0);
	assert_string_equal(value, "2");
	assert_int_equal(jail__memory_limit(s.jail, &memory), 0);
	assert_int_equal(memory, MEMORY_MAX);
	check_cpu_and_pids_limits(id);
	assert_int_equal(jail__state(s.jail, NULL), JAIL_RUNNING);
	/* No process in the jail holds the leaked descriptor. */
	assert_int_equal(jt__processes_holding(s.pid_ns, "warren-jt-leak-"), 0);
	/* nor the worker's compiled seccomp program (init closed it) */
	assert_int_equal(jt__processes_holding(s.pid_ns, "warren-seccomp"), 0);
	assert_true(jt__processes_in_pid_ns(s.pid_ns) >= 2);

	assert_int_equal(jail__stop(s.jail), 0);
	assert_int_equal(jail__stop(s.jail), 0); /* idempotent */
	assert_int_equal(jail__state(s.jail, NULL), JAIL_EXITED);
	assert_nothing_left(id, &s);
	jail__destroy(s.jail);
	current = NULL;
}

static int compare_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static void test_jail_cycles(void **state)
{
	uint64_t answer_us[CYCLES];
	char id[32], err[512];
	struct started s;
	(void)state;

	for (int i = 0; i < CYCLES; i++) {
		snprintf(id, sizeof(id), "jt-cycle-%d", i);
		if (start_jail(id, NULL, &s, err, sizeof(err)))
			fail_msg("cycle %d: jail__start: %s", i, err);
		assert_true(s.http_status > 0);
		answer_us[i] = s.start_to_answer_us;
		assert_int_equal(jail__stop(s.jail), 0);
		assert_nothing_left(id, &s);
		jail__destroy(s.jail);
		current = NULL;
	}
	qsort(answer_us, CYCLES, sizeof(answer_us[0]), compare_u64);
	printf("%d cycles, jail__start -> %s answering: min %.1f ms, median %.1f ms, max %.1f ms\n",
	       CYCLES, have_agent() ? "agent /health" : "httpd", answer_us[0] / 1000.0,
	       answer_us[CYCLES / 2] / 1000.0, answer_us[CYCLES - 1] / 1000.0);
}

/* A restarted worker finds the sandbox from the state dir and cgroups and
 * kills it without the handle. */
static void test_jail_kill_by_id(void **state)
{
	const char *id = "jt-orphan";
	char err[512], **ids;
	size_t count;
	bool listed = false;
	struct started s;
	(void)state;

	if (start_jail(id, NULL, &s, err, sizeof(err)))
		fail_msg("jail__start: %s", err);
	assert_int_equal(jail__list_on_host(state_dir, CGROUP_PARENT, &ids, &count), 0);
	for (size_t i = 0; i < count; i++)
		listed |= !strcmp(ids[i], id);
	jail__free_ids(ids, count);
	assert_true(listed);
	assert_int_equal(jail__kill_by_id(state_dir, CGROUP_PARENT, id), 0);
	/* The init is our child: reap it the way the worker's loop would. */
	assert_int_equal(jail__wait(s.jail, 20000), 0);
	assert_nothing_left(id, &s);
	assert_int_equal(jail__list_on_host(state_dir, CGROUP_PARENT, &ids, &count), 0);
	assert_int_equal(count, 0);
	jail__free_ids(ids, count);
	jail__destroy(s.jail);
	current = NULL;
}

/* A program that does not exist: a clear error, nothing left behind. */
static void test_jail_bad_program(void **state)
{
	const char *argv[] = {"/no/such/program", NULL};
	char err[512] = "", path[PATH_MAX];
	struct started s;
	struct stat st;
	(void)state;

	assert_int_equal(start_jail("jt-bad", argv, &s, err, sizeof(err)), -1);
	printf("expected failure: %s\n", err);
	assert_non_null(strstr(err, "/no/such/program"));
	snprintf(path, sizeof(path), "%s/jt-bad", state_dir);
	assert_int_equal(lstat(path, &st), -1);
	assert_int_equal(lstat("/sys/fs/cgroup/pids/" CGROUP_PARENT "/jt-bad", &st), -1);
	assert_int_equal(lstat("/sys/fs/cgroup/" CGROUP_PARENT "/jt-bad", &st), -1);
}

/* The program's exit is the jail's exit; its status comes through. */
static void test_jail_exit_status(void **state)
{
	const char *argv[] = {"/bin/sh", "-c", "sleep 0.1; exit 7", NULL};
	char err[512];
	struct started s;
	int status = 0;
	(void)state;

	if (start_jail("jt-exit", argv, &s, err, sizeof(err)))
		fail_msg("jail__start: %s", err);
	assert_int_equal(jail__wait(s.jail, 20000), 0);
	assert_int_equal(jail__state(s.jail, &status), JAIL_EXITED);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 7);
	assert_int_equal(jail__stop(s.jail), 0);
	assert_nothing_left("jt-exit", &s);
	jail__destroy(s.jail);
	current = NULL;
}

/* Concatenates the decoded "stdout" payloads of a Connect stream. */
static void collect_stdout(const char *response, char *out, size_t out_len)
{
	const char *key = "\"stdout\":\"";
	size_t used = 0;

	out[0] = 0;
	for (const char *p = strstr(response, key); p; p = strstr(p, key)) {
		unsigned char decoded[256];
		const char *start = p + strlen(key), *end = strchr(start, '"');
		int n;

		if (!end || end - start > 300)
			break;
		n = EVP_DecodeBlock(decoded, (const unsigned char *)start, (int)(end - start));
		if (n < 0)
			break;
		for (const char *q = end - 1; q >= start && *q == '='; q--)
			n--; /* EVP_DecodeBlock counts the padding */
		if (used + (size_t)n >= out_len)
			break;
		memcpy(out + used, decoded, (size_t)n);
		used += (size_t)n;
		out[used] = 0;
		p = end;
	}
}

/* The agent in a jail: /init with the token, then a command run as `user`
 * through process.Process/Start (setuid works with the kept caps). */
static void test_jail_agent_runs_command_as_user(void **state)
{
	const char *argv[6];
	const char *envp[] = {"PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", NULL};
	const char *id = "jt-agent";
	struct jail_config config = {
	    .id = id,
	    .rootfs = template.rootfs,
	    .netns_path = netns_path,
	    .state_dir = state_dir,
	    .cgroup_parent = CGROUP_PARENT,
	    .memory_max_bytes = MEMORY_MAX,
	    .pids_max = 128,
	    .argv = argv,
	    .envp = envp,
	};
	static const char init_body[] = "{\"accessToken\":\"test-access-token\","
					"\"defaultUser\":\"user\"}";
	static const char start_json[] =
	    "{\"process\":{\"cmd\":\"/bin/sh\",\"args\":[\"-c\",\"id -u; id -un; pwd\"]}}";
	unsigned char frame[256];
	char err[512], response[8192], stdout_text[256];
	size_t len = strlen(start_json);
	struct jail *jail;
	(void)state;

	if (!have_agent()) {
		printf("SKIP: warren-agent not built\n");
		skip();
	}
	jail__agent_argv(token_hash, argv);
	snprintf(current_id, sizeof(current_id), "%s", id);
	jail = jail__start(&config, err, sizeof(err));
	if (!jail)
		fail_msg("jail__start: %s", err);
	current = jail;
	assert_int_equal(jt__http_get_in_netns(netns_path, JAIL_AGENT_PORT, "/health", 20000), 204);
	/* Without the token: 401. */
	assert_int_equal(jt__http_request_in_netns(netns_path, JAIL_AGENT_PORT, "GET", "/envs",
						   NULL, NULL, 0, response, sizeof(response)),
			 401);
	assert_int_equal(jt__http_request_in_netns(netns_path, JAIL_AGENT_PORT, "POST", "/init",
						   "Content-Type: application/json\r\n", init_body,
						   strlen(init_body), response, sizeof(response)),
			 204);
	/* A Connect streaming request: one envelope (flags, big-endian length). */
	frame[0] = 0;
	frame[1] = 0;
	frame[2] = 0;
	frame[3] = (unsigned char)(len >> 8);
	frame[4] = (unsigned char)len;
	memcpy(frame + 5, start_json, len);
	assert_int_equal(jt__http_request_in_netns(netns_path, JAIL_AGENT_PORT, "POST",
						   "/process.Process/Start",
						   "X-Access-Token: test-access-token\r\n"
						   "Content-Type: application/connect+json\r\n"
						   "Connect-Protocol-Version: 1\r\n",
						   frame, 5 + len, response, sizeof(response)),
			 200);
	/* stdout "1000\nuser\n/home/user\n": base64 in data events, chunked as
	 * the pipe reads happened to go. */
	collect_stdout(response, stdout_text, sizeof(stdout_text));
	if (strcmp(stdout_text, "1000\nuser\n/home/user\n") != 0)
		fail_msg("stdout \"%s\", expected `1000 user /home/user`; answer:\n%s", stdout_text,
			 response);
	assert_non_null(strstr(response, "\"exitCode\":0"));
	assert_int_equal(jail__stop(jail), 0);
	jail__destroy(jail);
	current = NULL;
}

/* The `base` template (Debian + python3), when it is installed in the
 * WARREN_TEMPLATES_DIR (`warren template build base`; minutes, so the
 * test never builds it): python3 runs inside a jail as `user`. */
static void test_jail_base_template_python(void **state)
{
	struct template_info base;
	char err[512], path[PATH_MAX], output[256] = "";
	const char *argv[] = {"/bin/sh", "-c",
			      "python3 -c 'import os; os.setgroups([]); os.setgid(1000); "
			      "os.setuid(1000); print(os.getuid(), 6 * 7)' > /python.out 2>&1",
			      NULL};
	const char *id = "jt-base";
	struct jail_config config = {
	    .id = id,
	    .netns_path = netns_path,
	    .state_dir = state_dir,
	    .cgroup_parent = CGROUP_PARENT,
	    .memory_max_bytes = MEMORY_MAX,
	    .pids_max = 128,
	    .argv = argv,
	};
	struct jail *jail;
	FILE *f;
	(void)state;

	templates__configure(&(struct templates_settings){.dir = getenv("WARREN_TEMPLATES_DIR")});
	if (templates__read(templates__dir(), "base", &base, err, sizeof(err))) {
		printf("SKIP: base template not installed (%s)\n", err);
		skip();
	}
	config.rootfs = base.rootfs;
	snprintf(current_id, sizeof(current_id), "%s", id);
	jail = jail__start(&config, err, sizeof(err));
	if (!jail)
		fail_msg("jail__start: %s", err);
	current = jail;
	assert_int_equal(jail__wait(jail, 20000), 0);
	snprintf(path, sizeof(path), "%s/%s/upper/python.out", state_dir, id);
	f = fopen(path, "r");
	assert_non_null(f);
	if (!fgets(output, sizeof(output), f))
		output[0] = 0;
	fclose(f);
	printf("python3 in a base jail: %s", output);
	assert_string_equal(output, "1000 42\n");
	assert_int_equal(jail__stop(jail), 0);
	jail__destroy(jail);
	current = NULL;
}

/* memory_max_bytes is enforced: a process growing past it is killed. */
static void test_jail_memory_limit_enforced(void **state)
{
	/* busybox tail keeps the whole last line: 400 MiB without a newline. */
	const char *argv[] = {"/bin/sh", "-c",
			      "head -c 400m /dev/zero | tail -n 1 >/dev/null; "
			      "exit $?",
			      NULL};
	char err[512];
	struct started s;
	int status = 0;
	(void)state;

	if (start_jail("jt-oom", argv, &s, err, sizeof(err)))
		fail_msg("jail__start: %s", err);
	assert_int_equal(jail__wait(s.jail, 60000), 0);
	assert_int_equal(jail__state(s.jail, &status), JAIL_EXITED);
	assert_true(WIFEXITED(status));
	printf("400 MiB in a %llu MiB jail: exit %d (137 = SIGKILL by the OOM killer)\n",
	       MEMORY_MAX >> 20, WEXITSTATUS(status));
	assert_int_equal(WEXITSTATUS(status), 137);
	assert_int_equal(jail__stop(s.jail), 0);
	assert_nothing_left("jt-oom", &s);
	jail__destroy(s.jail);
	current = NULL;
}

/* The counter a paused-sandbox test reads: /count in the overlay upper
 * (-1 when not written yet). */
static long read_counter(const char *id)
{
	char path[PATH_MAX], text[32] = "";
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s/upper/count", state_dir, id);
	f = fopen(path, "r");
	if (!f)
		return -1;
	if (!fgets(text, sizeof(text), f))
		text[0] = 0;
	fclose(f);
	return text[0] ? strtol(text, NULL, 10) : -1;
}

/* Waits up to timeout_ms until the counter is above floor; its value. */
static long wait_counter_above(const char *id, long floor, int timeout_ms)
{
	long value = read_counter(id);

	for (int waited = 0; value <= floor && waited < timeout_ms; waited += 20) {
		usleep(20000);
		value = read_counter(id);
	}
	return value;
}

/* Pause = the cgroup v2 freezer: a process counting in the sandbox makes
 * no progress while frozen, continues from where it stopped once thawed;
 * both are idempotent; a paused sandbox can be stopped (kill). */
static void test_jail_pause_freezes_processes(void **state)
{
	const char *argv[] = {"/bin/sh", "-c",
			      "i=0; while :; do i=$((i+1)); echo $i > /count.tmp; "
			      "mv /count.tmp /count; sleep 0.02; done",
			      NULL};
	char err[512];
	struct started s;
	long before, during, after;
	bool frozen = false;
	uint64_t t0, freeze_us, thaw_us;
	int rc;
	(void)state;

	if (start_jail("jt-pause", argv, &s, err, sizeof(err)))
		fail_msg("jail__start: %s", err);
	assert_true(wait_counter_above("jt-pause", 2, 20000) > 2);
	t0 = clock__monotonic_ns();
	rc = jail__freeze(s.jail, true, 5000);
	freeze_us = (clock__monotonic_ns() - t0) / 1000;
	if (rc == -ENOTSUP) {
		jail__destroy(s.jail);
		current = NULL;
		printf("SKIP: this host has no cgroup v2 directory for the jail (no freezer)\n");
		skip();
	}
	assert_int_equal(rc, 0);
	assert_int_equal(jail__frozen(s.jail, &frozen), 0);
	assert_true(frozen);
	assert_int_equal(jail__state(s.jail, NULL), JAIL_RUNNING);
	before = read_counter("jt-pause");
	usleep(600 * 1000); /* ~30 increments if it were running */
	during = read_counter("jt-pause");
	printf("paused in %llu us; counter %ld, 600 ms later %ld\n", (unsigned long long)freeze_us,
	       before, during);
	assert_int_equal(before, during);
	assert_int_equal(jail__freeze(s.jail, true, 5000), 0); /* again: no-op */

	t0 = clock__monotonic_ns();
	assert_int_equal(jail__freeze(s.jail, false, 5000), 0);
	thaw_us = (clock__monotonic_ns() - t0) / 1000;
	assert_int_equal(jail__frozen(s.jail, &frozen), 0);
	assert_false(frozen);
	after = wait_counter_above("jt-pause", during, 20000);
	printf("resumed in %llu us; counter went on to %ld\n", (unsigned long long)thaw_us, after);
	assert_true(after > during);
	/* It continued, not restarted: the shell kept its memory. */
	assert_true(after < during + 1000);

	/* Kill while paused: stop thaws and kills, nothing is left. */
	assert_int_equal(jail__freeze(s.jail, true, 5000), 0);
	assert_int_equal(jail__stop(s.jail), 0);
	assert_nothing_left("jt-pause", &s);
	jail__destroy(s.jail);
	current = NULL;
}

/* The VM runtime's init (/sbin/init of the template) without a VM: run as
 * PID 1 of fresh mount/pid/uts namespaces (util-linux unshare + chroot) in
 * the test's netns with a veth named eth0; it must mount its filesystems,
 * configure eth0 and start the agent. */
static void test_vm_init_script_in_namespaces(void **state)
{
	char command[PATH_MAX * 2], log_path[PATH_MAX];
	int status;
	pid_t pid;
	(void)state;

	if (!have_agent()) {
		printf("SKIP: warren-agent not built\n");
		skip();
	}
	if (jt__run("command -v nsenter >/dev/null && command -v unshare >/dev/null && "
		    "command -v chroot >/dev/null") != 0) {
		printf("SKIP: no nsenter/unshare/chroot (util-linux, coreutils)\n");
		skip();
	}
	assert_int_equal(jt__run("ip -n %s link add eth0 type veth peer name eth1 && "
				 "ip -n %s addr add 169.254.0.22/30 dev eth1 && "
				 "ip -n %s link set eth1 up",
				 netns_name, netns_name, netns_name),
			 0);
	snprintf(log_path, sizeof(log_path), "%s/vm-init.log", base_dir);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

		if (fd < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
			_exit(126);
		snprintf(command, sizeof(command), "--net=%s", netns_path);
		/* nsenter joins the netns (unshare --net=FILE would make a new one
		 * and bind it over FILE). */
		execlp("nsenter", "nsenter", command, "unshare", "--mount", "--pid", "--fork",
		       "--kill-child", "--uts", "chroot", template.rootfs, "/sbin/init",
		       (char *)NULL);
		_exit(127);
	}
	status = jt__http_get_in_netns(netns_path, JAIL_AGENT_PORT, "/health", 20000);
	snprintf(command, sizeof(command),
		 "ip -n %s -br addr show eth0 | grep -q 169.254.0.21/30 && "
		 "ip -n %s route | grep -q 'default via 169.254.0.22 dev eth0'",
		 netns_name, netns_name);
	int network_ok = jt__run("%s", command);

	/* nsenter exec'ed unshare: killing it kills its PID 1 (--kill-child),
	 * hence the whole pid namespace. */
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	for (int i = 0; i < 2000 && jt__run("test -z \"$(ip netns pids %s)\"", netns_name); i++)
		usleep(10000);
	jt__run("ip -n %s link delete eth1 2>/dev/null", netns_name);
	if (status != 204 || network_ok != 0)
		jt__run("cat %s", log_path);
	assert_int_equal(status, 204);
	assert_int_equal(network_ok, 0);
	assert_int_equal(jt__run("test -z \"$(ip netns pids %s)\"", netns_name), 0);
}

/* Starts a jail running the shell script with one volume (docs/volumes.md). */
static struct jail *start_with_volume(const char *id, const char *script, const char *image,
				      const char *path, int wait_ms, char *err, size_t err_len)
{
	const char *argv[] = {"/bin/sh", "-c", script, NULL};
	struct jail_volume volume = {.image = image, .path = path};
	struct jail_config config = {
	    .id = id,
	    .rootfs = template.rootfs,
	    .netns_path = netns_path,
	    .state_dir = state_dir,
	    .cgroup_parent = CGROUP_PARENT,
	    .memory_max_bytes = MEMORY_MAX,
	    .pids_max = 128,
	    .argv = argv,
	    .volumes = &volume,
	    .volume_count = 1,
	    .volume_wait_ms = wait_ms,
	};

	snprintf(current_id, sizeof(current_id), "%s", id);
	return jail__start(&config, err, err_len);
}

/* Runs script in a jail with the volume at path; returns its exit status
 * after stopping it (nothing left behind). */
static int run_with_volume(const char *id, const char *script, const char *image, const char *path)
{
	char err[512];
	int status = 0;
	struct started s = {0};

	s.jail = start_with_volume(id, script, image, path, 5000, err, sizeof(err));
	if (!s.jail)
		fail_msg("jail__start with a volume: %s", err);
	current = s.jail;
	s.pid = jail__pid(s.jail);
	s.pid_ns = jt__pid_ns_inode(s.pid);
	assert_int_equal(jail__wait(s.jail, 20000), 0);
	assert_int_equal(jail__state(s.jail, &status), JAIL_EXITED);
	assert_int_equal(jail__stop(s.jail), 0);
	assert_nothing_left(id, &s);
	jail__destroy(s.jail);
	current = NULL;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

/* Volumes: data written by one jail is read by the next (at another path),
 * owned by the sandbox's root inside although each jail has its own host
 * uid range (idmapped mount); the image is size-limited; a second mount
 * of an image in use is refused until the first jail is gone; bad mount
 * paths are refused. */
static void test_jail_volumes(void **state)
{
	char image[PATH_MAX], err[512];
	struct jail *first, *second;
	struct stat st;
	struct jail_config bad = {0};
	struct jail_volume escape = {.image = "/tmp/x.img", .path = "/data/../etc"};
	(void)state;

	snprintf(image, sizeof(image), "%s/vol_test.img", base_dir);
	assert_int_equal(jail__volume_make(image, 32ULL << 20, err, sizeof(err)), 0);
	assert_int_equal(stat(image, &st), 0);
	assert_int_equal(st.st_size, 32LL << 20);
	assert_true(st.st_blocks * 512 < 16LL << 20);				      /* sparse */
	assert_int_equal(jail__volume_make(image, 32ULL << 20, err, sizeof(err)), 0); /* kept */

	assert_int_equal(
	    run_with_volume("jt-vol-a",
			    "set -e; test \"$(ls -A /data)\" = ''; "
			    "echo hello > /data/f; mkdir /data/d; "
			    "test \"$(stat -c %u /data/f)\" = 0; "
			    "test \"$(stat -c %a /data)\" = 777; "
			    "if dd if=/dev/zero of=/data/big bs=1M count=64 2>/dev/null; "
			    "then exit 4; fi; rm /data/big",
			    image, "/data"),
	    0);
	assert_int_equal(run_with_volume("jt-vol-b",
					 "set -e; test \"$(cat /mnt/v/f)\" = hello; "
					 "test -d /mnt/v/d; test \"$(stat -c %u /mnt/v/f)\" = 0; "
					 "echo again >> /mnt/v/f",
					 image, "/mnt/v"),
			 0);

	/* one mount at a time on this host */
	first = start_with_volume("jt-vol-c", "sleep 30", image, "/data", 100, err, sizeof(err));
	if (!first)
		fail_msg("jail__start: %s", err);
	current = first;
	second = start_with_volume("jt-vol-d", "exit 0", image, "/data", 100, err, sizeof(err));
	assert_null(second);
	assert_non_null(strstr(err, "mounted by another sandbox"));
	jail__destroy(first);
	current = NULL;
	assert_int_equal(run_with_volume("jt-vol-e",
					 "test \"$(cat /data/f)\" = \"$(printf 'hello\\nagain')\"",
					 image, "/data"),
			 0);

	/* the jail checks mount paths itself */
	bad.id = "jt-vol-bad";
	bad.rootfs = template.rootfs;
	bad.netns_path = netns_path;
	bad.memory_max_bytes = MEMORY_MAX;
	bad.pids_max = 1;
	bad.argv = (const char *const[]){"/bin/true", NULL};
	bad.volumes = &escape;
	bad.volume_count = 1;
	assert_int_equal(jail__config_validate(&bad, err, sizeof(err)), -EINVAL);
	escape.path = "/";
	assert_int_equal(jail__config_validate(&bad, err, sizeof(err)), -EINVAL);
	escape.path = "/data";
	assert_int_equal(jail__config_validate(&bad, err, sizeof(err)), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup(test_jail_isolation, test_setup),
	    cmocka_unit_test_setup(test_jail_bad_program, test_setup),
	    cmocka_unit_test_setup(test_jail_exit_status, test_setup),
	    cmocka_unit_test_setup(test_jail_kill_by_id, test_setup),
	    cmocka_unit_test_setup(test_jail_agent_runs_command_as_user, test_setup),
	    cmocka_unit_test_setup(test_jail_base_template_python, test_setup),
	    cmocka_unit_test_setup(test_jail_memory_limit_enforced, test_setup),
	    cmocka_unit_test_setup(test_vm_init_script_in_namespaces, test_setup),
	    cmocka_unit_test_setup(test_jail_cycles, test_setup),
	    cmocka_unit_test_setup(test_jail_pause_freezes_processes, test_setup),
	    cmocka_unit_test_setup(test_jail_volumes, test_setup),
	};
	const char *skip = NULL;

	signal(SIGPIPE, SIG_IGN);
	if (geteuid() != 0)
		skip = "the jail tests need root (namespaces, overlayfs, cgroups)";
	else if (!getenv("WARREN_BUILD_DIR") || !getenv("WARREN_SOURCE_DIR"))
		skip = "WARREN_BUILD_DIR / WARREN_SOURCE_DIR not set (run through ctest)";
	else if (jt__run("grep -qw overlay /proc/filesystems") != 0)
		skip = "no overlayfs in this kernel";
	else if (jt__run("command -v ip >/dev/null") != 0)
		skip = "no `ip` command (iproute2)";
	else if (access("/sys/fs/cgroup/cgroup.controllers", F_OK) != 0 &&
		 access("/sys/fs/cgroup/memory/cgroup.procs", F_OK) != 0)
		skip = "no cgroup v2 or v1 memory hierarchy mounted at /sys/fs/cgroup";
	if (skip) {
		printf("SKIP: %s\n", skip);
		return 77;
	}
	/* WARREN_TEST_FILTER=test_jail_volumes runs one test (by hand). */
	if (getenv("WARREN_TEST_FILTER"))
		cmocka_set_test_filter(getenv("WARREN_TEST_FILTER"));
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
