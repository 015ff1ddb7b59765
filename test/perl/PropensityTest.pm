# PropensityTest - what the TAP tests in test/t share: restarting a node
# after SIGKILL, librdkafka's mock cluster (test/kafka/mock_cluster) and
# kcat as a producer, a generated event stream as Kafka lines, and the
# query comparing streamed attribution with the batch evaluation.
package PropensityTest;

use strict;
use warnings;
use Exporter 'import';
use IPC::Run;
use Time::HiRes qw(usleep);

our @EXPORT_OK = qw(restart_after_kill start_mock_cluster kcat_lines generated_lines
  $ATTRIBUTION_DIFFERENCES);

# Wait until the killed postmaster $pid and its children are gone, then
# start $node.  Children may still hold the shared memory for a moment:
# retry.  A failed start leaves the stale pid of the killed postmaster
# behind.
sub restart_after_kill
{
	my ($node, $pid) = @_;
	my $tries = 0;
	usleep(100_000) while kill(0, $pid) && ++$tries < 600;
	$tries = 0;
	until ($node->start(fail_ok => 1))
	{
		die "cluster did not restart" if ++$tries > 120;
		$node->{_pid} = undef;
		usleep(500_000);
	}
}

# Start the mock cluster (mock_cluster BROKERS TOPIC:PARTITIONS...) and
# return its bootstrap address and a function that sends one command
# ("down -1", "leader t 0 2", "quit") and returns its answer.
sub start_mock_cluster
{
	my ($helper, @args) = @_;
	my ($in, $out, $err) = ('', '', '');
	my $mc = IPC::Run::start([ $helper, @args ], \$in, \$out, \$err, IPC::Run::timeout(900));
	$mc->pump until $out =~ /\n/;
	my ($bootstrap) = $out =~ /^(\S+)\n/;
	$out = '';
	my $command = sub {
		my ($cmd) = @_;
		$in .= "$cmd\n";
		if ($cmd eq 'quit')
		{
			$mc->finish;
			return 'ok';
		}
		$mc->pump until $out =~ /\n/;
		my $answer = $out;
		$out = '';
		chomp $answer;
		return $answer;
	};
	return ($bootstrap, $command);
}

# kcat -P of key:value lines through a file in $dir (to one partition, or
# by key).
sub kcat_lines
{
	my ($bootstrap, $dir, $topic, $lines, $partition) = @_;
	my $p = defined $partition ? "-p $partition" : '';
	my $file = "$dir/lines.$$";
	open(my $fh, '>', $file) or die $!;
	print $fh join("\n", @$lines), "\n";
	close $fh;
	system("kcat -b $bootstrap -t $topic $p -P -K: -z none < $file") == 0
	  or die "kcat failed";
}

# generate_events($seed, $n, $users) over 4 days from 2026-10-01, 10% out
# of order, as "user:json" lines in arrival order.
sub generated_lines
{
	my ($node, $seed, $n, $users) = @_;
	my $gen = $node->safe_psql('postgres', qq{
		SELECT string_agg(user_id || ':' || json_build_object('event_id', event_id, 'user_id', user_id,
		         'event_type', event_type, 'event_time', (extract(epoch FROM event_time) * 1000)::bigint,
		         'advertiser_id', advertiser_id, 'campaign_id', campaign_id, 'auction_id', auction_id,
		         'pixel_id', pixel_id)::text, E'\\n' ORDER BY arrival_time)
		  FROM propensity.generate_events($seed, $n, $users, '2026-10-01', '4 days', out_of_order => 0.1)});
	return split /\n/, $gen;
}

# The credits of attribution_current not in attribute_batch() and back: 0
# when the streamed attribution equals the batch evaluation.
our $ATTRIBUTION_DIFFERENCES = q{
	SELECT count(*) FROM (
	  (SELECT user_id, advertiser_id, conversion_event_id, kind, campaign_id, impression_event_id
	     FROM propensity.attribution_current
	   EXCEPT ALL
	   SELECT user_id, advertiser_id, conversion_event_id, kind, campaign_id, impression_event_id
	     FROM propensity.attribute_batch())
	  UNION ALL
	  (SELECT user_id, advertiser_id, conversion_event_id, kind, campaign_id, impression_event_id
	     FROM propensity.attribute_batch()
	   EXCEPT ALL
	   SELECT user_id, advertiser_id, conversion_event_id, kind, campaign_id, impression_event_id
	     FROM propensity.attribution_current)) d};

1;
