/* Unit tests of warren-interpreter's pure parts: Jupyter message signing,
 * encoding and decoding (against a message recorded from ipykernel, its
 * signature computed with Python's hmac), and the iopub -> NDJSON mapping
 * that @e2b/code-interpreter parses. No kernel, no sockets. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "jmsg.h"
#include "outputs.h"
#include "requests.h"

static const char *recorded_key = "5d1e7c3b-recorded-key";
static const char *recorded[4] = {
    "{\"msg_id\":\"a1b2c3d4-0001\",\"msg_type\":\"execute_result\",\"username\":\"user\","
    "\"session\":\"s-1\",\"date\":\"2026-12-04T02:37:43.100000Z\",\"version\":\"5.3\"}",
    "{\"msg_id\":\"req-42\",\"msg_type\":\"execute_request\",\"username\":\"warren\","
    "\"session\":\"c-1\",\"date\":\"2026-12-04T02:37:43.000000Z\",\"version\":\"5.3\"}",
    "{}",
    "{\"data\":{\"text/plain\":\"42\",\"text/html\":\"<b>42</"
    "b>\"},\"metadata\":{},\"execution_count\":3}",
};
/* hmac.new(key, h + p + m + c, sha256).hexdigest() */
static const char *recorded_sig =
    "88853bbea8d6a1c867de1e2a606c4009c907bab390df026e22136e913838b82c";

static size_t recorded_frames(struct jmsg_frame frames[8], const char *sig)
{
	size_t n = 0;

	frames[n++] = (struct jmsg_frame){"router-identity", 15};
	frames[n++] = (struct jmsg_frame){JMSG_DELIMITER, strlen(JMSG_DELIMITER)};
	frames[n++] = (struct jmsg_frame){sig, strlen(sig)};
	for (int i = 0; i < 4; i++)
		frames[n++] = (struct jmsg_frame){recorded[i], strlen(recorded[i])};
	return n;
}

static void test_sign_matches_python_hmac(void **state)
{
	struct jmsg_frame parts[4];
	char sig[JMSG_SIG_HEX_LEN + 1];

	for (int i = 0; i < 4; i++)
		parts[i] = (struct jmsg_frame){recorded[i], strlen(recorded[i])};
	assert_int_equal(jmsg__sign(recorded_key, parts, sig), 0);
	assert_string_equal(sig, recorded_sig);
	assert_int_equal(jmsg__sign("", parts, sig), 0);
	assert_string_equal(sig, "");
}

static void test_decode_recorded(void **state)
{
	struct jmsg_frame frames[8];
	struct jmsg msg;
	char err[128];
	size_t n = recorded_frames(frames, recorded_sig);

	assert_int_equal(jmsg__decode(recorded_key, frames, n, &msg, err, sizeof(err)), 0);
	assert_string_equal(msg.msg_type, "execute_result");
	assert_string_equal(msg.parent_msg_id, "req-42");
	assert_int_equal(json_integer_value(json_object_get(msg.content, "execution_count")), 3);
	jmsg__clear(&msg);
}

static void test_decode_rejects_bad_input(void **state)
{
	char bad_sig[JMSG_SIG_HEX_LEN + 1];
	struct jmsg_frame frames[8];
	struct jmsg msg;
	char err[128];
	size_t n;

	/* One flipped hex digit. */
	snprintf(bad_sig, sizeof(bad_sig), "%s", recorded_sig);
	bad_sig[0] = bad_sig[0] == '8' ? '9' : '8';
	n = recorded_frames(frames, bad_sig);
	assert_int_equal(jmsg__decode(recorded_key, frames, n, &msg, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "signature"));
	/* Wrong length signature. */
	n = recorded_frames(frames, "abc");
	assert_int_equal(jmsg__decode(recorded_key, frames, n, &msg, err, sizeof(err)), -1);
	/* No delimiter. */
	n = recorded_frames(frames, recorded_sig);
	frames[1] = (struct jmsg_frame){"<IDS|MSX>", 9};
	assert_int_equal(jmsg__decode(recorded_key, frames, n, &msg, err, sizeof(err)), -1);
	/* Too few frames after it. */
	n = recorded_frames(frames, recorded_sig);
	assert_int_equal(jmsg__decode(recorded_key, frames, n - 1, &msg, err, sizeof(err)), -1);
	/* Unsigned mode: a content that is not an object, then a header without msg_type. */
	n = recorded_frames(frames, "");
	frames[6] = (struct jmsg_frame){"[1,2]", 5};
	assert_int_equal(jmsg__decode("", frames, n, &msg, err, sizeof(err)), -1);
	n = recorded_frames(frames, "");
	frames[3] = (struct jmsg_frame){"{\"msg_id\":\"x\"}", 14};
	assert_int_equal(jmsg__decode("", frames, n, &msg, err, sizeof(err)), -1);
	/* Truncated JSON. */
	n = recorded_frames(frames, "");
	frames[3] = (struct jmsg_frame){recorded[0], 20};
	assert_int_equal(jmsg__decode("", frames, n, &msg, err, sizeof(err)), -1);
}

