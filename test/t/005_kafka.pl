# Apache Kafka as a source, against librdkafka's mock cluster
# (test/kafka/mock_cluster), fed by kcat, a client the product did not
# write, and by an independent Avro encoder (python3-avro):
#  - JSON messages produced by kcat are stored exactly once, by identity;
#  - Avro messages of a writer schema that reorders, removes and adds
#    fields decode to the right rows; one whose schema id is not
#    registered yet is a dead letter naming the id, and a replay after
#    registering it stores it;
#  - bad messages are dead letters with topic, partition, offset and key,
#    and the batch goes on;
#  - SIGKILL of the postmaster during ingest, five times, loses and doubles
#    nothing, and attribution equals a batch evaluation;
#  - a broker taken down and brought back shows in status and loses nothing;
#  - start positions: latest, a time, explicit offsets, a reset.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use File::Temp qw(tempdir);
use FindBin;
use lib "$FindBin::Bin/../perl";
use PropensityTest qw(restart_after_kill start_mock_cluster kcat_lines generated_lines
  $ATTRIBUTION_DIFFERENCES);
use Time::HiRes qw(usleep time);

my $helper = "$FindBin::Bin/../kafka/mock_cluster";
my $avro = "$FindBin::Bin/../kafka/avro_messages.py";
my $v2 = "$FindBin::Bin/../kafka/event_v2.avsc";
plan skip_all => "no $helper (make tap builds it)" unless -x $helper;
plan skip_all => 'kcat is not installed' unless system('kcat -V >/dev/null 2>&1') == 0;

# the cluster: one broker, topics ev (4 partitions), pos (2), av (1) and lost (1)
my ($bootstrap, $mock) = start_mock_cluster($helper, '1', 'ev:4', 'pos:2', 'av:1', 'lost:1');
sub mock { return $mock->(@_); }
ok($bootstrap =~ /^127\.0\.0\.1:\d+$/, "the mock cluster listens at $bootstrap");

my $dir = tempdir(CLEANUP => 1);

# kcat -P: key:value lines (to one partition, or by key)
sub kcat { kcat_lines($bootstrap, $dir, @_); }

sub json_message
{
	my ($id, $user, $type, $ms) = @_;
	return qq{$user:{"event_id":"$id","user_id":"$user","event_type":"$type","event_time":$ms}};
}

my $node = PostgreSQL::Test::Cluster->new('kafka');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'propensity'
propensity.database = 'postgres'
propensity.restart_interval = 1
propensity.poll_interval = 50
propensity.batch_size = 500
propensity.max_message_size = 4096
restart_after_crash = on
});
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION propensity');

sub wait_for
{
	my ($what, $sql, $want, $db) = @_;
	my $tries = 0;
	my $got;
	until (($got = $node->safe_psql($db // 'postgres', $sql)) eq $want)
	{
		die "timed out waiting for $what (last: $got)" if ++$tries > 1800;
		usleep(100_000);
	}
}

# ---- (a) JSON by kcat: every message stored once, by identity ----
my @lines = map { json_message("j$_", "u" . ($_ % 97), 'IM', 1790000000000 + $_ * 1000) } 1 .. 3000;
kcat('ev', [ @lines[0 .. 1499] ]);
$node->safe_psql('postgres',
	"SELECT propensity.create_kafka_source('ev', '$bootstrap', 'ev', attribute => false, kafka_group => 'pg-lag')");
kcat('ev', [ @lines[1500 .. 2999] ]);
wait_for('the worker to store 3000 events', 'SELECT count(*) FROM propensity.events', '3000');
my $ids = join(',', map { "('j$_')" } 1 .. 3000);
is($node->safe_psql('postgres', qq{
	SELECT (SELECT count(*) FROM (SELECT event_id FROM propensity.events
	                              EXCEPT SELECT * FROM (VALUES $ids) v(id)) x)
	     + (SELECT count(*) FROM (SELECT * FROM (VALUES $ids) v(id)
	                              EXCEPT SELECT event_id FROM propensity.events) y)}),
	'0', 'the stored events are the produced ones');
is($node->safe_psql('postgres',
	"SELECT sum(next_offset), sum(messages), sum(high_watermark) FROM propensity.kafka_offsets WHERE source = 'ev'"),
	'3000|3000|3000', 'every partition\'s next offset is its end, and each message was counted once');
is($node->safe_psql('postgres',
	"SELECT count(*), sum(lag) FROM propensity.kafka_status WHERE source = 'ev'"),
	'4|0', 'status shows the four partitions without lag');
# the worker commits the offsets to the Kafka group too, for Kafka's own
# tools: a consumer of that group (kcat, committing nothing itself) finds
# nothing left, where one of a group never committed reads everything
sub group_backlog
{
	my ($group) = @_;
	my $out = `kcat -b $bootstrap -G $group -X auto.offset.reset=earliest -X enable.auto.commit=false -e -q -f '%o\\n' ev 2>/dev/null`;
	return scalar(split /\n/, $out);
}
is(group_backlog('pg-none'), 3000, 'a group never committed to has the whole topic left');
my $backlog;
for my $try (1 .. 20)
{
	last if ($backlog = group_backlog('pg-lag')) == 0;
	usleep(500_000);
}
is($backlog, 0, 'the source\'s Kafka group has nothing left: the worker committed its offsets');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'propensity ingest worker'
	   AND usename = 'propensity_worker'}), '1', 'the worker runs as propensity_worker');

