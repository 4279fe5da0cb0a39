/* Integration tests of warren-agent: the real binary on 127.0.0.1 with a
 * random port, driven over HTTP with libcurl exactly as the e2b SDK drives
 * envd (Connect JSON codec, /files, /init). No namespaces needed. */
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <pwd.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "envelope.h"
#include "warren/tokens.h"
#include "wire.h"

#include "agent_harness.h"

static void test_health_and_init(void **state)
{
	struct buffer out;
	char body[1024];

	/* HOME points at our scratch dir so `bash -l` reads no host profile. */
	assert_int_equal(http("GET", "/health", NULL, NULL, NULL, 0, &out), 204);
	free(out.data);
	/* Before /init only a token matching the hash works. */
	assert_int_equal(http("GET", "/envs", "other", NULL, NULL, 0, &out), 401);
	free(out.data);
	snprintf(body, sizeof(body), "{\"accessToken\":\"wrong\"}");
	assert_int_equal(http("POST", "/init", NULL, "application/json", body, strlen(body), &out),
			 401);
	assert_non_null(strstr(out.data, "\"code\":401"));
	free(out.data);
	snprintf(body, sizeof(body),
		 "{\"accessToken\":\"%s\",\"envVars\":{\"FROM_INIT\":\"yes\",\"HOME\":\"%s\"},"
		 "\"defaultUser\":\"root\",\"timestamp\":\"2026-01-01T00:00:00Z\"}",
		 TOKEN, work_dir);
	assert_int_equal(http("POST", "/init", NULL, "application/json", body, strlen(body), &out),
			 204);
	free(out.data);
	/* A different token is never accepted afterwards. */
	snprintf(body, sizeof(body), "{\"accessToken\":\"another-token\"}");
	assert_int_equal(http("POST", "/init", TOKEN, "application/json", body, strlen(body), &out),
			 401);
	free(out.data);
	assert_int_equal(http("GET", "/envs", "another-token", NULL, NULL, 0, &out), 401);
	free(out.data);
	/* The same token may /init again (e.g. after a resume). */
	snprintf(body, sizeof(body), "{\"accessToken\":\"%s\"}", TOKEN);
	assert_int_equal(http("POST", "/init", NULL, "application/json", body, strlen(body), &out),
			 204);
	free(out.data);
	assert_int_equal(http("GET", "/envs", TOKEN, NULL, NULL, 0, &out), 200);
	assert_non_null(strstr(out.data, "\"FROM_INIT\":\"yes\""));
	free(out.data);
	/* replaceAccessToken: only a request proving the token held replaces
	 * it (a guest restored from another sandbox's snapshot). */
	snprintf(body, sizeof(body),
		 "{\"accessToken\":\"next-token\",\"replaceAccessToken\":true}");
	assert_int_equal(
	    http("POST", "/init", "another-token", "application/json", body, strlen(body), &out),
	    401);
	free(out.data);
	assert_int_equal(http("POST", "/init", NULL, "application/json", body, strlen(body), &out),
			 401);
	free(out.data);
	assert_int_equal(http("POST", "/init", TOKEN, "application/json", body, strlen(body), &out),
			 204);
	free(out.data);
	assert_int_equal(http("GET", "/envs", TOKEN, NULL, NULL, 0, &out), 401);
	free(out.data);
	assert_int_equal(http("GET", "/envs", "next-token", NULL, NULL, 0, &out), 200);
	assert_non_null(strstr(out.data, "\"FROM_INIT\":\"yes\""));
	free(out.data);
	/* and back, for the tests after this one */
	snprintf(body, sizeof(body), "{\"accessToken\":\"%s\",\"replaceAccessToken\":true}", TOKEN);
	assert_int_equal(
	    http("POST", "/init", "next-token", "application/json", body, strlen(body), &out), 204);
	free(out.data);
	assert_int_equal(http("GET", "/envs", "next-token", NULL, NULL, 0, &out), 401);
	free(out.data);
	assert_int_equal(http("GET", "/envs", TOKEN, NULL, NULL, 0, &out), 200);
	free(out.data);
}

