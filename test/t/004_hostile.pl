# The ingest worker against what hurts a server: a message whose decoding
# kills the process is dead-lettered by the next worker (its note in the
# crash guard file, written by hand and left by a real SIGKILL), a worker
# stuck in a long batch stops, terminates and lets the server shut down
# promptly, and a batch of large messages holds each at most once.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);

my $node = PostgreSQL::Test::Cluster->new('hostile');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'propensity'
propensity.database = 'postgres'
propensity.restart_interval = 1
propensity.poll_interval = 50
shared_buffers = 16MB
restart_after_crash = on
});
$node->start;
$node->safe_psql('postgres', q{
CREATE EXTENSION propensity;
SELECT propensity.create_topic('h', 1);
SELECT propensity.subscribe('h');
});
my $dboid = $node->safe_psql('postgres', "SELECT oid FROM pg_database WHERE datname = 'postgres'");
my $guard = $node->data_dir . "/pg_propensity/guard.$dboid";

sub wait_for
{
	my ($what, $sql, $want) = @_;
	my $tries = 0;
	until ($node->safe_psql('postgres', $sql) eq $want)
	{
		die "timed out waiting for $what" if ++$tries > 600;
		usleep(100_000);
	}
}

sub lag_zero
{
	wait_for('the worker to drain the queue',
		"SELECT sum(lag) = 0 FROM propensity.queue_lag('h')", 't');
}

sub json_event
{
	my ($id, $extra) = @_;
	$extra //= '';
	return qq{convert_to('{"event_id":"$id","user_id":"hu","event_type":"PS","event_time":1764151200000$extra}', 'UTF8')};
}


# ---------------------------------------------------------------------------
# 1. A note left in the guard file by a worker that died decoding a message:
#    the next worker dead-letters that message, undecoded, and takes the rest.
# ---------------------------------------------------------------------------
wait_for('the worker', 'SELECT propensity.worker_pid() IS NOT NULL', 't');
ok(-f $guard, 'the worker keeps its guard file');
$node->safe_psql('postgres', "SELECT propensity.pause_subscription('h')");
$node->safe_psql('postgres', "SELECT propensity.produce_many('h', ARRAY['hu', 'hu', 'hu'], ARRAY["
	. join(', ', json_event('g-1'), json_event('g-2'), json_event('g-3')) . "])");
my $second = $node->safe_psql('postgres',
	"SELECT msg_offset FROM propensity.queue_1_0 ORDER BY msg_offset OFFSET 1 LIMIT 1");
$node->stop('fast');
open(my $fh, '+<', $guard) or die "cannot open $guard: $!";
binmode($fh);
print $fh pack('L L L l q Z256 Z256', 0x44475050, 1, 1, 0, $second, 'propensity', 'h');
close($fh);
$node->start;
$node->safe_psql('postgres', "SELECT propensity.subscribe('h')");
lag_zero();
is($node->safe_psql('postgres', "SELECT string_agg(event_id, ',' ORDER BY event_id) FROM propensity.events WHERE user_id = 'hu'"),
	'g-1,g-3', 'the other messages are stored');
like($node->safe_psql('postgres', "SELECT error FROM propensity.dead_letters WHERE msg_offset = $second"),
	qr/died while decoding this message/, 'the noted message is a dead letter with the reason');
like(slurp_file($node->logfile), qr/the last worker died decoding the message at offset $second/,
	'and the worker said so in the log');

# ---------------------------------------------------------------------------
# 2. The same for real: SIGKILL the worker while it decodes one of 30 slow
#    messages (arrays of 300,000 values each); the server restarts, the
#    message being decoded is a dead letter, the other 29 are stored once.
# ---------------------------------------------------------------------------
$node->append_conf('postgresql.conf', qq{
propensity.max_message_values = 1000000
propensity.max_message_size = '2MB'
});
$node->reload;
my $schema = $node->safe_psql('postgres', q{
SELECT propensity.register_schema('slow', (jsonb_set(propensity.event_schema()::jsonb, '{fields}',
    (propensity.event_schema()::jsonb -> 'fields')
    || '[{"name": "m", "type": {"type": "array", "items": "long"}}]'::jsonb))::text)});
