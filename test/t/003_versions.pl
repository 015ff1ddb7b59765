# New model versions installed while the ingest worker keeps the seed
# model's score history under concurrent producers (docs/computing.md section 4, issue 5
# item 4): each version takes over in the transaction that installs it, so
# afterwards every point is by the last version and the history equals the
# recomputation from the stored events, although batches were written under
# each version in turn.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use Time::HiRes qw(usleep);

my $node = PostgreSQL::Test::Cluster->new('versions');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'propensity'
propensity.database = 'postgres'
propensity.batch_size = 100
propensity.poll_interval = 10
max_connections = 40
});
$node->start;

$node->safe_psql('postgres', q{
CREATE EXTENSION propensity;
SELECT propensity.create_topic('events', 4);
SELECT propensity.subscribe('events', attribute => false);
SELECT propensity.track_history('seed');
CREATE SEQUENCE ids;
});

# 4 producers at 100 messages/s each for 12 s: 40 users, any time in two
# days, so that many events arrive before later ones of their user
my $script = $node->basedir . '/produce.sql';
open(my $fh, '>', $script) or die;
print $fh q{\set key random(1, 40)
\set t random(0, 172800)
\set type random(1, 4)
SELECT propensity.produce('events', 'v' || :key,
         jsonb_build_object('event_id', 'v-' || nextval('ids'), 'user_id', 'v' || :key,
                            'event_type', (ARRAY['IM', 'CL', 'PS', 'CN'])[:type],
                            'event_time', 1772323200000 + :t * 1000::bigint));
};
close($fh);

my ($out, $err) = ('', '');
my $pgbench = IPC::Run::start(
	[ 'pgbench', '-n', '-c', '4', '-j', '2', '-R', '400', '-T', '12', '-f', $script,
	  '-h', $node->host, '-p', $node->port, 'postgres' ],
	'>', \$out, '2>', \$err);

sub batches
{
	return $node->safe_psql('postgres', q{SELECT batches FROM propensity.subscriptions});
}

sub wait_batches
{
	my ($more) = @_;
	my $target = batches() + $more;
	my $tries = 0;
	while (batches() < $target)
	{
		die "the worker stopped consuming" if ++$tries > 300;
		usleep(50_000);
	}
}

sub install
{
	my ($version, $shift) = @_;
	$node->safe_psql('postgres', qq{
INSERT INTO propensity.models (name, version, intercept, terms)
SELECT name, $version, intercept + $shift, terms FROM propensity.models WHERE name = 'seed' AND version = 1});
}

# a version after a few batches, another after a few more, while producing
wait_batches(3);
install(2, -0.5);
wait_batches(3);
install(3, 0.7);
wait_batches(1);

$pgbench->finish;
is($?, 0, 'the producers ran') or diag($err);

my $tries = 0;
while ($node->safe_psql('postgres', "SELECT sum(lag) FROM propensity.queue_lag('events')") > 0)
{
	die "the worker did not drain the queue" if ++$tries > 600;
	usleep(100_000);
}
# (the worker's last commit may follow the lag reaching 0 by a moment)
usleep(500_000);

my $v = $node->safe_psql('postgres', q{
SELECT string_agg(model_id::text, ',' ORDER BY version) FROM propensity.models WHERE name = 'seed'});
my ($v1, $v2, $v3) = split(/,/, $v);

ok($node->safe_psql('postgres', q{SELECT count(*) FROM propensity.events}) > 3000,
	'more than 3000 events stored');
is($node->safe_psql('postgres', q{
SELECT count(*) FROM propensity.score_history WHERE model = 'seed'}),
	$node->safe_psql('postgres', q{SELECT count(DISTINCT (user_id, event_time)) FROM propensity.events}),
	'one point per distinct user and event time');
is($node->safe_psql('postgres', qq{
SELECT count(*) FROM propensity.score_history WHERE model = 'seed' AND model_id <> $v3}), '0',
	'every point is by the last version');
is($node->safe_psql('postgres', qq{
SELECT count(*) FROM (SELECT * FROM propensity.score_history WHERE model = 'seed') s
  FULL JOIN propensity.history_points($v3) p USING (user_id, event_time)
 WHERE s.score IS DISTINCT FROM p.score}), '0',
	'the history equals the recomputation under the last version');
is($node->safe_psql('postgres', q{
SELECT count(*) FROM propensity.score_history s
  JOIN LATERAL (SELECT c.new_score, c.model_id FROM propensity.score_history_changelog c
                 WHERE c.model = s.model AND c.user_id = s.user_id AND c.event_time = s.event_time
                 ORDER BY c.seq DESC LIMIT 1) c ON true
 WHERE (c.new_score, c.model_id) IS DISTINCT FROM (s.score, s.model_id)}), '0',
	"the changelog ends at every point's value and version");
# the property means something only if batches were written under each
# version: new points (old_score NULL) logged by v1, by v2 and by v3
is($node->safe_psql('postgres', qq{
SELECT string_agg(DISTINCT model_id::text, ',' ORDER BY model_id::text)
  FROM propensity.score_history_changelog WHERE old_score IS NULL}),
	join(',', sort($v1, $v2, $v3)),
	'the worker wrote new points under each version in turn');
is($node->safe_psql('postgres', q{SELECT count(*) FROM propensity.dead_letters}), '0',
	'no dead letters');

$node->stop;
done_testing();