static void test_everything_needs_the_token(void **state)
{
	static const char *const procedures[] = {
	    "/process.Process/List",	       "/process.Process/Start",
	    "/process.Process/Connect",	       "/process.Process/SendInput",
	    "/process.Process/SendSignal",     "/process.Process/CloseStdin",
	    "/process.Process/Update",	       "/filesystem.Filesystem/Stat",
	    "/filesystem.Filesystem/MakeDir",  "/filesystem.Filesystem/Move",
	    "/filesystem.Filesystem/ListDir",  "/filesystem.Filesystem/Remove",
	    "/filesystem.Filesystem/WatchDir", "/no.Such/Method",
	};
	const char *const tokens[] = {NULL, "wrong-token"};
	struct buffer out;
	size_t i, t;

	for (t = 0; t < 2; t++) {
		for (i = 0; i < sizeof(procedures) / sizeof(procedures[0]); i++) {
			assert_int_equal(http("POST", procedures[i], tokens[t], "application/json",
					      "{}", 2, &out),
					 401);
			assert_non_null(strstr(out.data, "\"code\":401"));
			free(out.data);
		}
		assert_int_equal(http("GET", "/envs", tokens[t], NULL, NULL, 0, &out), 401);
		free(out.data);
		assert_int_equal(
		    http("GET", "/files?path=/etc/hostname", tokens[t], NULL, NULL, 0, &out), 401);
		free(out.data);
		assert_int_equal(http("POST", "/files?path=/tmp/x", tokens[t],
				      "application/octet-stream", "x", 1, &out),
				 401);
		free(out.data);
	}
}

static void test_start_echo_and_python(void **state)
{
	struct stream_result result;

	stream_call("/process.Process/Start",
		    "{\"process\":{\"cmd\":\"/bin/bash\",\"args\":[\"-l\",\"-c\",\"echo hi\"]},"
		    "\"stdin\":false}",
		    &result, 0, 0, NULL);
	assert_int_equal(result.status, 200);
	assert_true(result.pid > 0);
	assert_int_equal(result.out_len, 3);
	assert_memory_equal(result.out, "hi\n", 3);
	assert_true(result.ended);
	assert_int_equal(result.exit_code, 0);
	assert_true(result.exited);
	assert_string_equal(result.status_text, "exit status 0");
	assert_true(result.end_stream);
	assert_string_equal(result.error_code, "");
	assert_true(pid_gone(result.pid));

	stream_call("/process.Process/Start",
		    "{\"process\":{\"cmd\":\"/bin/bash\",\"args\":[\"-l\",\"-c\","
		    "\"python3 -c 'print(6*7)'; echo $FROM_INIT $PER_REQUEST >&2; exit 7\"],"
		    "\"envs\":{\"PER_REQUEST\":\"too\"}}}",
		    &result, 0, 0, NULL);
	assert_int_equal(result.out_len, 3);
	assert_memory_equal(result.out, "42\n", 3);
	assert_string_equal(result.err, "yes too\n");
	assert_int_equal(result.exit_code, 7);
	assert_string_equal(result.status_text, "exit status 7");

	/* A missing executable is a clean Connect error in the end-stream frame. */
	stream_call("/process.Process/Start", "{\"process\":{\"cmd\":\"/nonexistent/binary\"}}",
		    &result, 0, 0, NULL);
	assert_int_equal(result.status, 200);
	assert_true(result.end_stream);
	assert_string_equal(result.error_code, "invalid_argument");
	assert_int_equal(result.pid, 0);
}

static void test_stdin_and_close(void **state)
{
	struct background_stream stream = {0};
	json_t *result;
	char request[256];
	int pid;

	background_start(&stream,
			 "{\"process\":{\"cmd\":\"cat\"},\"tag\":\"cat-test\",\"stdin\":true}");
	pid = pid_of_tag("cat-test");
	/* "ping\n" in base64 */
	snprintf(request, sizeof(request),
		 "{\"process\":{\"pid\":%d},\"input\":{\"stdin\":\"cGluZwo=\"}}", pid);
	assert_int_equal(unary("/process.Process/SendInput", request, TOKEN, &result), 200);
	json_decref(result);
	snprintf(request, sizeof(request), "{\"process\":{\"tag\":\"cat-test\"}}");
	assert_int_equal(unary("/process.Process/CloseStdin", request, TOKEN, &result), 200);
	json_decref(result);
	pthread_join(stream.thread, NULL);
	assert_int_equal(stream.result.pid, pid);
	assert_int_equal(stream.result.out_len, 5);
	assert_memory_equal(stream.result.out, "ping\n", 5);
	assert_int_equal(stream.result.exit_code, 0);
	assert_true(pid_gone(pid));
	/* The process is gone: SendInput now says not_found. */
	snprintf(request, sizeof(request),
		 "{\"process\":{\"pid\":%d},\"input\":{\"stdin\":\"cGluZwo=\"}}", pid);
	assert_int_equal(unary("/process.Process/SendInput", request, TOKEN, &result), 404);
	assert_string_equal(json_string_value(json_object_get(result, "code")), "not_found");
	json_decref(result);
}