# ---- bad messages: dead letters with their place, the batch goes on ----
kcat('ev', [ 'bad1:not json at all', json_message('j3001', 'u1', 'XX', 1790000000000),
		'big:{"event_id":"big","pad":"' . ('x' x 5000) . '"}', json_message('j3002', 'u2', 'CL', 1790000000000) ]);
wait_for('the good messages after the bad ones', 'SELECT count(*) FROM propensity.events', '3001');
is($node->safe_psql('postgres', q{
	SELECT string_agg(key || ':' || (error ~ CASE key WHEN 'bad1' THEN 'JSON' WHEN 'u1' THEN 'XX'
	                                           ELSE 'max_message_size' END)::text, ',' ORDER BY key)
	  FROM propensity.dead_letters WHERE consumer_group = 'ev' AND topic = 'ev'}),
	'bad1:true,big:true,u1:true', 'three dead letters, each with its reason');
is($node->safe_psql('postgres', q{
	SELECT bool_and(d.msg_offset < o.next_offset) AND count(DISTINCT (d.partition, d.msg_offset)) = 3
	  FROM propensity.dead_letters d JOIN propensity.kafka_offsets o
	    ON o.source = d.consumer_group AND o.partition = d.partition}),
	't', 'dead letters carry their partition and offset, behind the stored position');

# ---- Avro from an independent encoder, with a writer schema of its own ----
my $next_id = $node->safe_psql('postgres', 'SELECT max(schema_id) + 1 FROM propensity.avro_schemas');
my @types = ('CL', 'IM', 'CN', 'PS');
my @avro_events = map {
	sprintf('{"schema_version": 2, "user_id": "av%d", "event_id": "a%d", "event_time": %d, '
		  . '"event_type": "%s", "session": "s%d", "advertiser_id": %d, "campaign_id": %d, '
		  . '"auction_id": %s, "pixel_id": null}',
		$_, $_, 1790000000000 + $_, $types[$_ % 4], $_, $_, $_ * 10, $_ % 2 ? "\"x$_\"" : 'null')
} 1 .. 8;
open(my $enc, '|-', "/usr/bin/python3 $avro $v2 $next_id $dir/avro") or die $!;
print $enc join("\n", @avro_events), "\n";
close $enc or die "avro_messages.py failed";
# messages of a schema id not registered yet are dead letters naming it
for my $n (0 .. 7)
{
	my $f = sprintf("$dir/avro/%06d.msg", $n);
	system("kcat -b $bootstrap -t av -P -k av$n -z none $f") == 0 or die "kcat failed";
}
$node->safe_psql('postgres', "SELECT propensity.create_kafka_source('av', '$bootstrap', 'av')");
wait_for('the Avro messages to be dead letters',
	"SELECT count(*) FROM propensity.dead_letters WHERE consumer_group = 'av'", '8');
is($node->safe_psql('postgres', "SELECT count(*) FROM propensity.dead_letters WHERE consumer_group = 'av'"
		. " AND error ~ 'schema id $next_id\\y'"), '8', "each names the unknown schema id $next_id");
my $schema = do { local $/; open(my $fh, '<', $v2) or die $!; <$fh> };
$schema =~ s/'/''/g;
is($node->safe_psql('postgres', "SELECT propensity.register_schema('av-value', '$schema')"),
	$next_id, 'the writer schema gets that id');
is($node->safe_psql('postgres', "SELECT replayed, failed FROM propensity.replay_dead_letters('av', 'av')"),
	'8|0', 'a replay stores them');
