/* `warren kafka create-topic|delete-topic NAME [PARTITIONS]`: topic admin
 * for operators and tests, through lib/kafka (the kafka_* settings). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "warren/kafka.h"

static int cli_kafka__run(int argc, char **argv)
{
	struct kafka_settings kafka;
	char err[256] = "";
	int rc;

	kafka_settings__from_config(&kafka);

	if (argc >= 3 && !strcmp(argv[1], "create-topic")) {
		int partitions = argc >= 4 ? atoi(argv[3]) : 12;
		rc = kafka__create_topic(&kafka, argv[2], partitions > 0 ? partitions : 12, 0,
					 15000, err, sizeof(err));
	} else if (argc >= 3 && !strcmp(argv[1], "delete-topic")) {
		rc = kafka__delete_topic(&kafka, argv[2], 15000, err, sizeof(err));
	} else {
		fprintf(stderr, "usage: warren kafka create-topic NAME [PARTITIONS]\n"
				"       warren kafka delete-topic NAME\n");
		return 2;
	}
	if (rc) {
		fprintf(stderr, "warren kafka: %s\n", err[0] ? err : "failed");
		return 1;
	}
	return 0;
}

CLI_COMMAND(kafka, "kafka", "create or delete a Kafka topic", cli_kafka__run)
