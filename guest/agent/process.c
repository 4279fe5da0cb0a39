/* process: process.Process children, see process.h. Mirrors envd's
 * process service: a process keeps running when its client goes away
 * (Connect re-attaches, output while nobody listens is dropped), List
 * shows running ones, the end event carries Go's ProcessState semantics
 * (exitCode -1 and exited=false when killed by a signal). */
#include "process.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "envelope.h"
#include "warren/clock.h"
#include "warren/log.h"

#define PUMP_READ_SIZE     (32 * 1024)
#define STREAM_BLOCK_SIZE  (64 * 1024)
#define STREAM_POLL_MS     250
#define STDIN_WRITE_TIMEOUT_MS 10000

enum chunk_kind { CHUNK_STDOUT = 1, CHUNK_STDERR = 2 };

struct output_chunk {
	struct output_chunk *next;
	enum chunk_kind kind;
	size_t len;
	uint8_t data[];
};

struct process {
	struct process *next; /* table */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int refs;
	pid_t pid;
	char *tag;
	json_t *config_json;
	pthread_mutex_t stdin_lock;
	int stdin_fd;
	int stdout_fd, stderr_fd;
	bool exited;      /* reaped */
	int wait_status;
	bool ended;       /* reaped and all output queued */
	struct timespec deadline; /* CLOCK_MONOTONIC; tv_sec 0 = none (Connect-Timeout-Ms) */
	bool deadline_hit;
	struct subscriber *subscribers;
};

struct subscriber {
	struct subscriber *next;
	struct process *process;
	struct output_chunk *head, *tail;
	size_t queued;
	/* response state, touched only by the connection thread */
	bool start_sent, end_sent, finished;
	uint8_t *pending;
	size_t pending_len, pending_off;
	struct MHD_Connection *connection;
	int keepalive_seconds;
	struct timespec last_write;
};

static pthread_mutex_t table_lock = PTHREAD_MUTEX_INITIALIZER;
static struct process *table;

static void process_unref(struct process *process)
{
	bool last;

	pthread_mutex_lock(&process->lock);
	last = --process->refs == 0;
	pthread_mutex_unlock(&process->lock);
	if (!last)
		return;
	if (process->stdin_fd >= 0)
		close(process->stdin_fd);
	json_decref(process->config_json);
	free(process->tag);
	pthread_mutex_destroy(&process->lock);
	pthread_mutex_destroy(&process->stdin_lock);
	pthread_cond_destroy(&process->cond);
	free(process);
}

/* Finds a running process by selector and takes a reference. */
static struct process *process_find(const struct process_selector *selector,
				    struct rpc_error *err)
{
	struct process *process;

	pthread_mutex_lock(&table_lock);
	for (process = table; process; process = process->next) {
		if (selector->has_pid ? process->pid == (pid_t)selector->pid
				      : (process->tag && strcmp(process->tag, selector->tag) == 0))
			break;
	}
	if (process) {
		pthread_mutex_lock(&process->lock);
		process->refs++;
		pthread_mutex_unlock(&process->lock);
	}
	pthread_mutex_unlock(&table_lock);
	if (!process) {
		err->code = "not_found";
		if (selector->has_pid)
			snprintf(err->message, sizeof(err->message), "process with pid %u not found",
				 selector->pid);
		else
			snprintf(err->message, sizeof(err->message), "process with tag %s not found",
				 selector->tag);
	}
	return process;
}

static void table_remove(struct process *process)
{
	struct process **link;

	pthread_mutex_lock(&table_lock);
	for (link = &table; *link; link = &(*link)->next) {
		if (*link == process) {
			*link = process->next;
			break;
		}
	}
	pthread_mutex_unlock(&table_lock);
}

static struct subscriber *subscriber_attach(struct process *process)
{
	struct subscriber *subscriber = calloc(1, sizeof(*subscriber));