is($node->safe_psql('postgres', q{
	SELECT string_agg(concat_ws('/', event_id, user_id, event_type, advertiser_id, campaign_id,
	                            coalesce(auction_id, '-'), (extract(epoch FROM event_time) * 1000)::bigint), ' '
	                  ORDER BY event_id)
	  FROM propensity.events WHERE event_id LIKE 'a_'}),
	join(' ', map { "a$_/av$_/$types[$_ % 4]/$_/" . ($_ * 10) . '/'
		  . ($_ % 2 ? "x$_" : '-') . '/' . (1790000000000 + $_) } 1 .. 8),
	'the Avro rows are the encoded events (fields reordered, removed, added, enum symbols by name)');

# ---- (b) SIGKILL of the postmaster during ingest, five times ----
my @gen = generated_lines($node, 11, 30000, 3000);
is(scalar(@gen), 30000, 'a generated stream of 30000 events');
$node->safe_psql('postgres', "SELECT propensity.create_kafka_source('gen', '$bootstrap', 'pos')");
my $stored_before = $node->safe_psql('postgres', 'SELECT count(*) FROM propensity.events');
my $chunk = 6000;
for my $k (0 .. 4)
{
	kcat('pos', [ @gen[$k * $chunk .. ($k + 1) * $chunk - 1] ]);
	# kill once the worker is inside this chunk
	wait_for("the worker to start on chunk $k",
		"SELECT coalesce(sum(next_offset), 0) > $k * $chunk FROM propensity.kafka_offsets WHERE source = 'gen'", 't');
	my $pid = $node->{_pid};
	$node->kill9;
	restart_after_kill($node, $pid);
}
wait_for('the worker to drain the stream',
	"SELECT sum(next_offset) FROM propensity.kafka_offsets WHERE source = 'gen'", '30000');
wait_for('the last batch to be visible', 'SELECT count(*) FROM propensity.events', $stored_before + 30000);
is($node->safe_psql('postgres', q{
	SELECT count(*) = count(DISTINCT (event_id, event_time)) FROM propensity.events}),
	't', 'after five kills no event is stored twice');
is($node->safe_psql('postgres', "SELECT sum(messages) FROM propensity.kafka_offsets WHERE source = 'gen'"),
	'30000', 'and each message was counted in exactly one committed batch');
is($node->safe_psql('postgres', $ATTRIBUTION_DIFFERENCES),
	'0', 'attribution equals the batch evaluation of the stored events');
cmp_ok($node->safe_psql('postgres', "SELECT count(*) FROM propensity.attribution_current"), '>', 500,
	'with many conversions');

# ---- a broker down and back: visible in status, nothing lost ----
is(mock('down -1'), 'ok', 'the broker goes down');
wait_for('status to show the broker down',
	"SELECT bool_or(last_error IS NOT NULL) FROM propensity.kafka_sources WHERE source = 'ev'", 't');
is(mock('up -1'), 'ok', 'and comes back');
kcat('ev', [ map { json_message("d$_", "u$_", 'PS', 1790000100000 + $_) } 1 .. 200 ]);
wait_for('the messages produced after the broker came back',
	"SELECT count(*) FROM propensity.events WHERE event_id LIKE 'd%'", '200');
wait_for('the error to clear', "SELECT last_error IS NULL FROM propensity.kafka_sources WHERE source = 'ev'", 't');

# ---- start positions, by hand, in a database without a worker ----
$node->safe_psql('postgres', 'CREATE DATABASE manual');
$node->safe_psql('manual', 'CREATE EXTENSION propensity');
sub manual { return $node->safe_psql('manual', $_[0]); }
manual("SELECT propensity.create_kafka_source('late', '$bootstrap', 'pos', start_from => 'latest')");
is(manual("SELECT messages FROM propensity.consume_kafka('late', wait => '0.5 s')"), '0',
	'latest: what was produced before is skipped');
kcat('pos', [ map { json_message("l$_", "u$_", 'IM', 1790000200000 + $_) } 1 .. 10 ]);
is(manual("SELECT messages, events FROM propensity.consume_kafka('late', wait => '3 s')"), '10|10',
	'and what comes after is read');
# a time after every message: each partition starts at its end.  (Before
# the end, a partition starts at its first message at or after the time,
# by offsets-for-times; librdkafka 2.0.2's mock cluster does not answer
# ListOffsets by time, as kcat -Q shows, so only this case is testable here.)
manual("SELECT propensity.create_kafka_source('bytime', '$bootstrap', 'pos', start_from => (now() + interval '1 hour')::text)");
is(manual("SELECT messages FROM propensity.consume_kafka('bytime', wait => '1 s')"), '0',
	'a time after every message: nothing before it is read');
