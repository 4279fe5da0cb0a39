/* prom: the registry and the /metrics listener (warren/prom.h). */
#include "warren/prom.h"

#include <errno.h>
#include <math.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>

#include "warren/log.h"
#include <netinet/in.h>
#include <sys/socket.h>

#include "warren/net_address.h"

#define PROM_FAMILIES_MAX   64
#define PROM_SERIES_MAX	    512
#define PROM_COLLECTORS_MAX 8

enum prom_type { PROM_COUNTER, PROM_GAUGE, PROM_HISTOGRAM };

static const double prom_buckets[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
				      0.25,  0.5,    1,	    2.5,  5,	 10,   30};
#define PROM_BUCKETS (sizeof(prom_buckets) / sizeof(prom_buckets[0]))

struct prom_series {
	char labels[PROM_LABELS_MAX];
	double value; /* counter, gauge; histogram: sum */
	uint64_t count;
	uint64_t buckets[PROM_BUCKETS];
};

struct prom_family {
	char name[96];
	char help[192];
	enum prom_type type;
	struct prom_series *series;
	size_t count;
};

static struct {
	pthread_mutex_t lock;
	struct prom_family families[PROM_FAMILIES_MAX];
	size_t count;
	struct {
		prom_collector collect;
		void *arg;
	} collectors[PROM_COLLECTORS_MAX];
	size_t collector_count;
	struct MHD_Daemon *daemon;
} prom = {.lock = PTHREAD_MUTEX_INITIALIZER};

/* The series of name+labels, made on first use. Called locked; NULL when
 * the name has another type or a table is full. */
static struct prom_series *prom__series(const char *name, const char *help, enum prom_type type,
					const char *labels)
{
	struct prom_family *family = NULL;

	if (!labels)
		labels = "";
	if (strlen(name) >= sizeof(family->name) || strlen(labels) >= PROM_LABELS_MAX)
		return NULL;
	for (size_t i = 0; i < prom.count && !family; i++)
		if (!strcmp(prom.families[i].name, name))
			family = &prom.families[i];
	if (!family) {
		if (prom.count >= PROM_FAMILIES_MAX)
			return NULL;
		family = &prom.families[prom.count++];
		memset(family, 0, sizeof(*family));
		snprintf(family->name, sizeof(family->name), "%s", name);
		snprintf(family->help, sizeof(family->help), "%s", help ? help : name);
		family->type = type;
	}
	if (family->type != type)
		return NULL;
	for (size_t i = 0; i < family->count; i++)
		if (!strcmp(family->series[i].labels, labels))
			return &family->series[i];
	if (family->count >= PROM_SERIES_MAX)
		return NULL;
	if (!family->series) {
		family->series = calloc(PROM_SERIES_MAX, sizeof(*family->series));
		if (!family->series)
			return NULL;
	}
	snprintf(family->series[family->count].labels, PROM_LABELS_MAX, "%s", labels);
	return &family->series[family->count++];
}

void prom__counter_add(const char *name, const char *help, const char *labels, double value)
{
	struct prom_series *series;

	if (!(value >= 0))
		return;
	pthread_mutex_lock(&prom.lock);
	series = prom__series(name, help, PROM_COUNTER, labels);
	if (series)
		series->value += value;
	pthread_mutex_unlock(&prom.lock);
}

void prom__gauge_set(const char *name, const char *help, const char *labels, double value)
{
	struct prom_series *series;

	pthread_mutex_lock(&prom.lock);
	series = prom__series(name, help, PROM_GAUGE, labels);
	if (series)
		series->value = value;
	pthread_mutex_unlock(&prom.lock);
}

void prom__histogram_observe(const char *name, const char *help, const char *labels, double value)
{
	struct prom_series *series;

	if (isnan(value))
		return;
	pthread_mutex_lock(&prom.lock);
	series = prom__series(name, help, PROM_HISTOGRAM, labels);
	if (series) {
		for (size_t i = 0; i < PROM_BUCKETS; i++)
			if (value <= prom_buckets[i])
				series->buckets[i]++;
		series->count++;
		series->value += value;
	}
	pthread_mutex_unlock(&prom.lock);
}