$node->safe_psql('postgres', "SELECT propensity.pause_subscription('h')");
# zig-zag 300000 = 600000 = c0 cf 24; 300,000 longs of 0; end of the array
$node->safe_psql('postgres', qq{
SELECT propensity.produce_many('h', array_fill('hu'::text, ARRAY[30]), ARRAY(
    SELECT (propensity.encode_events(ARRAY[ROW('2026-11-26 10:00+00', 'hu', 'PS', 's-' || i, NULL, NULL, NULL,
            NULL, NULL, NULL, NULL, NULL, NULL, NULL)::propensity.events], $schema))[1]
           || '\\xc0cf24'::bytea || decode(repeat('00', 300000), 'hex') || '\\x00'::bytea
      FROM generate_series(1, 30) i))});
$node->safe_psql('postgres', "SELECT propensity.subscribe('h')");
my $noted;
my $start = time;
while (time - $start < 60)
{
	open(my $g, '<', $guard) or die "cannot open $guard: $!";
	binmode($g);
	my $buf;
	read($g, $buf, 24);
	close($g);
	my ($magic, $version, $state, $part, $off) = unpack('L L L l q', $buf);
	if ($state == 1)
	{
		my $wpid = $node->safe_psql('postgres', 'SELECT propensity.worker_pid()');
		kill 'KILL', $wpid if $wpid ne '';
		$noted = 1;
		last;
	}
	usleep(1000);
}
ok($noted, 'caught the worker decoding a slow message and killed it');
my $pid = $node->{_pid};
# the postmaster restarts every process after a backend's death by a signal
my $tries = 0;
until ($node->psql('postgres', 'SELECT 1') == 0 && $node->safe_psql('postgres', 'SELECT propensity.worker_pid() IS NOT NULL') eq 't')
{
	die "the server did not come back" if ++$tries > 600;
	usleep(100_000);
}
lag_zero();
my ($dead, $stored, $distinct) = split /\|/, $node->safe_psql('postgres', q{
SELECT (SELECT count(*) FROM propensity.dead_letters WHERE error LIKE '%died while decoding%' AND key = 'hu'
          AND convert_from(substring(value FROM 7 FOR 2), 'UTF8') = 's-'),
       (SELECT count(*) FROM propensity.events WHERE event_id LIKE 's-%'),
       (SELECT count(DISTINCT event_id) FROM propensity.events WHERE event_id LIKE 's-%')});
is($dead, 1, 'the message being decoded when the worker died is the one dead letter');
is($stored, 29, 'the 29 others are stored');
is($distinct, 29, 'each once');

# ---------------------------------------------------------------------------
# 3. A batch that takes an hour (a trigger sleeps): worker_stop() stops it
#    at once and it stays stopped; pg_terminate_backend() ends it at once
#    and it comes back; a fast shutdown does not wait for it.  Nothing is
#    lost: the message is stored once the trigger lets it.
# ---------------------------------------------------------------------------
$node->safe_psql('postgres', q{
CREATE TABLE sleepy (on_ boolean);
INSERT INTO sleepy VALUES (true);
CREATE FUNCTION sleep_on_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.event_id LIKE 'slow-%' AND (SELECT on_ FROM public.sleepy) THEN
        PERFORM pg_sleep(3600);
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER sleep_on_insert BEFORE INSERT ON propensity.events
    FOR EACH ROW EXECUTE FUNCTION sleep_on_insert();
GRANT SELECT ON sleepy TO propensity_worker;
});
sub worker_sleeping
{
	wait_for('the worker to sleep in its batch', q{
SELECT count(*) = 1 FROM pg_stat_activity WHERE pid = propensity.worker_pid() AND wait_event = 'PgSleep'}, 't');
}
$node->safe_psql('postgres', "SELECT propensity.produce('h', 'hu', " . json_event('slow-1') . ")");
worker_sleeping();
$start = time;
is($node->safe_psql('postgres', 'SELECT propensity.worker_stop()'), 't', 'worker_stop() in an hour-long batch');
my $took = time - $start;
ok($took < 30, sprintf('returned in %.1f s', $took));
usleep(2_500_000);
is($node->safe_psql('postgres', 'SELECT propensity.worker_pid() IS NULL'), 't', 'the worker stays stopped');

