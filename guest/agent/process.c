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
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "forward.h"
#include "warren/clock.h"
#include "warren/exec_status.h"
#include "warren/log.h"

#define PUMP_READ_SIZE	       (32 * 1024)
#define STDIN_WRITE_TIMEOUT_MS 10000

enum chunk_kind { CHUNK_STDOUT = 1, CHUNK_STDERR = 2, CHUNK_PTY = 3 };

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
	int pty_fd;  /* the PTY's master, kept for resizes; -1 = no PTY */
	bool exited; /* reaped */
	int wait_status;
	bool ended;		  /* reaped and all output queued */
	struct timespec deadline; /* CLOCK_MONOTONIC; tv_sec 0 = none (Connect-Timeout-Ms) */
	bool deadline_hit;
	struct subscriber *subscribers;
};

struct subscriber {
	struct subscriber *next;
	struct process *process;
	struct output_chunk *head, *tail;
	size_t queued;
	bool start_sent; /* touched only by the stream's thread */
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
	if (process->pty_fd >= 0)
		close(process->pty_fd);
	json_decref(process->config_json);
	free(process->tag);
	pthread_mutex_destroy(&process->lock);
	pthread_mutex_destroy(&process->stdin_lock);
	pthread_cond_destroy(&process->cond);
	free(process);
}

/* Finds a running process by selector and takes a reference. */
static struct process *process_find(const struct process_selector *selector, struct rpc_error *err)
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
			snprintf(err->message, sizeof(err->message),
				 "process with pid %u not found", selector->pid);
		else
			snprintf(err->message, sizeof(err->message),
				 "process with tag %s not found", selector->tag);
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
	     (process->deadline.tv_sec == until.tv_sec &&
	      process->deadline.tv_nsec < until.tv_nsec)))
		until = process->deadline;
	pthread_cond_timedwait(&process->cond, &process->lock, &until);
	enforce_deadline(process);
}

/* Queues one read of output to every subscriber, waiting while any of
 * them is full: this is the back-pressure that ends in the child's pipe. */
static void publish(struct process *process, enum chunk_kind kind, const uint8_t *data, size_t len)
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
	int open_count = 0, i;
	ssize_t n;

	fds[0] = (struct pollfd){.fd = process->stdout_fd, .events = POLLIN};
	fds[1] = (struct pollfd){.fd = process->stderr_fd, .events = POLLIN};
	open_count = (fds[0].fd >= 0) + (fds[1].fd >= 0); /* a PTY has one */
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
			/* A PTY's master reads EIO once no slave is open. */
			if (n <= 0) {
				close(fds[i].fd);
				fds[i].fd = -1;
				open_count--;
				continue;
			}
			publish(process,
				process->pty_fd >= 0 ? CHUNK_PTY
						     : (i == 0 ? CHUNK_STDOUT : CHUNK_STDERR),
				buf, (size_t)n);
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

size_t process__running_count(void)
{
	size_t running = 0;

	pthread_mutex_lock(&table_lock);
	for (struct process *process = table; process; process = process->next)
		running += !process->exited;
	pthread_mutex_unlock(&table_lock);
	return running;
}

