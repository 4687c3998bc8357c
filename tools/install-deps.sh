#!/bin/sh
# install-deps.sh - install the Debian packages postern needs to build, test
# and benchmark, and those the README's tour uses, when they are missing.
# Runs apt-get only as root; otherwise it names what is missing and lets the
# build fail with the real error. Never asks a question: it reads no stdin.
#
#   libmagic-dev         the MIME parser's type sniffing (brings libmagic1 and
#                        libmagic-mgc, the compiled magic database)
#   libnet-ssleay-perl   what "swaks -tls" needs (swaks only recommends it)
#   postfix              smtp-source/smtp-sink, the benchmark's private
#                        instance and the integration tests' private
#                        instances (tests/integration/postfix_peer.py),
#                        smtp-sink as the outbound relay tests'
#                        destination (sink_peer.py, bench/relay.sh),
#                        never a system mailer
#   dovecot-imapd        the integration tests start a private Dovecot that
#                        reads postern's Maildirs, never the system one
#   dovecot-pop3d        the POP3 benchmark's comparison (bench/pop3.sh starts a
#                        private Dovecot POP3 server on postern's Maildirs)
#   libclamav-dev        the antivirus stage's in-process engine
#   clamav-daemon        clamd for the clamd mode's tests, started privately
#                        (tests/integration/clamd_peer.py) with postern's
#                        test signatures, never the system clamd; its
#                        freshclam is set to "manual" so that nothing tries
#                        to download signatures at install time or later
#   clamav clamdscan time  the benchmark's comparison (bench/scan.sh):
#                        clamscan, clamdscan, /usr/bin/time for peak RSS
#   liblmdb-dev          the Bayes token store and the anvil's store of
#                        blocks and greylisting (LMDB)
#   libxxhash-dev        the Bayes tokens' 64-bit hash (XXH64)
#   libhyperscan-dev     the spam rules' prefilter (one pass over a message
#   (libvectorscan-dev)  finds the literals every rule regex needs) and the
#                        gates of the regexes without literals. Both
#                        ship the same library (libhs, pkg-config libhs,
#                        the same API); on amd64 it is Hyperscan, because
#                        Debian's rspamd (below) depends on libhyperscan5,
#                        which conflicts with libvectorscan5; elsewhere
#                        Vectorscan, its portable fork (no Hyperscan there)
#   spamassassin         its rule files (/usr/share/spamassassin), which the
#                        spam rule engine's tests load; its spamd is not
#                        started (no service starts during this install)
#                        (and, for tests/tools/spam_text_compare.py in
#                        check-unit, the Perl modules that render messages
#                        as its rules see them)
#   spamd, spamc         SpamAssassin's daemon and client, for "make eval",
#                        which runs a private spamd next to postern on the
#                        same folds (../shared/anchors/08_sa_accuracy.sh);
#                        its system service is disabled, like Dovecot's
#   rspamd               the spam benchmark's comparison (bench/spam.sh
#                        starts a private rspamd from the shared anchors,
#                        loopback only); its system service is never
#                        started (no service starts during this install)
#                        and is disabled; without recommends: no Redis
#   libc-ares-dev        the asynchronous DNS resolver on the smtp workers'
#                        event loops (src/dns/: DNSBL, reverse DNS, MX)
#   unbound              the DNS tests' server, started privately with the
#                        test zones (tests/integration/unbound_peer.py),
#                        never the system resolver: its services are
#                        disabled and /etc/resolv.conf is left alone; and
#                        the DNSBL benchmark's server (bench/dnsbl.sh, with
#                        unbound-control for its query counts)
#   iproute2             "ip link set lo up" in the benchmarks' private
#                        network namespaces (bench/*.sh)
#   zlib1g-dev           postern report reads gzip-compressed (rotated) logs
#   chromium             the report test renders the --html page headless
#                        (tests/integration/test_report.py), never a browser
#                        anyone uses
#   pflogsumm            the report benchmark's comparison (bench/report.sh)
#   rsyslog              a real syslog daemon reading log_to = syslog on a
#                        private socket (tests/integration/test_logging.py;
#                        the test runs its own rsyslogd, never the system's)
#   curl                 a second HTTP client scraping the metrics
#                        (tests/integration/test_metrics.py)
#   systemd              systemd-analyze verify/security on the installed
#                        unit (tests/integration/test_install.py); only the
#                        tool is used, systemd need not be running
#   libmilter-dev        the milter server (postern milter) and the test
#                        milter under tests/milter/ are built on it
#   opendkim opendkim-tools  clamav-milter spamass-milter
#                        real milters the milter client is tested against
#                        (started privately by the integration tests), and
#                        the classic stack of the milter benchmark; none of
#                        their system services is started or enabled
set -eu
# the library of the spam rules' prefilter (see above)
case "$(dpkg --print-architecture 2>/dev/null)" in
amd64) HS_DEV=libhyperscan-dev ;;
*) HS_DEV=libvectorscan-dev ;;
esac
PKGS="build-essential pkg-config libevent-dev libssl-dev libcmocka-dev libcrypt-dev
      libmagic-dev libpcre2-dev libarchive-dev
      clang python3 swaks libnet-ssleay-perl postfix dovecot-core dovecot-imapd dovecot-pop3d
      openssl procps libclamav-dev clamav-daemon clamav clamdscan time \
      liblmdb-dev libxxhash-dev $HS_DEV spamassassin spamd spamc rspamd \
      libc-ares-dev unbound iproute2 zlib1g-dev chromium pflogsumm \
      rsyslog curl systemd libmilter-dev opendkim opendkim-tools clamav-milter \
      spamass-milter"
