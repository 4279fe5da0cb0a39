/* Unit tests of the configuration of record (lib/config.c,
 * lib/config_settings.c): the file format, precedence (environment, file,
 * default), secrets from files, `config check`'s findings, and that the
 * settings table, the tree's config__get calls and docs/configuration.md
 * agree. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <regex.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "warren/config.h"
#include "warren/storage_settings.h"

static char test_dir[] = "/tmp/warren-test-config-XXXXXX";

/* Writes text to test_dir/name with mode; returns the path (static). */
static const char *write_file(const char *name, const char *text, mode_t mode)
{
	static char path[4][512];
	static int next;
	char *out = path[next++ % 4];
	FILE *f;

	snprintf(out, 512, "%s/%s", test_dir, name);
	f = fopen(out, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	assert_int_equal(chmod(out, mode), 0);
	return out;
}

/* config__check_file's report and error count for text. */
static int check_text(const char *text, char *report, size_t report_len)
{
	const char *path = write_file("check.conf", text, 0600);
	FILE *out = fmemopen(report, report_len, "w");
	int errors;

	assert_non_null(out);
	memset(report, 0, report_len);
	errors = config__check_file(path, out);
	fclose(out);
	return errors;
}

static void test_precedence(void **state)
{
	char err[512];
	const char *path =
	    write_file("p.conf",
		       "# a comment\n\n  api_threads = 5  \n"
		       "domain=file.example\nkafka_topic_prefix = a=b # not a comment\n",
		       0600);

	(void)state;
	unsetenv("WARREN_API_THREADS");
	unsetenv("WARREN_DOMAIN");
	assert_int_equal(config__load(path, err, sizeof(err)), 0);
	assert_int_equal(config__get_int("api_threads", 8), 5);
	assert_string_equal(config__get("domain", "x"), "file.example");
	assert_string_equal(config__get("kafka_topic_prefix", ""), "a=b # not a comment");
	assert_int_equal(config__get_int("proxy_threads", 2), 2); /* default */
	setenv("WARREN_API_THREADS", "7", 1);
	assert_int_equal(config__get_int("api_threads", 8), 7); /* environment wins */
	setenv("WARREN_API_THREADS", "", 1);			/* empty: unset */
	assert_int_equal(config__get_int("api_threads", 8), 5);
	unsetenv("WARREN_API_THREADS");
}

static void test_load_errors(void **state)
{
	char err[512], missing[600];

	(void)state;
	snprintf(missing, sizeof(missing), "%s/missing.conf", test_dir);
	assert_int_equal(config__load(missing, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "missing.conf"));
	assert_int_equal(
	    config__load(write_file("bad.conf", "api_threads = lots\n", 0600), err, sizeof(err)),
	    -EINVAL);
	assert_non_null(strstr(err, ":1: error: api_threads"));
	/* A bad environment value is refused as well. */
	setenv("WARREN_SLOT_CIDR", "10.0.0.0/99", 1);
	assert_int_equal(config__load(write_file("ok.conf", "", 0600), err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "WARREN_SLOT_CIDR"));
	unsetenv("WARREN_SLOT_CIDR");
	/* WARREN_CONFIG set but empty: no file at all. */
	setenv("WARREN_CONFIG", "", 1);
	assert_int_equal(config__load(NULL, err, sizeof(err)), 0);
	setenv("WARREN_CONFIG", missing, 1);
	assert_int_equal(config__load(NULL, err, sizeof(err)), -ENOENT);
	unsetenv("WARREN_CONFIG");
	/* Unknown settings are read (by name) but do not stop a service. */
	assert_int_equal(
	    config__load(write_file("u.conf", "no_such_setting = 1\n", 0600), err, sizeof(err)), 0);
	assert_string_equal(config__get("no_such_setting", "x"), "1");
}

static void test_secret_files(void **state)
{
	char err[512], text[1024];
	const char *seed = write_file("seed", "0123456789abcdefXYZ\n", 0600);

	(void)state;
	snprintf(text, sizeof(text), "token_seed_file = %s\n", seed);
	assert_int_equal(config__load(write_file("s.conf", text, 0600), err, sizeof(err)), 0);
	assert_string_equal(config__get("token_seed", NULL), "0123456789abcdefXYZ");
	/* WARREN_<NAME>_FILE beats the file; WARREN_<NAME> beats both. */
	setenv("WARREN_TOKEN_SEED_FILE", write_file("seed2", "from-env-file-0123456789", 0600), 1);
	assert_int_equal(config__load(write_file("s.conf", text, 0600), err, sizeof(err)), 0);
	assert_string_equal(config__get("token_seed", NULL), "from-env-file-0123456789");
	setenv("WARREN_TOKEN_SEED", "from-the-environment-0123", 1);
	assert_string_equal(config__get("token_seed", NULL), "from-the-environment-0123");
	unsetenv("WARREN_TOKEN_SEED");
	unsetenv("WARREN_TOKEN_SEED_FILE");
	/* Relative: inside $CREDENTIALS_DIRECTORY (systemd LoadCredential=). */
	setenv("CREDENTIALS_DIRECTORY", test_dir, 1);
	assert_int_equal(
	    config__load(write_file("s.conf", "token_seed_file = seed\n", 0600), err, sizeof(err)),
	    0);
	assert_string_equal(config__get("token_seed", NULL), "0123456789abcdefXYZ");
	unsetenv("CREDENTIALS_DIRECTORY");
	assert_int_equal(
	    config__load(write_file("s.conf", "token_seed_file = seed\n", 0600), err, sizeof(err)),
	    -EINVAL);
	assert_non_null(strstr(err, "relative"));
	/* Two lines, or too short for the setting: refused. */
	write_file("seed", "0123456789abcdef\nsecond line\n", 0600);
	assert_int_equal(config__load(write_file("s.conf", text, 0600), err, sizeof(err)), -EINVAL);
	write_file("seed", "short\n", 0600);
	assert_int_equal(config__load(write_file("s.conf", text, 0600), err, sizeof(err)), -EINVAL);
	assert_null(strstr(err, "short")); /* a secret is never echoed */
	assert_int_equal(config__load(write_file("e.conf", "", 0600), err, sizeof(err)), 0);
}

static void test_check_good(void **state)
{
	char report[4096];

	(void)state;
	assert_int_equal(check_text("# production\n"
				    "api_listen = 0.0.0.0:3000\n"
				    "kafka_brokers = k1:9092,k2:9092,k3:9092\n"
				    "slot_cidr = 10.200.0.0/16\n"
				    "net_never_allow = 10.0.0.0/8, 192.168.0.0/16\n"
				    "dev_mode = off\n"
				    "log_level = warn\n"
				    "egress_resolver = 192.0.2.53\n"
				    "api_url = https://api.example.org\n"
				    "proxy_max_head_bytes = 65536\n",
				    report, sizeof(report)),
			 0);
	assert_string_equal(report, "");
}

/* The Kafka transport security settings: a good set passes (the password
 * from a file), bad choices are named. */
static void test_check_kafka_security(void **state)
{
	char report[4096], text[1024];

	(void)state;
	snprintf(text, sizeof(text),
		 "kafka_security_protocol = sasl_ssl\n"
		 "kafka_sasl_mechanism = SCRAM-SHA-512\n"
		 "kafka_sasl_username = worker-h1\n"
		 "kafka_sasl_password_file = %s\n"
		 "kafka_ssl_ca_file = /etc/warren/kafka-ca.pem\n",
		 write_file("kafka_password", "s3cret\n", 0600));
	assert_int_equal(check_text(text, report, sizeof(report)), 0);
	assert_string_equal(report, "");
	assert_int_equal(check_text("kafka_security_protocol = ssl\nkafka_sasl_mechanism = PLAIN\n",
				    report, sizeof(report)),
			 2);
	assert_non_null(strstr(report, "kafka_security_protocol: 'ssl' is not one of"));
	assert_non_null(strstr(report, "kafka_sasl_mechanism: 'PLAIN' is not one of"));
}

static void test_check_unknown_key(void **state)
{
	char report[4096];

	(void)state;
	assert_int_equal(
	    check_text("api_thread = 4\nzzzzzzzzzzzzzzzz = 1\n", report, sizeof(report)), 2);
	assert_non_null(strstr(report, ":1: error: unknown setting 'api_thread' (did you mean "
				       "'api_threads'?)"));
	assert_non_null(strstr(report, ":2: error: unknown setting 'zzzzzzzzzzzzzzzz'\n"));
	assert_string_equal(config__suggest("pg_ulr"), "pg_url");
	assert_null(config__suggest("completely_different_thing"));
}

static void test_check_malformed(void **state)
{
	char report[8192], long_line[5000];

	(void)state;
	assert_int_equal(check_text("just words\n"
				    "Bad-Name = 1\n"
				    "= 3\n"
				    "pg_pool_size = 4x\n"
				    "proxy_max_head_bytes = 100\n"
				    "vm_jail = maybe\n"
				    "api_listen = nocolon\n"
				    "egress_resolver = 999.1.1.1\n"
				    "slot_cidr = 10.0.0.0/40\n"
				    "runtime = docker\n"
				    "slot_link_prefix = muchtoolongprefix\n"
				    "api_threads = 1\napi_threads = 2\n"
				    "domain_file = /etc/hostname\n"
				    "pg_url_file = /nonexistent/secret\n",
				    report, sizeof(report)),
			 14);
	assert_non_null(strstr(report, ":1: error: expected 'name = value'"));
	assert_non_null(strstr(report, ":2: error: bad setting name 'Bad-Name'"));
	assert_non_null(strstr(report, ":4: error: pg_pool_size: '4x' is not a whole number"));
	assert_non_null(
	    strstr(report, ":5: error: proxy_max_head_bytes: 100 is outside 1024..65536"));
	assert_non_null(strstr(report, ":10: error: runtime: 'docker' is not one of vm|jail"));
	assert_non_null(strstr(report, ":13: error: api_threads is set twice"));
	assert_non_null(strstr(report, ":14: error: domain_file is not a secret"));
	assert_non_null(strstr(report, ":15: error: pg_url_file: secret file /nonexistent/secret"));
	memset(long_line, 'a', sizeof(long_line) - 2);
	long_line[sizeof(long_line) - 2] = '\n';
	long_line[sizeof(long_line) - 1] = '\0';
	assert_int_equal(check_text(long_line, report, sizeof(report)), 1);
	assert_non_null(strstr(report, "longer than"));
	assert_true(config__check_file("/nonexistent/warren.conf", stderr) == -ENOENT);
}

static void test_check_warnings(void **state)
{
	char report[4096];
	const char *path = write_file("w.conf", "pg_url = postgresql://u:pw@db/w\n", 0644);
	FILE *out = fmemopen(report, sizeof(report), "w");

	(void)state;
	memset(report, 0, sizeof(report));
	assert_int_equal(config__check_file(path, out), 0); /* warnings are not errors */
	fclose(out);
	assert_non_null(strstr(report, "warning: secret pg_url is inline in a file every user"));
}

static void test_table_shape(void **state)
{
	size_t count;
	const struct config_setting *table = config__settings(&count);

	(void)state;
	assert_true(count >= 80);
	for (size_t i = 0; i < count; i++) {
		char err[256];

		if (i)
			assert_true(strcmp(table[i - 1].name, table[i].name) <
				    0); /* sorted, unique */
		assert_non_null(table[i].doc);
		assert_true(strlen(table[i].doc) > 5);
		assert_non_null(table[i].unit);
		assert_non_null(table[i].readers);
		if (table[i].type == CONFIG_INT) {
			char text[32];

			assert_true(table[i].min <= table[i].max);
			snprintf(text, sizeof(text), "%lld", (long long)table[i].max + 1);
			assert_int_equal(config__validate(&table[i], text, err, sizeof(err)),
					 -EINVAL);
		}
		assert_ptr_equal(config__setting(table[i].name), &table[i]);
	}
	assert_null(config__setting("nope"));
}

/* The tree scan: every config__get*("name") outside tests/ and build*. */
static struct {
	regex_t call;
	char names[256][64];
	size_t count;
	char unknown[2048];
	char non_literal[2048];
} scan;

static int scan_file(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	const char *base = path + ftw->base;
	size_t len = strlen(base);
	char *text, *at;
	regmatch_t m[4];
	FILE *f;

	if (type == FTW_D && (!strncmp(base, "build", 5) || !strcmp(base, "tests") ||
			      !strcmp(base, ".git") || !strcmp(base, "node_modules")))
		return FTW_SKIP_SUBTREE;
	if (type != FTW_F || len < 3 ||
	    (strcmp(base + len - 2, ".c") && strcmp(base + len - 2, ".h")))
		return FTW_CONTINUE;
	if (!strcmp(base, "config.c") || !strcmp(base, "config.h"))
		return FTW_CONTINUE; /* the implementation itself */
	f = fopen(path, "r");
	text = f ? calloc(1, (size_t)st->st_size + 1) : NULL;
	if (!text || fread(text, 1, (size_t)st->st_size, f) != (size_t)st->st_size) {
		fail_msg("cannot read %s", path);
	}
	fclose(f);
	for (at = text; !regexec(&scan.call, at, 4, m, 0); at += m[0].rm_eo) {
		char name[64] = "";

		if (m[2].rm_so < 0) {
			/* config__get(variable): the table could not be checked. */
			if (at[m[0].rm_eo] != ')')
				snprintf(scan.non_literal + strlen(scan.non_literal),
					 sizeof(scan.non_literal) - strlen(scan.non_literal), "%s ",
					 path);
			continue;
		}
		snprintf(name, sizeof(name), "%.*s", (int)(m[3].rm_eo - m[3].rm_so),
			 at + m[3].rm_so);
		if (!config__setting(name))
			snprintf(scan.unknown + strlen(scan.unknown),
				 sizeof(scan.unknown) - strlen(scan.unknown), "%s (%s) ", name,
				 path);
		if (scan.count < 256)
			snprintf(scan.names[scan.count++], 64, "%s", name);
	}
	free(text);
	return FTW_CONTINUE;
}

static void test_every_call_in_table(void **state)
{
	const char *source = getenv("WARREN_SOURCE_DIR");
	const struct config_setting *table;
	size_t count;

	(void)state;
	if (!source) {
		skip(); /* ctest sets it; a bare run has no tree to scan */
		return;
	}
	assert_int_equal(regcomp(&scan.call,
				 "config__get(_int|_bool|_soft)?\\([[:space:]]*(\"([a-z0-9_]+)\")?",
				 REG_EXTENDED),
			 0);
	assert_int_equal(nftw(source, scan_file, 32, FTW_PHYS | FTW_ACTIONRETVAL), 0);
	regfree(&scan.call);
	if (scan.unknown[0])
		fail_msg("config__get names missing from lib/config_settings.c: %s", scan.unknown);
	if (scan.non_literal[0])
		fail_msg("config__get with a non-literal name in: %s", scan.non_literal);
	assert_true(scan.count >= 80);
	table = config__settings(&count);
	for (size_t i = 0; i < count; i++) {
		bool read = false;

		for (size_t j = 0; j < scan.count && !read; j++)
			read = !strcmp(scan.names[j], table[i].name);
		if (!read)
			fail_msg("setting %s is in the table but no config__get reads it",
				 table[i].name);
	}
}

#define DOC_BEGIN "<!-- settings: generated by `warren config doc`, checked by test_config -->\n"
#define DOC_END	  "<!-- end of settings -->\n"

static void test_doc_matches_table(void **state)
{
	const char *source = getenv("WARREN_SOURCE_DIR");
	char path[4096], *doc = NULL, *generated = NULL, *begin, *end;
	size_t doc_len = 0, generated_len = 0;
	FILE *f, *out;

	(void)state;
	if (!source) {
		skip();
		return;
	}
	snprintf(path, sizeof(path), "%s/docs/configuration.md", source);
	f = fopen(path, "r");
	assert_non_null(f);
	out = open_memstream(&doc, &doc_len);
	for (int c; (c = fgetc(f)) != EOF;)
		fputc(c, out);
	fclose(out);
	fclose(f);
	out = open_memstream(&generated, &generated_len);
	config__write_markdown(out);
	fclose(out);
	begin = strstr(doc, DOC_BEGIN);
	end = begin ? strstr(begin, DOC_END) : NULL;
	if (!begin || !end)
		fail_msg("docs/configuration.md lacks the markers of the settings section");
	begin += strlen(DOC_BEGIN);
	if ((size_t)(end - begin) != generated_len || memcmp(begin, generated, generated_len))
		fail_msg("docs/configuration.md's settings differ from the table: replace the "
			 "section with the output of `warren config doc`");
	free(doc);
	free(generated);
}

/* The PostgreSQL client settings a binary hands to storage: read once from
 * the file (the password from its own file), defaults where unset; bad
 * values of the TLS settings are refused by `config check`. */
static void test_storage_settings(void **state)
{
	const char *secret = write_file("pg_password", "s3cret\n", 0600);
	char text[1024], err[512], report[2048];
	static const char *const env[] = {
	    "WARREN_PG_URL",	   "WARREN_PG_URL_FILE",
	    "WARREN_PG_PASSWORD",  "WARREN_PG_PASSWORD_FILE",
	    "WARREN_PG_SSL_MODE",  "WARREN_PG_SSL_ROOT_CERT",
	    "WARREN_PG_POOL_SIZE", "WARREN_PG_CHECKOUT_TIMEOUT_MS",
	};
	struct storage_settings s;

	(void)state;
	/* the dev stack's environment would win over the file */
	for (size_t i = 0; i < sizeof(env) / sizeof(env[0]); i++)
		unsetenv(env[i]);
	snprintf(text, sizeof(text),
		 "pg_url = postgresql://warren_api@db.example:5432/warren\n"
		 "pg_password_file = %s\npg_ssl_mode = verify-full\n"
		 "pg_ssl_root_cert = /etc/warren/tls/postgres-ca.crt\npg_pool_size = 6\n",
		 secret);
	assert_int_equal(config__load(write_file("pg.conf", text, 0600), err, sizeof(err)), 0);
	storage_settings__from_config(&s, NULL, 3);
	assert_string_equal(s.url, "postgresql://warren_api@db.example:5432/warren");
	assert_string_equal(s.password, "s3cret");
	assert_string_equal(s.ssl_mode, "verify-full");
	assert_string_equal(s.ssl_root_cert, "/etc/warren/tls/postgres-ca.crt");
	assert_int_equal(s.pool_size, 6);
	assert_int_equal(s.checkout_timeout_ms, 10000);

	assert_int_equal(config__load(write_file("empty.conf", "", 0600), err, sizeof(err)), 0);
	storage_settings__from_config(&s, "postgresql://x@h/d", 3);
	assert_string_equal(s.url, "postgresql://x@h/d");
	assert_null(s.password);
	assert_null(s.ssl_mode);
	assert_null(s.ssl_root_cert);
	assert_int_equal(s.pool_size, 3);

	assert_int_equal(check_text("pg_ssl_mode = sometimes\n", report, sizeof(report)), 1);
	assert_non_null(strstr(report, "pg_ssl_mode"));
	assert_int_equal(check_text("pg_ssl_root_cert =\n", report, sizeof(report)), 1);
	assert_int_equal(check_text("api_tls_key = /k.pem\n", report, sizeof(report)), 1);
	assert_non_null(strstr(report, "unknown setting 'api_tls_key'"));
	assert_int_equal(check_text("pg_ssl_mode = verify-full\n"
				    "api_tls_cert_file = /etc/warren/tls/api.crt\n"
				    "api_tls_key_file = /etc/warren/tls/api.key\n",
				    report, sizeof(report)),
			 0);
}

static int teardown_dir(void **state)
{
	char command[128];

	(void)state;
	snprintf(command, sizeof(command), "rm -rf '%s'", test_dir);
	return system(command) == 0 ? 0 : -1;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_precedence),		 cmocka_unit_test(test_load_errors),
	    cmocka_unit_test(test_secret_files),	 cmocka_unit_test(test_check_good),
	    cmocka_unit_test(test_check_kafka_security), cmocka_unit_test(test_check_unknown_key),
	    cmocka_unit_test(test_check_malformed),	 cmocka_unit_test(test_check_warnings),
	    cmocka_unit_test(test_table_shape),		 cmocka_unit_test(test_every_call_in_table),
	    cmocka_unit_test(test_doc_matches_table),	 cmocka_unit_test(test_storage_settings),
	};

	if (!mkdtemp(test_dir))
		return 1;
	return cmocka_run_group_tests(tests, NULL, teardown_dir);
}