	if (!subscriber)
		return NULL;
	subscriber->process = process;
	pthread_mutex_lock(&process->lock);
	process->refs++;
	subscriber->next = process->subscribers;
	process->subscribers = subscriber;
	pthread_mutex_unlock(&process->lock);
	return subscriber;
}

void process__subscriber_free(struct subscriber *subscriber)
{
	struct process *process;
	struct subscriber **link;
	struct output_chunk *chunk, *next;

	if (!subscriber)
		return;
	process = subscriber->process;
	pthread_mutex_lock(&process->lock);
	for (link = &process->subscribers; *link; link = &(*link)->next) {
		if (*link == subscriber) {
			*link = subscriber->next;
			break;
		}
	}
	pthread_cond_broadcast(&process->cond); /* a pump may wait for our queue */
	pthread_mutex_unlock(&process->lock);
	for (chunk = subscriber->head; chunk; chunk = next) {
		next = chunk->next;
		free(chunk);
	}
	free(subscriber->pending);
	free(subscriber);
	process_unref(process);
}

static bool any_subscriber_full(struct process *process)
{
	struct subscriber *subscriber;

	for (subscriber = process->subscribers; subscriber; subscriber = subscriber->next)
		if (subscriber->queued >= PROCESS_SUBSCRIBER_QUEUE_LIMIT)
			return true;
	return false;
}

/* envd starts a process under the Start call's Connect-Timeout-Ms and
 * kills it when that expires. Called with process->lock held. */
static void enforce_deadline(struct process *process)
{
	struct timespec now;

	if (process->deadline.tv_sec == 0 || process->deadline_hit || process->exited)
		return;
	clock_gettime(CLOCK_MONOTONIC, &now);
	if (now.tv_sec < process->deadline.tv_sec ||
	    (now.tv_sec == process->deadline.tv_sec && now.tv_nsec < process->deadline.tv_nsec))
		return;
	process->deadline_hit = true;
	log_info("process %d: timeout reached, killing its process group", (int)process->pid);
	kill(-process->pid, SIGKILL);
}

/* Waits on process->cond at most until the deadline or 1 s (monotonic). */
static void wait_bounded(struct process *process)
{
	struct timespec until;

	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_sec += 1;
	if (process->deadline.tv_sec && !process->deadline_hit &&
	    (process->deadline.tv_sec < until.tv_sec ||
	     (process->deadline.tv_sec == until.tv_sec && process->deadline.tv_nsec < until.tv_nsec)))
		until = process->deadline;
	pthread_cond_timedwait(&process->cond, &process->lock, &until);
	enforce_deadline(process);
}

/* Queues one read of output to every subscriber, waiting while any of
 * them is full: this is the back-pressure that ends in the child's pipe. */
static void publish(struct process *process, enum chunk_kind kind, const uint8_t *data,
		    size_t len)
{
	struct subscriber *subscriber;
	struct output_chunk *chunk;

	pthread_mutex_lock(&process->lock);
	while (any_subscriber_full(process))
		wait_bounded(process);
	for (subscriber = process->subscribers; subscriber; subscriber = subscriber->next) {
		chunk = malloc(sizeof(*chunk) + len);
		if (!chunk)
			continue; /* dropped for this subscriber; never crash */
		chunk->next = NULL;
		chunk->kind = kind;
		chunk->len = len;
		memcpy(chunk->data, data, len);
		if (subscriber->tail)
			subscriber->tail->next = chunk;
		else
			subscriber->head = chunk;
		subscriber->tail = chunk;
		subscriber->queued += len;
	}
	pthread_cond_broadcast(&process->cond);
	pthread_mutex_unlock(&process->lock);
}

