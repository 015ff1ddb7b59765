# Many concurrent producers (pgbench clients, each message in its own
# transaction, committing in whatever order they finish) while the ingest
# worker consumes: what was consumed is exactly what was produced, by count
# and by identity, although producers commit out of offset order.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

my $node = PostgreSQL::Test::Cluster->new('producers');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'propensity'
propensity.database = 'postgres'
propensity.batch_size = 500
propensity.poll_interval = 10
max_connections = 40
track_commit_timestamp = on
});
$node->start;

$node->safe_psql('postgres', q{
CREATE EXTENSION propensity;
SELECT propensity.create_topic('events', 8);
SELECT propensity.subscribe('events');
CREATE TABLE produced (event_id text PRIMARY KEY, produced_by int);
CREATE SEQUENCE ids;
});

# each pgbench transaction records the id it produces and produces it; a
# random sleep inside some transactions holds a low offset uncommitted
# while higher offsets commit and are consumed
my $script = $node->basedir . '/produce.sql';
open(my $fh, '>', $script) or die;
print $fh q{\set key random(1, 200)
\set pause random(0, 9)
BEGIN;
SELECT nextval('ids') AS id \gset
INSERT INTO produced VALUES ('pb-' || :id, :client_id);
SELECT propensity.produce('events', 'u' || :key,
         convert_to(format('{"event_id":"pb-%s","user_id":"u%s","event_type":"IM","event_time":"2026-03-01T00:00:00Z","advertiser_id":1,"campaign_id":%s}', :id, :key, :client_id), 'UTF8'));
SELECT pg_sleep(CASE WHEN :pause = 0 THEN 0.02 ELSE 0 END);
COMMIT;
};
close($fh);

$node->command_ok(
	[ 'pgbench', '-n', '-c', '16', '-j', '4', '-t', '300', '-f', $script, 'postgres' ],
	'16 pgbench producers, 300 messages each');

my $tries = 0;
while ($node->safe_psql('postgres', "SELECT sum(lag) FROM propensity.queue_lag('events')") > 0)
{
	die "the worker did not drain the queue" if ++$tries > 600;
	usleep(100_000);
}

is($node->safe_psql('postgres', q{SELECT count(*) FROM produced}), '4800', 'produced 4800 messages');
is($node->safe_psql('postgres', q{
SELECT count(*) FROM produced p FULL JOIN propensity.events e USING (event_id)
 WHERE p.event_id IS NULL OR e.event_id IS NULL}), '0',
	'consumed events are exactly the produced ones');
is($node->safe_psql('postgres', q{SELECT messages FROM propensity.subscriptions}), '4800',
	'the group consumed 4800 messages, each once');
ok($node->safe_psql('postgres', q{SELECT batches FROM propensity.subscriptions}) > 1,
	'the worker consumed while producers were producing (more than one batch)');
is($node->safe_psql('postgres', q{SELECT sum(impressions) FROM propensity.attribution_totals}), '4800',
	'attribution counted each impression once');
# the property means something only if producers did commit out of offset
# order: find a message whose transaction committed after that of a
# message with a higher offset
ok($node->safe_psql('postgres', q{
SELECT count(*) FROM (
  SELECT msg_offset, pg_xact_commit_timestamp(txid::xid) AS committed,
         min(pg_xact_commit_timestamp(txid::xid)) OVER (ORDER BY msg_offset DESC
             ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS earliest_higher
    FROM propensity.queue_1_0) s WHERE committed > earliest_higher}) > 0,
	'producers committed out of offset order');

# SIGHUP: a smaller batch size takes effect without a restart
my $batches = $node->safe_psql('postgres', q{SELECT batches FROM propensity.subscriptions});
$node->append_conf('postgresql.conf', "propensity.batch_size = 50\n");
$node->reload;
usleep(500_000);
$node->safe_psql('postgres', q{
SELECT propensity.produce_many('events', ARRAY(SELECT 'u' || i FROM generate_series(1, 1000) i),
         ARRAY(SELECT convert_to(format('{"event_id":"h%s","user_id":"u%s","event_type":"PS","event_time":"2026-03-02T00:00:00Z"}', i, i), 'UTF8')
                 FROM generate_series(1, 1000) i))});
$tries = 0;
while ($node->safe_psql('postgres', "SELECT sum(lag) FROM propensity.queue_lag('events')") > 0)
{
	die "the worker did not drain the queue" if ++$tries > 600;
	usleep(100_000);
}
ok($node->safe_psql('postgres', q{SELECT batches FROM propensity.subscriptions}) - $batches >= 20,
	'after a reload, 1000 messages took at least 20 batches of 50');
is($node->safe_psql('postgres', q{SELECT count(*) FROM propensity.events WHERE event_id LIKE 'h%'}), '1000',
	'and all of them were stored');

$node->stop;
done_testing();