$node->safe_psql('postgres', 'SELECT propensity.worker_start()');
worker_sleeping();
my $old = $node->safe_psql('postgres', 'SELECT propensity.worker_pid()');
$start = time;
$node->safe_psql('postgres', "SELECT pg_terminate_backend($old)");
wait_for('the terminated worker to exit', "SELECT count(*) FROM pg_stat_activity WHERE pid = $old", '0');
$took = time - $start;
ok($took < 30, sprintf('pg_terminate_backend() ends a worker in a long batch (%.1f s)', $took));
worker_sleeping();
isnt($node->safe_psql('postgres', 'SELECT propensity.worker_pid()'), $old, 'and it comes back');

# the batch under way sleeps on; the next one will not
$node->safe_psql('postgres', 'UPDATE sleepy SET on_ = false');
$start = time;
$node->stop('fast');
$took = time - $start;
ok($took < 30, sprintf('a fast shutdown does not wait for the batch (%.1f s)', $took));
$node->start;
lag_zero();
is($node->safe_psql('postgres', "SELECT count(*) FROM propensity.events WHERE event_id = 'slow-1'"), '1',
	'the message of the interrupted batches is stored once');

# ---------------------------------------------------------------------------
# 4. Memory over a batch of large messages: 40 incompressible messages of
#    3 MB (over propensity.max_message_size: dead letters, not decoded) and
#    40 JSON events of 900 kB (decoded), 156 MB in one batch.  Each is held
#    at most once at a time, so the worker's peak resident memory grows by
#    far less than the batch (the dead letters once went into one array,
#    every value detoasted: the batch twice over, and past 1 GB an error).
# ---------------------------------------------------------------------------
$node->append_conf('postgresql.conf', qq{
propensity.max_message_size = '1MB'
propensity.batch_bytes = '512MB'
});
$node->reload;
$node->safe_psql('postgres', "SELECT propensity.pause_subscription('h')");
$node->safe_psql('postgres', 'SELECT propensity.worker_stop()');
$node->safe_psql('postgres', 'SELECT propensity.worker_start()');
my $wpid = $node->safe_psql('postgres', 'SELECT propensity.worker_pid()');
sub vm_hwm_kb
{
	my $status = slurp_file("/proc/$wpid/status");
	$status =~ /VmHWM:\s+(\d+) kB/ or die "no VmHWM in /proc/$wpid/status";
	return $1;
}
# let the worker settle (subscriptions loaded, a maintenance pass) first
usleep(1_500_000);
my $before = vm_hwm_kb();
for my $i (1 .. 40)
{
	$node->safe_psql('postgres', qq{
SELECT propensity.produce('h', 'hu', (SELECT decode(string_agg(md5(random()::text || g), ''), 'hex')
                                        FROM generate_series(1, 196608) g));
SELECT propensity.produce('h', 'hu', convert_to('{"event_id":"big-$i","user_id":"hu","event_type":"PS",'
    || '"event_time":1764151200000,"pad":"' || repeat('z', 900000) || '"}', 'UTF8'));});
}
$node->safe_psql('postgres', "SELECT propensity.subscribe('h')");
lag_zero();
my $after = vm_hwm_kb();
is($node->safe_psql('postgres', "SELECT count(*) FROM propensity.events WHERE event_id LIKE 'big-%'"), '40',
	'the 40 large events are stored');
is($node->safe_psql('postgres', "SELECT count(*), min(length(value)) FROM propensity.dead_letters WHERE error LIKE '%max_message_size%'"),
	'40|3145728', 'the 40 oversized messages are dead letters, kept whole');
is($node->safe_psql('postgres', "SELECT max(batches) - min(batches) FROM propensity.subscriptions"), '0', 'one subscription');
my $grew = ($after - $before) / 1024;
ok($grew < 64, sprintf('the worker\'s peak resident memory grew by %.0f MB over a 156 MB batch', $grew));
diag(sprintf('worker VmHWM: %.0f MB before, %.0f MB after', $before / 1024, $after / 1024));

$node->stop;
done_testing();
