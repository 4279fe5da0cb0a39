/* process.c without HTTP: the steps of process__start (environment,
 * executable lookup, working directory, exec errors), a real start read
 * through its stream source (start, stdout, stderr, end events), and the
 * stream buffer's framing. The test reaps the children itself (the agent's
 * main thread does it in the binary). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "envelope.h"
#include "process.h"
#include "stream.h"
#include "warren/clock.h"

static struct agent_user me;

static int setup(void **state)
{
	(void)state;
	snprintf(me.name, sizeof(me.name), "tester");
	snprintf(me.home, sizeof(me.home), "/tmp");
	me.uid = geteuid();
	me.gid = getegid();
	return 0;
}

/* A process_config from its JSON (process.ProcessConfig). */
static void config_from(const char *text, struct process_config *config, json_t **json)
{
	char error[256];

	*json = json_loads(text, 0, NULL);
	assert_non_null(*json);
	assert_true(wire__parse_process_config(*json, config, error, sizeof(error)));
}

static const char *env_value(char **envp, const char *key)
{
	size_t length = strlen(key);

	for (size_t i = 0; envp[i]; i++)
		if (strncmp(envp[i], key, length) == 0 && envp[i][length] == '=')
			return envp[i] + length + 1;
	return NULL;
}

static void test_environment(void **state)
{
	struct process_config config;
	json_t *json, *init = json_pack("{s:s, s:s, s:i}", "A", "init", "B", "init", "N", 1);
	char **envp;

	(void)state;
	config_from("{\"cmd\":\"x\",\"envs\":{\"B\":\"request\",\"C\":\"c=d\"}}", &config, &json);
	envp = process__environment(&config, &me, init);
	assert_non_null(envp);
	assert_string_equal(env_value(envp, "HOME"), "/tmp");
	assert_string_equal(env_value(envp, "USER"), "tester");
	assert_string_equal(env_value(envp, "LOGNAME"), "tester");
	assert_string_equal(env_value(envp, "PATH"), AGENT_DEFAULT_PATH);
	assert_string_equal(env_value(envp, "A"), "init");    /* /init's envVars */
	assert_string_equal(env_value(envp, "B"), "request"); /* the request wins */
	assert_string_equal(env_value(envp, "C"), "c=d");
	assert_null(env_value(envp, "N")); /* not a string: left out */
	process__free_strings(envp);
	envp = process__environment(&config, &me, NULL);
	assert_null(env_value(envp, "A"));
	process__free_strings(envp);
	wire__process_config_free(&config);
	json_decref(json);
	json_decref(init);
}

static void test_find_executable(void **state)
{
	char *envp[] = {"PATH=/nonexistent::/bin", NULL}, *empty[] = {NULL};
	char out[PATH_MAX];

	(void)state;
	assert_true(process__find_executable("sh", envp, out, sizeof(out)));
	assert_string_equal(out, "/bin/sh");
	assert_false(process__find_executable("warren-no-such-command", envp, out, sizeof(out)));
	/* A path is taken as is (the exec reports it missing). */
	assert_true(process__find_executable("/no/such", empty, out, sizeof(out)));
	assert_string_equal(out, "/no/such");
	/* No PATH in the environment: the default one. */
	assert_true(process__find_executable("sh", empty, out, sizeof(out)));
	assert_non_null(strstr(out, "/sh"));
}

static void test_working_directory(void **state)
{
	struct process_config config;
	struct rpc_error err = {0};
	char out[PATH_MAX];
	json_t *json;

	(void)state;
	config_from("{\"cmd\":\"x\"}", &config, &json);
	assert_true(process__working_directory(&config, &me, NULL, out, sizeof(out), &err));
	assert_string_equal(out, "/tmp"); /* the home */
	assert_true(process__working_directory(&config, &me, "/", out, sizeof(out), &err));
	assert_string_equal(out, "/"); /* /init's defaultWorkdir */
	wire__process_config_free(&config);
	json_decref(json);
	config_from("{\"cmd\":\"x\",\"cwd\":\"/etc/passwd\"}", &config, &json);
	assert_false(process__working_directory(&config, &me, "/", out, sizeof(out), &err));
	assert_string_equal(err.code, "invalid_argument");
	assert_non_null(strstr(err.message, "/etc/passwd"));
	wire__process_config_free(&config);
	json_decref(json);
}

static void test_exec_error(void **state)
{
	struct rpc_error err = {0};

	(void)state;
	process__exec_error("/bin/x", ENOENT, &err);
	assert_string_equal(err.code, "invalid_argument");
	assert_non_null(strstr(err.message, "'/bin/x'"));
	process__exec_error("/bin/x", EACCES, &err);
	assert_string_equal(err.code, "invalid_argument");
	process__exec_error("/bin/x", ENOMEM, &err);
	assert_string_equal(err.code, "internal");
}

/* Reads source until it ends (reaping children meanwhile, at most 30 s);
 * returns the messages as a JSON array. */
