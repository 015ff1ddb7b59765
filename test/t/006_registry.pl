# An external schema registry: Avro messages whose schema id the embedded
# registry does not hold are resolved from a Confluent-compatible registry
# over HTTP (test/schema_registry_server.py on loopback), cached under
# their id, and dead-lettered with a reason naming the id when the
# registry lacks it, refuses the credentials, is unreachable or answers
# too much; a replay after the cause is fixed stores them.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use File::Temp qw(tempdir);
use FindBin;
use Time::HiRes qw(usleep);
use HTTP::Tiny;
use IO::Socket::INET;

my $server_py = "$FindBin::Bin/../schema_registry_server.py";
my $avro = "$FindBin::Bin/../kafka/avro_messages.py";
my $v2 = "$FindBin::Bin/../kafka/event_v2.avsc";
my $dir = tempdir(CLEANUP => 1);
chmod 0755, $dir;
my $schema = do { local $/; open(my $fh, '<', $v2) or die $!; <$fh> };

# a registry: its schemas in a directory of its own, its port in a file
sub start_registry
{
	my ($name, $auth) = @_;
	my $sdir = "$dir/$name";
	mkdir $sdir;
	my @cmd = ('/usr/bin/python3', $server_py, $sdir, "$dir/$name.port", defined $auth ? ($auth) : ());
	my $h = IPC::Run::start(\@cmd, '<', \undef, '>', "$dir/$name.out", '2>', "$dir/$name.err");
	my $tries = 0;
	usleep(100_000) until -e "$dir/$name.port" || ++$tries > 300;
	my $port = slurp_file("$dir/$name.port");
	return ($h, "http://127.0.0.1:$port", $sdir);
}

my ($reg, $url, $sdir) = start_registry('open');
my ($locked, $locked_url, $locked_dir) = start_registry('locked', 'propensity:s3cret');

my $node = PostgreSQL::Test::Cluster->new('registry');
$node->init;
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'propensity'");
$node->start;
$node->safe_psql('postgres', q{
CREATE EXTENSION propensity;
SELECT propensity.create_topic('r', 1);
SELECT propensity.subscribe('r');
});

# one message of writer schema id $id, encoded by python3-avro, produced to r
my $n = 0;
sub produce
{
	my ($id) = @_;
	$n++;
	my $out = "$dir/m$n";
	open(my $enc, '|-', "/usr/bin/python3 $avro $v2 $id $out") or die $!;
	print $enc qq({"schema_version": 2, "user_id": "ru$n", "event_id": "r$n", "event_time": 1790000000000,)
	  . qq( "event_type": "IM", "session": null, "advertiser_id": null, "campaign_id": null,)
	  . qq( "auction_id": null, "pixel_id": null}\n);
	close $enc or die 'avro_messages.py failed';
	chmod 0644, "$out/000000.msg";
	chmod 0755, $out;
	$node->safe_psql('postgres',
		"SELECT propensity.produce('r', 'ru$n', pg_read_binary_file('$out/000000.msg'))");
	return "r$n";
}

sub consume
{
	return $node->safe_psql('postgres', "SELECT messages, events, dead_letters FROM propensity.consume('r')");
}

sub last_error
{
	return $node->safe_psql('postgres',
		'SELECT error FROM propensity.dead_letters ORDER BY dead_letter_id DESC LIMIT 1');
}

sub replay
{
	return $node->safe_psql('postgres', "SELECT replayed, failed FROM propensity.replay_dead_letters()");
}

sub requests
{
	my ($u) = @_;
	my $got = HTTP::Tiny->new->get("$u/requests")->{content} // '';
	return $got =~ /"requests": (\d+)/ ? $1 : -1;
}

sub stored
{
	my ($id) = @_;
	return $node->safe_psql('postgres', "SELECT count(*) FROM propensity.events WHERE event_id = '$id'");
}

# no registry: a dead letter that names the id
my $e1 = produce(42);
is(consume(), '1|0|1', 'without a registry, an unknown schema id is a dead letter');
is(last_error(), 'unknown schema id 42', 'that names the id');

