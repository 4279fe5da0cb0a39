/* kernel: Jupyter kernel processes and their sockets (kernel.h). */
#include "kernel.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "outputs.h"
#include "warren/clock.h"
#include "warren/ids.h"
#include "warren/log.h"

#define KERNEL_MAX_FRAMES 32
/* The largest kernel message read; a bigger one makes libzmq drop the
 * connection (ZMQ_MAXMSGSIZE), losing what follows until it reconnects.
 * ipykernel buffers a cell's prints between flushes, so a fast loop that
 * prints 100 MB can arrive as one message of most of it: the bound is
 * well above that (the sandbox's own memory limit bounds it anyway;
 * output beyond 16 MiB is cut before it is sent on). */
#define KERNEL_MAX_MESSAGE (512LL << 20)
/* After execute_reply, how long iopub may stay quiet before its status idle
 * counts as lost (a lost iopub message must not hang the call). iopub is
 * its own channel and lags shell by as much as a big output takes to
 * read, so the grace runs from the last iopub message, bounded by
 * KERNEL_IDLE_WAIT_MAX_MS after the reply. */
#define KERNEL_IDLE_GRACE_MS	2000
#define KERNEL_IDLE_WAIT_MAX_MS 60000

int line_buffer__append(struct line_buffer *b, char *line)
{
	size_t len;

	if (!line)
		return -1;
	len = strlen(line);
	if (b->len + len > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		char *grown;

		while (cap < b->len + len)
			cap *= 2;
		grown = realloc(b->data, cap);
		if (!grown) {
			free(line);
			return -1;
		}
		b->data = grown;
		b->cap = cap;
	}
	memcpy(b->data + b->len, line, len);
	b->len += len;
	free(line);
	return 0;
}

void line_buffer__free(struct line_buffer *b)
{
	free(b->data);
	memset(b, 0, sizeof(*b));
}

/* Sends one signed message on socket; fills msg_id when not NULL. */
static int kernel__send(struct kernel *k, void *socket, const char *msg_type, json_t *content,
			char msg_id[40])
{
	struct jmsg_encoded encoded;
	char id[IDS_UUID_LEN + 1];
	int ret = -1;

	if (ids__uuid(id) || jmsg__encode(k->key, k->session, id, msg_type, content, &encoded))
		return -1;
	if (zmq_send(socket, JMSG_DELIMITER, strlen(JMSG_DELIMITER), ZMQ_SNDMORE) < 0 ||
	    zmq_send(socket, encoded.signature, strlen(encoded.signature), ZMQ_SNDMORE) < 0)
		goto out;
	for (int i = 0; i < 4; i++)
		if (zmq_send(socket, encoded.parts[i], strlen(encoded.parts[i]),
			     i < 3 ? ZMQ_SNDMORE : 0) < 0)
			goto out;
	if (msg_id)
		snprintf(msg_id, 40, "%s", id);
	ret = 0;
out:
	jmsg__encoded_clear(&encoded);
	return ret;
}

/* Receives one multipart message (non-blocking: call after poll says
 * POLLIN). Returns 0 with out filled, 1 for a message dropped as invalid,
 * -1 when nothing could be read. */
static int kernel__recv(struct kernel *k, void *socket, struct jmsg *out)
{
	zmq_msg_t parts[KERNEL_MAX_FRAMES];
	struct jmsg_frame frames[KERNEL_MAX_FRAMES] = {{NULL, 0}};
	size_t count = 0;
	int more = 1, ret = -1;
	size_t more_len = sizeof(more);
	char err[128];

	while (more) {
		zmq_msg_t part;

		zmq_msg_init(&part);
		if (zmq_msg_recv(&part, socket, count ? 0 : ZMQ_DONTWAIT) < 0) {
			zmq_msg_close(&part);
			goto out;
		}
		if (zmq_getsockopt(socket, ZMQ_RCVMORE, &more, &more_len))
			more = 0;
		if (count < KERNEL_MAX_FRAMES)
			parts[count++] = part;
		else
			zmq_msg_close(&part); /* buffers beyond the limit: not ours to read */
	}
	for (size_t i = 0; i < count; i++) {
		frames[i].data = zmq_msg_data(&parts[i]);
		frames[i].len = zmq_msg_size(&parts[i]);
	}
	ret = jmsg__decode(k->key, frames, count, out, err, sizeof(err)) ? 1 : 0;
	if (ret)
		log_warn("dropped a kernel message: %s", err);
out:
	for (size_t i = 0; i < count; i++)
		zmq_msg_close(&parts[i]);
	return ret;
}

