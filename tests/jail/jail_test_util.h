/* Helpers of the jail tests: templates and network namespaces made for
 * the test, HTTP probes from inside a namespace, leftovers checks. */
#ifndef WARREN_JAIL_TEST_UTIL_H
#define WARREN_JAIL_TEST_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Runs a shell command; returns its exit status (or -1). */
int jt__run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* GET path on 127.0.0.1:port from inside netns_path, retrying connects for
 * up to timeout_ms. Returns the HTTP status, or -1. */
int jt__http_get_in_netns(const char *netns_path, int port, const char *path, int timeout_ms);
/* Number of host processes whose pid namespace is the one with inode ns. */
int jt__processes_in_pid_ns(uint64_t ns_inode);
/* The inode of /proc/<pid>/ns/pid, 0 when gone. */
uint64_t jt__pid_ns_inode(pid_t pid);
/* Number of processes in the pid namespace ns_inode with an open file
 * whose path contains needle. */
int jt__processes_holding(uint64_t ns_inode, const char *needle);
/* True when /proc/self/mountinfo mentions needle. */
bool jt__mountinfo_mentions(const char *needle);
/* Reads /proc/<pid>/status field (e.g. "CapEff") into out. */
int jt__status_field(pid_t pid, const char *field, char *out, size_t out_len);

/* One HTTP/1.1 request (Connection: close) to 127.0.0.1:port from inside
 * netns_path; headers is "Name: value\r\n"... or NULL. The whole response
 * (head and body, truncated to out_len - 1, NUL bytes shown as '.') goes
 * to out. Returns the HTTP
 * status, or -1. */
int jt__http_request_in_netns(const char *netns_path, int port, const char *method,
			      const char *path, const char *headers, const void *body,
			      size_t body_len, char *out, size_t out_len);
#endif