# a registry that does not have it
$node->safe_psql('postgres', "SELECT propensity.set_schema_registry('$url')");
is(replay(), '0|1', 'a replay with a registry that lacks the id fails again');
is($node->safe_psql('postgres', 'SELECT replay_error FROM propensity.dead_letters'),
	'unknown schema id 42, in the schema registry too', 'saying the registry lacks it too');

# the registry has it now: the replay stores it, and it is kept under its id
open(my $fh, '>', "$sdir/42.avsc") or die $!;
print $fh $schema;
close $fh;
is(replay(), '1|0', 'the replay resolves the id from the registry');
is(stored($e1), '1', 'and stores the event');
is($node->safe_psql('postgres', 'SELECT subject, version, schema::jsonb = $$' . $schema . '$$::jsonb FROM propensity.avro_schemas WHERE schema_id = 42'),
	'schema-registry|42|t', 'the schema is kept in avro_schemas under id 42');
is(requests($url), 2, 'the registry was asked twice (the miss, then the hit)');
my $e2 = produce(42);
is(consume(), '1|1|0', 'a later message of the id is stored');
is(requests($url), 2, 'without asking the registry again');
is($node->safe_psql('postgres', q{SELECT propensity.register_schema('local', propensity.event_schema()) > 42}),
	't', 'ids handed out by the embedded registry start after the cached one');

# credentials: refused without them, accepted with them
$node->safe_psql('postgres', "SELECT propensity.set_schema_registry('$locked_url')");
open($fh, '>', "$locked_dir/77.avsc") or die $!;
print $fh $schema;
close $fh;
my $e3 = produce(77);
is(consume(), '1|0|1', 'a registry that refuses the credentials');
like(last_error(), qr/^unknown schema id 77 here; the schema registry answered HTTP 401 for id 77$/,
	'gives a dead letter with the HTTP status');
$node->safe_psql('postgres', "SELECT propensity.set_schema_registry('$locked_url', 'propensity', 's3cret')");
is(replay(), '1|0', 'with the credentials the replay stores it');
is(stored($e3), '1', 'the event is there');

# an unreachable registry
# a port nothing listens on: one the system handed out, then closed
my $sock = IO::Socket::INET->new(Listen => 1, LocalAddr => '127.0.0.1', LocalPort => 0) or die $!;
my $dead = 'http://127.0.0.1:' . $sock->sockport;
close $sock;
$node->safe_psql('postgres', "SELECT propensity.set_schema_registry('$dead', timeout => '2 seconds')");
open($fh, '>', "$sdir/88.avsc") or die $!;
print $fh $schema;
close $fh;
my $e4 = produce(88);
is(consume(), '1|0|1', 'an unreachable registry');
like(last_error(), qr/^unknown schema id 88 here; the schema registry could not be asked for id 88: /,
	'gives a dead letter saying so');
$node->safe_psql('postgres', "SELECT propensity.set_schema_registry('$url')");
is(replay(), '1|0', 'a replay once it is back stores it');

# an answer larger than the schema limit
open($fh, '>', "$sdir/99.avsc") or die $!;
my $big = $schema;
$big =~ s/"doc": "/'"doc": "' . ('x' x 70000)/e;
print $fh $big;
close $fh;
my $e5 = produce(99);
is(consume(), '1|0|1', 'a schema over propensity.max_schema_size');
like(last_error(), qr/^unknown schema id 99 here; the schema registry could not be asked for id 99: its answer is too large$|larger than propensity.max_schema_size/,
	'is refused');

# secrets: only admins read the registry row
$node->safe_psql('postgres', 'CREATE ROLE viewer LOGIN IN ROLE propensity_reader');
my ($ret, $out, $err) = $node->psql('postgres', 'SELECT * FROM propensity.schema_registry',
	extra_params => [ '-U', 'viewer' ]);
like($err, qr/permission denied/, 'a reader cannot read the registry and its credentials');
($ret, $out, $err) = $node->psql('postgres', "SELECT propensity.set_schema_registry('ftp://x')");
like($err, qr/must be an http:\/\/ or https:\/\/ address/, 'a url that is not http is refused');

$reg->kill_kill;
$locked->kill_kill;
$node->stop;
done_testing();