static void test_signal_and_list(void **state)
{
	struct background_stream stream = {0};
	json_t *result;
	char request[256];
	int pid;

	background_start(&stream, "{\"process\":{\"cmd\":\"/bin/bash\",\"args\":[\"-l\",\"-c\","
				  "\"sleep 100\"]},\"tag\":\"sleeper\"}");
	pid = pid_of_tag("sleeper");
	assert_int_equal(unary("/process.Process/List", "{}", TOKEN, &result), 200);
	{
		char *text = json_dumps(result, 0);
		assert_non_null(strstr(text, "sleep 100")); /* the config is shown */
		free(text);
	}
	json_decref(result);
	snprintf(request, sizeof(request),
		 "{\"process\":{\"pid\":%d},\"signal\":\"SIGNAL_SIGKILL\"}", pid);
	assert_int_equal(unary("/process.Process/SendSignal", request, TOKEN, &result), 200);
	json_decref(result);
	pthread_join(stream.thread, NULL);
	assert_true(stream.result.ended);
	assert_int_equal(stream.result.exit_code, -1);
	assert_false(stream.result.exited);
	assert_string_equal(stream.result.status_text, "signal: killed");
	assert_true(pid_gone(pid));
	/* Invalid signal and unknown process. */
	snprintf(request, sizeof(request), "{\"process\":{\"pid\":%d},\"signal\":11}", pid);
	assert_int_equal(unary("/process.Process/SendSignal", request, TOKEN, &result), 400);
	json_decref(result);
	snprintf(request, sizeof(request), "{\"process\":{\"pid\":%d},\"signal\":9}", pid);
	assert_int_equal(unary("/process.Process/SendSignal", request, TOKEN, &result), 404);
	json_decref(result);
}

/* envd kills a started process when the Start call's Connect-Timeout-Ms
 * expires (the SDK's commands.run timeoutMs, 60 s by default). */
static void test_start_timeout_kills(void **state)
{
	struct stream_result result;
	double started = now_ms(), took;

	extra_header = "Connect-Timeout-Ms: 500";
	stream_call("/process.Process/Start",
		    "{\"process\":{\"cmd\":\"/bin/sh\",\"args\":[\"-c\",\"sleep 100\"]}}", &result,
		    0, 0, NULL);
	extra_header = NULL;
	took = now_ms() - started;
	assert_true(result.ended);
	assert_int_equal(result.exit_code, -1);
	assert_string_equal(result.status_text, "signal: killed");
	assert_true(took >= 400 && took < 10000);
	assert_true(pid_gone(result.pid));
}

static void test_connect_reattaches(void **state)
{
	struct background_stream first = {0}, second = {0};
	json_t *result;
	char request[256];
	int pid;

	/* The first client leaves right after the start event; envd keeps the
	 * process running, and Connect re-attaches to its output. */
	first.abort_after = 1;
	background_start(&first,
			 "{\"process\":{\"cmd\":\"/bin/bash\",\"args\":[\"-l\",\"-c\","
			 "\"while read l; do echo got $l; [ $l = stop ] && exit 0; done\"]},"
			 "\"tag\":\"reattach\",\"stdin\":true}");
	pid = pid_of_tag("reattach");
	pthread_join(first.thread, NULL);
	second.procedure = "/process.Process/Connect";
	background_start(&second, "{\"process\":{\"tag\":\"reattach\"}}");
	wait_attached(&second);
	snprintf(request, sizeof(request),
		 "{\"process\":{\"pid\":%d},\"input\":{\"stdin\":\"c3RvcAo=\"}}", pid); /* stop\n */
	assert_int_equal(unary("/process.Process/SendInput", request, TOKEN, &result), 200);
	json_decref(result);
	pthread_join(second.thread, NULL);
	assert_int_equal(second.result.pid, pid);
	assert_int_equal(second.result.out_len, 9);
	assert_memory_equal(second.result.out, "got stop\n", 9);
	assert_true(second.result.ended);
	assert_int_equal(second.result.exit_code, 0);
	assert_true(pid_gone(pid));
}