static void *pump_thread(void *arg)
{
	struct process *process = arg;
	struct pollfd fds[2];
	uint8_t *buf = malloc(PUMP_READ_SIZE);
	int open_count = 2, i;
	ssize_t n;

	fds[0] = (struct pollfd){.fd = process->stdout_fd, .events = POLLIN};
	fds[1] = (struct pollfd){.fd = process->stderr_fd, .events = POLLIN};
	while (buf && open_count > 0) {
		int timeout = -1;

		if (process->deadline.tv_sec) {
			pthread_mutex_lock(&process->lock);
			enforce_deadline(process);
			if (!process->deadline_hit)
				timeout = 1000;
			pthread_mutex_unlock(&process->lock);
		}
		if (poll(fds, 2, timeout) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		for (i = 0; i < 2; i++) {
			if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			n = read(fds[i].fd, buf, PUMP_READ_SIZE);
			if (n < 0 && (errno == EINTR || errno == EAGAIN))
				continue;
			if (n <= 0) {
				close(fds[i].fd);
				fds[i].fd = -1;
				open_count--;
				continue;
			}
			publish(process, i == 0 ? CHUNK_STDOUT : CHUNK_STDERR, buf, (size_t)n);
		}
	}
	for (i = 0; i < 2; i++)
		if (fds[i].fd >= 0)
			close(fds[i].fd);
	free(buf);

	pthread_mutex_lock(&process->lock);
	while (!process->exited)
		wait_bounded(process);
	process->ended = true;
	pthread_cond_broadcast(&process->cond);
	pthread_mutex_unlock(&process->lock);
	table_remove(process);
	log_info("process %d ended (status 0x%x)", (int)process->pid, process->wait_status);
	process_unref(process); /* the table's reference */
	process_unref(process); /* the pump's reference */
	return NULL;
}

void process__reaped(pid_t pid, int status)
{
	struct process *process;

	pthread_mutex_lock(&table_lock);
	for (process = table; process; process = process->next)
		if (process->pid == pid)
			break;
	if (process) {
		pthread_mutex_lock(&process->lock);
		process->exited = true;
		process->wait_status = status;
		pthread_cond_broadcast(&process->cond);
		pthread_mutex_unlock(&process->lock);
	}
	pthread_mutex_unlock(&table_lock);
}

/* The environment of a child: PATH/HOME/USER/LOGNAME, /init's envVars,
 * then the request's envs (later wins), as a NULL-terminated array. */
static char **build_environment(const struct process_config *config,
				const struct agent_user *user)
{
	json_t *merged = json_object(), *value;
	const char *key;
	char **envp = NULL, *eq;
	size_t i, count = 0;

	json_object_set_new(merged, "PATH", json_string(AGENT_DEFAULT_PATH));
	json_object_set_new(merged, "HOME", json_string(user->home));
	json_object_set_new(merged, "USER", json_string(user->name));
	json_object_set_new(merged, "LOGNAME", json_string(user->name));
	pthread_mutex_lock(&agent.lock);
	json_object_update(merged, agent.env_vars);
	pthread_mutex_unlock(&agent.lock);
	for (i = 0; i < config->env_count; i++) {
		eq = strchr(config->envs[i], '=');
		if (!eq)
			continue;
		*eq = '\0';
		json_object_set_new(merged, config->envs[i], json_string(eq + 1));
		*eq = '=';
	}
	envp = calloc(json_object_size(merged) + 1, sizeof(char *));
	if (!envp)
		goto out;
	json_object_foreach(merged, key, value)
	{
		if (!json_is_string(value) ||
		    asprintf(&envp[count], "%s=%s", key, json_string_value(value)) < 0) {
			envp[count] = NULL;
			continue;
		}
		count++;
	}
out:
	json_decref(merged);
	return envp;
}

static void free_strings(char **strings)
{
	size_t i;

	if (!strings)
		return;
	for (i = 0; strings[i]; i++)
		free(strings[i]);
	free(strings);
}

/* Resolves cmd like exec.LookPath: as is when it has a '/', else through
 * PATH from envp. /bin/bash falls back to /bin/sh for busybox templates. */
static bool find_executable(const char *cmd, char **envp, char *out, size_t out_len)
{
	const char *path = AGENT_DEFAULT_PATH, *start, *end;
	size_t i;

	if (strchr(cmd, '/')) {
		if (strcmp(cmd, "/bin/bash") == 0 && access(cmd, X_OK) != 0 &&
		    access("/bin/sh", X_OK) == 0)
			cmd = "/bin/sh";
		snprintf(out, out_len, "%s", cmd);
		return true;
	}
	for (i = 0; envp[i]; i++)
		if (strncmp(envp[i], "PATH=", 5) == 0)
			path = envp[i] + 5;
	for (start = path; *start; start = *end ? end + 1 : end) {
		end = strchrnul(start, ':');
		if (end == start)
			continue;
		if (snprintf(out, out_len, "%.*s/%s", (int)(end - start), start, cmd) <
			    (int)out_len &&
		    access(out, X_OK) == 0)
			return true;
	}
	return false;
}

bool process__start(const struct process_config *config, const json_t *config_json,
		    const char *tag, bool stdin_pipe, long long timeout_ms,
		    const struct agent_user *user, struct subscriber **subscriber_out,
		    struct rpc_error *err)
{
	int out_pipe[2] = {-1, -1}, err_pipe[2] = {-1, -1}, in_pipe[2] = {-1, -1};
	int status_pipe[2] = {-1, -1}, child_errno = 0, null_fd = -1;
	char executable[PATH_MAX], cwd[PATH_MAX];
	char **envp = NULL, **argv = NULL;
	struct process *process = NULL;
	struct subscriber *subscriber = NULL;
	struct stat st;
	pthread_t thread;
	pthread_attr_t attr;
	sigset_t all;
	bool switch_user = geteuid() == 0 && (user->uid != geteuid() || user->gid != getegid());
	pid_t pid;
	ssize_t n;

	err->code = "internal";
	envp = build_environment(config, user);
	if (!envp) {
		snprintf(err->message, sizeof(err->message), "out of memory");
		goto fail;
	}
	if (!find_executable(config->cmd, envp, executable, sizeof(executable))) {
		err->code = "invalid_argument";
		snprintf(err->message, sizeof(err->message), "executable '%.200s' not found in PATH",
			 config->cmd);
		goto fail;
	}
	/* argv[0] names the program run (busybox picks its applet by it). */
	argv = calloc(config->argc + 1, sizeof(char *));
	if (!argv) {
		snprintf(err->message, sizeof(err->message), "out of memory");
		goto fail;
	}
	memcpy(argv, config->argv, config->argc * sizeof(char *));
	if (strcmp(executable, config->cmd) != 0 && strchr(config->cmd, '/'))
		argv[0] = executable;
	pthread_mutex_lock(&agent.lock);
	snprintf(cwd, sizeof(cwd), "%s",
		 config->cwd ? config->cwd
			     : (agent.default_workdir[0] ? agent.default_workdir : user->home));
	pthread_mutex_unlock(&agent.lock);
	if (stat(cwd, &st) < 0 || !S_ISDIR(st.st_mode)) {
		err->code = "invalid_argument";
		snprintf(err->message, sizeof(err->message), "cwd '%.200s' is not a directory", cwd);
		goto fail;
	}

	process = calloc(1, sizeof(*process));
	if (!process) {
		snprintf(err->message, sizeof(err->message), "out of memory");
		goto fail;
	}
	pthread_mutex_init(&process->lock, NULL);
	pthread_mutex_init(&process->stdin_lock, NULL);
	{
		pthread_condattr_t cond_attr;
		pthread_condattr_init(&cond_attr);
		pthread_condattr_setclock(&cond_attr, CLOCK_MONOTONIC);
		pthread_cond_init(&process->cond, &cond_attr);
		pthread_condattr_destroy(&cond_attr);
	}
	if (timeout_ms > 0) {
		clock__timespec_after(CLOCK_MONOTONIC, (uint64_t)timeout_ms * 1000000u,
				      &process->deadline);
	}
	process->refs = 1; /* ours until the pump takes over */
	process->stdin_fd = -1;
	process->tag = tag ? strdup(tag) : NULL;
	process->config_json = json_deep_copy(config_json);

	if (pipe2(out_pipe, O_CLOEXEC) < 0 || pipe2(err_pipe, O_CLOEXEC) < 0 ||
	    pipe2(status_pipe, O_CLOEXEC) < 0 || (stdin_pipe && pipe2(in_pipe, O_CLOEXEC) < 0) ||
	    (!stdin_pipe && (null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC)) < 0)) {
		snprintf(err->message, sizeof(err->message), "pipe: %s", strerror(errno));
		goto fail;
	}
	/* stdin is usable as soon as List shows the process (O_CLOEXEC keeps
	 * this end out of the child). SendInput polls with a timeout. */
	if (in_pipe[1] >= 0) {
		fcntl(in_pipe[1], F_SETFL, O_NONBLOCK);
		process->stdin_fd = in_pipe[1];
		in_pipe[1] = -1;
	}
	subscriber = subscriber_attach(process);
	if (!subscriber) {
		snprintf(err->message, sizeof(err->message), "out of memory");
		goto fail;
	}

	/* Hold the table lock across fork and insertion so the reaper can't
	 * miss a child that exits at once. */
	pthread_mutex_lock(&table_lock);
	pid = fork();
	if (pid == 0) {
		/* Child: only async-signal-safe calls from here on. */
		struct sigaction dfl = {.sa_handler = SIG_DFL};
		int i;

		for (i = 1; i < NSIG; i++)
			sigaction(i, &dfl, NULL);
		sigemptyset(&all);
		sigprocmask(SIG_SETMASK, &all, NULL);
		setsid(); /* own session and process group */
		if (dup2(stdin_pipe ? in_pipe[0] : null_fd, 0) < 0 || dup2(out_pipe[1], 1) < 0 ||
		    dup2(err_pipe[1], 2) < 0)
			goto child_fail;
		if (switch_user && (setgroups((size_t)user->group_count, user->groups) < 0 ||
				    setgid(user->gid) < 0 || setuid(user->uid) < 0))
			goto child_fail;
		if (chdir(cwd) < 0)
			goto child_fail;
		/* busybox picks its applet by argv[0]: after the /bin/bash ->
		 * /bin/sh fallback, argv[0] must name the shell that runs. */
		if (strcmp(executable, config->cmd) != 0)
			config->argv[0] = executable;
		execve(executable, argv, envp);
child_fail:
		child_errno = errno;
		if (write(status_pipe[1], &child_errno, sizeof(child_errno)) < 0)
			_exit(126);
		_exit(127);
	}
	if (pid < 0) {
		pthread_mutex_unlock(&table_lock);
		snprintf(err->message, sizeof(err->message), "fork: %s", strerror(errno));
		goto fail;
	}
	process->pid = pid;
	process->next = table;
	table = process;
	process->refs++; /* the table's */
	pthread_mutex_unlock(&table_lock);

	close(status_pipe[1]);
	status_pipe[1] = -1;
	close(out_pipe[1]);
	close(err_pipe[1]);
	out_pipe[1] = err_pipe[1] = -1;
	if (in_pipe[0] >= 0) {
		close(in_pipe[0]);
		in_pipe[0] = -1;
	}
	do
		n = read(status_pipe[0], &child_errno, sizeof(child_errno));
	while (n < 0 && errno == EINTR);
	if (n > 0) {
		/* exec failed: the reaper collects the child; unlist it now. */
		table_remove(process);
		process_unref(process);
		err->code = child_errno == ENOENT || child_errno == EACCES ? "invalid_argument"
									  : "internal";
		snprintf(err->message, sizeof(err->message), "failed to start '%.200s': %s",
			 config->cmd, strerror(child_errno));
		goto fail;
	}
	process->stdout_fd = out_pipe[0];
	process->stderr_fd = err_pipe[0];
	out_pipe[0] = err_pipe[0] = -1;

	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	if (pthread_create(&thread, &attr, pump_thread, process) != 0) {
		/* Without a pump nobody would drain the pipes: kill it. */
		pthread_attr_destroy(&attr);
		kill(-pid, SIGKILL);
		close(process->stdout_fd);
		close(process->stderr_fd);
		table_remove(process);
		process_unref(process);
		snprintf(err->message, sizeof(err->message), "cannot start output thread");
		goto fail;
	}
	pthread_attr_destroy(&attr);
	/* our reference now belongs to the pump */
	log_info("started process %d: %s (user %s, cwd %s)", (int)pid, executable, user->name, cwd);
	close(status_pipe[0]);
	if (null_fd >= 0)
		close(null_fd);
	free_strings(envp);
	free(argv);
	*subscriber_out = subscriber;
	return true;
fail:
	for (int i = 0; i < 2; i++) {
		if (out_pipe[i] >= 0)
			close(out_pipe[i]);
		if (err_pipe[i] >= 0)
			close(err_pipe[i]);
		if (in_pipe[i] >= 0)
			close(in_pipe[i]);
		if (status_pipe[i] >= 0)
			close(status_pipe[i]);
	}
	if (null_fd >= 0)
		close(null_fd);
	free_strings(envp);
	free(argv);
	process__subscriber_free(subscriber);
	if (process)
		process_unref(process);
	return false;
}

