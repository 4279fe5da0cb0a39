/* prom: Prometheus metrics of warren's daemons (counters, gauges,
 * histograms with labels) in the text exposition format 0.0.4, and the
 * small HTTP listener that serves them at GET /metrics (setting
 * metrics_listen, HOST:PORT; docs/observability.md). One registry per
 * process, thread-safe. Names follow Prometheus conventions: a
 * component prefix (warren_api_, ...), base units (seconds, bytes),
 * `_total` for counters. */
#ifndef WARREN_PROM_H
#define WARREN_PROM_H

#include <stddef.h>
#include <stdint.h>

#define PROM_LABELS_MAX 256 /* bytes of one series' label text */

/* labels: NULL/"" for none, else preformatted `key="value",key2="v"` with
 * values the caller knows to be safe (fixed names, numbers) or escaped
 * with prom__label_value. Calls with a name used with another type, or
 * beyond the registry's size (64 families, 512 series each), are ignored. */
void prom__counter_add(const char *name, const char *help, const char *labels, double value);
void prom__gauge_set(const char *name, const char *help, const char *labels, double value);
/* Observes a duration or size into the default buckets (seconds: 1 ms ..
 * 30 s). */
void prom__histogram_observe(const char *name, const char *help, const char *labels, double value);

/* Escapes value for a label (backslash, quote, newline) into out (cut at
 * out_len - 1). Pure. */
void prom__label_value(const char *value, char *out, size_t out_len);

/* A function run before each rendering (to set gauges from live state). */
typedef void (*prom_collector)(void *arg);
void prom__add_collector(prom_collector collect, void *arg);

/* The whole registry as exposition text (malloc'ed; NULL: out of memory).
 * Runs the collectors first. */
char *prom__render(void);

/* Starts a listener thread on listen ("HOST:PORT") answering GET /metrics
 * with prom__render() (404 elsewhere). 0, or -errno with err filled.
 * *port_out (may be NULL) gets the bound port (useful with port 0). */
int prom__serve(const char *listen, uint16_t *port_out, char *err, size_t err_len);
/* prom__serve on listen (the binary's setting metrics_listen), logged;
 * NULL or empty: nothing (0). 0, or -1 with the reason logged. */
int prom__serve_logged(const char *listen);
/* Stops the listener (idempotent). */
void prom__stop(void);

/* Forgets every family and collector (tests). */
void prom__reset(void);

#endif