static void test_encode_decode_roundtrip(void **state)
{
	json_t *content = json_pack("{s:s, s:b}", "code", "x = 6*7", "silent", 0);
	struct jmsg_encoded encoded;
	struct jmsg_frame frames[6];
	struct jmsg msg;
	char err[128];

	assert_int_equal(
	    jmsg__encode("k3y", "session-1", "msg-1", "execute_request", content, &encoded), 0);
	assert_int_equal(strlen(encoded.signature), JMSG_SIG_HEX_LEN);
	frames[0] = (struct jmsg_frame){JMSG_DELIMITER, strlen(JMSG_DELIMITER)};
	frames[1] = (struct jmsg_frame){encoded.signature, strlen(encoded.signature)};
	for (int i = 0; i < 4; i++)
		frames[2 + i] = (struct jmsg_frame){encoded.parts[i], strlen(encoded.parts[i])};
	assert_int_equal(jmsg__decode("k3y", frames, 6, &msg, err, sizeof(err)), 0);
	assert_string_equal(msg.msg_type, "execute_request");
	assert_string_equal(json_string_value(json_object_get(msg.header, "msg_id")), "msg-1");
	assert_string_equal(json_string_value(json_object_get(msg.header, "version")), "5.3");
	assert_string_equal(json_string_value(json_object_get(msg.content, "code")), "x = 6*7");
	jmsg__clear(&msg);
	/* Another key does not verify. */
	assert_int_equal(jmsg__decode("other", frames, 6, &msg, err, sizeof(err)), -1);
	jmsg__encoded_clear(&encoded);
	json_decref(content);
}

static json_t *parse(const char *text)
{
	json_t *v = json_loads(text, 0, NULL);

	assert_non_null(v);
	return v;
}

static void test_outputs_stream_and_status(void **state)
{
	json_t *content = parse("{\"name\":\"stdout\",\"text\":\"hi\\n\"}");
	char *line = outputs__serialize(outputs__from_iopub("stream", content));

	assert_string_equal(line, "{\"type\":\"stdout\",\"text\":\"hi\\n\"}\n");
	free(line);
	json_decref(content);
	content = parse("{\"name\":\"stdin\",\"text\":\"x\"}");
	assert_null(outputs__from_iopub("stream", content));
	json_decref(content);
	content = parse("{\"execution_state\":\"idle\"}");
	assert_null(outputs__from_iopub("status", content));
	assert_null(outputs__from_iopub("execute_input", content));
	json_decref(content);
	assert_null(outputs__from_iopub("stream", NULL));
}

static void test_outputs_results(void **state)
{
	json_t *content =
	    parse("{\"data\":{\"text/plain\":\"42\",\"text/html\":\"<b>42</b>\","
		  "\"image/png\":\"iVBORw0KGgo=\",\"application/json\":{\"a\":1},"
		  "\"application/vnd.custom\":\"x\",\"type\":\"evil\"},\"execution_count\":3}");
	json_t *line = outputs__from_iopub("execute_result", content);

	assert_non_null(line);
	assert_string_equal(json_string_value(json_object_get(line, "type")), "result");
	assert_string_equal(json_string_value(json_object_get(line, "text")), "42");
	assert_string_equal(json_string_value(json_object_get(line, "html")), "<b>42</b>");
	assert_string_equal(json_string_value(json_object_get(line, "png")), "iVBORw0KGgo=");
	assert_int_equal(json_integer_value(json_object_get(json_object_get(line, "json"), "a")),
			 1);
	assert_string_equal(json_string_value(json_object_get(line, "application/vnd.custom")),
			    "x");
	assert_true(json_is_true(json_object_get(line, "is_main_result")));
	json_decref(line);
	line = outputs__from_iopub("display_data", content);
	assert_true(json_is_false(json_object_get(line, "is_main_result")));
	assert_string_equal(json_string_value(json_object_get(line, "type")), "result");
	json_decref(line);
	json_decref(content);
}

/* A matplotlib figure as ipykernel sends it with the start-up file's
 * formatter: the chart object lands under `chart` (Result.chart). */
static void test_outputs_chart(void **state)
{
	json_t *content =
	    parse("{\"data\":{\"text/plain\":\"<Figure size 640x480 with 1 Axes>\","
		  "\"image/png\":\"iVBORw0KGgo=\",\"application/vnd.warren.chart+json\":"
		  "{\"type\":\"line\",\"title\":\"T\",\"elements\":[{\"label\":\"v\","
		  "\"points\":[[1,4],[2,1]]}]}},\"metadata\":{}}");
	json_t *line = outputs__from_iopub("display_data", content), *chart;

	assert_non_null(line);
	chart = json_object_get(line, "chart");
	assert_true(json_is_object(chart));
	assert_string_equal(json_string_value(json_object_get(chart, "type")), "line");
	assert_string_equal(json_string_value(json_object_get(chart, "title")), "T");
	assert_int_equal(json_array_size(json_object_get(chart, "elements")), 1);
	assert_null(json_object_get(line, "application/vnd.warren.chart+json"));
	assert_string_equal(json_string_value(json_object_get(line, "png")), "iVBORw0KGgo=");
	json_decref(line);
	json_decref(content);
}