bool process__connect(const struct process_selector *selector, struct subscriber **subscriber,
		      struct rpc_error *err)
{
	struct process *process = process_find(selector, err);

	if (!process)
		return false;
	*subscriber = subscriber_attach(process);
	process_unref(process);
	if (!*subscriber) {
		err->code = "internal";
		snprintf(err->message, sizeof(err->message), "out of memory");
		return false;
	}
	return true;
}

json_t *process__list(void)
{
	json_t *processes = json_array(), *info;
	struct process *process;

	pthread_mutex_lock(&table_lock);
	for (process = table; process; process = process->next) {
		info = json_pack("{s:O,s:i}", "config", process->config_json, "pid",
				 (int)process->pid);
		if (process->tag)
			json_object_set_new(info, "tag", json_string(process->tag));
		json_array_append_new(processes, info);
	}
	pthread_mutex_unlock(&table_lock);
	return json_pack("{s:o}", "processes", processes);
}

bool process__send_input(const struct process_selector *selector, const uint8_t *data,
			 size_t len, struct rpc_error *err)
{
	struct process *process = process_find(selector, err);
	struct pollfd pfd;
	ssize_t n;
	bool ok = false;

	if (!process)
		return false;
	pthread_mutex_lock(&process->stdin_lock);
	if (process->stdin_fd < 0) {
		err->code = "failed_precondition";
		snprintf(err->message, sizeof(err->message),
			 "stdin of process %d is not open (start it with stdin=true)",
			 (int)process->pid);
		goto out;
	}
	while (len > 0) {
		n = write(process->stdin_fd, data, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN) {
			pfd = (struct pollfd){.fd = process->stdin_fd, .events = POLLOUT};
			if (poll(&pfd, 1, STDIN_WRITE_TIMEOUT_MS) == 0) {
				err->code = "deadline_exceeded";
				snprintf(err->message, sizeof(err->message),
					 "process is not reading its stdin");
				goto out;
			}
			continue;
		}
		if (n < 0) {
			err->code = errno == EPIPE ? "failed_precondition" : "internal";
			snprintf(err->message, sizeof(err->message), "writing stdin: %s",
				 strerror(errno));
			goto out;
		}
		data += n;
		len -= (size_t)n;
	}
	ok = true;
out:
	pthread_mutex_unlock(&process->stdin_lock);
	process_unref(process);
	return ok;
}