static long agent_rss_kib(void)
{
	char path[64], line[256];
	long kib = -1;
	FILE *status;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)agent_pid);
	status = fopen(path, "r");
	if (!status)
		return -1;
	while (fgets(line, sizeof(line), status))
		if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
			break;
	fclose(status);
	return kib;
}

static void test_disconnect_and_backpressure(void **state)
{
	struct background_stream slow = {0}, gone = {0};
	struct buffer out;
	json_t *result;
	char request[256];
	long rss_before, rss_during;
	int pid;

	/* A slow client: `yes` writes as fast as it can while the client
	 * sleeps 1.5 s on its first chunk. Bounded buffering means the agent's
	 * memory does not grow with the output. */
	rss_before = agent_rss_kib();
	slow.delay_ms = 1500;
	slow.abort_after = 4 * 1024 * 1024;
	background_start(&slow, "{\"process\":{\"cmd\":\"yes\"},\"tag\":\"yes-slow\"}");
	pid = pid_of_tag("yes-slow");
	usleep(1000000);
	rss_during = agent_rss_kib();
	printf("# agent VmRSS %ld KiB before, %ld KiB while a client stalls on `yes`\n", rss_before,
	       rss_during);
	assert_true(rss_during - rss_before < 32 * 1024);
	pthread_join(slow.thread, NULL); /* client gave up mid-stream */
	/* The agent is not blocked and the process still runs (envd keeps it). */
	assert_int_equal(http("GET", "/health", NULL, NULL, NULL, 0, &out), 204);
	free(out.data);
	snprintf(request, sizeof(request),
		 "{\"process\":{\"pid\":%d},\"signal\":\"SIGNAL_SIGKILL\"}", pid);
	assert_int_equal(unary("/process.Process/SendSignal", request, TOKEN, &result), 200);
	json_decref(result);
	assert_true(pid_gone(pid)); /* reaped, no zombie */

	/* A client that disappears mid-stream of a process that then exits on
	 * its own: the agent still reaps it. */
	gone.abort_after = 1;
	background_start(&gone, "{\"process\":{\"cmd\":\"/bin/bash\",\"args\":[\"-c\","
				"\"echo x; sleep 0.3; echo y\"]},\"tag\":\"short\"}");
	pid = pid_of_tag("short");
	pthread_join(gone.thread, NULL);
	assert_true(pid_gone(pid));
	assert_int_equal(http("GET", "/health", NULL, NULL, NULL, 0, &out), 204);
	free(out.data);
}

