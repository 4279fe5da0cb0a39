#include "warren/log.h"

#include "warren/config.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const char *log_component = "warren";
/* Read by every thread that logs: set once (log__load_settings, under
 * pthread_once) and by log__set_level, so an atomic. */
static _Atomic int log_level = LOG_LEVEL_INFO;
static pthread_once_t log_settings_once = PTHREAD_ONCE_INIT;
static bool log_journal;

/* Reads the log_level setting (WARREN_LOG_LEVEL, then the config file) and
 * whether stderr is the journal's stream (systemd sets JOURNAL_STREAM to
 * its "device:inode"; a redirected stderr no longer matches). Runs once. */
static void log__load_settings(void)
{
	const char *level = config__get_soft("log_level", NULL);
	const char *stream = getenv("JOURNAL_STREAM");
	unsigned long long device, inode;
	struct stat st;

	if (level && !strcasecmp(level, "debug"))
		atomic_store(&log_level, LOG_LEVEL_DEBUG);
	else if (level && !strcasecmp(level, "warn"))
		atomic_store(&log_level, LOG_LEVEL_WARN);
	else if (level && !strcasecmp(level, "error"))
		atomic_store(&log_level, LOG_LEVEL_ERROR);
	log_journal = stream && sscanf(stream, "%llu:%llu", &device, &inode) == 2 &&
		      fstat(STDERR_FILENO, &st) == 0 && (unsigned long long)st.st_dev == device &&
		      (unsigned long long)st.st_ino == inode;
}

void log__set_component(const char *component)
{
	log_component = component;
}

void log__set_level(enum log_level level)
{
	pthread_once(&log_settings_once, log__load_settings);
	atomic_store(&log_level, (int)level);
}

static int log__configured_level(void)
{
	pthread_once(&log_settings_once, log__load_settings);
	return atomic_load(&log_level);
}

static bool log__to_journal(void)
{
	pthread_once(&log_settings_once, log__load_settings);
	return log_journal;
}

int log__enabled(enum log_level level)
{
	return (int)level >= log__configured_level();
}

void log__vwrite(enum log_level level, const char *fmt, va_list ap)
{
	static const char *names[] = {"DEBUG", "INFO", "WARN", "ERROR"};
	char line[2048];
	struct timespec now;
	struct tm tm;
	size_t used;
	int n;

	if (!log__enabled(level))
		return;
	if (log__to_journal()) {
		/* journald stamps the time itself; "<N>" is the line's priority. */
		static const int priorities[] = {7, 6, 4, 3};

		used = 0;
		n = snprintf(line, sizeof(line), "<%d>%s %s: ", priorities[level], names[level],
			     log_component);
	} else {
		clock_gettime(CLOCK_REALTIME, &now);
		gmtime_r(&now.tv_sec, &tm);
		used = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
		n = snprintf(line + used, sizeof(line) - used,
			     ".%03ldZ %s %s: ", now.tv_nsec / 1000000L, names[level],
			     log_component);
	}
	if (n > 0)
		used += (size_t)n;
	n = vsnprintf(line + used, sizeof(line) - used, fmt, ap);
	if (n > 0)
		used += (size_t)n;
	if (used > sizeof(line) - 2)
		used = sizeof(line) - 2;
	line[used++] = '\n';
	/* One write per line so concurrent threads never interleave. */
	if (write(STDERR_FILENO, line, used) < 0)
		return;
}

void log__write(enum log_level level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log__vwrite(level, fmt, ap);
	va_end(ap);
}