bool process__close_stdin(const struct process_selector *selector, struct rpc_error *err)
{
	struct process *process = process_find(selector, err);

	if (!process)
		return false;
	pthread_mutex_lock(&process->stdin_lock);
	if (process->stdin_fd >= 0) {
		close(process->stdin_fd);
		process->stdin_fd = -1;
	}
	pthread_mutex_unlock(&process->stdin_lock);
	process_unref(process);
	return true;
}

bool process__signal(const struct process_selector *selector, int signal_number,
		     struct rpc_error *err)
{
	struct process *process = process_find(selector, err);
	bool ok = true;

	if (!process)
		return false;
	/* The whole process group: bash -c children die with it. */
	if (kill(-process->pid, signal_number) < 0 && kill(process->pid, signal_number) < 0 &&
	    errno != ESRCH) {
		err->code = "internal";
		snprintf(err->message, sizeof(err->message), "kill: %s", strerror(errno));
		ok = false;
	}
	process_unref(process);
	return ok;
}

/* --- streaming response (Connect "Streaming-Response", JSON codec) --- */

static bool frame_set(struct subscriber *subscriber, uint8_t flags, const char *json,
		      size_t len)
{
	free(subscriber->pending);
	subscriber->pending = malloc(ENVELOPE_HEADER_LEN + len);
	subscriber->pending_off = 0;
	subscriber->pending_len = 0;
	if (!subscriber->pending)
		return false;
	envelope__write_header(subscriber->pending, flags, (uint32_t)len);
	memcpy(subscriber->pending + ENVELOPE_HEADER_LEN, json, len);
	subscriber->pending_len = ENVELOPE_HEADER_LEN + len;
	return true;
}