bool kernel__alive(struct kernel *k)
{
	int status;

	if (k->pid <= 0)
		return false;
	if (waitpid(k->pid, &status, WNOHANG) == k->pid) {
		log_warn("kernel %d exited (status %d)", (int)k->pid, status);
		k->pid = 0;
		return false;
	}
	return true;
}

static void close_sockets(struct kernel *k)
{
	void **sockets[3] = {&k->shell, &k->iopub, &k->control};

	for (int i = 0; i < 3; i++) {
		if (*sockets[i]) {
			int linger = 0;

			zmq_setsockopt(*sockets[i], ZMQ_LINGER, &linger, sizeof(linger));
			zmq_close(*sockets[i]);
			*sockets[i] = NULL;
		}
	}
}

static void remove_dir(const char *dir)
{
	static const char *names[] = {
	    "connection.json", "kernel.log", "k-1", "k-2", "k-3", "k-4", "k-5"};
	char path[300];

	if (!dir[0])
		return;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
		unlink(path);
	}
	rmdir(dir);
}

void kernel__init(struct kernel *k)
{
	memset(k, 0, sizeof(*k));
	pthread_mutex_init(&k->control_lock, NULL);
}

void kernel__stop(struct kernel *k)
{
	pthread_mutex_lock(&k->control_lock);
	close_sockets(k);
	if (k->pid > 0) {
		kill(-k->pid, SIGKILL);
		kill(k->pid, SIGKILL);
		waitpid(k->pid, NULL, 0);
		k->pid = 0;
	}
	pthread_mutex_unlock(&k->control_lock);
	remove_dir(k->dir);
	k->dir[0] = '\0';
}

/* The child: its own session (process group = pid, what interrupts
 * signal), the kernel user, the cwd, output to kernel.log, then exec
 * (with the start-up file, when there is one). */
static void start_child(const struct kernel_options *o, const char *dir, const struct passwd *pw)
{
	char file[300], log_path[300], startup[PATH_MAX + 32];
	const char *python = o->python ? o->python : "/usr/bin/python3";
	int fd;

	setsid();
	/* Nothing of the server's but stdio: not a client connection accepted
	 * by another thread just before the fork (its response would never
	 * end while the kernel held it), not ZeroMQ's internals. */
	close_range(3, ~0U, 0);
	snprintf(log_path, sizeof(log_path), "%s/kernel.log", dir);
	fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd >= 0) {
		dup2(fd, 1);
		dup2(fd, 2);
	}
	fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (fd >= 0)
		dup2(fd, 0);
	if (pw) {
		if (setgroups(0, NULL) || setgid(pw->pw_gid) || setuid(pw->pw_uid))
			_exit(126);
		setenv("HOME", pw->pw_dir, 1);
		setenv("USER", pw->pw_name, 1);
	}
	if (chdir(o->cwd) && chdir("/"))
		_exit(126);
	setenv("PWD", o->cwd, 1);
	if (!getenv("MPLBACKEND"))
		setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline", 1);
	snprintf(file, sizeof(file), "%s/connection.json", dir);
	if (o->startup && snprintf(startup, sizeof(startup), "--IPKernelApp.exec_files=%s",
				   o->startup) < (int)sizeof(startup))
		execlp(python, python, "-m", "ipykernel_launcher", "-f", file, startup,
		       (char *)NULL);
	execlp(python, python, "-m", "ipykernel_launcher", "-f", file, (char *)NULL);
	_exit(127);
}

