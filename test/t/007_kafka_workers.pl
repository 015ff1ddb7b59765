# Several workers on one Kafka source (propensity.kafka_workers), against
# librdkafka's mock cluster with three brokers:
#  - two workers share the eight partitions of a topic, worker k taking
#    the partitions p with p mod 2 = k; at every look at status each
#    partition has one consumer, and over the whole run no partition is
#    seen with two;
#  - consume_kafka() by hand meanwhile finds every partition taken and
#    reads nothing; in a database without a worker, two sessions by hand
#    split a source the same way, one transaction holding what it read;
#  - partition leaders move to other brokers mid-stream;
#  - the count goes to three, then back to one, on a reload, mid-stream;
#  - SIGKILL of a Kafka worker, then of the first worker, mid-stream;
#  - an attribution batch that waited for another session's sees its events;
# and at the end every produced message is stored once, counted in exactly
# one committed batch, and attribution equals a batch evaluation.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use File::Temp qw(tempdir);
use FindBin;
use lib "$FindBin::Bin/../perl";
use PropensityTest qw(start_mock_cluster kcat_lines generated_lines
  $ATTRIBUTION_DIFFERENCES);
use Time::HiRes qw(usleep);

my $helper = "$FindBin::Bin/../kafka/mock_cluster";
plan skip_all => "no $helper (make tap builds it)" unless -x $helper;
plan skip_all => 'kcat is not installed' unless system('kcat -V >/dev/null 2>&1') == 0;

my ($bootstrap, $mock) = start_mock_cluster($helper, '3', 'mw:8', 'hand:4');
sub mock { return $mock->(@_); }

my $dir = tempdir(CLEANUP => 1);

# kcat -P: key:value lines (to one partition, or by key)
sub kcat { kcat_lines($bootstrap, $dir, @_); }

my $node = PostgreSQL::Test::Cluster->new('kafka_workers');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'propensity'
propensity.database = 'postgres'
propensity.kafka_workers = 2
propensity.restart_interval = 1
propensity.poll_interval = 50
propensity.batch_size = 300
restart_after_crash = on
});
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION propensity');