static bool frame_data(struct subscriber *subscriber, const struct output_chunk *chunk)
{
	static const char prefix_out[] = "{\"event\":{\"data\":{\"stdout\":\"";
	static const char prefix_err[] = "{\"event\":{\"data\":{\"stderr\":\"";
	static const char suffix[] = "\"}}}";
	size_t b64 = 4 * ((chunk->len + 2) / 3);
	size_t len = sizeof(prefix_out) - 1 + b64 + sizeof(suffix) - 1;
	char *json = malloc(len + 1);
	bool ok;

	if (!json)
		return false;
	memcpy(json, chunk->kind == CHUNK_STDOUT ? prefix_out : prefix_err, sizeof(prefix_out) - 1);
	wire__base64_encode(chunk->data, chunk->len, json + sizeof(prefix_out) - 1);
	memcpy(json + sizeof(prefix_out) - 1 + b64, suffix, sizeof(suffix));
	ok = frame_set(subscriber, 0, json, len);
	free(json);
	return ok;
}

static const char *signal_description(int signal_number)
{
	/* Go's names, as in ProcessState.String(): "signal: killed". */
	switch (signal_number) {
	case SIGKILL:
		return "killed";
	case SIGTERM:
		return "terminated";
	case SIGINT:
		return "interrupt";
	case SIGHUP:
		return "hangup";
	case SIGPIPE:
		return "broken pipe";
	case SIGSEGV:
		return "segmentation fault";
	case SIGABRT:
		return "aborted";
	default:
		return strsignal(signal_number);
	}
}

