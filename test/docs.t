# The documentation covers the product: every function, aggregate and
# procedure of sql/propensity.sql is named in the README's Reference
# section (aggregate support and trigger functions aside), and no file of
# the repository points at documents outside it.
use strict;
use warnings;
use Test::More;
use FindBin;

my $root = "$FindBin::Bin/..";
sub slurp { my ($p) = @_; open(my $fh, '<', $p) or die "$p: $!"; local $/; return <$fh>; }

my $sql = slurp("$root/sql/propensity.sql");
my $readme = slurp("$root/README.md");
my ($reference) = $readme =~ /^## Reference\n(.*?)^## /ms;
ok(defined $reference, 'the README has a Reference section');
$reference //= '';

# the headings of the Reference, `name(arguments) → result`, and the
# bullets of its internal functions, `name(arguments)`: ...
my @headings = $reference =~ /^(?:#### |- )`([^\n]*)$/mg;
my (%seen, %defined);
while ($sql =~ /^CREATE (FUNCTION|AGGREGATE|PROCEDURE) \@extschema\@\.(\w+)\s*\(/mg) {
    my ($kind, $name) = ($1, $2);
    # the argument list, up to its closing parenthesis
    my ($depth, $args, $pos) = (1, '', pos($sql));
    while ($depth > 0 && $pos < length($sql)) {
        my $c = substr($sql, $pos++, 1);
        $depth++ if $c eq '(';
        $depth-- if $c eq ')';
        $args .= $c if $depth > 0;
    }
    my ($returns) = substr($sql, $pos, 200) =~ /^\s*RETURNS\s+(\S+)/;
    $returns //= '';
    $defined{$name}++;
    # the support functions of aggregates and the trigger functions
    next if $args =~ /\binternal\b/ || $returns =~ /^(internal|trigger)\b/;
    like($reference, qr/\b\Q$name\E\b/, "$kind $name is in the README's Reference") unless $seen{$name}++;
    # its input arguments' names, in order, in one heading of the function
    my @parts;
    my ($d, $cur) = (0, '');
    for my $c (split //, $args) {
        $d++ if $c eq '(';
        $d-- if $c eq ')';
        if ($c eq ',' && $d == 0) { push @parts, $cur; $cur = ''; next; }
        $cur .= $c;
    }
    push @parts, $cur if $cur =~ /\S/;
    my @names;
    for my $a (@parts) {
        $a =~ s/^\s+//;
        next if $a =~ /^OUT\s/;
        $a =~ s/^(IN|INOUT|VARIADIC)\s+//;
        push @names, $1 if $a =~ /^(\w+)/;
    }
    my $pattern = join('\b.*\b', map { quotemeta } @names);
    ok((grep { /^\Q$name\E\(/ && /\b$pattern\b/ } @headings),
       "$kind $name(" . join(', ', @names) . ") has a heading with its arguments");
}
cmp_ok(scalar(keys %defined), '>', 90, 'the script defines the functions');

# nothing points at a document outside the repository
my @files = split /\n/, `git -C "$root" ls-files 2>/dev/null`;
if (!@files) {
    # a copy without git: every file but the built ones
    require File::Find;
    File::Find::find({ no_chdir => 1, wanted => sub {
        $File::Find::prune = 1 if -d && m{/(\.git|results|tmp_check)$};
        push @files, substr($File::Find::name, length($root) + 1) if -f;
    } }, $root);
}
@files = grep { !m{^sql/propensity--} } @files;
for my $f (@files) {
    next unless $f =~ /\.(c|h|sql|md|sh|pl|t|py|avsc|out)$/ || $f eq 'Makefile';
    my $text = slurp("$root/$f");
    unlike($text, qr{\.\./shared|\bSPEC(\.md| section)}, "$f points inside the repository");
}
# the released scripts never change (sql/released.sha256 lists them)
use Digest::SHA;
open(my $sums, '<', "$root/sql/released.sha256") or die "released.sha256: $!";
while (my $line = <$sums>) {
    my ($sum, $file) = $line =~ /^([0-9a-f]{64})\s+(\S+)$/ or next;
    is(Digest::SHA->new(256)->addfile("$root/sql/$file")->hexdigest, $sum, "released $file is unchanged");
}
done_testing();