kcat('pos', [ map { json_message("t$_", "u$_", 'IM', 1790000300000 + $_) } 1 .. 7 ], 0);
is(manual("SELECT messages, events FROM propensity.consume_kafka('bytime', wait => '3 s')"), '7|7',
	'and the messages after it are');
my $p0 = manual("SELECT next_offset FROM propensity.kafka_offsets WHERE source = 'bytime' AND partition = 0");
is(manual("SELECT propensity.set_kafka_offsets('bytime', ARRAY[0], ARRAY[$p0 - 3])"), '1', 'explicit offsets');
is(manual("SELECT messages, events FROM propensity.consume_kafka('bytime', wait => '2 s')"), '3|0',
	'the last three messages of partition 0 are read again, and are not new events');
is(manual("SELECT string_agg(event_id, ',' ORDER BY event_id) FROM propensity.events WHERE event_id LIKE 't%'"),
	join(',', sort map { "t$_" } 1 .. 7), 'each stored once');
is(manual("SELECT propensity.reset_kafka_offsets('late', 'earliest')"), '2', 'a reset forgets both partitions');
manual("SELECT propensity.consume_kafka('late', max_messages => 1000000, wait => '3 s')");
is(manual("SELECT sum(next_offset) = sum(high_watermark) FROM propensity.kafka_offsets WHERE source = 'late'"),
	't', 'and reads from the beginning');

# ---- messages Kafka no longer holds: an error in status, not a silent jump ----
# (the mock cluster keeps about 5 MB per partition, and drops the oldest)
kcat('lost', [ map { json_message("x$_", "u$_", 'IM', 1790000400000 + $_) } 1 .. 120000 ]);
manual("SELECT propensity.create_kafka_source('lost', '$bootstrap', 'lost')");
manual("SELECT propensity.set_kafka_offsets('lost', ARRAY[0], ARRAY[0])");
is(manual("SELECT messages FROM propensity.consume_kafka('lost', wait => '2 s')"), '0',
	'a stored offset whose messages are gone is not read past');
like(manual("SELECT last_error FROM propensity.kafka_sources WHERE source = 'lost'"),
	qr/^partition 0 at offset 0: .*[Oo]ffset out of range/, 'and status says where and why');
manual("SELECT propensity.reset_kafka_offsets('lost', 'earliest')");
cmp_ok(manual("SELECT messages FROM propensity.consume_kafka('lost', max_messages => 100000, wait => '3 s')"),
	'>', 0, 'after a reset the messages still held are read');

# ---- declarations: clear errors, secrets kept from readers ----
my ($ret, $out, $err) = $node->psql('manual',
	"SELECT propensity.create_kafka_source('x', '$bootstrap', 'pos', '{\"sasl.kerberos.kinit.cmd\": \"touch /tmp/owned\"}')");
like($err, qr/cannot be set on a Kafka source/, 'a property that would run a command is refused');
($ret, $out, $err) = $node->psql('manual',
	"SELECT propensity.create_kafka_source('x', '$bootstrap', 'pos', '{\"security.protocol\": \"carrier-pigeon\"}')");
like($err, qr/invalid value for librdkafka property "security.protocol"/, 'an invalid value is refused');
unlike($err, qr/pigeon/, 'without showing the value');
($ret, $out, $err) = $node->psql('manual',
	"SELECT propensity.create_kafka_source('x', '$bootstrap', 'pos', start_from => 'yesterday-ish')");
like($err, qr/start_from must be earliest, latest or a time/, 'a bad start position is refused');
manual(q{CREATE ROLE viewer LOGIN IN ROLE propensity_reader});
manual("SELECT propensity.create_kafka_source('secret', '$bootstrap', 'pos', '{\"sasl.password\": \"hunter2\", \"sasl.username\": \"u\"}')");
($ret, $out, $err) = $node->psql('manual', 'SELECT * FROM propensity.kafka_source_properties',
	extra_params => [ '-U', 'viewer' ]);
like($err, qr/permission denied/, 'a reader cannot read the properties');
is($node->safe_psql('manual', "SELECT count(*) FROM propensity.kafka_status WHERE source = 'secret'",
		extra_params => [ '-U', 'viewer' ]), '1', 'but sees the status');
# the test's own statements are logged (log_statement = all); nothing else may show it
my @leaks = grep { /hunter2/ && !/(statement|STATEMENT):/ } split /\n/, slurp_file($node->logfile);
is(scalar(@leaks), 0, 'the password is in no other line of the server log');

mock('quit');
$node->stop;
done_testing();