/* The private directory and the connection file in it. */
static int write_connection(struct kernel *k, const struct kernel_options *o,
			    const struct passwd *pw, char *err, size_t err_len)
{
	unsigned char raw[32];
	char path[300], ip[300];
	json_t *conn;
	int ret = -1;

	snprintf(k->dir, sizeof(k->dir), "%s/warren-kernel-XXXXXX",
		 o->runtime_dir ? o->runtime_dir : "/tmp");
	if (!mkdtemp(k->dir)) {
		snprintf(err, err_len, "mkdtemp %s: %s", k->dir, strerror(errno));
		k->dir[0] = '\0';
		return -1;
	}
	if (ids__random_bytes(raw, sizeof(raw)) || ids__uuid(k->session))
		goto out;
	for (size_t i = 0; i < sizeof(raw); i++)
		snprintf(k->key + 2 * i, 3, "%02x", raw[i]);
	snprintf(ip, sizeof(ip), "%s/k", k->dir);
	conn = json_pack("{s:s, s:s, s:i, s:i, s:i, s:i, s:i, s:s, s:s, s:s}", "transport", "ipc",
			 "ip", ip, "shell_port", 1, "iopub_port", 2, "stdin_port", 3,
			 "control_port", 4, "hb_port", 5, "key", k->key, "signature_scheme",
			 "hmac-sha256", "kernel_name", "python3");
	snprintf(path, sizeof(path), "%s/connection.json", k->dir);
	if (!conn || json_dump_file(conn, path, JSON_COMPACT)) {
		json_decref(conn);
		snprintf(err, err_len, "cannot write %s", path);
		goto out;
	}
	json_decref(conn);
	chmod(path, 0600);
	if (pw && (chown(k->dir, pw->pw_uid, pw->pw_gid) || chown(path, pw->pw_uid, pw->pw_gid))) {
		snprintf(err, err_len, "chown %s: %s", k->dir, strerror(errno));
		goto out;
	}
	ret = 0;
out:
	return ret;
}

static void *open_socket(void *zctx, int type, const char *dir, int port)
{
	char endpoint[320];
	int64_t max = KERNEL_MAX_MESSAGE;
	int linger = 0;
	void *s = zmq_socket(zctx, type);

	if (!s)
		return NULL;
	zmq_setsockopt(s, ZMQ_MAXMSGSIZE, &max, sizeof(max));
	zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof(linger));
	if (type == ZMQ_SUB)
		zmq_setsockopt(s, ZMQ_SUBSCRIBE, "", 0);
	snprintf(endpoint, sizeof(endpoint), "ipc://%s/k-%d", dir, port);
	if (zmq_connect(s, endpoint)) {
		zmq_close(s);
		return NULL;
	}
	return s;
}

/* Until both a kernel_info_reply on shell and any iopub message (which
 * proves the subscription is live) arrived, or the deadline. */
