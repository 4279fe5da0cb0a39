#include "jail_test_util.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "warren/clock.h"

int jt__run(const char *fmt, ...)
{
	char command[4096];
	va_list ap;
	int status;

	va_start(ap, fmt);
	vsnprintf(command, sizeof(command), fmt, ap);
	va_end(ap);
	status = system(command);
	if (status < 0 || !WIFEXITED(status))
		return -1;
	return WEXITSTATUS(status);
}

static int http_get_once(int port, const char *path)
{
	struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	char request[512], response[256];
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct timeval timeout = {2, 0};
	size_t used = 0;
	int status = -1;

	if (fd < 0)
		return -1;
	address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
	if (connect(fd, (struct sockaddr *)&address, sizeof(address)))
		goto out;
	snprintf(request, sizeof(request), "GET %s HTTP/1.0\r\nHost: localhost\r\n\r\n", path);
	if (write(fd, request, strlen(request)) != (ssize_t)strlen(request))
		goto out;
	while (used < sizeof(response) - 1) {
		ssize_t n = read(fd, response + used, sizeof(response) - 1 - used);

		if (n <= 0)
			break;
		used += (size_t)n;
		if (memchr(response, '\n', used))
			break;
	}
	response[used] = 0;
	if (sscanf(response, "HTTP/1.%*d %d", &status) != 1)
		status = -1;
out:
	close(fd);
	return status;
}

int jt__http_get_in_netns(const char *netns_path, int port, const char *path, int timeout_ms)
{
	int result_pipe[2];
	int status = -1;
	pid_t pid;

	if (pipe(result_pipe))
		return -1;
	pid = fork();
	if (pid == 0) {
		int fd = open(netns_path, O_RDONLY | O_CLOEXEC);
		uint64_t deadline = clock__monotonic_ms() + (uint64_t)timeout_ms;

		if (fd < 0 || setns(fd, CLONE_NEWNET))
			_exit(1);
		do {
			status = http_get_once(port, path);
			if (status > 0)
				break;
			struct timespec ts = {0, 2000000};
			nanosleep(&ts, NULL);
		} while (clock__monotonic_ms() < deadline);
		if (write(result_pipe[1], &status, sizeof(status)) < 0)
			_exit(1);
		_exit(0);
	}
	close(result_pipe[1]);
	if (pid < 0 || read(result_pipe[0], &status, sizeof(status)) != sizeof(status))
		status = -1;
	close(result_pipe[0]);
	if (pid > 0)
		waitpid(pid, NULL, 0);
	return status;
}

uint64_t jt__pid_ns_inode(pid_t pid)
{
	char path[64];
	struct stat st;

	snprintf(path, sizeof(path), "/proc/%d/ns/pid", (int)pid);
	return stat(path, &st) ? 0 : (uint64_t)st.st_ino;
}

int jt__processes_in_pid_ns(uint64_t ns_inode)
{
	DIR *proc = opendir("/proc");
	struct dirent *entry;
	int count = 0;

	if (!proc)
		return -1;
	while ((entry = readdir(proc))) {
		long pid = strtol(entry->d_name, NULL, 10);

		if (pid > 0 && jt__pid_ns_inode((pid_t)pid) == ns_inode)
			count++;
	}
	closedir(proc);
	return count;
}

int jt__processes_holding(uint64_t ns_inode, const char *needle)
{
	DIR *proc = opendir("/proc");
	struct dirent *entry;
	int count = 0;

	if (!proc)
		return -1;
	while ((entry = readdir(proc))) {
		long pid = strtol(entry->d_name, NULL, 10);
		char dir_path[64], link_path[384], target[512];
		struct dirent *fd_entry;
		DIR *fds;

		if (pid <= 0 || jt__pid_ns_inode((pid_t)pid) != ns_inode)
			continue;
		snprintf(dir_path, sizeof(dir_path), "/proc/%ld/fd", pid);
		fds = opendir(dir_path);
		if (!fds)
			continue;
		while ((fd_entry = readdir(fds))) {
			ssize_t n;

			snprintf(link_path, sizeof(link_path), "%s/%s", dir_path, fd_entry->d_name);
			n = readlink(link_path, target, sizeof(target) - 1);
			if (n <= 0)
				continue;
			target[n] = 0;
			if (strstr(target, needle)) {
				count++;
				break;
			}
		}
		closedir(fds);
	}
	closedir(proc);
	return count;
}

