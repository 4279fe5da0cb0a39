/* Unit tests of the service-manager glue: service__notify speaks the
 * sd_notify datagram protocol (path and abstract sockets, nothing without
 * NOTIFY_SOCKET), and log lines on the journal's stream carry a "<N>"
 * priority and no time stamp of their own. */
#include <errno.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "warren/log.h"
#include "warren/service.h"

/* A datagram socket bound at name (a path, or "@..." abstract). */
static int listen_at(const char *name)
{
	struct sockaddr_un address = {.sun_family = AF_UNIX};
	size_t len = strlen(name);
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	memcpy(address.sun_path, name, len);
	if (name[0] == '@')
		address.sun_path[0] = '\0';
	assert_int_equal(bind(fd, (struct sockaddr *)&address,
			      (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len)),
			 0);
	return fd;
}

static void expect_datagram(int fd, const char *text)
{
	char buffer[256];
	ssize_t n = recv(fd, buffer, sizeof(buffer) - 1, MSG_DONTWAIT);

	assert_true(n >= 0);
	buffer[n] = '\0';
	assert_string_equal(buffer, text);
}

static void test_notify_path_socket(void **state)
{
	char dir[] = "/tmp/warren-ship-notify-XXXXXX", path[128];
	int fd;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/notify", dir);
	fd = listen_at(path);
	setenv("NOTIFY_SOCKET", path, 1);
	assert_int_equal(service__notify("READY=1"), 0);
	expect_datagram(fd, "READY=1");
	assert_int_equal(service__notify("STOPPING=1\nSTATUS=draining"), 0);
	expect_datagram(fd, "STOPPING=1\nSTATUS=draining");
	close(fd);
	unlink(path);
	rmdir(dir);
	/* The manager went away: an error, never a crash or a hang. */
	assert_true(service__notify("READY=1") < 0);
	unsetenv("NOTIFY_SOCKET");
}

static void test_notify_abstract_socket(void **state)
{
	char name[64];
	int fd;

	(void)state;
	snprintf(name, sizeof(name), "@warren-ship-notify-%d", (int)getpid());
	fd = listen_at(name);
	setenv("NOTIFY_SOCKET", name, 1);
	assert_int_equal(service__notify("READY=1"), 0);
	expect_datagram(fd, "READY=1");
	close(fd);
	unsetenv("NOTIFY_SOCKET");
}

static void test_notify_without_manager(void **state)
{
	(void)state;
	unsetenv("NOTIFY_SOCKET");
	assert_int_equal(service__notify("READY=1"), 0);
	setenv("NOTIFY_SOCKET", "relative/path", 1);
	assert_int_equal(service__notify("READY=1"), -EINVAL);
	unsetenv("NOTIFY_SOCKET");
}

/* In a child (the journal check is made once per process): stderr to a
 * file, JOURNAL_STREAM naming it or not; returns the line written. */
static void log_line_in_child(bool journal, const char *config, char *out, size_t out_len)
{
	char path[] = "/tmp/warren-ship-log-XXXXXX";
	int fd = mkstemp(path), status;
	pid_t pid;
	FILE *f;

	assert_true(fd >= 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct stat st;
		char stream[64];

		dup2(fd, STDERR_FILENO);
		fstat(fd, &st);
		snprintf(stream, sizeof(stream), "%llu:%llu", (unsigned long long)st.st_dev,
			 (unsigned long long)st.st_ino + (journal ? 0 : 1));
		setenv("JOURNAL_STREAM", stream, 1);
		setenv("WARREN_CONFIG", config, 1);
		log__set_component("shiptest");
		log_warn("hello %d", 42);
		_exit(0);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	f = fopen(path, "r");
	assert_non_null(f);
	assert_non_null(fgets(out, (int)out_len, f));
	fclose(f);
	close(fd);
	unlink(path);
}

static void test_log_for_journal(void **state)
{
	char line[256];

	(void)state;
	log_line_in_child(true, "", line, sizeof(line));
	assert_string_equal(line, "<4>WARN shiptest: hello 42\n");
	/* The logger never ends a process over its configuration (warren-vmm
	 * logs inside a jail where the file is out of reach). */
	log_line_in_child(true, "/nonexistent/warren.conf", line, sizeof(line));
	assert_string_equal(line, "<4>WARN shiptest: hello 42\n");
	log_line_in_child(false, "", line, sizeof(line));
	/* Not the journal's stream: the usual time-stamped line. */
	assert_true(line[0] == '2' && strstr(line, "Z WARN shiptest: hello 42\n"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_notify_path_socket),
	    cmocka_unit_test(test_notify_abstract_socket),
	    cmocka_unit_test(test_notify_without_manager),
	    cmocka_unit_test(test_log_for_journal),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