static int wait_ready(struct kernel *k, int timeout_ms, char *err, size_t err_len)
{
	long long deadline = (long long)clock__monotonic_ms() + timeout_ms, next_probe = 0;
	bool shell_ok = false, iopub_ok = false;

	while (!(shell_ok && iopub_ok)) {
		zmq_pollitem_t items[2] = {{k->shell, 0, ZMQ_POLLIN, 0},
					   {k->iopub, 0, ZMQ_POLLIN, 0}};
		struct jmsg msg;

		if ((long long)clock__monotonic_ms() > deadline) {
			snprintf(err, err_len, "kernel not ready after %d ms", timeout_ms);
			return -1;
		}
		if (!kernel__alive(k)) {
			snprintf(err, err_len, "kernel exited while starting (see its log)");
			return -1;
		}
		if ((long long)clock__monotonic_ms() >= next_probe) {
			if (kernel__send(k, k->shell, "kernel_info_request", NULL, NULL)) {
				snprintf(err, err_len, "send kernel_info_request: %s",
					 zmq_strerror(errno));
				return -1;
			}
			next_probe = (long long)clock__monotonic_ms() + 500;
		}
		if (zmq_poll(items, 2, 100) < 0 && errno != EINTR)
			return -1;
		if ((items[0].revents & ZMQ_POLLIN) && kernel__recv(k, k->shell, &msg) == 0) {
			shell_ok |= !strcmp(msg.msg_type, "kernel_info_reply");
			jmsg__clear(&msg);
		}
		if ((items[1].revents & ZMQ_POLLIN) && kernel__recv(k, k->iopub, &msg) == 0) {
			iopub_ok = true;
			jmsg__clear(&msg);
		}
	}
	/* Drain what the probes left behind so executions start clean. */
	for (;;) {
		zmq_pollitem_t items[2] = {{k->shell, 0, ZMQ_POLLIN, 0},
					   {k->iopub, 0, ZMQ_POLLIN, 0}};
		struct jmsg msg;

		if (zmq_poll(items, 2, 50) <= 0)
			break;
		for (int i = 0; i < 2; i++)
			if ((items[i].revents & ZMQ_POLLIN) &&
			    kernel__recv(k, items[i].socket, &msg) == 0)
				jmsg__clear(&msg);
	}
	return 0;
}

/* Appends the last line of the kernel's log to err (why it failed). */
static void append_log_tail(const char *dir, char *err, size_t err_len)
{
	char path[300], tail[160] = "", line[160];
	size_t used = strlen(err);
	FILE *log;

	if (!dir[0])
		return;
	snprintf(path, sizeof(path), "%s/kernel.log", dir);
	log = fopen(path, "r");
	if (!log)
		return;
	while (fgets(line, sizeof(line), log))
		if (line[0] != '\n')
			snprintf(tail, sizeof(tail), "%s", line);
	fclose(log);
	tail[strcspn(tail, "\n")] = '\0';
	if (tail[0] && used < err_len)
		snprintf(err + used, err_len - used, ": %s", tail);
}

int kernel__start(struct kernel *k, void *zctx, const struct kernel_options *o, char *err,
		  size_t err_len)
{
	struct passwd *pw = NULL;
	long long started = (long long)clock__monotonic_ms();

	/* Everything but control_lock (kernel__init's, shared with threads
	 * that may be interrupting the previous kernel of this context). */
	k->pid = 0;
	k->dir[0] = k->key[0] = k->session[0] = '\0';
	k->shell = k->iopub = k->control = NULL;
	if (o->user && geteuid() == 0) {
		pw = getpwnam(o->user);
		if (!pw) {
			snprintf(err, err_len, "kernel user %s does not exist", o->user);
			return -1;
		}
	}
	if (write_connection(k, o, pw, err, err_len))
		goto fail;
	k->pid = fork();
	if (k->pid < 0) {
		k->pid = 0;
		snprintf(err, err_len, "fork: %s", strerror(errno));
		goto fail;
	}
	if (k->pid == 0)
		start_child(o, k->dir, pw);
	k->shell = open_socket(zctx, ZMQ_DEALER, k->dir, 1);
	k->iopub = open_socket(zctx, ZMQ_SUB, k->dir, 2);
	k->control = open_socket(zctx, ZMQ_DEALER, k->dir, 4);
	if (!k->shell || !k->iopub || !k->control) {
		snprintf(err, err_len, "zmq sockets: %s", zmq_strerror(errno));
		goto fail;
	}
	if (wait_ready(k, o->start_timeout_ms > 0 ? o->start_timeout_ms : 60000, err, err_len))
		goto fail;
	log_info("kernel %d ready in %lld ms (cwd %s)", (int)k->pid,
		 (long long)clock__monotonic_ms() - started, o->cwd);
	return 0;
fail:
	append_log_tail(k->dir, err, err_len);
	kernel__stop(k);
	return -1;
}