static void test_outputs_error_and_framing(void **state)
{
	json_t *content = parse("{\"ename\":\"ZeroDivisionError\",\"evalue\":\"division by zero\","
				"\"traceback\":[\"frame 1\",\"frame 2\",7]}");
	json_t *line = outputs__from_iopub("error", content);
	char *text;

	assert_string_equal(json_string_value(json_object_get(line, "name")), "ZeroDivisionError");
	assert_string_equal(json_string_value(json_object_get(line, "value")), "division by zero");
	assert_string_equal(json_string_value(json_object_get(line, "traceback")),
			    "frame 1\nframe 2");
	json_decref(line);
	json_decref(content);
	line = outputs__error(NULL, NULL, NULL);
	assert_string_equal(json_string_value(json_object_get(line, "name")), "Error");
	assert_string_equal(json_string_value(json_object_get(line, "traceback")), "");
	json_decref(line);
	text = outputs__serialize(outputs__execution_count(7));
	assert_string_equal(text, "{\"type\":\"number_of_executions\",\"execution_count\":7}\n");
	free(text);
	text = outputs__serialize(outputs__end());
	assert_string_equal(text, "{\"type\":\"end_of_execution\"}\n");
	free(text);
	/* A newline inside a value never splits the NDJSON line. */
	content = parse("{\"name\":\"stderr\",\"text\":\"a\\nb\\n\"}");
	text = outputs__serialize(outputs__from_iopub("stream", content));
	assert_non_null(text);
	assert_ptr_equal(strchr(text, '\n'), text + strlen(text) - 1);
	free(text);
	json_decref(content);
	assert_null(outputs__serialize(NULL));
}

static int execute_status(const char *body)
{
	struct execute_request r;
	char err[128];
	int status = requests__execute(body, strlen(body), &r, err, sizeof(err));

	if (status == 0)
		requests__execute_clear(&r);
	return status;
}

static void test_requests_execute(void **state)
{
	struct execute_request r;
	struct context_request c;
	char err[128];
	const char *ok = "{\"code\":\"x\",\"context_id\":null,\"language\":\"python\",\"env_vars\":"
			 "{\"A\":\"1\"}}";

	assert_int_equal(requests__execute(ok, strlen(ok), &r, err, sizeof(err)), 0);
	assert_string_equal(r.code, "x");
	assert_null(r.context_id);
	assert_string_equal(r.language, "python");
	assert_string_equal(json_string_value(json_object_get(r.env_vars, "A")), "1");
	requests__execute_clear(&r);
	assert_int_equal(execute_status("{\"code\":\"x\",\"env_vars\":{}}"), 0);
	assert_int_equal(execute_status(""), 400); /* no code */
	assert_int_equal(execute_status("{\"code\":1}"), 400);
	assert_int_equal(execute_status("[\"code\"]"), 400);
	assert_int_equal(execute_status("{\"code\":\"x\""), 400);		  /* truncated */
	assert_int_equal(execute_status("{\"code\":\"x\",\"code\":\"y\"}"), 400); /* duplicate */
	assert_int_equal(execute_status("{\"code\":\"x\",\"language\":\"r\"}"), 400);
	assert_int_equal(
	    execute_status("{\"code\":\"x\",\"language\":\"python\",\"context_id\":\"c\"}"), 400);
	assert_int_equal(execute_status("{\"code\":\"x\",\"env_vars\":{\"A=B\":\"1\"}}"), 400);
	assert_int_equal(execute_status("{\"code\":\"x\",\"env_vars\":{\"A\":1}}"), 400);
	assert_int_equal(execute_status("{\"code\":\"x\",\"env_vars\":[]}"), 400);
	assert_int_equal(execute_status("{\"code\":\"a\\u0000b\"}"), 400); /* embedded NUL */
	assert_int_equal(requests__context("", 0, &c, err, sizeof(err)), 0);
	assert_null(c.language);
	requests__context_clear(&c);
	assert_int_equal(requests__context("{\"cwd\":5}", 9, &c, err, sizeof(err)), 400);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_sign_matches_python_hmac),
	    cmocka_unit_test(test_decode_recorded),
	    cmocka_unit_test(test_decode_rejects_bad_input),
	    cmocka_unit_test(test_encode_decode_roundtrip),
	    cmocka_unit_test(test_outputs_stream_and_status),
	    cmocka_unit_test(test_outputs_results),
	    cmocka_unit_test(test_outputs_chart),
	    cmocka_unit_test(test_outputs_error_and_framing),
	    cmocka_unit_test(test_requests_execute),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