static void test_files_raw_and_multipart(void **state)
{
	char query[600], path[400], expected_path[400];
	struct buffer out;
	CURL *curl;
	curl_mime *mime;
	curl_mimepart *part;
	struct curl_slist *headers = NULL;
	char url[600];
	long status = 0;

	snprintf(path, sizeof(path), "%s/raw/dir/file.txt", work_dir);
	snprintf(query, sizeof(query), "/files?path=%s", path);
	assert_int_equal(
	    http("POST", query, TOKEN, "application/octet-stream", "raw body", 8, &out), 200);
	assert_non_null(strstr(out.data, "\"type\":\"file\""));
	assert_non_null(strstr(out.data, path));
	free(out.data);
	assert_int_equal(http("GET", query, TOKEN, NULL, NULL, 0, &out), 200);
	assert_int_equal(out.len, 8);
	assert_memory_equal(out.data, "raw body", 8);
	free(out.data);

	/* multipart as the SDK sends it: part "file", filename = path */
	snprintf(expected_path, sizeof(expected_path), "%s/multi/a.txt", work_dir);
	curl = curl_easy_init();
	mime = curl_mime_init(curl);
	part = curl_mime_addpart(mime);
	curl_mime_name(part, "file");
	curl_mime_filename(part, expected_path);
	curl_mime_data(part, "multipart body", CURL_ZERO_TERMINATED);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/files", agent_port);
	headers = curl_slist_append(headers, "X-Access-Token: " TOKEN);
	memset(&out, 0, sizeof(out));
	curl_easy_setopt(curl, CURLOPT_URL, url);
	curl_easy_setopt(curl, CURLOPT_MIMEPOST, mime);
	curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, collect);
	curl_easy_setopt(curl, CURLOPT_WRITEDATA, &out);
	assert_int_equal(curl_easy_perform(curl), CURLE_OK);
	curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
	assert_int_equal(status, 200);
	assert_non_null(strstr(out.data, expected_path));
	free(out.data);
	curl_slist_free_all(headers);
	curl_mime_free(mime);
	curl_easy_cleanup(curl);
	snprintf(query, sizeof(query), "/files?path=%s", expected_path);
	assert_int_equal(http("GET", query, TOKEN, NULL, NULL, 0, &out), 200);
	assert_string_equal(out.data, "multipart body");
	free(out.data);

	/* missing -> 404 JSON, directory -> 400, no path -> 400 */
	snprintf(query, sizeof(query), "/files?path=%s/missing", work_dir);
	assert_int_equal(http("GET", query, TOKEN, NULL, NULL, 0, &out), 404);
	assert_non_null(strstr(out.data, "\"code\":404"));
	free(out.data);
	snprintf(query, sizeof(query), "/files?path=%s", work_dir);
	assert_int_equal(http("GET", query, TOKEN, NULL, NULL, 0, &out), 400);
	free(out.data);
	assert_int_equal(http("GET", "/files", TOKEN, NULL, NULL, 0, &out), 400);
	free(out.data);
	/* ENOSPC -> 507 (/dev/full fails every write with ENOSPC) */
	if (access("/dev/full", W_OK) == 0) {
		assert_int_equal(http("POST", "/files?path=/dev/full", TOKEN,
				      "application/octet-stream", "no space", 8, &out),
				 507);
		assert_non_null(strstr(out.data, "\"code\":507"));
		free(out.data);
	}
	/* an unsupported body type is refused */
	snprintf(query, sizeof(query), "/files?path=%s/t.txt", work_dir);
	assert_int_equal(http("POST", query, TOKEN, "text/plain", "x", 1, &out), 400);
	free(out.data);
}

static void test_signed_urls(void **state)
{
	char path[400], other[400], query[800];
	struct buffer out;
	long long future = (long long)time(NULL) + 600, past = (long long)time(NULL) - 10;

	snprintf(path, sizeof(path), "%s/signed.txt", work_dir);
	snprintf(other, sizeof(other), "%s/other.txt", work_dir);
	/* write with a write signature and no token */
	signed_query(query, sizeof(query), path, "write", future);
	assert_int_equal(http("POST", query, NULL, "application/octet-stream", "signed", 6, &out),
			 200);
	free(out.data);
	/* read: valid without and with expiration */
	signed_query(query, sizeof(query), path, "read", -1);
	assert_int_equal(http("GET", query, NULL, NULL, NULL, 0, &out), 200);
	assert_string_equal(out.data, "signed");
	free(out.data);
	signed_query(query, sizeof(query), path, "read", future);
	assert_int_equal(http("GET", query, NULL, NULL, NULL, 0, &out), 200);
	free(out.data);
	/* expired */
	signed_query(query, sizeof(query), path, "read", past);
	assert_int_equal(http("GET", query, NULL, NULL, NULL, 0, &out), 401);
	assert_non_null(strstr(out.data, "expired"));
	free(out.data);
	/* wrong operation: a write signature used to read, and vice versa */
	signed_query(query, sizeof(query), path, "write", future);
	assert_int_equal(http("GET", query, NULL, NULL, NULL, 0, &out), 401);
	free(out.data);
	signed_query(query, sizeof(query), path, "read", future);
	assert_int_equal(http("POST", query, NULL, "application/octet-stream", "x", 1, &out), 401);
	free(out.data);
	/* wrong path: signature of one path presented for another */
	signed_query(query, sizeof(query), path, "read", -1);
	{
		char *p = strstr(query, "signed.txt");
		char swapped[900];
		*p = '\0';
		snprintf(swapped, sizeof(swapped), "%sother.txt%s", query,
			 p + strlen("signed.txt"));
		assert_int_equal(http("GET", swapped, NULL, NULL, NULL, 0, &out), 401);
		free(out.data);
	}
	/* tampered expiration */
	signed_query(query, sizeof(query), path, "read", future);
	strcat(query, "0");
	assert_int_equal(http("GET", query, NULL, NULL, NULL, 0, &out), 401);
	free(out.data);
	(void)other;
}