# a query that waits out a crash restart (a SIGKILL below)
sub query
{
	my ($sql, $db) = @_;
	my $tries = 0;
	while (1)
	{
		my ($ret, $out, $err) = $node->psql($db // 'postgres', $sql);
		return $out if $ret == 0;
		die "query failed: $err" if $err !~ /recovery mode|shutting down|starting up|terminat|connection to server/
		  || ++$tries > 600;
		usleep(100_000);
	}
}

sub wait_for
{
	my ($what, $sql, $want, $db) = @_;
	my $tries = 0;
	my $got;
	until (($got = query($sql, $db)) eq $want)
	{
		die "timed out waiting for $what (last: $got)" if ++$tries > 1800;
		usleep(100_000);
	}
}

# the owners of the partitions now: "p:pid" for each, and whether any
# partition showed twice (two processes holding its lock)
my %seen;	# partition -> { pid -> 1 }
my $doubled = 0;
sub look
{
	my $rows = query(q{
		SELECT partition, coalesce(worker_pid, 0), count(*) OVER (PARTITION BY partition)
		  FROM propensity.kafka_status WHERE source = 'mw' AND partition IS NOT NULL ORDER BY partition});
	my @owners;
	for my $row (split /\n/, $rows)
	{
		my ($p, $pid, $n) = split /\|/, $row;
		$doubled++ if $n > 1;
		$seen{$p}{$pid} = 1 if $pid;
		push @owners, "$p:$pid";
	}
	return @owners;
}

# the workers' pids by number (0 is the first, 1.. the Kafka workers)
sub workers
{
	my %w;
	for my $row (split /\n/, query(q{
		SELECT pid, backend_type, coalesce(substring(application_name FROM '\d+$'), '0')
		  FROM pg_stat_activity WHERE backend_type = 'propensity ingest worker'}))
	{
		my ($pid, $type, $n) = split /\|/, $row;
		$w{$n} = $pid;
	}
	return %w;
}

# wait until the partitions are held as share k = p mod n by n processes
sub wait_for_shares
{
	my ($n, $what) = @_;
	my $tries = 0;
	while (1)
	{
		my @o = look();
		my %by;
		my $ok = @o == 8;
		for (@o)
		{
			my ($p, $pid) = split /:/;
			$ok = 0 unless $pid;
			$by{$pid}{ $p % $n } = 1;
		}
		$ok &&= keys(%by) == $n && !grep { keys(%{ $by{$_} }) != 1 } keys %by;
		return 1 if $ok;
		die "timed out waiting for $what (last: @o)" if ++$tries > 600;
		usleep(100_000);
	}
}

my @gen = generated_lines($node, 23, 48000, 4000);
is(scalar(@gen), 48000, 'a generated stream of 48000 events, keyed by user');
my $chunk = 6000;
my $produced = 0;
sub produce_chunk
{
	kcat('mw', [ @gen[$produced .. $produced + $chunk - 1] ]);
	$produced += $chunk;
}

produce_chunk();
$node->safe_psql('postgres', "SELECT propensity.create_kafka_source('mw', '$bootstrap', 'mw')");
wait_for_shares(2, 'two workers to share the partitions');
my %w = workers();
is(scalar(keys %w), 2, 'two workers run: the first and Kafka worker 1');
my @o = look();
my %owner = map { split /:/ } @o;
is(join(',', map { $owner{$_} == $w{ $_ % 2 } ? 'ok' : "p$_" } 0 .. 7), join(',', ('ok') x 8),
	'worker k consumes the partitions p with p mod 2 = k');

# by hand, meanwhile: every partition is taken, nothing is read
my ($ret, $out, $err) = $node->psql('postgres', "SELECT messages FROM propensity.consume_kafka('mw', wait => '0.2 s')");
is($out, '0', 'consume_kafka() by hand reads nothing while the workers hold every partition');
like($err, qr/8 of the 8 partitions of Kafka source "mw" are consumed by another process/,
	'and says why');

# leaders move mid-stream
produce_chunk();
is(join(',', map { mock("leader mw $_ " . (1 + ($_ % 3))) } 0 .. 7), join(',', ('ok') x 8),
	'every partition\'s leader moves to another broker');
produce_chunk();
look() for 1 .. 10;
wait_for('the chunks produced around the leader change',
	"SELECT sum(next_offset) FROM propensity.kafka_offsets WHERE source = 'mw'", $produced);

# three workers, then one, on a reload, mid-stream
produce_chunk();
$node->append_conf('postgresql.conf', "propensity.kafka_workers = 3\n");
$node->reload;
wait_for_shares(3, 'three workers to share the partitions');
pass('with three workers, each partition moves to worker p mod 3');
produce_chunk();
$node->append_conf('postgresql.conf', "propensity.kafka_workers = 1\n");
$node->reload;
wait_for_shares(1, 'the first worker to take every partition');
wait_for('the Kafka workers to stop', q{
	SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'propensity ingest worker'}, '1');
pass('back to one worker, which holds all eight partitions');
$node->append_conf('postgresql.conf', "propensity.kafka_workers = 2\n");
$node->reload;
wait_for_shares(2, 'two workers again');

# SIGKILL of a Kafka worker, then of the first, each mid-chunk
for my $victim ('1', '0')
{
	my $before = $produced;
	produce_chunk();
	wait_for("the workers to start on the chunk before killing worker $victim",
		"SELECT sum(next_offset) > $before FROM propensity.kafka_offsets WHERE source = 'mw'", 't');
	%w = workers();
	ok(kill('KILL', $w{$victim}), "SIGKILL of worker $victim (pid $w{$victim})");
	wait_for_shares(2, "the workers to be back after killing worker $victim");
}
produce_chunk();
is($produced, 48000, 'the whole stream is produced');
wait_for('the workers to drain the stream',
	"SELECT sum(next_offset) FROM propensity.kafka_offsets WHERE source = 'mw'", '48000');
look() for 1 .. 5;
wait_for('the last batch to be visible', 'SELECT count(*) FROM propensity.events', '48000');

is($doubled, 0, 'at no look did a partition have two consumers');
is(join(',', map { scalar(keys %{ $seen{$_} // {} }) > 0 ? 'ok' : "p$_" } 0 .. 7), join(',', ('ok') x 8),
	'every partition was seen consumed');
is($node->safe_psql('postgres', q{
	SELECT count(*) = count(DISTINCT (event_id, event_time)) FROM propensity.events}),
	't', 'no event is stored twice');
is($node->safe_psql('postgres', "SELECT sum(messages) FROM propensity.kafka_offsets WHERE source = 'mw'"),
	'48000', 'each message was counted in exactly one committed batch');
my $ids = join(',', map { /"event_id" *: *"([^"]+)"/ or die "no event_id in $_"; "('$1')" } @gen);
is($node->safe_psql('postgres', qq{
	SELECT (SELECT count(*) FROM (SELECT event_id FROM propensity.events
	                              EXCEPT SELECT * FROM (VALUES $ids) v(id)) x)
	     + (SELECT count(*) FROM (SELECT * FROM (VALUES $ids) v(id)
	                              EXCEPT SELECT event_id FROM propensity.events) y)}),
	'0', 'the stored events are the produced ones');
is($node->safe_psql('postgres', $ATTRIBUTION_DIFFERENCES),
	'0', 'attribution by two workers equals the batch evaluation');
cmp_ok($node->safe_psql('postgres', 'SELECT count(*) FROM propensity.attribution_current'), '>', 500,
	'with many conversions');

# ---- by hand, in a database without a worker: two sessions split a source ----
$node->safe_psql('postgres', 'CREATE DATABASE manual');
$node->safe_psql('manual', 'CREATE EXTENSION propensity');
kcat('hand', [ map { "k$_:" . qq({"event_id":"h$_","user_id":"k$_","event_type":"IM","event_time":1790000000000}) } 1 .. 400 ]);
$node->safe_psql('manual', "SELECT propensity.create_kafka_source('hand', '$bootstrap', 'hand')");
# the first call stores the start offsets (a second session positioning
# meanwhile would wait for that insert's transaction)
is($node->safe_psql('manual', "SELECT messages FROM propensity.consume_kafka('hand', max_messages => 1, wait => '3 s')"),
	'1', 'a session by hand reads a message');
my $bg = $node->background_psql('manual');
$bg->query_safe('BEGIN');
my $first = $bg->query_safe("SELECT messages FROM propensity.consume_kafka('hand', max_messages => 1, wait => '3 s')");
is($first, '1', 'another reads one in an open transaction');
($ret, $out, $err) = $node->psql('manual', "SELECT messages FROM propensity.consume_kafka('hand', wait => '0.3 s')");
is($out, '0', 'another session meanwhile reads nothing: the first holds every partition');
like($err, qr/4 of the 4 partitions/, 'and says so');
$bg->query_safe('COMMIT');
$bg->quit;
is($node->safe_psql('manual', "SELECT messages FROM propensity.consume_kafka('hand', max_messages => 1000, wait => '2 s')"),
	'398', 'after its commit the other session reads the rest');
is($node->safe_psql('manual', "SELECT count(*), count(DISTINCT event_id) FROM propensity.events"),
	'400|400', 'each message stored once');

# ---- attribution that waited for another session's batch sees its events ----
# Session B's statement starts, then waits for the engine's state row that
# session A holds with an impression; once A commits, B's conversion must
# be credited to A's impression.  (With the statement's snapshot, older
# than A's commit, B's engine was rebuilt without it: the conversion went
# unattributed.  The streams above hit this only when partitions moved.)
$node->safe_psql('manual', q{
	CREATE FUNCTION ev(id text, usr text, typ text, t timestamptz, adv bigint, camp bigint,
	                   auction text, pixel bigint)
	RETURNS propensity.events LANGUAGE sql IMMUTABLE AS $$
	    SELECT ROW(t, usr, typ, id, adv, camp, auction, pixel,
	               NULL, NULL, NULL, NULL, NULL, NULL)::propensity.events $$});
my $sa = $node->background_psql('manual');
my $sb = $node->background_psql('manual');
$sb->query_safe(q{SELECT inserted FROM propensity.ingest(ARRAY[ev('w-i', 'w', 'IM', '2026-09-01', 1, 101, 'a-w', 11)])});
$sa->query_safe('BEGIN');
$sa->query_safe(q{SELECT inserted FROM propensity.ingest(ARRAY[ev('s-i', 's', 'IM', '2026-09-01 10:00+00', 1, 101, 'a-s', 11)])});
my $bpid = $sb->query_safe('SELECT pg_backend_pid()');
$sb->query_until(qr/started/, q{\echo started
SELECT deltas FROM propensity.ingest(ARRAY[ev('s-e', 's', 'CN', '2026-09-01 12:00+00', 1, NULL, NULL, 11)]);
});
wait_for('session B to wait for the state row',
	"SELECT wait_event_type FROM pg_stat_activity WHERE pid = $bpid", 'Lock', 'manual');
$sa->query_safe('COMMIT');
$sa->quit;
wait_for('session B to finish', "SELECT state FROM pg_stat_activity WHERE pid = $bpid", 'idle', 'manual');
$sb->quit;
is($node->safe_psql('manual', q{
	SELECT kind || '/' || coalesce(impression_event_id, '-') FROM propensity.attribution_current
	 WHERE conversion_event_id = 's-e'}),
	'PV/s-i', 'a conversion stored after waiting for the impression\'s batch is credited to it');

# a source whose name has the hash of another's is refused (the lock key)
my $pair = $node->safe_psql('manual', q{
	SELECT string_agg(s, ',' ORDER BY s) FROM (
	  SELECT s, count(*) OVER (PARTITION BY hashtext(s)) AS n
	    FROM (SELECT 'src' || g AS s FROM generate_series(1, 300000) g) x) y
	 WHERE n > 1 GROUP BY hashtext(s) LIMIT 1});
my ($a, $b) = split /,/, $pair;
ok(defined $b, "two names with one hashtext(): $pair");
$node->safe_psql('manual', "SELECT propensity.create_kafka_source('$a', '$bootstrap', 'hand')");
($ret, $out, $err) = $node->psql('manual', "SELECT propensity.create_kafka_source('$b', '$bootstrap', 'hand')");
like($err, qr/collides with an existing source/, 'the second is refused with a clear error');

mock('quit');
$node->stop;
done_testing();
