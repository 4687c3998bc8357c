#!/bin/sh
# install-deps.sh - install the Debian packages postern needs to build, test
# and benchmark, when they are missing. Runs apt-get only as root; otherwise
# it names what is missing and lets the build fail with the real error.
set -eu
# libnet-ssleay-perl: what "swaks -tls" needs (the README's tour and the
# integration tests use it).
PKGS="build-essential pkg-config libevent-dev libssl-dev libcmocka-dev libcrypt-dev
      clang python3 swaks libnet-ssleay-perl postfix openssl procps"
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
# postfix is only used for smtp-source/smtp-sink, the benchmark's private
# instance and the integration tests' private instances
# (tests/integration/postfix_peer.py): do not let its package configure or
# start a system mailer.
echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
apt-get update -q </dev/null
apt-get install -y -q --no-install-recommends $missing </dev/null