bool jt__mountinfo_mentions(const char *needle)
{
	char line[4096];
	bool found = false;
	FILE *f = fopen("/proc/self/mountinfo", "re");

	if (!f)
		return true;
	while (!found && fgets(line, sizeof(line), f))
		found = strstr(line, needle) != NULL;
	fclose(f);
	return found;
}

int jt__status_field(pid_t pid, const char *field, char *out, size_t out_len)
{
	char path[64], line[512];
	size_t field_len = strlen(field);
	int ret = -ENOENT;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	f = fopen(path, "re");
	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f)) {
		if (!strncmp(line, field, field_len) && line[field_len] == ':') {
			char *value = line + field_len + 1;

			value += strspn(value, " \t");
			value[strcspn(value, "\n")] = 0;
			snprintf(out, out_len, "%s", value);
			ret = 0;
			break;
		}
	}
	fclose(f);
	return ret;
}

static int request_once(int port, const char *method, const char *path, const char *headers,
			const void *body, size_t body_len, char *out, size_t out_len)
{
	struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	struct timeval timeout = {10, 0};
	char head[2048];
	size_t used = 0;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int status = -1, len;

	if (fd < 0)
		return -1;
	address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
	if (connect(fd, (struct sockaddr *)&address, sizeof(address)))
		goto out;
	len = snprintf(head, sizeof(head),
		       "%s %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n%s"
		       "Content-Length: %zu\r\n\r\n",
		       method, path, headers ? headers : "", body_len);
	if (len < 0 || (size_t)len >= sizeof(head) || write(fd, head, (size_t)len) != len)
		goto out;
	if (body_len && write(fd, body, body_len) != (ssize_t)body_len)
		goto out;
	for (;;) {
		ssize_t n = read(fd, out + used, out_len - 1 - used);

		if (n <= 0)
			break;
		used += (size_t)n;
		if (used == out_len - 1)
			break;
	}
	/* Binary framing (Connect envelopes) made searchable as text. */
	for (size_t i = 0; i < used; i++)
		if (out[i] == 0)
			out[i] = '.';
	out[used] = 0;
	if (sscanf(out, "HTTP/1.%*d %d", &status) != 1)
		status = -1;
out:
	close(fd);
	return status;
}

int jt__http_request_in_netns(const char *netns_path, int port, const char *method,
			      const char *path, const char *headers, const void *body,
			      size_t body_len, char *out, size_t out_len)
{
	int result_pipe[2];
	int status = -1;
	size_t got = 0;
	pid_t pid;

	out[0] = 0;
	if (out_len < 2 || pipe(result_pipe))
		return -1;
	pid = fork();
	if (pid == 0) {
		int fd = open(netns_path, O_RDONLY | O_CLOEXEC);

		close(result_pipe[0]);
		if (fd < 0 || setns(fd, CLONE_NEWNET))
			_exit(1);
		status = request_once(port, method, path, headers, body, body_len, out, out_len);
		if (write(result_pipe[1], &status, sizeof(status)) < 0 ||
		    write(result_pipe[1], out, strlen(out)) < 0)
			_exit(1);
		_exit(0);
	}
	close(result_pipe[1]);
	if (pid > 0 && read(result_pipe[0], &status, sizeof(status)) == sizeof(status)) {
		for (;;) {
			ssize_t n = read(result_pipe[0], out + got, out_len - 1 - got);

			if (n <= 0)
				break;
			got += (size_t)n;
		}
	}
	out[got] = 0;
	close(result_pipe[0]);
	if (pid > 0)
		waitpid(pid, NULL, 0);
	return status;
}