int kernel__interrupt(struct kernel *k)
{
	char msg_id[40];
	zmq_pollitem_t item;
	int ret = -1;

	pthread_mutex_lock(&k->control_lock);
	if (!k->control || k->pid <= 0)
		goto out;
	item = (zmq_pollitem_t){k->control, 0, ZMQ_POLLIN, 0};
	if (kernel__send(k, k->control, "interrupt_request", NULL, msg_id) == 0) {
		long long deadline = (long long)clock__monotonic_ms() + 1000;

		while ((long long)clock__monotonic_ms() < deadline &&
		       zmq_poll(&item, 1, 100) >= 0) {
			struct jmsg msg;
			bool ours;

			if (!(item.revents & ZMQ_POLLIN) || kernel__recv(k, k->control, &msg))
				continue;
			ours = !strcmp(msg.parent_msg_id, msg_id);
			jmsg__clear(&msg);
			if (ours) {
				ret = 0;
				goto out;
			}
		}
	}
	ret = kill(-k->pid, SIGINT);
out:
	pthread_mutex_unlock(&k->control_lock);
	return ret;
}

/* Python statement setting (or restoring) os.environ for env_vars; JSON
 * string literals are valid Python string literals. */
static char *env_code(const json_t *env_vars, bool restore)
{
	char *values = json_dumps(env_vars, JSON_COMPACT | JSON_ENSURE_ASCII), *code = NULL;

	if (!values)
		return NULL;
	if (!restore) {
		if (asprintf(&code,
			     "import os as __w_os\n__w_saved_env = {__k: __w_os.environ.get(__k) "
			     "for __k in %s}\n"
			     "__w_os.environ.update(%s)\n",
			     values, values) < 0)
			code = NULL;
	} else if (asprintf(&code, "for __k, __v in __w_saved_env.items():\n"
				   "    (__w_os.environ.pop(__k, None) if __v is None else "
				   "__w_os.environ.__setitem__(__k, __v))\n"
				   "del __w_saved_env, __k, __v\n") < 0) {
		code = NULL;
	}
	free(values);
	return code;
}

static int send_execute(struct kernel *k, const char *code, bool silent, char msg_id[40])
{
	json_t *content = json_pack("{s:s, s:b, s:b, s:{}, s:b, s:b}", "code", code, "silent",
				    silent, "store_history", !silent, "user_expressions",
				    "allow_stdin", 0, "stop_on_error", !silent);
	int ret;

	if (!content)
		return -1;
	ret = kernel__send(k, k->shell, "execute_request", content, msg_id);
	json_decref(content);
	return ret;
}

void kernel__execute_clear(struct execution *e)
{
	free(e->code);
	free(e->restore_code);
	e->code = e->restore_code = NULL;
}

int kernel__execute_begin(struct kernel *k, const char *code, const json_t *env_vars,
			  struct execution *e)
{
	bool with_env = json_is_object(env_vars) && json_object_size(env_vars) > 0;

	memset(e, 0, sizeof(*e));
	e->kernel = k;
	e->client_fd = -1;
	e->code = strdup(code);
	if (!e->code)
		return -1;
	if (with_env) {
		char *set = env_code(env_vars, false);
		int ret;

		e->restore_code = env_code(env_vars, true);
		ret = set && e->restore_code ? send_execute(k, set, true, NULL) : -1;
		free(set);
		if (ret)
			goto fail;
	}
	e->attempts = 1;
	if (send_execute(k, code, false, e->msg_id))
		goto fail;
	return 0;
fail:
	kernel__execute_clear(e);
	return -1;
}

/* A stream line whose text alone would pass the output budget keeps the
 * part that fits (cut on a UTF-8 character boundary); the caller then
 * drops it whole only when even that does not fit, and says so. */