char **process__environment(const struct process_config *config, const struct agent_user *user,
			    const json_t *env_vars)
{
	json_t *merged = json_object(), *value;
	const char *key;
	char **envp = NULL, *eq;
	size_t i, count = 0;

	if (!merged)
		return NULL;
	json_object_set_new(merged, "PATH", json_string(AGENT_DEFAULT_PATH));
	json_object_set_new(merged, "HOME", json_string(user->home));
	json_object_set_new(merged, "USER", json_string(user->name));
	json_object_set_new(merged, "LOGNAME", json_string(user->name));
	if (json_is_object(env_vars))
		json_object_update(merged, (json_t *)env_vars);
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

void process__free_strings(char **strings)
{
	size_t i;

	if (!strings)
		return;
	for (i = 0; strings[i]; i++)
		free(strings[i]);
	free(strings);
}

bool process__find_executable(const char *cmd, char **envp, char *out, size_t out_len)
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

bool process__working_directory(const struct process_config *config, const struct agent_user *user,
				const char *default_workdir, char *out, size_t out_len,
				struct rpc_error *err)
{
	struct stat st;

	const char *cwd = config->cwd;

	if (!cwd)
		cwd = default_workdir && default_workdir[0] ? default_workdir : user->home;
	snprintf(out, out_len, "%s", cwd);
	if (stat(out, &st) < 0 || !S_ISDIR(st.st_mode)) {
		err->code = "invalid_argument";
		snprintf(err->message, sizeof(err->message), "cwd '%.200s' is not a directory",
			 out);
		return false;
	}
	return true;
}

void process__exec_error(const char *cmd, int child_errno, struct rpc_error *err)
{
	bool bad_command = child_errno == ENOENT || child_errno == EACCES;

	err->code = bad_command ? "invalid_argument" : "internal";
	snprintf(err->message, sizeof(err->message), "failed to start '%.200s': %s", cmd,
		 strerror(child_errno));
}

/* process__start's context: what the steps below build, in order. Every
 * step fills err (a Connect code and message) when it fails;
 * launch__release() undoes what the steps left behind. */
struct launch {
	const struct process_request *request;
	struct rpc_error *err;
	char executable[PATH_MAX];
	char cwd[PATH_MAX];
	char **envp, **argv;
	int out_pipe[2], err_pipe[2], in_pipe[2], status_pipe[2];
	int null_fd;
	struct process *process;
	struct subscriber *subscriber;
};

static bool launch__out_of_memory(struct launch *launch)
{
	launch->err->code = "internal";
	snprintf(launch->err->message, sizeof(launch->err->message), "out of memory");
	return false;
}

/* Step 1: environment, executable, argv and working directory. */
static bool launch__command(struct launch *launch)
{
	const struct process_request *request = launch->request;
	const struct process_config *config = request->config;

	launch->envp = process__environment(config, request->user, request->env_vars);
	if (!launch->envp)
		return launch__out_of_memory(launch);
	if (!process__find_executable(config->cmd, launch->envp, launch->executable,
				      sizeof(launch->executable))) {
		launch->err->code = "invalid_argument";
		snprintf(launch->err->message, sizeof(launch->err->message),
			 "executable '%.200s' not found in PATH", config->cmd);
		return false;
	}
	/* argv[0] names the program run (busybox picks its applet by it):
	 * after the /bin/bash -> /bin/sh fallback, the shell that runs. */
	launch->argv = calloc(config->argc + 1, sizeof(char *));
	if (!launch->argv)
		return launch__out_of_memory(launch);
	memcpy(launch->argv, config->argv, config->argc * sizeof(char *));
	if (strcmp(launch->executable, config->cmd) != 0 && strchr(config->cmd, '/'))
		launch->argv[0] = launch->executable;
	return process__working_directory(config, request->user, request->default_workdir,
					  launch->cwd, sizeof(launch->cwd), launch->err);
}

/* Step 2: the table entry (not listed yet), holding our reference. */
static bool launch__record(struct launch *launch)
{
	const struct process_request *request = launch->request;
	struct process *process = calloc(1, sizeof(*process));
	pthread_condattr_t cond_attr;

	if (!process)
		return launch__out_of_memory(launch);
	pthread_mutex_init(&process->lock, NULL);
	pthread_mutex_init(&process->stdin_lock, NULL);
	pthread_condattr_init(&cond_attr);
	pthread_condattr_setclock(&cond_attr, CLOCK_MONOTONIC);
	pthread_cond_init(&process->cond, &cond_attr);
	pthread_condattr_destroy(&cond_attr);
	if (request->timeout_ms > 0)
		clock__timespec_after(CLOCK_MONOTONIC, (uint64_t)request->timeout_ms * 1000000u,
				      &process->deadline);
	process->refs = 1; /* ours until the pump takes over */
	process->stdin_fd = -1;
	process->stdout_fd = process->stderr_fd = -1;
	process->pty_fd = -1;
	process->tag = request->tag ? strdup(request->tag) : NULL;
	process->config_json = json_deep_copy(request->config_json);
	launch->process = process;
	return true;
}

/* Step 3 for a PTY: out_pipe holds the master (read end) and the slave
 * (the child's stdin, stdout and stderr), both close-on-exec and the
 * slave no controlling terminal of ours; the process keeps two more
 * copies of the master: one to write input (non-blocking), one to resize. */
static bool launch__pty(struct launch *launch)
{
	struct winsize size = {.ws_row = launch->request->pty_rows,
			       .ws_col = launch->request->pty_cols};
	struct process *process = launch->process;
	char slave_name[64];
	int master;

	master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
	launch->out_pipe[0] = master;
	if (master < 0 || grantpt(master) < 0 || unlockpt(master) < 0 ||
	    ptsname_r(master, slave_name, sizeof(slave_name)) != 0 ||
	    ioctl(master, TIOCSWINSZ, &size) < 0)
		return false;
	launch->out_pipe[1] = open(slave_name, O_RDWR | O_NOCTTY | O_CLOEXEC);
	process->stdin_fd = fcntl(master, F_DUPFD_CLOEXEC, 0);
	process->pty_fd = fcntl(master, F_DUPFD_CLOEXEC, 0);
	if (launch->out_pipe[1] < 0 || process->stdin_fd < 0 || process->pty_fd < 0)
		return false;
	/* Shared with the pump's copy (one open file): it polls before reading. */
	fcntl(master, F_SETFL, fcntl(master, F_GETFL) | O_NONBLOCK);
	return true;
}

/* Step 3: the child's stdout, stderr, stdin (a pipe or /dev/null; or a
 * PTY) and the exec-status pipe; the first subscriber. */
static bool launch__pipes(struct launch *launch)
{
	bool stdin_pipe = launch->request->stdin_pipe && !launch->request->pty;
	bool pty = launch->request->pty;

	if ((pty && !launch__pty(launch)) ||
	    (!pty &&
	     (pipe2(launch->out_pipe, O_CLOEXEC) < 0 || pipe2(launch->err_pipe, O_CLOEXEC) < 0)) ||
	    exec_status__open(launch->status_pipe) < 0 ||
	    (stdin_pipe && pipe2(launch->in_pipe, O_CLOEXEC) < 0) ||
	    (!stdin_pipe && !pty &&
	     (launch->null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC)) < 0)) {
		launch->err->code = "internal";
		snprintf(launch->err->message, sizeof(launch->err->message), "%s: %s",
			 pty ? "pty" : "pipe", strerror(errno));
		return false;
	}
	/* stdin is usable as soon as List shows the process (O_CLOEXEC keeps
	 * this end out of the child). SendInput polls with a timeout. */
	if (launch->in_pipe[1] >= 0) {
		fcntl(launch->in_pipe[1], F_SETFL, O_NONBLOCK);
		launch->process->stdin_fd = launch->in_pipe[1];
		launch->in_pipe[1] = -1;
	}
	launch->subscriber = subscriber_attach(launch->process);
	if (!launch->subscriber)
		return launch__out_of_memory(launch);
	return true;
}

