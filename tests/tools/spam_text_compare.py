#!/usr/bin/env python3
"""spam_text_compare.py - compare what postern's spam tests see of a message
(tests/tools/spam_text_dump.c) with what SpamAssassin's rules see (its Perl
API: Mail::SpamAssassin::Message::get_rendered_body_text_array and
PerMsgStatus::get_uri_detail_list), over messages of the shared corpus or
files named.

For each message: is the body the same, line for line (SpamAssassin's last
line, and the pieces of a line longer than 2048 bytes, lack the line end
postern gives every line; that difference is not counted), how similar are the lines (difflib's ratio over the lists of
lines), and how many of SpamAssassin's URIs postern found and the other way
round (URIs SpamAssassin keeps but uri rules never see - fragments, paths
without a host - left out).

    spam_text_compare.py --dump build/tools/spam_text_dump [--count N]
        [--corpus DIR] [--min-identical 0.9] [--min-uri 0.9] [--show N] [FILE...]

The corpus is ../shared/corpus/train beside the checkout (or
$POSTERN_CORPUS/train, as for mime_compare.py); --count messages are taken
from it evenly, half ham, half spam.

The last line counts the two bounds as tests for make check
("spam-text-compare: 2 passed, 0 failed, 0 skipped"). Exits 1 when a
--min-* bound is not met, 0 otherwise; counts them skipped and exits 0 when
SpamAssassin's Perl modules or the corpus are not there. Untrusted input:
the messages.
"""
import argparse
import difflib
import os
import subprocess
import sys

PERL = r'''
use strict; use warnings;
use Mail::SpamAssassin;
my $what = shift @ARGV;
my $sa = Mail::SpamAssassin->new({ local_tests_only => 1, dont_copy_prefs => 1,
  userprefs_filename => '/dev/null', site_rules_filename => '/dev/null',
  rules_filename => '/dev/null',
  post_config_text => "include /usr/share/spamassassin/20_aux_tlds.cf\n" });
$sa->init(0);
binmode(STDOUT);
for my $f (@ARGV) {
  open(my $fh, '<', $f) or die "$f: $!"; local $/; my $raw = <$fh>; close $fh;
  my $msg = $sa->parse($raw, 1);
  print "\x01$f\n";
  for (@{$msg->get_rendered_body_text_array()}) { my $l = $_; $l =~ s/\n/\\n/g; print "B[$l]\n"; }
  my $pms = Mail::SpamAssassin::PerMsgStatus->new($sa, $msg);
  my $d = $pms->get_uri_detail_list();
  for my $u (sort keys %$d) { (my $v = $u) =~ s/[\r\n\t]//g; print "U$v\n"; }
  $pms->finish();
  $msg->finish();
}
'''


def have_spamassassin():
    return subprocess.run(['perl', '-MMail::SpamAssassin', '-e', '1'],
                          capture_output=True).returncode == 0


def spamassassin_views(files):
    out = subprocess.run(['perl', '-e', PERL, 'all'] + files, capture_output=True, check=True)
    views, cur = {}, None
    for line in out.stdout.split(b'\n'):
        if line.startswith(b'\x01'):
            cur = line[1:].decode()
            views[cur] = ([], set())
        elif cur is not None and line.startswith(b'B'):
            views[cur][0].append(line[1:])
        elif cur is not None and line.startswith(b'U'):
            views[cur][1].add(line[1:])
    return views


def readable(line):
    """SpamAssassin gives the Latin-1 byte of an entity (&copy;) in an
    all-ASCII HTML part, which is no UTF-8: such bytes are read as
    Windows-1252 so that its b"\\xa9" and postern's U+00A9 compare equal."""
    text = line.decode('utf-8', 'surrogateescape')
    return ''.join(bytes([ord(c) - 0xdc00]).decode('cp1252', 'replace')
                   if 0xdc80 <= ord(c) <= 0xdcff else c for c in text)


def postern_views(dump, path):
    body = subprocess.run([dump, 'body', path], capture_output=True, check=True).stdout
    uris = subprocess.run([dump, 'uri', path], capture_output=True, check=True).stdout
    lines = body.split(b'\n')[:-1]
    return lines, {line.split(b'\t')[0] for line in uris.split(b'\n') if line}


def uri_rules_see(uri):
    """URIs SpamAssassin keeps in its list but its uri rules never see."""
    return len(uri) > 1 and not uri.startswith((b'#', b'?', b'&', b'domainkeys:')) and \
        not (uri.startswith(b'/') and not uri.startswith(b'//'))