static json_t *read_stream(struct stream_source *source)
{
	struct stream_buffer buffer = {0};
	uint64_t give_up = clock__monotonic_ns() + 30000000000ull;
	enum stream_step step = STREAM_CONTINUE;
	json_t *messages = json_array();
	size_t offset = 0;
	int status;
	pid_t pid;

	while (step == STREAM_CONTINUE && clock__monotonic_ns() < give_up) {
		step = source->next(source->opaque, 50, &buffer);
		while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
			process__reaped(pid, status);
	}
	assert_int_equal(step, STREAM_END);
	while (offset + ENVELOPE_HEADER_LEN <= buffer.length) {
		const uint8_t *frame = buffer.data + offset;
		uint32_t length = (uint32_t)frame[1] << 24 | (uint32_t)frame[2] << 16 |
				  (uint32_t)frame[3] << 8 | frame[4];

		assert_int_equal(frame[0], 0);
		assert_true(offset + ENVELOPE_HEADER_LEN + length <= buffer.length);
		const char *json = (const char *)frame + ENVELOPE_HEADER_LEN;

		json_array_append_new(messages, json_loadb(json, length, 0, NULL));
		offset += ENVELOPE_HEADER_LEN + length;
	}
	assert_int_equal(offset, buffer.length);
	stream_buffer__free(&buffer);
	source->free(source->opaque);
	return messages;
}

static bool start(const char *text, struct subscriber **subscriber, struct rpc_error *err)
{
	struct process_config config;
	struct process_request request = {.stdin_pipe = false, .user = &me};
	json_t *json;
	bool started;

	config_from(text, &config, &json);
	request.config = &config;
	request.config_json = json;
	started = process__start(&request, subscriber, err);
	wire__process_config_free(&config);
	json_decref(json);
	return started;
}

static void test_start_and_stream(void **state)
{
	struct subscriber *subscriber = NULL;
	struct stream_source source;
	struct rpc_error err = {0};
	json_t *messages, *event;
	size_t index, count;

	(void)state;
	assert_true(start("{\"cmd\":\"/bin/sh\","
			  "\"args\":[\"-c\",\"echo hi; echo oops >&2; exit 3\"]}",
			  &subscriber, &err));
	process__stream_source(subscriber, &source);
	assert_non_null(strstr(source.name, "process "));
	assert_non_null(strstr(source.keepalive, "keepalive"));
	messages = read_stream(&source);
	count = json_array_size(messages);
	assert_true(count >= 4);
	event = json_object_get(json_object_get(json_array_get(messages, 0), "event"), "start");
	assert_true(json_integer_value(json_object_get(event, "pid")) > 0);
	json_array_foreach(messages, index, event)
	{
		json_t *data = json_object_get(json_object_get(event, "event"), "data");
		const char *out = json_string_value(json_object_get(data, "stdout"));
		const char *error = json_string_value(json_object_get(data, "stderr"));

		if (out)
			assert_string_equal(out, "aGkK"); /* "hi\n" */
		if (error)
			assert_string_equal(error, "b29wcwo="); /* "oops\n" */
	}
	event = json_object_get(json_array_get(messages, count - 1), "event");
	event = json_object_get(event, "end");
	assert_int_equal(json_integer_value(json_object_get(event, "exitCode")), 3);
	assert_true(json_is_true(json_object_get(event, "exited")));
	assert_string_equal(json_string_value(json_object_get(event, "status")), "exit status 3");
	json_decref(messages);
}

static void test_start_errors(void **state)
{
	struct subscriber *subscriber = NULL;
	struct rpc_error err = {0};
	json_t *list;
	int status;

	(void)state;
	assert_false(start("{\"cmd\":\"/no/such/program\"}", &subscriber, &err));
	assert_string_equal(err.code, "invalid_argument");
	assert_non_null(strstr(err.message, "failed to start"));
	assert_null(subscriber);
	while (waitpid(-1, &status, 0) > 0) /* the child that could not exec */
		;
	assert_false(start("{\"cmd\":\"warren-no-such-command\"}", &subscriber, &err));
	assert_string_equal(err.code, "invalid_argument");
	assert_non_null(strstr(err.message, "not found in PATH"));
	assert_false(start("{\"cmd\":\"/bin/sh\",\"cwd\":\"/etc/passwd\"}", &subscriber, &err));
	assert_non_null(strstr(err.message, "not a directory"));
	list = process__list();
	assert_int_equal(json_array_size(json_object_get(list, "processes")), 0);
	json_decref(list);
}

static void test_stream_buffer(void **state)
{
	struct stream_buffer buffer = {0};

	(void)state;
	assert_true(stream_buffer__append(&buffer, 0, "{}", 2));
	assert_true(stream_buffer__append(&buffer, ENVELOPE_FLAG_END_STREAM, "{\"a\":1}", 7));
	assert_int_equal(buffer.length, 2 * ENVELOPE_HEADER_LEN + 2 + 7);
	assert_memory_equal(buffer.data, "\x00\x00\x00\x00\x02{}", 7);
	assert_int_equal(buffer.data[7], ENVELOPE_FLAG_END_STREAM);
	assert_int_equal(buffer.data[11], 7);
	stream_buffer__free(&buffer);
	assert_null(buffer.data);
	assert_int_equal(buffer.length, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_environment),	      cmocka_unit_test(test_find_executable),
	    cmocka_unit_test(test_working_directory), cmocka_unit_test(test_exec_error),
	    cmocka_unit_test(test_start_and_stream),  cmocka_unit_test(test_start_errors),
	    cmocka_unit_test(test_stream_buffer),
	};

	return cmocka_run_group_tests(tests, setup, NULL);
}
