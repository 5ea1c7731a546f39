#!/usr/bin/env bash
# Makes the TLS certificates of herd's etcd members and of the orchestrators as etcd clients,
# with openssl (herd-orchestrator tls-init makes the orchestrators' HTTPS certificate, not
# these: it keeps no CA key to sign more with). Idempotent: an existing CA or certificate is
# kept, so the script can be run again to add a member.
#
#   deploy/systemd/etcd-pki.sh DIR m1=10.0.0.1 m2=10.0.0.2 m3=10.0.0.3
#
# Writes DIR/ca.pem and DIR/ca.key (the CA: keep ca.key offline), DIR/NAME.pem and NAME.key
# per member (server and client use: members are each other's clients; its address as IP or
# DNS name, plus 127.0.0.1 for etcdctl on the node), DIR/client.pem and client.key (the
# orchestrators' client certificate). Install on each member: ca.pem, NAME.pem and NAME.key as
# /etc/herd/etcd/{ca,member}.pem and member.key (owner etcd, key 0600); on each orchestrator:
# ca.pem, client.pem, client.key in /etc/herd/etcd/ (group herd, key 0640).
set -euo pipefail
[[ $# -ge 2 ]] || { sed -n '2,15p' "$0" >&2; exit 2; }
dir=$1
shift
mkdir -p "$dir"
cd "$dir"
umask 077
if [[ ! -e ca.key ]]; then
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem -days 3650 \
        -subj "/CN=herd etcd CA" -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
fi

# issue NAME SUBJECT_ALT_NAMES EXTENDED_KEY_USAGE
issue() {
    [[ -e $1.pem ]] && return 0
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$1.key" -out "$1.csr" -subj "/CN=$1" 2>/dev/null
    openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -out "$1.pem" -days 825 2>/dev/null \
        -extfile <(printf 'subjectAltName=%s\nextendedKeyUsage=%s\nkeyUsage=critical,digitalSignature,keyAgreement\n' "$2" "$3")
    rm -f "$1.csr"
    echo "$dir/$1.pem"
}

for member in "$@"; do
    name=${member%%=*} addr=${member#*=}
    [[ $name != "$member" && -n $addr ]] || { echo "error: \`$member\` is not NAME=ADDRESS" >&2; exit 2; }
    if [[ $addr =~ ^[0-9.]+$ || $addr == *:* ]]; then san="IP:$addr"; else san="DNS:$addr"; fi
    issue "$name" "$san,IP:127.0.0.1,DNS:localhost" serverAuth,clientAuth
done
issue client "DNS:herd-orchestrator" clientAuth
chmod 644 ./*.pem
