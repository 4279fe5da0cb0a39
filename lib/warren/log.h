/* log: one line per event on stderr, "TIME LEVEL component: message".
 * Thread-safe (one write(2) per line). Level from WARREN_LOG_LEVEL
 * (debug|info|warn|error, default info). */
#ifndef WARREN_LOG_H
#define WARREN_LOG_H

#include <stdarg.h>

enum log_level { LOG_LEVEL_DEBUG = 0, LOG_LEVEL_INFO, LOG_LEVEL_WARN, LOG_LEVEL_ERROR };

/* Sets the component name printed on every line (e.g. "api", "vmm"). */
void log__set_component(const char *component);
void log__set_level(enum log_level level);
int log__enabled(enum log_level level);
void log__write(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void log__vwrite(enum log_level level, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

#define log_debug(...)                                                                             \
	do {                                                                                       \
		if (log__enabled(LOG_LEVEL_DEBUG))                                                 \
			log__write(LOG_LEVEL_DEBUG, __VA_ARGS__);                                  \
	} while (0)
#define log_info(...)  log__write(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_warn(...)  log__write(LOG_LEVEL_WARN, __VA_ARGS__)
#define log_error(...) log__write(LOG_LEVEL_ERROR, __VA_ARGS__)

#endif