def pick(corpus, count):
    files = []
    for group in ('ham', 'spam'):
        folder = os.path.join(corpus, group)
        names = sorted(os.listdir(folder))
        step = max(1, len(names) // max(1, count // 2))
        files += [os.path.join(folder, n) for n in names[::step][:count // 2]]
    return files


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--dump', required=True)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    ap.add_argument('--corpus', default=os.path.join(os.environ.get(
        'POSTERN_CORPUS', os.path.join(os.path.dirname(root), 'shared', 'corpus')), 'train'))
    ap.add_argument('--count', type=int, default=200)
    ap.add_argument('--min-identical', type=float, default=0.0)
    ap.add_argument('--min-uri', type=float, default=0.0)
    ap.add_argument('--show', type=int, default=0)
    ap.add_argument('files', nargs='*')
    args = ap.parse_args()
    if not have_spamassassin():
        print('spam-text compare: no Mail::SpamAssassin (Debian package spamassassin)')
        print('spam-text-compare: 0 passed, 0 failed, 2 skipped')
        return 0
    files = args.files
    if not files:
        if not os.path.isdir(os.path.join(args.corpus, 'ham')):
            print('spam-text compare: no corpus at %s' % args.corpus)
            print('spam-text-compare: 0 passed, 0 failed, 2 skipped')
            return 0
        files = pick(args.corpus, args.count)
    theirs = spamassassin_views(files)
    identical, ratio_sum, uri_both, uri_sa, uri_ours, shown = 0, 0.0, 0, 0, 0, 0
    for f in files:
        sa_lines, sa_uris = theirs[f]
        our_lines, our_uris = postern_views(args.dump, f)
        sa_lines = [readable(x).encode('utf-8') for x in sa_lines]
        # SpamAssassin's lines are array elements: the pieces of a line cut at
        # 2048 bytes, and its last line, end in no line end, while every line
        # of postern's body does. That difference is not counted.
        sa_lines = [x[:-3] + b']' if x.endswith(b'\\n]') else x for x in sa_lines]
        our_lines = [x[:-3] + b']' if x.endswith(b'\\n]') else x for x in our_lines]
        same = sa_lines == our_lines
        identical += same
        ratio_sum += difflib.SequenceMatcher(None, sa_lines, our_lines, autojunk=False).ratio()
        sa_uris = {u for u in sa_uris if uri_rules_see(u)}
        uri_both += len(sa_uris & our_uris)
        uri_sa += len(sa_uris)
        uri_ours += len(our_uris)
        if not same and shown < args.show:
            shown += 1
            print('--- %s' % f)
            for d in difflib.unified_diff([x.decode('utf-8', 'replace') for x in sa_lines],
                                          [x.decode('utf-8', 'replace') for x in our_lines],
                                          'spamassassin', 'postern', lineterm='', n=0):
                print(d[:300])
        if args.show and sa_uris != our_uris and shown <= args.show:
            if same:
                print('--- %s (URIs)' % f)
            for u in sorted(sa_uris - our_uris):
                print('  uri only in spamassassin: %s' % u.decode('utf-8', 'replace'))
            for u in sorted(our_uris - sa_uris):
                print('  uri only in postern: %s' % u.decode('utf-8', 'replace'))
    n = len(files)
    same_share = identical / n if n else 1.0
    found = uri_both / uri_sa if uri_sa else 1.0
    extra = (uri_ours - uri_both) / uri_ours if uri_ours else 0.0
    print('spam-text compare: %d messages, body identical to SpamAssassin\'s in %d (%.1f %%), '
          'line similarity %.3f; URIs: %d of SpamAssassin\'s %d found (%.1f %%), '
          '%d of postern\'s %d not in SpamAssassin\'s (%.1f %%)'
          % (n, identical, 100 * same_share, ratio_sum / n if n else 1.0, uri_both, uri_sa,
             100 * found, uri_ours - uri_both, uri_ours, 100 * extra))
    failed = (same_share < args.min_identical) + (found < args.min_uri)
    if failed:
        print('spam-text compare: FAILED (at least %.1f %% identical bodies and %.1f %% of the URIs '
              'wanted)' % (100 * args.min_identical, 100 * args.min_uri))
    print('spam-text-compare: %d passed, %d failed, 0 skipped' % (2 - failed, failed))
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