/* In the forked child: only async-signal-safe calls. Never returns; an
 * exec that fails reports its errno on the status pipe. */
static void __attribute__((noreturn)) launch__child(const struct launch *launch)
{
	const struct agent_user *user = launch->request->user;
	bool switch_user = geteuid() == 0 && (user->uid != geteuid() || user->gid != getegid());
	struct sigaction dfl = {.sa_handler = SIG_DFL};
	sigset_t all;

	for (int i = 1; i < NSIG; i++)
		sigaction(i, &dfl, NULL);
	sigemptyset(&all);
	sigprocmask(SIG_SETMASK, &all, NULL);
	setsid(); /* own session and process group */
	if (launch->request->pty) {
		/* The terminal on all three, and as the session's controlling one. */
		if (dup2(launch->out_pipe[1], 0) < 0 || dup2(launch->out_pipe[1], 1) < 0 ||
		    dup2(launch->out_pipe[1], 2) < 0 || ioctl(0, TIOCSCTTY, 0) < 0)
			goto fail;
	} else if (dup2(launch->request->stdin_pipe ? launch->in_pipe[0] : launch->null_fd, 0) <
		       0 ||
		   dup2(launch->out_pipe[1], 1) < 0 || dup2(launch->err_pipe[1], 2) < 0) {
		goto fail;
	}
	if (switch_user && (setgroups((size_t)user->group_count, user->groups) < 0 ||
			    setgid(user->gid) < 0 || setuid(user->uid) < 0))
		goto fail;
	if (chdir(launch->cwd) < 0)
		goto fail;
	execve(launch->executable, launch->argv, launch->envp);
fail:
	exec_status__fail(launch->status_pipe[1], errno, 127);
}

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

/* Step 4: fork; the child execs, the parent lists the process. The table
 * lock is held across fork and insertion so the reaper can't miss a child
 * that exits at once. */
