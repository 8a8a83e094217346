#!/usr/bin/env bash
# Two hosts simulated on one machine: network namespaces lutq_tp_a and lutq_tp_b joined by a veth
# pair (10.200.0.1/24 and 10.200.0.2/24, nothing else routed), and `mpirun -np 2 lutq ...` with one
# rank in each, talking over MPI's TCP transport only (btl tcp,self on 10.200.0.0/24). mpirun runs
# in namespace a and starts the remote daemon in namespace b through a launcher script that does
# `ip netns exec` instead of ssh. Bounded by a timeout; the namespaces are removed on exit.
#
#   scripts/tp_netns.sh [--timeout S] LUTQ COMMAND MODEL [ARGS...]
#   e.g. scripts/tp_netns.sh build/lutq bench models/smol.gguf --pp 64 --tg 16 --reps 2 --bench-threads 1
#
# Needs root (CAP_NET_ADMIN) and Open MPI; prints "skipped: <reason>" and exits 0 otherwise.
# Set TP_NETNS_DELAY=5ms to add that one-way delay on each side of the link (tc netem), a LAN-like
# latency.
set -euo pipefail

timeout_s=300
if [[ ${1:-} == --timeout ]]; then timeout_s=$2; shift 2; fi
if (($# < 3)); then
  echo "usage: $0 [--timeout S] LUTQ COMMAND MODEL [ARGS...]" >&2
  exit 2
fi
lutq=$(realpath "$1")
shift
ns_a=lutq_tp_a
ns_b=lutq_tp_b
skip() { echo "tp_netns: skipped: $*"; exit 0; }

command -v mpirun >/dev/null || skip "mpirun not found (apt-get install openmpi-bin libopenmpi-dev)"
command -v ip >/dev/null || skip "ip (iproute2) not found"
work=$(mktemp -d)
cleanup() {
  ip netns del "$ns_a" 2>/dev/null || true
  ip netns del "$ns_b" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
ip netns add "$ns_a" 2>/dev/null || skip "ip netns add is not permitted here (needs root / CAP_NET_ADMIN)"
ip netns add "$ns_b"
ip link add veth-lutq-a type veth peer name veth-lutq-b
ip link set veth-lutq-a netns "$ns_a"
ip link set veth-lutq-b netns "$ns_b"
ip -n "$ns_a" addr add 10.200.0.1/24 dev veth-lutq-a
ip -n "$ns_b" addr add 10.200.0.2/24 dev veth-lutq-b
for ns in "$ns_a" "$ns_b"; do
  ip -n "$ns" link set lo up
done
ip -n "$ns_a" link set veth-lutq-a up
ip -n "$ns_b" link set veth-lutq-b up
if [[ -n ${TP_NETNS_DELAY:-} ]]; then
  ip netns exec "$ns_a" tc qdisc add dev veth-lutq-a root netem delay "$TP_NETNS_DELAY"
  ip netns exec "$ns_b" tc qdisc add dev veth-lutq-b root netem delay "$TP_NETNS_DELAY"
fi
if command -v ping >/dev/null; then
  ip netns exec "$ns_a" ping -c 1 -W 2 10.200.0.2 >/dev/null || { echo "tp_netns: the veth link does not answer" >&2; exit 1; }
fi

# The "ssh" of host b: mpirun calls AGENT HOST COMMAND...; run the command inside namespace b.
cat >"$work/agent.sh" <<AGENT
#!/usr/bin/env bash
shift
exec ip netns exec $ns_b bash -c "\$*"
AGENT
chmod +x "$work/agent.sh"
printf '10.200.0.1 slots=1\n10.200.0.2 slots=1\n' >"$work/hosts"

echo "tp_netns: 2 ranks, $ns_a (10.200.0.1) and $ns_b (10.200.0.2), TCP over veth${TP_NETNS_DELAY:+, delay $TP_NETNS_DELAY each way}" >&2
set +e
timeout "$timeout_s" ip netns exec "$ns_a" mpirun --allow-run-as-root -np 2 --hostfile "$work/hosts" \
  --map-by node --mca mpi_yield_when_idle 1 --mca plm_rsh_agent "$work/agent.sh" --mca pml ob1 --mca btl tcp,self \
  --mca btl_tcp_if_include 10.200.0.0/24 --mca oob_tcp_if_include 10.200.0.0/24 \
  -x OMPI_MCA_btl_tcp_if_include=10.200.0.0/24 \
  "$lutq" "$@"
rc=$?
set -e
if ((rc == 124)); then echo "tp_netns: timed out after ${timeout_s} s" >&2; fi
exit "$rc"