missing=""
for p in $PKGS; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
		missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
	echo "install-deps: missing Debian packages:$missing (run as root to install)" >&2
	exit 0
fi
export DEBIAN_FRONTEND=noninteractive
# postfix: do not let its package configure or start a system mailer.
echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
# clamav-freshclam (pulled in by clamav-daemon): no update daemon, no cron
# job, no download from its postinst.
echo "clamav-freshclam clamav-freshclam/autoupdate_freshclam select manual" | debconf-set-selections
# No service may start during this install (Dovecot would take port 143
# and 993): invoke-rc.d asks policy-rc.d, exit status 101 means "no".
# An administrator's own policy-rc.d is left as it is.
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
	printf '#!/bin/sh\n# written by postern tools/install-deps.sh, removed when it ends\nexit 101\n' >"$policy"
	chmod 755 "$policy"
	trap 'rm -f "$policy"' EXIT
fi
# Hyperscan and Vectorscan cannot be installed together: when the one this
# architecture takes is missing, the other goes (a trailing "-" tells
# apt-get to remove a package); both build postern alike.
swap=""
case " $missing " in
*" libhyperscan-dev "*) other="libvectorscan-dev libvectorscan5" ;;
*" libvectorscan-dev "*) other="libhyperscan-dev libhyperscan5" ;;
*) other="" ;;
esac
for p in $other; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" && swap="$swap $p-"
done
[ -n "$swap" ] && echo "install-deps: replacing$swap with $HS_DEV (the same libhs)"
apt-get update -q </dev/null
apt-get install -y -q --no-install-recommends $missing $swap </dev/null
# A Dovecot installed here is for the tests only: should a policy have let
# it start, stop it, and keep it from starting at boot.
case " $missing " in
*" dovecot-core "*)
	if [ -d /run/systemd/system ]; then
		systemctl disable --now dovecot.service dovecot.socket </dev/null >/dev/null 2>&1 || true
	else
		/etc/init.d/dovecot stop </dev/null >/dev/null 2>&1 || true
		update-rc.d dovecot disable </dev/null >/dev/null 2>&1 || true
	fi
	echo "install-deps: dovecot installed for the tests; its system service is disabled"
	;;
esac
# spamd likewise: make eval starts its own.
case " $missing " in
*" spamd "*)
	if [ -d /run/systemd/system ]; then
		systemctl disable --now spamd.service </dev/null >/dev/null 2>&1 || true
	else
		/etc/init.d/spamd stop </dev/null >/dev/null 2>&1 || true
		update-rc.d spamd disable </dev/null >/dev/null 2>&1 || true
	fi
	echo "install-deps: spamd installed for make eval; its system service is disabled"
	;;
esac
# rspamd likewise: bench/spam.sh starts its own (the anchors' rspamd_ctl.sh).
case " $missing " in
*" rspamd "*)
	if [ -d /run/systemd/system ]; then
		systemctl disable --now rspamd.service </dev/null >/dev/null 2>&1 || true
	else
		/etc/init.d/rspamd stop </dev/null >/dev/null 2>&1 || true
		update-rc.d rspamd disable </dev/null >/dev/null 2>&1 || true
	fi
	echo "install-deps: rspamd installed for make bench; its system service is disabled"
	;;
esac
# unbound likewise: the tests start their own on a loopback port; the
# system resolver (and unbound-resolvconf, which would point
# /etc/resolv.conf at it) must not start.
case " $missing " in
*" unbound "*)
	if [ -d /run/systemd/system ]; then
		systemctl disable --now unbound.service unbound-resolvconf.service \
			</dev/null >/dev/null 2>&1 || true
	else
		/etc/init.d/unbound stop </dev/null >/dev/null 2>&1 || true
		update-rc.d unbound disable </dev/null >/dev/null 2>&1 || true
	fi
	echo "install-deps: unbound installed for the tests; its system service is disabled"
	;;
esac
# The same for ClamAV: clamd and freshclam are never system services here.
case " $missing " in
*" clamav-daemon "*)
	if [ -d /run/systemd/system ]; then
		systemctl disable --now clamav-daemon.service clamav-daemon.socket \
			clamav-freshclam.service </dev/null >/dev/null 2>&1 || true
	else
		for s in clamav-daemon clamav-freshclam; do
			/etc/init.d/$s stop </dev/null >/dev/null 2>&1 || true
			update-rc.d $s disable </dev/null >/dev/null 2>&1 || true
		done
	fi
	echo "install-deps: clamav-daemon installed for the tests; clamd and freshclam services are disabled"
	;;
esac
# The milters likewise: the tests and benchmarks start their own.
for svc in opendkim clamav-milter spamass-milter; do
	case " $missing " in
	*" $svc "*)
		if [ -d /run/systemd/system ]; then
			systemctl disable --now "$svc.service" </dev/null >/dev/null 2>&1 || true
		else
			/etc/init.d/$svc stop </dev/null >/dev/null 2>&1 || true
			update-rc.d $svc disable </dev/null >/dev/null 2>&1 || true
		fi
		echo "install-deps: $svc installed for the tests; its system service is disabled"
		;;
	esac
done