static bool launch__fork(struct launch *launch)
{
	pid_t pid;

	pthread_mutex_lock(&table_lock);
	pid = fork();
	if (pid == 0)
		launch__child(launch);
	if (pid < 0) {
		pthread_mutex_unlock(&table_lock);
		launch->err->code = "internal";
		snprintf(launch->err->message, sizeof(launch->err->message), "fork: %s",
			 strerror(errno));
		return false;
	}
	launch->process->pid = pid;
	launch->process->next = table;
	table = launch->process;
	launch->process->refs++; /* the table's */
	pthread_mutex_unlock(&table_lock);
	forward__activity(); /* it may open a port soon */
	close_fd(&launch->status_pipe[1]);
	close_fd(&launch->out_pipe[1]);
	close_fd(&launch->err_pipe[1]);
	close_fd(&launch->in_pipe[0]);
	return true;
}

/* Step 5: waits for the exec (the status pipe closes) or its failure
 * (the child's errno arrives); a child that failed is unlisted (the
 * reaper still collects it). */
static bool launch__await_exec(struct launch *launch)
{
	int child_errno = exec_status__wait(launch->status_pipe[0]);

	if (!child_errno)
		return true;
	table_remove(launch->process);
	process_unref(launch->process); /* the table's */
	process__exec_error(launch->request->config->cmd, child_errno, launch->err);
	return false;
}

/* Step 6: the output pump, which takes our reference. Without a pump
 * nobody would drain the pipes: the child is killed then. */
static bool launch__pump(struct launch *launch)
{
	struct process *process = launch->process;
	pthread_attr_t attr;
	pthread_t thread;
	int result;

	process->stdout_fd = launch->out_pipe[0];
	process->stderr_fd = launch->err_pipe[0];
	launch->out_pipe[0] = launch->err_pipe[0] = -1;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	result = pthread_create(&thread, &attr, pump_thread, process);
	pthread_attr_destroy(&attr);
	if (result == 0) {
		launch->process = NULL; /* the pump's now */
		return true;
	}
	kill(-process->pid, SIGKILL);
	close_fd(&process->stdout_fd);
	close_fd(&process->stderr_fd);
	table_remove(process);
	process_unref(process); /* the table's */
	launch->err->code = "internal";
	snprintf(launch->err->message, sizeof(launch->err->message), "cannot start output thread");
	return false;
}

/* Frees what the steps left: descriptors and strings always; on failure
 * (launch->process still ours) the subscriber and the process too. */
static void launch__release(struct launch *launch, bool started)
{
	for (int i = 0; i < 2; i++) {
		close_fd(&launch->out_pipe[i]);
		close_fd(&launch->err_pipe[i]);
		close_fd(&launch->in_pipe[i]);
		close_fd(&launch->status_pipe[i]);
	}
	close_fd(&launch->null_fd);
	process__free_strings(launch->envp);
	free(launch->argv);
	if (started)
		return;
	process__subscriber_free(launch->subscriber);
	if (launch->process)
		process_unref(launch->process);
}

bool process__start(const struct process_request *request, struct subscriber **subscriber,
		    struct rpc_error *err)
{
	struct launch launch = {
	    .request = request,
	    .err = err,
	    .out_pipe = {-1, -1},
	    .err_pipe = {-1, -1},
	    .in_pipe = {-1, -1},
	    .status_pipe = {-1, -1},
	    .null_fd = -1,
	};
	bool started = launch__command(&launch) && launch__record(&launch) &&
		       launch__pipes(&launch) && launch__fork(&launch) &&
		       launch__await_exec(&launch) && launch__pump(&launch);

