# The ingest worker under SIGKILL: the postmaster is killed several times
# while the worker drains the queue (and producers keep producing between
# restarts); afterwards the stored events are exactly the produced ones,
# every message was counted once by the consumer group, and attribution saw
# each event once (its totals equal the audit over the changelog).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/../perl";
use PropensityTest qw(restart_after_kill);
use Time::HiRes qw(usleep);

my $node = PostgreSQL::Test::Cluster->new('crash');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'propensity'
propensity.database = 'postgres'
propensity.restart_interval = 1
propensity.batch_size = 2000
propensity.poll_interval = 50
});
$node->start;

$node->safe_psql('postgres', q{
CREATE EXTENSION propensity;
SELECT propensity.create_topic('events', 4);
SELECT propensity.subscribe('events');
CREATE TABLE produced (event_id text PRIMARY KEY);
CREATE SEQUENCE round_seq;
});

# One round of production: n generated events (a distinct seed per round,
# ids prefixed by the round), recorded in `produced` in the same
# transaction that produces them.
sub produce_round
{
	my ($round, $n) = @_;
	$node->safe_psql('postgres', qq{
BEGIN;
CREATE TEMP TABLE gen ON COMMIT DROP AS
  SELECT ROW(g.event_time, g.user_id, g.event_type, 'r$round-' || g.event_id, g.advertiser_id,
             g.campaign_id, g.auction_id, g.pixel_id, g.publisher, g.creative, g.placement,
             g.product, g.quantity, g.revenue)::propensity.events AS e, g.user_id
    FROM propensity.generate_events($round, $n, 2000, '2026-10-01', '10 days', 0.1, '1 day') g;
INSERT INTO produced SELECT (e).event_id FROM gen;
SELECT propensity.produce_many('events', ARRAY(SELECT user_id FROM gen),
                               propensity.encode_events(ARRAY(SELECT e FROM gen)));
COMMIT;
});
}


sub lag
{
	return $node->safe_psql('postgres',
		"SELECT sum(lag) FROM propensity.queue_lag('events')");
}

my $kills_during_ingest = 0;
for my $k (1 .. 5)
{
	# produce, let the worker get going, then kill everything
	produce_round($k, 30000);
	usleep(100_000 + int(rand(400_000)));
	my $before = lag();
	$kills_during_ingest++ if $before > 0;
	my $pid = $node->{_pid};
	$node->kill9;
	restart_after_kill($node, $pid);
}
ok($kills_during_ingest >= 3, "killed the postmaster during ingest ($kills_during_ingest of 5 kills had lag)");

# drain
my $tries = 0;
while (lag() > 0)
{
	die "the worker did not drain the queue" if ++$tries > 600;
	usleep(200_000);
}

is($node->safe_psql('postgres', q{
SELECT count(*) FROM produced p FULL JOIN propensity.events e USING (event_id)
 WHERE p.event_id IS NULL OR e.event_id IS NULL}), '0',
	'the stored events are exactly the produced events');
is($node->safe_psql('postgres', q{SELECT count(*) FROM produced}), '150000', 'produced 150000 events');
is($node->safe_psql('postgres', q{SELECT messages FROM propensity.subscriptions}), '150000',
	'the consumer group counted each message once');
is($node->safe_psql('postgres', q{SELECT sum(messages) FROM propensity.consumer_offsets}), '150000',
	'the per-partition offsets counted each message once');
is($node->safe_psql('postgres', q{SELECT count(*) FROM propensity.dead_letters}), '0', 'no dead letters');
is($node->safe_psql('postgres', q{
SELECT count(*) FROM (
  (SELECT * FROM propensity.attribution_totals EXCEPT SELECT * FROM propensity.attribution_totals_from_changelog)
  UNION ALL
  (SELECT * FROM propensity.attribution_totals_from_changelog EXCEPT SELECT * FROM propensity.attribution_totals)) d}),
	'0', 'attribution totals equal the changelog audit');
is($node->safe_psql('postgres', q{
SELECT (SELECT coalesce(sum(impressions), 0) FROM propensity.attribution_totals)
     = (SELECT count(*) FROM propensity.events e
         WHERE e.event_type = 'IM' AND e.advertiser_id IS NOT NULL
           AND NOT EXISTS (SELECT 1 FROM propensity.attribution_late l
                            WHERE l.event_id = e.event_id AND l.event_time = e.event_time))}), 't',
	'every in-time impression was counted once');
is($node->safe_psql('postgres', q{
SELECT count(*) FROM propensity.attribution_current c
 WHERE NOT EXISTS (SELECT 1 FROM propensity.events e
                    WHERE e.event_id = c.conversion_event_id AND e.event_type = 'CN')}), '0',
	'every credited conversion is a stored conversion');
is($node->safe_psql('postgres', q{
SELECT count(*) FROM propensity.events e
 WHERE e.event_type = 'CN' AND e.advertiser_id IS NOT NULL
   AND NOT EXISTS (SELECT 1 FROM propensity.attribution_current c WHERE c.conversion_event_id = e.event_id)
   AND NOT EXISTS (SELECT 1 FROM propensity.attribution_late l WHERE l.event_id = e.event_id)}), '0',
	'every stored conversion has a credit or was late');

# the streamed state is the batch state: nothing was applied twice or lost
$node->safe_psql('postgres', q{CREATE TABLE streamed AS SELECT * FROM propensity.attribution_current});
$node->safe_psql('postgres', q{SELECT propensity.attribution_backfill()});
is($node->safe_psql('postgres', q{
SELECT count(*) FROM streamed s FULL JOIN propensity.attribution_current a USING (conversion_event_id, conversion_time)
 WHERE (s.kind, s.campaign_id, s.impression_event_id) IS DISTINCT FROM (a.kind, a.campaign_id, a.impression_event_id)}),
	'0', 'attribution after the crashes equals a backfill over the stored events');

# a worker terminated on its own (not by worker_stop()) comes back; one
# stopped by worker_stop() stays stopped
my $old = $node->safe_psql('postgres', 'SELECT propensity.worker_pid()');
$node->safe_psql('postgres', "SELECT pg_terminate_backend($old)");
$tries = 0;
my $new = '';
until ($new ne '' && $new ne $old)
{
	die "the worker did not come back" if ++$tries > 100;
	usleep(100_000);
	$new = $node->safe_psql('postgres', 'SELECT coalesce(propensity.worker_pid()::text, \'\')');
}
ok($new ne $old, "a terminated worker is restarted (pid $old, then $new)");
is($node->safe_psql('postgres', 'SELECT propensity.worker_stop()'), 't', 'worker_stop() stops it');
usleep(2_500_000);
is($node->safe_psql('postgres', 'SELECT propensity.worker_pid() IS NULL'), 't',
	'and it stays stopped past the restart interval');

$node->stop;
done_testing();