static bool frame_end(struct subscriber *subscriber, int status)
{
	char json[256];
	int len;

	if (WIFEXITED(status))
		len = snprintf(json, sizeof(json),
			       "{\"event\":{\"end\":{\"exitCode\":%d,\"exited\":true,"
			       "\"status\":\"exit status %d\"}}}",
			       WEXITSTATUS(status), WEXITSTATUS(status));
	else
		len = snprintf(json, sizeof(json),
			       "{\"event\":{\"end\":{\"exitCode\":-1,\"exited\":false,"
			       "\"status\":\"signal: %s\"}}}",
			       WIFSIGNALED(status) ? signal_description(WTERMSIG(status)) : "unknown");
	return frame_set(subscriber, 0, json, (size_t)len);
}

static double seconds_since(const struct timespec *then)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(now.tv_sec - then->tv_sec) + (double)(now.tv_nsec - then->tv_nsec) / 1e9;
}

/* Produces the next frame into pending; blocks (this is the connection's
 * own thread) until there is one. False when the peer went away. */
static bool next_frame(struct subscriber *subscriber)
{
	struct process *process = subscriber->process;
	struct output_chunk *chunk;
	struct timespec deadline;
	char json[128];
	bool ok;
	int len;

	if (!subscriber->start_sent) {
		subscriber->start_sent = true;
		len = snprintf(json, sizeof(json), "{\"event\":{\"start\":{\"pid\":%d}}}",
			       (int)process->pid);
		return frame_set(subscriber, 0, json, (size_t)len);
	}
	if (subscriber->end_sent) {
		subscriber->finished = true;
		return frame_set(subscriber, ENVELOPE_FLAG_END_STREAM, "{}", 2);
	}
	pthread_mutex_lock(&process->lock);
	for (;;) {
		if (subscriber->head) {
			chunk = subscriber->head;
			subscriber->head = chunk->next;
			if (!subscriber->head)
				subscriber->tail = NULL;
			subscriber->queued -= chunk->len;
			pthread_cond_broadcast(&process->cond);
			pthread_mutex_unlock(&process->lock);
			ok = frame_data(subscriber, chunk);
			free(chunk);
			return ok;
		}
		if (process->ended) {
			int status = process->wait_status;
			pthread_mutex_unlock(&process->lock);
			subscriber->end_sent = true;
			return frame_end(subscriber, status);
		}
		clock__timespec_after(CLOCK_MONOTONIC, STREAM_POLL_MS * 1000000ull, &deadline);
		if (pthread_cond_timedwait(&process->cond, &process->lock, &deadline) != ETIMEDOUT)
			continue;
		pthread_mutex_unlock(&process->lock);
		if (agent__peer_closed(subscriber->connection))
			return false;
		if (subscriber->keepalive_seconds > 0 &&
		    seconds_since(&subscriber->last_write) >= subscriber->keepalive_seconds) {
			static const char keepalive[] = "{\"event\":{\"keepalive\":{}}}";
			return frame_set(subscriber, 0, keepalive, sizeof(keepalive) - 1);
		}
		pthread_mutex_lock(&process->lock);
	}
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
	struct subscriber *subscriber = cls;
	size_t n;

	while (subscriber->pending_off >= subscriber->pending_len) {
		if (subscriber->finished)
			return MHD_CONTENT_READER_END_OF_STREAM;
		if (!next_frame(subscriber)) {
			log_info("stream client of process %d went away",
				 (int)subscriber->process->pid);
			return MHD_CONTENT_READER_END_WITH_ERROR;
		}
	}
	n = subscriber->pending_len - subscriber->pending_off;
	if (n > max)
		n = max;
	memcpy(buf, subscriber->pending + subscriber->pending_off, n);
	subscriber->pending_off += n;
	clock_gettime(CLOCK_MONOTONIC, &subscriber->last_write);
	return (ssize_t)n;
}

static void stream_free(void *cls)
{
	process__subscriber_free(cls);
}

struct MHD_Response *process__stream_response(struct subscriber *subscriber,
					      struct MHD_Connection *connection,
					      int keepalive_seconds)
{
	struct MHD_Response *response;

	subscriber->connection = connection;
	subscriber->keepalive_seconds = keepalive_seconds;
	agent__stream_begins(connection);
	clock_gettime(CLOCK_MONOTONIC, &subscriber->last_write);
	response = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, STREAM_BLOCK_SIZE,
						     stream_read, subscriber, stream_free);
	if (!response) {
		process__subscriber_free(subscriber);
		return NULL;
	}
	MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE, "application/connect+json");
	return response;
}

void process__kill_all(void)
{
	struct process *process;

	pthread_mutex_lock(&table_lock);
	for (process = table; process; process = process->next)
		kill(-process->pid, SIGKILL);
	pthread_mutex_unlock(&table_lock);
}