static void test_filesystem_service(void **state)
{
	char request[1024], dir[400], moved[400];
	json_t *result, *entry;
	size_t i;
	bool saw_file = false;

	snprintf(dir, sizeof(dir), "%s/fs/a/b", work_dir);
	snprintf(request, sizeof(request), "{\"path\":\"%s\"}", dir);
	assert_int_equal(unary("/filesystem.Filesystem/MakeDir", request, TOKEN, &result), 200);
	assert_string_equal(
	    json_string_value(json_object_get(json_object_get(result, "entry"), "type")),
	    "FILE_TYPE_DIRECTORY");
	json_decref(result);
	assert_int_equal(unary("/filesystem.Filesystem/MakeDir", request, TOKEN, &result), 409);
	assert_string_equal(json_string_value(json_object_get(result, "code")), "already_exists");
	json_decref(result);

	snprintf(request, sizeof(request), "%s/fs/a/f.txt", work_dir);
	{
		FILE *f = fopen(request, "w");
		assert_non_null(f);
		fputs("12345", f);
		fclose(f);
	}
	snprintf(request, sizeof(request), "{\"path\":\"%s/fs/a/f.txt\"}", work_dir);
	assert_int_equal(unary("/filesystem.Filesystem/Stat", request, TOKEN, &result), 200);
	entry = json_object_get(result, "entry");
	assert_string_equal(json_string_value(json_object_get(entry, "type")), "FILE_TYPE_FILE");
	assert_string_equal(json_string_value(json_object_get(entry, "size")), "5");
	assert_string_equal(json_string_value(json_object_get(entry, "name")), "f.txt");
	json_decref(result);

	snprintf(moved, sizeof(moved), "%s/fs/a/b/g.txt", work_dir);
	snprintf(request, sizeof(request), "{\"source\":\"%s/fs/a/f.txt\",\"destination\":\"%s\"}",
		 work_dir, moved);
	assert_int_equal(unary("/filesystem.Filesystem/Move", request, TOKEN, &result), 200);
	assert_string_equal(
	    json_string_value(json_object_get(json_object_get(result, "entry"), "path")), moved);
	json_decref(result);

	snprintf(request, sizeof(request), "{\"path\":\"%s/fs\",\"depth\":3}", work_dir);
	assert_int_equal(unary("/filesystem.Filesystem/ListDir", request, TOKEN, &result), 200);
	json_array_foreach(json_object_get(result, "entries"), i, entry)
	{
		if (strcmp(json_string_value(json_object_get(entry, "path")), moved) == 0)
			saw_file = true;
	}
	assert_int_equal(json_array_size(json_object_get(result, "entries")),
			 3); /* a, a/b, g.txt */
	assert_true(saw_file);
	json_decref(result);
	snprintf(request, sizeof(request), "{\"path\":\"%s/fs\",\"depth\":1}", work_dir);
	assert_int_equal(unary("/filesystem.Filesystem/ListDir", request, TOKEN, &result), 200);
	assert_int_equal(json_array_size(json_object_get(result, "entries")), 1);
	json_decref(result);

	snprintf(request, sizeof(request), "{\"path\":\"%s/fs/a\"}", work_dir);
	assert_int_equal(unary("/filesystem.Filesystem/Remove", request, TOKEN, &result), 200);
	json_decref(result);
	assert_int_equal(unary("/filesystem.Filesystem/Stat", request, TOKEN, &result), 404);
	assert_string_equal(json_string_value(json_object_get(result, "code")), "not_found");
	json_decref(result);
}

