#include "agent_client.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "warren/clock.h"
#include "warren/json_util.h"
#include "warren/log.h"
#include "warren/tokens.h"

static size_t agent_client__discard(char *data, size_t size, size_t count, void *opaque)
{
	(void)data;
	(void)opaque;
	return size * count;
}

/* One request; returns the HTTP status, or -1 when no response came. */
static long agent_client__request(const char *url, const char *body, long timeout_ms,
				  const char *access_token)
{
	struct curl_slist *headers = NULL;
	char token_header[160];
	long status = -1;
	CURL *curl = curl_easy_init();

	if (!curl)
		return -1;
	curl_easy_setopt(curl, CURLOPT_URL, url);
	curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, timeout_ms);
	curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms);
	curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(curl, CURLOPT_NOPROXY, "*");
	curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, agent_client__discard);
	if (body) {
		headers = curl_slist_append(headers, "Content-Type: application/json");
		if (access_token) {
			snprintf(token_header, sizeof(token_header), "X-Access-Token: %s",
				 access_token);
			headers = curl_slist_append(headers, token_header);
		}
		curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
		curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
	}
	if (curl_easy_perform(curl) == CURLE_OK)
		curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
	curl_slist_free_all(headers);
	curl_easy_cleanup(curl);
	return status;
}

int agent_client__wait_healthy(const char *address, int port, uint64_t deadline_ms)
{
	char url[128];
	struct timespec pause = {0, 2 * 1000 * 1000};

	snprintf(url, sizeof(url), "http://%s:%d/health", address, port);
	for (;;) {
		uint64_t now = clock__monotonic_ms();
		if (now >= deadline_ms)
			return -ETIMEDOUT;
		long remaining = (long)(deadline_ms - now);
		if (agent_client__request(url, NULL, remaining < 500 ? remaining : 500, NULL) ==
		    204)
			return 0;
		nanosleep(&pause, NULL);
		if (pause.tv_nsec < 20 * 1000 * 1000)
			pause.tv_nsec *= 2;
	}
}

int agent_client__init(const char *address, int port, const struct agent_init *init, char *err,
		       size_t err_len)
{
	unsigned char random_bytes[32];
	char url[128], entropy[2 * sizeof(random_bytes) + 1];
	char *body = NULL;
	long status;
	int rc = 0;
	json_t *request = json_object();

	snprintf(url, sizeof(url), "http://%s:%d/init", address, port);
	if (init->access_token)
		json_object_set_new(request, "accessToken", json_string(init->access_token));
	else if (init->replace_token)
		json_object_set_new(request, "accessToken", json_null()); /* no token from now */
	if (init->replace_token)
		json_object_set_new(request, "replaceAccessToken", json_true());
	json_object_set_new(request, "envVars",
			    init->env_vars ? json_deep_copy(init->env_vars) : json_object());
	if (init->default_user)
		json_object_set_new(request, "defaultUser", json_string(init->default_user));
	if (init->hostname)
		json_object_set_new(request, "hostname", json_string(init->hostname));
	json_object_set_new(request, "timestamp", json_integer(clock__realtime_ms()));
	if (getrandom(random_bytes, sizeof(random_bytes), 0) == (ssize_t)sizeof(random_bytes)) {
		tokens__hex(random_bytes, sizeof(random_bytes), entropy);
		json_object_set_new(request, "entropy", json_string(entropy));
	}
	body = json_util__dump(request);
	status = body ? agent_client__request(url, body, 5000,
					      init->current_token ? init->current_token
								  : init->access_token)
		      : -1;
	if (status < 200 || status > 299) {
		snprintf(err, err_len, "agent /init answered %ld", status);
		rc = -EPROTO;
	}
	explicit_bzero(random_bytes, sizeof(random_bytes));
	free(body);
	json_decref(request);
	return rc;
}
