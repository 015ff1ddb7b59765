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

my %seen;
while ($sql =~ /^CREATE (FUNCTION|AGGREGATE|PROCEDURE) \@extschema\@\.(\w+)\s*\(([^)]*)\)\s*(?:RETURNS\s+(\S+))?/mg) {
    my ($kind, $name, $args, $returns) = ($1, $2, $3, $4 // '');
    next if $seen{$name}++;
    # the support functions of aggregates and the trigger functions
    next if $args =~ /\binternal\b/ || $returns =~ /^(internal|trigger)\b/;
    like($reference, qr/\b\Q$name\E\b/, "$kind $name is in the README's Reference");
}
cmp_ok(scalar(keys %seen), '>', 90, 'the script defines the functions');

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