static void test_bad_input(void **state)
{
	struct buffer out;
	struct stream_result stream;
	json_t *result;
	char *big;
	uint8_t frame[16];

	/* malformed JSON, wrong types, unknown and unimplemented methods */
	assert_int_equal(unary("/filesystem.Filesystem/Stat", "{not json", TOKEN, &result), 400);
	assert_string_equal(json_string_value(json_object_get(result, "code")), "invalid_argument");
	json_decref(result);
	assert_int_equal(unary("/filesystem.Filesystem/Stat", "{\"path\":7}", TOKEN, &result), 400);
	json_decref(result);
	assert_int_equal(unary("/no.Such/Method", "{}", TOKEN, &result), 404);
	assert_string_equal(json_string_value(json_object_get(result, "code")), "unimplemented");
	json_decref(result);
	assert_int_equal(unary("/process.Process/StreamInput", "{}", TOKEN, &result), 501);
	assert_string_equal(json_string_value(json_object_get(result, "code")), "unimplemented");
	json_decref(result);
	/* PTY sizes are bounded; resizing a process that isn't there */
	assert_int_equal(
	    unary("/process.Process/Update",
		  "{\"process\":{\"pid\":999999},\"pty\":{\"size\":{\"cols\":0,\"rows\":9}}}",
		  TOKEN, &result),
	    400);
	json_decref(result);
	assert_int_equal(
	    unary("/process.Process/Update",
		  "{\"process\":{\"pid\":999999},\"pty\":{\"size\":{\"cols\":80,\"rows\":24}}}",
		  TOKEN, &result),
	    404);
	json_decref(result);
	stream_call(
	    "/process.Process/Start",
	    "{\"process\":{\"cmd\":\"true\"},\"pty\":{\"size\":{\"cols\":99999,\"rows\":9}}}",
	    &stream, 0, 0, NULL);
	assert_string_equal(stream.error_code, "invalid_argument");
	/* binary protobuf is not spoken: 415 */
	assert_int_equal(
	    http("POST", "/process.Process/List", TOKEN, "application/proto", "", 0, &out), 415);
	free(out.data);
	/* a body over 1 MiB */
	big = malloc(2 * 1024 * 1024);
	memset(big, ' ', 2 * 1024 * 1024);
	assert_int_equal(http("POST", "/process.Process/List", TOKEN, "application/json", big,
			      2 * 1024 * 1024, &out),
			 413);
	free(out.data);
	free(big);
	/* truncated, compressed and garbage envelopes on a stream */
	envelope__write_header(frame, 0, 100);
	assert_int_equal(http("POST", "/process.Process/Start", TOKEN, "application/connect+json",
			      frame, 7, &out),
			 200);
	parse_frames(out.data, out.len, memset(&stream, 0, sizeof(stream)));
	assert_true(stream.end_stream);
	assert_string_equal(stream.error_code, "invalid_argument");
	free(out.data);
	envelope__write_header(frame, ENVELOPE_FLAG_COMPRESSED, 2);
	memcpy(frame + 5, "{}", 2);
	assert_int_equal(http("POST", "/process.Process/Start", TOKEN, "application/connect+json",
			      frame, 7, &out),
			 200);
	memset(&stream, 0, sizeof(stream));
	parse_frames(out.data, out.len, &stream);
	/* compressed flag without a Connect-Content-Encoding */
	assert_string_equal(stream.error_code, "invalid_argument");
	free(out.data);
	stream_call("/process.Process/Start", "{\"process\":{\"cmd\":[1]}}", &stream, 0, 0, NULL);
	assert_string_equal(stream.error_code, "invalid_argument");
	stream_call("/process.Process/Connect", "{\"process\":{\"pid\":999999}}", &stream, 0, 0,
		    NULL);
	assert_string_equal(stream.error_code, "not_found");
	/* the agent is still fine */
	assert_int_equal(http("GET", "/health", NULL, NULL, NULL, 0, &out), 204);
	free(out.data);
}

