/*
 * mock_cluster - a Kafka cluster for the tests, librdkafka's mock cluster
 * (rd_kafka_mock_cluster_new), which real clients (the extension, kcat)
 * reach over loopback.  No broker package exists on Debian 12; this
 * stands in for one.
 *
 *   mock_cluster BROKERS TOPIC:PARTITIONS...
 *
 * prints the bootstrap servers on the first line of stdout, then reads
 * commands, one per line, from stdin, answering "ok" or "error ..." on
 * stdout for each:
 *
 *   topic NAME PARTITIONS      create a topic
 *   down BROKER | up BROKER    take a broker (-1: all) down or up
 *   leader TOPIC PARTITION BROKER   move a partition's leader
 *   quit                       exit
 *
 * and exits at "quit" or at the end of its input, so that it cannot
 * outlive the test.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

static int
create_topic(rd_kafka_mock_cluster_t *mc, const char *spec)
{
	char		name[256];
	int			partitions;
	rd_kafka_resp_err_t err;

	if (sscanf(spec, "%255[^:]:%d", name, &partitions) != 2 || partitions < 1)
	{
		fprintf(stderr, "mock_cluster: bad topic \"%s\" (want NAME:PARTITIONS)\n", spec);
		return -1;
	}
	err = rd_kafka_mock_topic_create(mc, name, partitions, 1);
	if (err)
	{
		fprintf(stderr, "mock_cluster: topic %s: %s\n", name, rd_kafka_err2str(err));
		return -1;
	}
	return 0;
}

static void
answer(rd_kafka_resp_err_t err)
{
	if (err)
		printf("error %s\n", rd_kafka_err2str(err));
	else
		printf("ok\n");
	fflush(stdout);
}

int
main(int argc, char **argv)
{
	char		errstr[512];
	rd_kafka_conf_t *conf;
	rd_kafka_t *rk;
	rd_kafka_mock_cluster_t *mc;
	char		line[1024];
	int			brokers;
	int			i;

	if (argc < 2 || (brokers = atoi(argv[1])) < 1)
	{
		fprintf(stderr, "usage: mock_cluster BROKERS [TOPIC:PARTITIONS]...\n");
		return 2;
	}
	conf = rd_kafka_conf_new();
	/* no bootstrap.servers: this client only hosts the cluster */
	(void) rd_kafka_conf_set(conf, "log_level", "4", errstr, sizeof(errstr));
	rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
	if (rk == NULL)
	{
		fprintf(stderr, "mock_cluster: %s\n", errstr);
		return 1;
	}
	mc = rd_kafka_mock_cluster_new(rk, brokers);
	if (mc == NULL)
	{
		fprintf(stderr, "mock_cluster: cannot create the cluster\n");
		return 1;
	}
	for (i = 2; i < argc; i++)
		if (create_topic(mc, argv[i]) != 0)
			return 1;
	printf("%s\n", rd_kafka_mock_cluster_bootstraps(mc));
	fflush(stdout);

	while (fgets(line, sizeof(line), stdin) != NULL)
	{
		char		a[256];
		int			x;
		int			y;
		int			z;

		if (strncmp(line, "quit", 4) == 0)
			break;
		if (sscanf(line, "topic %255s %d", a, &x) == 2)
			answer(rd_kafka_mock_topic_create(mc, a, x, 1));
		else if (sscanf(line, "down %d", &x) == 1)
			answer(rd_kafka_mock_broker_set_down(mc, x));
		else if (sscanf(line, "up %d", &x) == 1)
			answer(rd_kafka_mock_broker_set_up(mc, x));
		else if (sscanf(line, "leader %255s %d %d", a, &y, &z) == 3)
			answer(rd_kafka_mock_partition_set_leader(mc, a, y, z));
		else
		{
			printf("error unknown command\n");
			fflush(stdout);
		}
	}
	rd_kafka_mock_cluster_destroy(mc);
	rd_kafka_destroy(rk);
	return 0;
}
