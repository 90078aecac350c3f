# Sourced by cluster-up.sh, cluster-down.sh and node-down.sh: the cluster's node layout.
#
# N_NODES=1: one node named after this host (hostname -s), slurmd on 127.0.0.1, no namespaces.
# N_NODES>=2: nodes ${PREFIX}1..${PREFIX}N. Node i's slurmd (and so every job step on it) runs in
#   the network namespace named like the node, with its own hostname (a UTS namespace), its own
#   /etc/hosts (a bind mount in a private mount namespace) and address $NET.(10+i) on eth0, one end
#   of a veth pair whose other end, ${PREFIX}h<i>, is a port of the bridge ${PREFIX}br ($NET.1, the
#   controller's address). Traffic stays on that bridge: nothing is routed off the machine.
#
# The layout a cluster was started with is kept in $STATE/etc/layout, so cluster-down.sh and
# node-down.sh find the same nodes whatever the caller's environment says.

layout_file() { echo "$1/etc/layout"; }

# load_layout STATE: set N_NODES, PREFIX, NET from the state's layout file, else from the environment.
load_layout() {
    local f
    f=$(layout_file "$1")
    if [ -s "$f" ]; then
        read -r N_NODES PREFIX NET <"$f"
    else
        N_NODES=${PROXYSCALE_SLURM_NODES:-2}
        PREFIX=${PROXYSCALE_SLURM_PREFIX:-psn}
        NET=${PROXYSCALE_SLURM_NET:-10.213.7}
    fi
    set_nodes
}

# set_nodes: NODES (names), BRIDGE, CTLD_ADDR from N_NODES, PREFIX and NET.
set_nodes() {
    local i
    BRIDGE=${PREFIX}br
    NODES=()
    if [ "$N_NODES" = 1 ]; then
        NODES=("$(hostname -s)")
        CTLD_ADDR=127.0.0.1
    else
        for ((i = 1; i <= N_NODES; i++)); do NODES+=("$PREFIX$i"); done
        CTLD_ADDR=$NET.1
    fi
}

node_index() { echo "${1#"$PREFIX"}"; }  # psn2 -> 2
node_addr() {                            # the address slurmctld and the other nodes reach NODE at
    if [ "$N_NODES" = 1 ]; then echo 127.0.0.1; else echo "$NET.$((10 + $(node_index "$1")))"; fi
}
host_veth() { echo "${PREFIX}h$(node_index "$1")"; }
netns_path() { echo "/run/netns/$1"; }

# netns_pids NODE: every process in the node's network namespace (its slurmd, slurmstepd and job
# tasks): `ip netns pids` compares each /proc/PID/ns/net with the namespace, no name matching.
netns_pids() { ip netns pids "$1" 2>/dev/null || true; }