static void test_watch_dir(void **state)
{
	struct background_stream watch = {0};
	char dir[400], file[500], request[600], command[600];
	FILE *f;

	snprintf(dir, sizeof(dir), "%s/watched", work_dir);
	assert_int_equal(mkdir(dir, 0755), 0);
	snprintf(request, sizeof(request), "{\"path\":\"%s\",\"recursive\":true}", dir);
	watch.procedure = "/filesystem.Filesystem/WatchDir";
	background_start(&watch, request);
	wait_attached(&watch); /* the start message arrived: watches are set */
	snprintf(file, sizeof(file), "%s/f.txt", dir);
	f = fopen(file, "w");
	assert_non_null(f);
	fclose(f);
	/* removing the watched directory ends the stream */
	snprintf(command, sizeof(command), "rm -rf '%s'", dir);
	assert_int_equal(system(command), 0);
	pthread_join(watch.thread, NULL);
	assert_int_equal(watch.result.status, 200);
	assert_non_null(strstr(watch.result.raw, "{\"start\":{}}"));
	assert_non_null(
	    strstr(watch.result.raw,
		   "{\"filesystem\":{\"name\":\"f.txt\",\"type\":\"EVENT_TYPE_CREATE\"}}"));
	assert_non_null(strstr(watch.result.raw, "EVENT_TYPE_REMOVE"));
	assert_true(watch.result.end_stream);
	assert_string_equal(watch.result.error_code, "");
}

/* Processes and file access as another user (root only: setuid/setfsuid). */
static void test_other_user(void **state)
{
	struct stream_result result;
	struct buffer out;
	char query[600], dir[400];
	struct stat st;

	if (geteuid() != 0 || !getpwnam("nobody")) {
		printf("# skipped: needs root and a 'nobody' user\n");
		skip();
	}
	extra_header = "Authorization: Basic bm9ib2R5Og=="; /* "nobody:" as the SDK sends it */
	stream_call(
	    "/process.Process/Start",
	    "{\"process\":{\"cmd\":\"/bin/sh\",\"args\":[\"-c\",\"id -u; id -g; echo $USER\"],"
	    "\"cwd\":\"/tmp\"}}",
	    &result, 0, 0, NULL);
	extra_header = NULL;
	assert_true(result.ended);
	assert_string_equal(result.out, "65534\n65534\nnobody\n");

	/* nobody cannot write into a root-only directory... */
	assert_int_equal(chmod(work_dir, 0755), 0);
	snprintf(dir, sizeof(dir), "%s/root-only", work_dir);
	assert_int_equal(mkdir(dir, 0755), 0);
	snprintf(query, sizeof(query), "/files?path=%s/x.txt&username=nobody", dir);
	assert_int_equal(http("POST", query, TOKEN, "application/octet-stream", "x", 1, &out), 403);
	free(out.data);
	snprintf(dir, sizeof(dir), "%s/root-only/x.txt", work_dir);
	assert_int_not_equal(access(dir, F_OK), 0);
	/* ...and what it writes where it may is owned by it. */
	snprintf(dir, sizeof(dir), "%s/open", work_dir);
	assert_int_equal(mkdir(dir, 0777), 0);
	assert_int_equal(chmod(dir, 0777), 0);
	snprintf(query, sizeof(query), "/files?path=%s/mine.txt&username=nobody", dir);
	assert_int_equal(http("POST", query, TOKEN, "application/octet-stream", "mine", 4, &out),
			 200);
	free(out.data);
	snprintf(dir, sizeof(dir), "%s/open/mine.txt", work_dir);
	assert_int_equal(stat(dir, &st), 0);
	assert_int_equal(st.st_uid, 65534);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_health_and_init),
	    cmocka_unit_test(test_everything_needs_the_token),
	    cmocka_unit_test(test_start_echo_and_python),
	    cmocka_unit_test(test_stdin_and_close),
	    cmocka_unit_test(test_signal_and_list),
	    cmocka_unit_test(test_start_timeout_kills),
	    cmocka_unit_test(test_connect_reattaches),
	    cmocka_unit_test(test_disconnect_and_backpressure),
	    cmocka_unit_test(test_files_raw_and_multipart),
	    cmocka_unit_test(test_signed_urls),
	    cmocka_unit_test(test_filesystem_service),
	    cmocka_unit_test(test_bad_input),
	    cmocka_unit_test(test_watch_dir),
	    cmocka_unit_test(test_other_user),
	};

	curl_global_init(CURL_GLOBAL_DEFAULT);
	return cmocka_run_group_tests(tests, start_agent, stop_agent);
}