void prom__label_value(const char *value, char *out, size_t out_len)
{
	size_t used = 0;

	if (!out_len)
		return;
	for (; value && *value && used + 2 < out_len; value++) {
		char c = *value;

		if (c == '\\' || c == '"' || c == '\n') {
			out[used++] = '\\';
			c = c == '\n' ? 'n' : c;
		}
		out[used++] = c;
	}
	out[used] = '\0';
}

void prom__add_collector(prom_collector collect, void *arg)
{
	pthread_mutex_lock(&prom.lock);
	if (prom.collector_count < PROM_COLLECTORS_MAX) {
		prom.collectors[prom.collector_count].collect = collect;
		prom.collectors[prom.collector_count++].arg = arg;
	}
	pthread_mutex_unlock(&prom.lock);
}

/* Writes a number as Prometheus reads it (integers without a dot). */
static void prom__number(FILE *out, double value)
{
	if (isinf(value))
		fputs(value > 0 ? "+Inf" : "-Inf", out);
	else if (value == floor(value) && fabs(value) < 1e15)
		fprintf(out, "%.0f", value);
	else
		fprintf(out, "%.6g", value);
}

/* name{labels[,extra]} */
static void prom__head(FILE *out, const char *name, const char *suffix, const char *labels,
		       const char *extra)
{
	bool any = labels[0] || (extra && extra[0]);

	fprintf(out, "%s%s%s%s%s%s%s", name, suffix, any ? "{" : "", labels,
		labels[0] && extra && extra[0] ? "," : "", extra ? extra : "", any ? "}" : "");
}

static void prom__render_family(FILE *out, const struct prom_family *family)
{
	static const char *const types[] = {"counter", "gauge", "histogram"};

	fprintf(out, "# HELP %s %s\n# TYPE %s %s\n", family->name, family->help, family->name,
		types[family->type]);
	for (size_t i = 0; i < family->count; i++) {
		const struct prom_series *s = &family->series[i];
		char le[32];

		if (family->type != PROM_HISTOGRAM) {
			prom__head(out, family->name, "", s->labels, NULL);
			fputc(' ', out);
			prom__number(out, s->value);
			fputc('\n', out);
			continue;
		}
		for (size_t b = 0; b < PROM_BUCKETS; b++) {
			snprintf(le, sizeof(le), "le=\"%g\"", prom_buckets[b]);
			prom__head(out, family->name, "_bucket", s->labels, le);
			fprintf(out, " %llu\n", (unsigned long long)s->buckets[b]);
		}
		prom__head(out, family->name, "_bucket", s->labels, "le=\"+Inf\"");
		fprintf(out, " %llu\n", (unsigned long long)s->count);
		prom__head(out, family->name, "_sum", s->labels, NULL);
		fputc(' ', out);
		prom__number(out, s->value);
		fputc('\n', out);
		prom__head(out, family->name, "_count", s->labels, NULL);
		fprintf(out, " %llu\n", (unsigned long long)s->count);
	}
}

char *prom__render(void)
{
	char *text = NULL;
	size_t size = 0, collectors;
	FILE *out;

	pthread_mutex_lock(&prom.lock);
	collectors = prom.collector_count;
	pthread_mutex_unlock(&prom.lock);
	/* Collectors take the lock themselves (through prom__gauge_set). */
	for (size_t i = 0; i < collectors; i++)
		prom.collectors[i].collect(prom.collectors[i].arg);
	out = open_memstream(&text, &size);
	if (!out)
		return NULL;
	pthread_mutex_lock(&prom.lock);
	for (size_t i = 0; i < prom.count; i++)
		prom__render_family(out, &prom.families[i]);
	pthread_mutex_unlock(&prom.lock);
	if (fclose(out)) {
		free(text);
		return NULL;
	}
	return text;
}

