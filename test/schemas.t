# The Avro schemas in schemas/ parse, are records with documented types, and
# the event schema has exactly the columns of propensity.events.
use strict;
use warnings;
use JSON::PP;
use Test::More;
use FindBin;

my $root = "$FindBin::Bin/..";
my %schema;
for my $name (qw(event score attribution_delta)) {
    open(my $fh, '<', "$root/schemas/$name.avsc") or die "$name.avsc: $!";
    local $/;
    my $text = <$fh>;
    my $s = eval { decode_json($text) };
    ok($s, "$name.avsc is valid JSON") or diag($@);
    is($s->{type}, 'record', "$name.avsc is a record");
    is($s->{namespace}, 'propensity', "$name.avsc is in namespace propensity");
    for my $f (@{ $s->{fields} }) {
        # a nullable field must default to null, so that readers resolve
        # messages from writers that lack it
        if (ref $f->{type} eq 'ARRAY' && $f->{type}[0] eq 'null') {
            ok(exists $f->{default} && !defined $f->{default}, "$name.$f->{name} defaults to null");
        }
    }
    $schema{$name} = $s;
}

# columns of propensity.events in the install script
open(my $sql, '<', "$root/sql/propensity--0.1.0.sql") or die $!;
my $in_table = 0;
my @columns;
while (<$sql>) {
    $in_table = 1, next if /^CREATE TABLE \@extschema\@\.events \(/;
    last if $in_table && /^\)/;
    push @columns, $1 if $in_table && /^\s+([a-z_]+)\s+(?:timestamptz|text|bigint|integer|double)/;
}
my @fields = map { $_->{name} } @{ $schema{event}{fields} };
is_deeply([sort @fields], [sort @columns], 'event.avsc fields are the columns of propensity.events');

my ($type) = grep { $_->{name} eq 'event_type' } @{ $schema{event}{fields} };
is_deeply($type->{type}{symbols}, [qw(IM CL PS CN)], 'event types IM, CL, PS, CN');
my ($time) = grep { $_->{name} eq 'event_time' } @{ $schema{event}{fields} };
is($time->{type}{logicalType}, 'timestamp-millis', 'event_time is timestamp-millis');
my ($kind) = grep { $_->{name} eq 'kind' } @{ $schema{attribution_delta}{fields} };
is_deeply($kind->{type}{symbols}, [qw(PC PV NONE)], 'attribution kinds PC, PV, NONE');

done_testing();