	if (started) {
		log_info("started process %d: %s (user %s, cwd %s)",
			 (int)launch.subscriber->process->pid, launch.executable,
			 request->user->name, launch.cwd);
		*subscriber = launch.subscriber;
	}
	launch__release(&launch, started);
	return started;
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

bool process__send_input(const struct process_selector *selector, const uint8_t *data, size_t len,
			 bool to_pty, struct rpc_error *err)
{
	struct process *process = process_find(selector, err);
	struct pollfd pfd;
	ssize_t n;
	bool ok = false;

	if (!process)
		return false;
	pthread_mutex_lock(&process->stdin_lock);
	if (to_pty && process->pty_fd < 0) {
		err->code = "failed_precondition";
		snprintf(err->message, sizeof(err->message), "process %d has no pty",
			 (int)process->pid);
		goto out;
	}
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

bool process__resize(const struct process_selector *selector, unsigned short cols,
		     unsigned short rows, struct rpc_error *err)
{
	struct process *process = process_find(selector, err);
	struct winsize size = {.ws_row = rows, .ws_col = cols};
	bool ok = false;

	if (!process)
		return false;
	if (process->pty_fd < 0) {
		err->code = "failed_precondition";
		snprintf(err->message, sizeof(err->message), "process %d has no pty",
			 (int)process->pid);
	} else if (ioctl(process->pty_fd, TIOCSWINSZ, &size) < 0) {
		err->code = "internal";
		snprintf(err->message, sizeof(err->message), "resize: %s", strerror(errno));
	} else {
		ok = true;
	}
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

/* --- a subscriber's messages as a stream source (stream.h) --- */

static bool message_data(struct stream_buffer *out, const struct output_chunk *chunk)
{
	static const char *const prefixes[] = {
	    [CHUNK_STDOUT] = "{\"event\":{\"data\":{\"stdout\":\"",
	    [CHUNK_STDERR] = "{\"event\":{\"data\":{\"stderr\":\"",
	    [CHUNK_PTY] = "{\"event\":{\"data\":{\"pty\":\"",
	};
	static const char suffix[] = "\"}}}";
	const char *prefix = prefixes[chunk->kind];
	size_t prefix_len = strlen(prefix), b64 = 4 * ((chunk->len + 2) / 3);
	size_t len = prefix_len + b64 + sizeof(suffix) - 1;
	char *json = malloc(len + 1);
	bool ok;

	if (!json)
		return false;
	memcpy(json, prefix, prefix_len);
	wire__base64_encode(chunk->data, chunk->len, json + prefix_len);
	memcpy(json + prefix_len + b64, suffix, sizeof(suffix));
	ok = stream_buffer__append(out, 0, json, len);
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

static bool message_end(struct stream_buffer *out, int status)
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
			       WIFSIGNALED(status) ? signal_description(WTERMSIG(status))
						   : "unknown");
	return stream_buffer__append(out, 0, json, (size_t)len);
}

/* stream_source.next: the start event first, then output as it comes
 * (waiting at most wait_ms for it), then the end event once the process
 * was reaped and all its output queued. */
static enum stream_step subscriber_next(void *opaque, int wait_ms, struct stream_buffer *out)
{
	struct subscriber *subscriber = opaque;
	struct process *process = subscriber->process;
	struct output_chunk *chunk;
	struct timespec deadline;
	char json[128];
	int len, status;
	bool ok;

	if (!subscriber->start_sent) {
		subscriber->start_sent = true;
		len = snprintf(json, sizeof(json), "{\"event\":{\"start\":{\"pid\":%d}}}",
			       (int)process->pid);
		return stream_buffer__append(out, 0, json, (size_t)len) ? STREAM_CONTINUE
									: STREAM_FAILED;
	}
	clock__timespec_after(CLOCK_MONOTONIC, (uint64_t)wait_ms * 1000000ull, &deadline);
	pthread_mutex_lock(&process->lock);
	while (!subscriber->head && !process->ended) {
		int waited = pthread_cond_timedwait(&process->cond, &process->lock, &deadline);

		if (waited == ETIMEDOUT) {
			pthread_mutex_unlock(&process->lock);
			return STREAM_CONTINUE;
		}
	}
	if (subscriber->head) {
		chunk = subscriber->head;
		subscriber->head = chunk->next;
		if (!subscriber->head)
			subscriber->tail = NULL;
		subscriber->queued -= chunk->len;
		pthread_cond_broadcast(&process->cond);
		pthread_mutex_unlock(&process->lock);
		ok = message_data(out, chunk);
		free(chunk);
		return ok ? STREAM_CONTINUE : STREAM_FAILED;
	}
	status = process->wait_status;
	pthread_mutex_unlock(&process->lock);
	return message_end(out, status) ? STREAM_END : STREAM_FAILED;
}

static void subscriber_source_free(void *opaque)
{
	process__subscriber_free(opaque);
}

void process__stream_source(struct subscriber *subscriber, struct stream_source *source)
{
	*source = (struct stream_source){
	    .opaque = subscriber,
	    .next = subscriber_next,
	    .free = subscriber_source_free,
	    .keepalive = "{\"event\":{\"keepalive\":{}}}",
	};
	snprintf(source->name, sizeof(source->name), "process %d", (int)subscriber->process->pid);
}

void process__kill_all(void)
{
	struct process *process;

	pthread_mutex_lock(&table_lock);
	for (process = table; process; process = process->next)
		kill(-process->pid, SIGKILL);
	pthread_mutex_unlock(&table_lock);
}