static enum MHD_Result prom__answer(void *cls, struct MHD_Connection *connection, const char *url,
				    const char *method, const char *version,
				    const char *upload_data, size_t *upload_data_size,
				    void **con_cls)
{
	struct MHD_Response *response;
	enum MHD_Result ret;
	char *text = NULL;
	unsigned int status = MHD_HTTP_OK;

	(void)cls;
	(void)version;
	(void)upload_data;
	(void)con_cls;
	if (*upload_data_size) {
		*upload_data_size = 0; /* a body is not expected: drop it */
		return MHD_YES;
	}
	if (strcmp(method, "GET") && strcmp(method, "HEAD"))
		status = MHD_HTTP_METHOD_NOT_ALLOWED;
	else if (strcmp(url, "/metrics"))
		status = MHD_HTTP_NOT_FOUND;
	else if (!(text = prom__render()))
		status = MHD_HTTP_INTERNAL_SERVER_ERROR;
	if (status != MHD_HTTP_OK)
		response = MHD_create_response_from_buffer(0, "", MHD_RESPMEM_PERSISTENT);
	else
		response =
		    MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
	if (!response) {
		free(text);
		return MHD_NO;
	}
	MHD_add_response_header(response, "Content-Type",
				"text/plain; version=0.0.4; charset=utf-8");
	ret = MHD_queue_response(connection, status, response);
	MHD_destroy_response(response);
	return ret;
}

int prom__serve(const char *listen, uint16_t *port_out, char *err, size_t err_len)
{
	struct sockaddr_in address = {.sin_family = AF_INET};
	const union MHD_DaemonInfo *info;
	char host[64];
	uint16_t port;

	if (!listen || address__parse_host_port(listen, host, sizeof(host), &port) ||
	    inet_pton(AF_INET, host, &address.sin_addr) != 1) {
		snprintf(err, err_len, "metrics_listen \"%s\" is not IPV4:PORT",
			 listen ? listen : "");
		return -EINVAL;
	}
	address.sin_port = htons(port);
	pthread_mutex_lock(&prom.lock);
	if (!prom.daemon)
		prom.daemon = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL, 0,
					       NULL, NULL, prom__answer, NULL, MHD_OPTION_SOCK_ADDR,
					       &address, MHD_OPTION_CONNECTION_TIMEOUT, 10u,
					       MHD_OPTION_CONNECTION_LIMIT, 64u, MHD_OPTION_END);
	info = prom.daemon ? MHD_get_daemon_info(prom.daemon, MHD_DAEMON_INFO_BIND_PORT) : NULL;
	pthread_mutex_unlock(&prom.lock);
	if (!prom.daemon) {
		snprintf(err, err_len, "cannot listen on %s for /metrics", listen);
		return -EADDRINUSE;
	}
	if (port_out)
		*port_out = info ? info->port : port;
	return 0;
}

int prom__serve_logged(const char *listen)
{
	char err[256];
	uint16_t port = 0;

	if (!listen || !listen[0])
		return 0;
	if (prom__serve(listen, &port, err, sizeof(err))) {
		log_error("%s", err);
		return -1;
	}
	log_info("metrics: GET /metrics on port %u", port);
	return 0;
}

void prom__stop(void)
{
	struct MHD_Daemon *daemon;

	/* Not under the lock: a request in flight may be rendering. */
	pthread_mutex_lock(&prom.lock);
	daemon = prom.daemon;
	prom.daemon = NULL;
	pthread_mutex_unlock(&prom.lock);
	if (daemon)
		MHD_stop_daemon(daemon);
}

void prom__reset(void)
{
	pthread_mutex_lock(&prom.lock);
	for (size_t i = 0; i < prom.count; i++)
		free(prom.families[i].series);
	prom.count = 0;
	prom.collector_count = 0;
	pthread_mutex_unlock(&prom.lock);
}
