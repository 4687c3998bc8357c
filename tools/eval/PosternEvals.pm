# PosternEvals.pm - a SpamAssassin plugin with postern's own eval: tests,
# so that SpamAssassin can run etc/spam-rules.cf whole: to check the file
# with "spamassassin --lint" and to measure the rules (tools/eval/sa_hits.pl)
# where postern is not at hand. A measuring aid, never installed; postern
# has these tests built in (src/scan/spam_eval.c), and this is an
# approximation of them on top of SpamAssassin's own HTML and URI parsing:
#
#   check_replyto_other_domain()  Reply-To's domain in another organisation than From's
#   check_uri_text_mismatch()     an <a>'s text names a domain other than its link's
#   html_invisible_text(N[, S])   at least N bytes of HTML text the reader cannot
#                                 see (and at least the share S of the text)
#   html_obfuscated_words()       words split by HTML tags
#
# Load it with: loadplugin PosternEvals /path/to/tools/eval/PosternEvals.pm
# Input: the message, through SpamAssassin. Privilege: whoever runs
# SpamAssassin (the eval tools run it unprivileged, as debian-spamd).
package PosternEvals;

use strict;
use warnings;
use Mail::SpamAssassin::Plugin;
our @ISA = qw(Mail::SpamAssassin::Plugin);

sub new {
	my ($class, $sa) = @_;
	my $self = $class->SUPER::new($sa);
	bless $self, $class;
	$self->register_eval_rule('check_replyto_other_domain',
				  $Mail::SpamAssassin::Conf::TYPE_HEAD_EVALS);
	$self->register_eval_rule('check_uri_text_mismatch',
				  $Mail::SpamAssassin::Conf::TYPE_BODY_EVALS);
	$self->register_eval_rule('html_invisible_text',
				  $Mail::SpamAssassin::Conf::TYPE_BODY_EVALS);
	$self->register_eval_rule('html_obfuscated_words',
				  $Mail::SpamAssassin::Conf::TYPE_BODY_EVALS);
	return $self;
}

# The organisation's part of a host name: its last two labels, or three
# when the second-level label is a short public one (co.uk, com.au).
sub org_of {
	my ($host) = @_;
	my @l = split /\./, lc($host // '');
	return '' unless @l;
	my $n = (@l >= 3 && length($l[-1]) == 2 && $l[-2] =~ /^(?:co|com|net|org|ac|gov|edu|ne|or)$/)
		? 3 : 2;
	$n = @l if $n > @l;
	return join('.', @l[-$n .. -1]);
}

sub domain_of_addr {
	my ($addr) = @_;
	return ($addr // '') =~ /\@([\w.-]+)\s*$/ ? lc($1) : '';
}

sub check_replyto_other_domain {
	my ($self, $pms) = @_;
	my $from = domain_of_addr(scalar $pms->get('From:addr'));
	my $reply = domain_of_addr(scalar $pms->get('Reply-To:addr'));
	return 0 if $from eq '' || $reply eq '';
	return org_of($from) ne org_of($reply) ? 1 : 0;
}

# The first domain name written in a piece of text (with a known-looking
# top-level label of letters), or ''.
sub domain_in_text {
	my ($text) = @_;
	return $text =~ /(?:^|[^\w.-])(?:https?:\/\/)?((?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)+[a-z]{2,6})(?:[\/:\s]|$)/i
		? lc($1) : '';
}

sub check_uri_text_mismatch {
	my ($self, $pms) = @_;
	my $detail = $pms->get_uri_detail_list();
	my $n = 0;
	while (my ($uri, $info) = each %$detail) {
		next unless $info->{anchor_text} && @{ $info->{anchor_text} };
		next unless $uri =~ m{^https?://(?:[^/?#\@]*\@)?([^/?#:]+)}i;
		my $host = lc $1;
		for my $text (@{ $info->{anchor_text} }) {
			my $named = domain_in_text($text);
			$n++ if $named ne '' && org_of($named) ne org_of($host);
		}
	}
	return $n > 0 ? 1 : 0;
}

sub html_invisible_text {
	my ($self, $pms, undef, $min, $share) = @_;
	return 0 unless $pms->{html}{html};
	my $inv = join('', @{ $pms->{msg}->get_invisible_rendered_body_text_array() || [] });
	my $vis = join('', @{ $pms->{msg}->get_visible_rendered_body_text_array() || [] });
	$inv =~ s/\s+/ /g;
	$vis =~ s/\s+/ /g;
	my ($i, $v) = (length $inv, length $vis);
	return 0 if $i == 0 || $i < ($min // 1);
	return 1 unless defined $share;
	return ($i / ($i + $v)) >= $share ? 1 : 0;
}

sub html_obfuscated_words {
	my ($self, $pms) = @_;
	return ($pms->{html}{backhair_count} // 0) > 0 ? 1 : 0;
}

1;