static bool cut_stream_text(json_t *line, size_t used)
{
	json_t *text = json_object_get(line, "text");
	size_t len = json_string_length(text), room;
	const char *value = json_string_value(text);

	if (!value || used + len + 64 <= EXECUTION_OUTPUT_MAX)
		return false;
	room = used + 4096 < EXECUTION_OUTPUT_MAX ? EXECUTION_OUTPUT_MAX - used - 4096 : 0;
	if (room >= len)
		return false;
	while (room > 0 && ((unsigned char)value[room] & 0xc0) == 0x80)
		room--;
	json_object_set_new(line, "text", json_stringn(value, room));
	return true;
}

static void append_truncation_marker(struct execution *e, struct line_buffer *out)
{
	if (e->truncated)
		return;
	e->truncated = true;
	line_buffer__append(
	    out, outputs__serialize(json_pack("{s:s, s:s}", "type", "stderr", "text",
					      "\n[warren: output truncated, over 16 MiB]\n")));
}

/* One iopub message of our execution: its line, within the output budget. */
static void handle_iopub(struct execution *e, const struct jmsg *msg, struct line_buffer *out)
{
	json_t *line;
	char *text;
	bool cut;

	if (!strcmp(msg->msg_type, "status")) {
		const char *state =
		    json_string_value(json_object_get(msg->content, "execution_state"));

		if (state && !strcmp(state, "idle"))
			e->idle = true;
		return;
	}
	line = outputs__from_iopub(msg->msg_type, msg->content);
	if (!line)
		return;
	cut = !e->truncated && !strcmp(msg->msg_type, "stream") &&
	      cut_stream_text(line, e->output_bytes);
	text = outputs__serialize(line);
	if (!text)
		return;
	if (strncmp(text, "{\"type\":\"error\"", 15) &&
	    e->output_bytes + strlen(text) > EXECUTION_OUTPUT_MAX) {
		free(text);
		append_truncation_marker(e, out);
		return;
	}
	e->output_bytes += strlen(text);
	line_buffer__append(out, text);
	if (cut)
		append_truncation_marker(e, out);
}

static void finish(struct execution *e, struct line_buffer *out)
{
	if (e->reply)
		line_buffer__append(
		    out, outputs__serialize(outputs__execution_count(e->execution_count)));
	line_buffer__append(out, outputs__serialize(outputs__end()));
	e->done = true;
}

/* True when the client's connection is closed (EOF or error on it); a
 * client that sent bytes is not watched any more (no busy loop). */
