#!/usr/bin/perl
# sa_hits.pl - run SpamAssassin (local tests only, no Bayes) with a chosen
# set of rule files over messages and print, per message, the rules hit:
# a measuring aid for postern's own rules (etc/spam-rules.cf) that does
# not need postern, used to fit their scores (fit_scores.py).
#
#   sa_hits.pl [--rules FILE]... [--rules-dir DIR]... < list
#
# The list holds one "LABEL<TAB>PATH" a line (LABEL ham or spam); each
# message is printed as "LABEL<TAB>PATH<TAB>SCORE<TAB>RULE,RULE,...".
# SpamAssassin loads only the rules given (plus its list of top-level
# domains, which its link parser needs) and the plugins of its site
# configuration, with PosternEvals.pm for postern's own eval: tests.
# A leading mbox "From " line is skipped (SpamAssassin does it too).
#
# Input: the messages (untrusted), parsed by SpamAssassin. Privilege: run
# it as an unprivileged user (SpamAssassin refuses nothing as root, but
# there is no reason to parse mail as root).
use strict;
use warnings;
use File::Basename qw(dirname);
use File::Copy qw(copy);
use File::Temp qw(tempdir);
use Getopt::Long;
use Mail::SpamAssassin;

my (@rules, @rule_dirs);
GetOptions('rules=s' => \@rules, 'rules-dir=s' => \@rule_dirs) or die "usage: $0 [--rules FILE]... [--rules-dir DIR]...\n";
@rules or @rule_dirs or die "$0: give --rules FILE or --rules-dir DIR\n";

# A private site configuration: the packaged plugin list (*.pre) and our plugin.
my $tmp = tempdir('sa-hits-XXXXXX', TMPDIR => 1, CLEANUP => 1);
mkdir "$tmp/site" or die;
mkdir "$tmp/rules" or die;
copy($_, "$tmp/site/") or die "$_: $!" for glob('/etc/spamassassin/*.pre');
my $here = dirname(__FILE__);
open my $pre, '>', "$tmp/site/zz_postern.pre" or die;
print $pre "loadplugin PosternEvals $here/PosternEvals.pm\n";
close $pre;
# The rules: the TLD list first, then the folders' *.cf, then the files, in order.
my $n = 0;
my @cf = ('/usr/share/spamassassin/20_aux_tlds.cf');
for my $d (@rule_dirs) { push @cf, sort glob("$d/*.cf") }
push @cf, @rules;
my %seen;
for my $f (@cf) {
	next if $seen{$f}++;
	-r $f or die "$0: $f: cannot read\n";
	symlink($f =~ m{^/} ? $f : "$ENV{PWD}/$f", sprintf("%s/rules/%04d_%s", $tmp, $n++, (split m{/}, $f)[-1]))
		or die "$f: $!";
}

my $sa = Mail::SpamAssassin->new({
	rules_filename => "$tmp/rules",
	site_rules_filename => "$tmp/site",
	userprefs_filename => '/dev/null',
	dont_copy_prefs => 1,
	local_tests_only => 1,
	post_config_text => "use_bayes 0\nuse_auto_whitelist 0\n",
});
$sa->init(1);

binmode STDOUT;
$| = 1;
while (my $line = <STDIN>) {
	chomp $line;
	my ($label, $path) = split /\t/, $line, 2;
	open my $fh, '<:raw', $path or die "$path: $!\n";
	my $data = do { local $/; <$fh> };
	close $fh;
	my $msg = $sa->parse($data);
	my $st = $sa->check($msg);
	my $names = join(',', sort grep { !/^__/ } split /,/, $st->get_names_of_tests_hit());
	printf "%s\t%s\t%.3f\t%s\n", $label, $path, $st->get_score(), $names;
	$st->finish;
	$msg->finish;
}