static bool client_gone(struct execution *e, short revents)
{
	char byte;
	ssize_t n;

	if (e->client_fd < 0 || !revents)
		return false;
	if (revents & ZMQ_POLLERR)
		return true;
	n = recv(e->client_fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
	if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
		return true;
	e->client_fd = -1;
	return false;
}

/* An execute_reply on shell. A request the kernel aborted (it does so to
 * requests queued behind a failed or interrupted cell) is sent again. */
static void handle_reply(struct execution *e, const struct jmsg *msg)
{
	const char *status = json_string_value(json_object_get(msg->content, "status"));
	bool aborted = status && !strcmp(status, "aborted");

	if (!strcmp(msg->parent_msg_id, e->msg_id)) {
		if (aborted && e->attempts < 3 &&
		    send_execute(e->kernel, e->code, false, e->msg_id) == 0) {
			e->attempts++;
			e->idle = false;
			return;
		}
		e->reply = true;
		e->reply_at_ms = (long long)clock__monotonic_ms();
		e->execution_count =
		    json_integer_value(json_object_get(msg->content, "execution_count"));
	} else if (e->restore_id[0] && !strcmp(msg->parent_msg_id, e->restore_id)) {
		if (aborted && e->restore_attempts < 3 &&
		    send_execute(e->kernel, e->restore_code, true, e->restore_id) == 0) {
			e->restore_attempts++;
			return;
		}
		e->restored = true;
	}
}

/* Reads what the kernel sent; no waiting. */
static void drain(struct execution *e, struct line_buffer *out)
{
	struct kernel *k = e->kernel;
	struct jmsg msg;

	while (kernel__recv(k, k->iopub, &msg) >= 0) {
		e->iopub_at_ms = (long long)
		    clock__monotonic_ms(); /* the channel is still delivering, in order */
		if (out && msg.msg_type[0] && !strcmp(msg.parent_msg_id, e->msg_id))
			handle_iopub(e, &msg, out);
		jmsg__clear(&msg);
	}
	while (kernel__recv(k, k->shell, &msg) >= 0) {
		if (!strcmp(msg.msg_type, "execute_reply"))
			handle_reply(e, &msg);
		jmsg__clear(&msg);
	}
}

/* After the cell: the env restore, when there is one, and its reply. */
static bool restore_finished(struct execution *e)
{
	if (!e->restore_code || e->restored)
		return true;
	if (!e->restore_id[0]) {
		e->restore_attempts = 1;
		e->restore_at_ms = (long long)clock__monotonic_ms();
		if (send_execute(e->kernel, e->restore_code, true, e->restore_id))
			return true;
		return false;
	}
	return (long long)clock__monotonic_ms() - e->restore_at_ms > KERNEL_IDLE_GRACE_MS * 5;
}

/* True when the cell's status idle is taken as lost: iopub quiet for the
 * grace since the reply (or its last message), or the bound passed. */
static bool idle_lost(const struct execution *e)
{
	long long now = (long long)clock__monotonic_ms();
	long long quiet_since = e->iopub_at_ms > e->reply_at_ms ? e->iopub_at_ms : e->reply_at_ms;

	return now - quiet_since > KERNEL_IDLE_GRACE_MS ||
	       now - e->reply_at_ms > KERNEL_IDLE_WAIT_MAX_MS;
}

int kernel__execute_step(struct execution *e, int wait_ms, struct line_buffer *out)
{
	int client_fd = e->client_fd;
	struct kernel *k = e->kernel;
	zmq_pollitem_t items[3] = {{k->shell, 0, ZMQ_POLLIN, 0},
				   {k->iopub, 0, ZMQ_POLLIN, 0},
				   {NULL, client_fd, ZMQ_POLLIN, 0}};

	if (e->done)
		return 0;
	if (zmq_poll(items, client_fd >= 0 ? 3 : 2, wait_ms) < 0 && errno != EINTR)
		return -1;
	if (client_gone(e, items[2].revents))
		return -1;
	drain(e, out);
	if (e->reply && (e->idle || idle_lost(e)) && restore_finished(e)) {
		finish(e, out);
		return 0;
	}
	if (!kernel__alive(k)) {
		e->dead = true;
		line_buffer__append(out, outputs__serialize(outputs__error(
					     "DeadKernelError",
					     "the kernel died while executing this code; it was "
					     "restarted and its state is lost",
					     NULL)));
		finish(e, out);
		return 0;
	}
	return 1;
}

int kernel__execute_abandon(struct execution *e)
{
	struct kernel *k = e->kernel;
	long long deadline = (long long)clock__monotonic_ms() + 5000;

	if (e->done)
		return 0;
	kernel__interrupt(k);
	e->client_fd = -1;
	while ((long long)clock__monotonic_ms() < deadline && kernel__alive(k)) {
		zmq_pollitem_t items[2] = {{k->shell, 0, ZMQ_POLLIN, 0},
					   {k->iopub, 0, ZMQ_POLLIN, 0}};

		if (zmq_poll(items, 2, 200) < 0 && errno != EINTR)
			break;
		e->attempts = 3; /* an interrupted cell is not sent again */
		drain(e, NULL);
		if (e->reply && restore_finished(e))
			return 0;
	}
	return -1;
}
